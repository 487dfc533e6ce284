"""Reply templates and the record of each use (what a template answered feeds the suggestions)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, event, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, TimestampMixin, utcnow
from app.db.types import enum_type

# 20 tags of at most 64 characters, each between two "|" (see ``tag_index_for``).
MAX_TAGS = 20
MAX_TAG_CHARS = 64
TAG_INDEX_CHARS = MAX_TAGS * (MAX_TAG_CHARS + 1) + 1
MESSAGE_EXCERPT_CHARS = 2000


class Visibility(enum.StrEnum):
    SHARED = "shared"
    PERSONAL = "personal"


class ReplyTemplate(TimestampMixin, Base):
    __tablename__ = "reply_templates"
    __table_args__ = (
        Index("ix_reply_templates_owner_id", "owner_id"),
        # A shortcut typed in the sidebar ("ack") must name one shared template per language; the
        # service answers 409 first, the index settles the race between two saves.
        Index(
            "ix_reply_templates_shared_shortcut",
            "shortcut",
            "language",
            unique=True,
            sqlite_where=text("visibility = 'shared' AND shortcut IS NOT NULL"),
            postgresql_where=text("visibility = 'shared' AND shortcut IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    subject: Mapped[str | None] = mapped_column(String(998))
    body: Mapped[str] = mapped_column(Text)
    is_html: Mapped[bool] = mapped_column(default=False)
    language: Mapped[str] = mapped_column(String(8), default="en")
    folder: Mapped[str | None] = mapped_column(String(200))
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    shortcut: Mapped[str | None] = mapped_column(String(64))
    visibility: Mapped[Visibility] = mapped_column(
        enum_type(Visibility, "template_visibility"), default=Visibility.SHARED
    )
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    usage_count: Mapped[int] = mapped_column(default=0)
    last_used_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(Integer, default=1)
    # Derived search columns, kept in step by the mapper events below. Python lower-cases them:
    # SQLite's lower() folds ASCII only, so LIKE on lower(body) would miss "Доставка" for
    # "доставка"; a JSON list has no portable "contains" operator, a "|a|b|" string has LIKE.
    search_text: Mapped[str] = mapped_column(Text, default="")
    tag_index: Mapped[str] = mapped_column(String(TAG_INDEX_CHARS), default="")

    __mapper_args__ = {"version_id_col": version}


def search_text_for(name: str, body: str) -> str:
    return f"{name}\n{body}".lower()


def tag_index_for(tags: list[str]) -> str:
    """``["billing", "vip"]`` → ``"|billing|vip|"``: a tag is found with LIKE '%|billing|%'."""
    return "|" + "|".join(tag.lower() for tag in tags) + "|" if tags else ""


@event.listens_for(ReplyTemplate, "before_insert")
@event.listens_for(ReplyTemplate, "before_update")
def _refresh_search_columns(_mapper: Any, _connection: Any, target: ReplyTemplate) -> None:
    target.search_text = search_text_for(target.name or "", target.body or "")
    target.tag_index = tag_index_for(list(target.tags or []))


class TemplateUse(Base):
    """One insertion of a template into a reply, with the customer message it answered."""

    __tablename__ = "template_uses"
    __table_args__ = (
        # The suggestions read each template's latest uses.
        Index("ix_template_uses_template_id_used_at", "template_id", "used_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    template_id: Mapped[int] = mapped_column(ForeignKey("reply_templates.id", ondelete="CASCADE"))
    ticket_id: Mapped[int | None] = mapped_column(
        ForeignKey("tickets.id", ondelete="SET NULL"), index=True
    )
    agent_id: Mapped[int | None] = mapped_column(
        ForeignKey("agents.id", ondelete="SET NULL"), index=True
    )
    # The customer's message the template answered (at most MESSAGE_EXCERPT_CHARS characters).
    message_excerpt: Mapped[str] = mapped_column(Text, default="")
    used_at: Mapped[datetime] = mapped_column(default=utcnow)
