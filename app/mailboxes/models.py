from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, Session, mapped_column, object_session, relationship

from app.db.base import Base, TimestampMixin
from app.db.types import enum_type
from app.errors import ValidationFailed
from templates_replies.models import ReplyTemplate, Visibility


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
    # Acknowledgement rate limits (app/acknowledgements/limits.py): per sender an hour and a day,
    # one per sender and subject within a window, and the circuit breaker's acknowledgements a
    # minute for the whole mailbox.
    ack_per_sender_hour: Mapped[int] = mapped_column(default=3)
    ack_per_sender_day: Mapped[int] = mapped_column(default=10)
    ack_same_subject_minutes: Mapped[int] = mapped_column(default=10)
    ack_breaker_per_minute: Mapped[int] = mapped_column(default=60)
    # The breaker's state: no acknowledgements until then, and why (shown in GET /mailboxes).
    ack_paused_until: Mapped[datetime | None]
    ack_alert: Mapped[str | None] = mapped_column(String(1000))
    # Its own acknowledgement templates, if any (``ack_template_id`` / ``ack_ooh_template_id``).
    ack_templates: Mapped[list[MailboxAckTemplate]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )
    last_synced_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(1000))
    # First sync reads INBOX of this many days back; older mail stays out of the helpdesk.
    full_sync_days: Mapped[int] = mapped_column(default=30)
    # Our label names → this mailbox's Gmail label ids (label ids differ per mailbox).
    label_ids: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)

    @property
    def ack_template_id(self) -> int | None:
        """The mailbox's acknowledgement template; None: the shared ``ack`` templates."""
        return self._ack_template(ACK_TEMPLATE)

    @ack_template_id.setter
    def ack_template_id(self, template_id: int | None) -> None:
        self._set_ack_template(ACK_TEMPLATE, template_id)

    @property
    def ack_ooh_template_id(self) -> int | None:
        """Its out-of-hours acknowledgement template; None: the shared ``ack-ooh`` ones."""
        return self._ack_template(ACK_OOH_TEMPLATE)

    @ack_ooh_template_id.setter
    def ack_ooh_template_id(self, template_id: int | None) -> None:
        self._set_ack_template(ACK_OOH_TEMPLATE, template_id)

    def _ack_template(self, kind: str) -> int | None:
        return next((t.template_id for t in self.ack_templates if t.kind == kind), None)

    def _set_ack_template(self, kind: str, template_id: int | None) -> None:
        if template_id is not None:
            _check_ack_template(object_session(self), template_id)
        kept = [t for t in self.ack_templates if t.kind != kind]
        if template_id is not None:
            kept.append(MailboxAckTemplate(kind=kind, template_id=template_id))
        self.ack_templates = kept


def _check_ack_template(session: Session | None, template_id: int) -> None:
    """Customers get only a shared template: a personal one is its author's to change or delete."""
    if session is None:
        return  # a new mailbox not added yet: the foreign key still guards the id
    template = session.get(ReplyTemplate, template_id)
    if template is None or template.visibility != Visibility.SHARED:
        raise ValidationFailed(f"no shared reply template {template_id}", code="unknown_template")


ACK_TEMPLATE = "ack"
ACK_OOH_TEMPLATE = "ack-ooh"


class MailboxAckTemplate(Base):
    """A mailbox's own acknowledgement template, instead of the shared ``ack`` / ``ack-ooh``.

    A table, not two columns on ``mailboxes``: on SQLite a referencing column either reflects
    without its name and ON DELETE (added by ALTER TABLE) or needs the table copied and the old one
    dropped, which SQLite refuses once tickets reference the mailbox (foreign keys cannot be
    switched off inside the migration's transaction). Deleting the template deletes the row
    (CASCADE): the mailbox is back on the shared templates, as ON DELETE SET NULL would have it.
    """

    __tablename__ = "mailbox_ack_templates"

    mailbox_id: Mapped[int] = mapped_column(
        ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # "ack" | "ack-ooh"
    template_id: Mapped[int] = mapped_column(
        ForeignKey("reply_templates.id", ondelete="CASCADE"), index=True
    )
