from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, TimestampMixin, utcnow

# 24 calendar hours: the longest a customer should wait for a first answer.
DEFAULT_FIRST_RESPONSE_CEILING_MINUTES = 24 * 60


class BusinessCalendar(TimestampMixin, Base):
    __tablename__ = "business_calendars"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")  # IANA name
    # {"mon": [["09:00", "13:00"], ["14:00", "18:00"]], ...}
    weekly_hours: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    holiday_country: Mapped[str | None] = mapped_column(String(8))  # for the `holidays` package
    # A region of the country (ISO 3166-2 suffix, e.g. "BY" for Bavaria), when its holidays differ.
    holiday_subdivision: Mapped[str | None] = mapped_column(String(16))
    custom_holidays: Mapped[list[str]] = mapped_column(JSON, default=list)  # ISO dates


class SlaPolicy(TimestampMixin, Base):
    __tablename__ = "sla_policies"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    priority: Mapped[str] = mapped_column(String(16))
    segment: Mapped[str | None] = mapped_column(String(32))
    mailbox_id: Mapped[int | None] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"))
    calendar_id: Mapped[int | None] = mapped_column(
        ForeignKey("business_calendars.id", ondelete="SET NULL")
    )
    first_response_minutes: Mapped[int]
    resolution_minutes: Mapped[int]
    first_response_ceiling_minutes: Mapped[int | None] = mapped_column(
        default=DEFAULT_FIRST_RESPONSE_CEILING_MINUTES
    )


class EscalationRule(TimestampMixin, Base):
    """What happens when a ticket's deadline comes close (``at_risk``) or passes (``breached``).

    ``mailbox_id`` None: every mailbox without a rule of its own for that stage. Without any
    rule the built-in defaults apply (app/sla/escalation.py).
    """

    __tablename__ = "escalation_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int | None] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"))
    stage: Mapped[str] = mapped_column(String(16))  # at_risk | breached
    # [{"type": "notify_lead"}, {"type": "raise_priority"}, {"type": "reassign"},
    #  {"type": "add_label"}]
    actions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    enabled: Mapped[bool] = mapped_column(default=True)


class SlaEscalation(Base):
    """An escalation done: once per ticket, deadline, due time and stage (the unique key).

    A new due time (a changed priority, a pause) is a new deadline and may escalate again.
    """

    __tablename__ = "sla_escalations"
    __table_args__ = (UniqueConstraint("ticket_id", "deadline", "stage", "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    deadline: Mapped[str] = mapped_column(String(16))  # first_response | resolution
    stage: Mapped[str] = mapped_column(String(16))  # at_risk | breached
    due_at: Mapped[datetime]
    at: Mapped[datetime] = mapped_column(default=utcnow)
