from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, TimestampMixin


class Rule(TimestampMixin, Base):
    __tablename__ = "rules"
    __table_args__ = (Index("ix_rules_mailbox_id_position", "mailbox_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int | None] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(default=0)
    enabled: Mapped[bool] = mapped_column(default=True)
    conditions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    actions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # "all": every condition must hold; "any": one is enough.
    match: Mapped[str] = mapped_column(String(8), default="all", server_default="all")
    run_on_replies: Mapped[bool] = mapped_column(default=False)
    stop_processing: Mapped[bool] = mapped_column(default=False)
