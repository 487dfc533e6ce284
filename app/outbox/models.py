from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, utcnow
from app.db.types import enum_type


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"


class OutboxMessage(Base):
    __tablename__ = "outbox"
    __table_args__ = (
        # At most one acknowledgement (resolution, rating request …) per ticket.
        UniqueConstraint("ticket_id", "kind"),
        Index("ix_outbox_status_id", "status", "id"),
        # The acknowledgement rate limits: a sender's acknowledgements of the last day
        # (app/acknowledgements/limits.py) …
        Index(
            "ix_outbox_mailbox_kind_to_created", "mailbox_id", "kind", "to_address", "created_at"
        ),
        # … and the circuit breaker's count of the mailbox's last minute.
        Index("ix_outbox_mailbox_kind_created", "mailbox_id", "kind", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[OutboxStatus] = mapped_column(
        enum_type(OutboxStatus, "outbox_status"), default=OutboxStatus.PENDING
    )
    # Generated before sending, so a retry after a crash can search Sent for `rfc822msgid:`.
    # "<…@domain>", angle brackets included: the header value as sent (RFC 5322 §3.6.4).
    rfc822_message_id: Mapped[str] = mapped_column(String(998), unique=True)
    to_address: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(998))
    body: Mapped[str] = mapped_column(Text)
    is_html: Mapped[bool] = mapped_column(default=False)
    # Threading headers as sent: "<id>", and "<id1> <id2> …" (RFC 5322 §3.6.4).
    in_reply_to: Mapped[str | None] = mapped_column(String(998))
    references: Mapped[str | None] = mapped_column(Text)
    gmail_thread_id: Mapped[str | None] = mapped_column(String(64))
    gmail_message_id: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(String(1000))
    # After a retryable Gmail error: not before this (None: as soon as possible).
    next_attempt_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]


class InstallationSecret(Base):
    """One random key per installation (a single row, id 1), made by migration 0005.

    It signs the Message-IDs of our acknowledgements (app/acknowledgements/compose.py) when
    ``INBOXDESK_SECRET_KEY`` is not set, so that signing works with no configuration at all.
    """

    __tablename__ = "installation_secrets"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    value: Mapped[bytes] = mapped_column(LargeBinary(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
