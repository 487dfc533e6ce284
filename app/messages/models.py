from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, utcnow
from app.db.types import enum_type


class Direction(enum.StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    AUTO = "auto"


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        # Gmail message ids are unique within one mailbox: the key that makes ingestion idempotent.
        UniqueConstraint("mailbox_id", "gmail_message_id"),
        Index("ix_messages_ticket_id_date", "ticket_id", "date"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    gmail_message_id: Mapped[str] = mapped_column(String(64))
    gmail_thread_id: Mapped[str] = mapped_column(String(64))
    # RFC 5322 Message-ID: how replies (In-Reply-To / References) find their ticket.
    rfc822_message_id: Mapped[str | None] = mapped_column(String(998), index=True)
    direction: Mapped[Direction] = mapped_column(enum_type(Direction, "message_direction"))
    from_address: Mapped[str] = mapped_column(String(320))
    from_name: Mapped[str | None] = mapped_column(String(200))
    to_addresses: Mapped[list[str]] = mapped_column(JSON, default=list)
    cc_addresses: Mapped[list[str]] = mapped_column(JSON, default=list)
    subject: Mapped[str | None] = mapped_column(String(998))
    date: Mapped[datetime | None]
    snippet: Mapped[str | None] = mapped_column(String(500))
    text_body: Mapped[str | None] = mapped_column(Text)
    # The sender's UTC offset from the Date header: a hint of their time zone (greetings, SLA).
    utc_offset_minutes: Mapped[int | None]
    label_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    is_automated: Mapped[bool] = mapped_column(default=False)
    automated_reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
