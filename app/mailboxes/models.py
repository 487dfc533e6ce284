from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, TimestampMixin
from app.db.types import enum_type


class MailboxState(enum.StrEnum):
    ACTIVE = "active"
    NEEDS_REAUTH = "needs_reauth"
    PAUSED = "paused"


class MailboxAuthKind(enum.StrEnum):
    OAUTH = "oauth"
    SERVICE_ACCOUNT = "service_account"
    EMULATOR = "emulator"
    NONE = "none"


class Mailbox(TimestampMixin, Base):
    __tablename__ = "mailboxes"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stored lower-cased: Gmail addresses are case-insensitive.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    auth_kind: Mapped[MailboxAuthKind] = mapped_column(
        enum_type(MailboxAuthKind, "mailbox_auth_kind"), default=MailboxAuthKind.NONE
    )
    # The OAuth refresh token or service-account key, encrypted with INBOXDESK_SECRET_KEY.
    credentials_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Gmail's history cursor: users.history.list resumes from here.
    history_id: Mapped[int | None] = mapped_column(BigInteger)
    state: Mapped[MailboxState] = mapped_column(
        enum_type(MailboxState, "mailbox_state"), default=MailboxState.ACTIVE
    )
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None]
    business_calendar_id: Mapped[int | None] = mapped_column(
        ForeignKey("business_calendars.id", ondelete="SET NULL")
    )
    language: Mapped[str] = mapped_column(String(8), default="en")
    # IANA zone: a reply's greeting when neither the customer nor their mail tells their zone.
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    auto_ack_enabled: Mapped[bool] = mapped_column(default=True)
    last_synced_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(1000))
    # First sync reads INBOX of this many days back; older mail stays out of the helpdesk.
    full_sync_days: Mapped[int] = mapped_column(default=30)
    # Our label names → this mailbox's Gmail label ids (label ids differ per mailbox).
    label_ids: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
