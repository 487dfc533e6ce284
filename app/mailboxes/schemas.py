from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from app.api.validation import NO_NUL
from app.db.base import MAX_INTEGER, utcnow
from app.mailboxes.models import MailboxAuthKind, MailboxState


class MailboxCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=320)
    name: str = Field(min_length=1, max_length=200, pattern=NO_NUL)
    language: str = Field(default="en", pattern=r"^[a-z]{2}$")
    timezone: str = Field(
        default="UTC",
        max_length=64,
        description="IANA zone: templates greet a customer of unknown zone in this one",
    )
    business_calendar_id: int | None = Field(
        default=None,
        ge=1,
        le=MAX_INTEGER,
        description="the business calendar of its SLA due times (none: always open)",
    )


class MailboxRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    name: str
    auth_kind: MailboxAuthKind
    state: MailboxState
    language: str
    timezone: str
    business_calendar_id: int | None
    auto_ack_enabled: bool
    # Acknowledgements (app/acknowledgements/): rate limits, templates, the breaker's state.
    ack_per_sender_hour: int
    ack_per_sender_day: int
    ack_same_subject_minutes: int
    ack_breaker_per_minute: int
    ack_template_id: int | None
    ack_ooh_template_id: int | None
    ack_paused_until: datetime | None = Field(
        description="the circuit breaker paused acknowledgements until then"
    )
    ack_alert: str | None = Field(
        description="why acknowledgements were paused; kept until an admin clears it"
    )
    created_at: datetime
    # Sync status (gmail_sync/worker.py).
    last_synced_at: datetime | None
    last_error: str | None
    history_id: int | None
    lease_owner: str | None = Field(description="the sync worker holding the mailbox, if any")
    lease_until: datetime | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def lag_seconds(self) -> float | None:
        """How long ago the last successful sync pass ended (None: never synced)."""
        if self.last_synced_at is None:
            return None
        return round((utcnow() - self.last_synced_at).total_seconds(), 1)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ack_paused(self) -> bool:
        """Acknowledgements are paused by the circuit breaker right now."""
        return self.ack_paused_until is not None and self.ack_paused_until > utcnow()


class MailboxBrief(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    name: str


class MailboxUpdate(BaseModel):
    """An admin's change to a mailbox; absent fields stay as they are.
    ``business_calendar_id: null`` takes the calendar away (always open); ``ack_template_id`` /
    ``ack_ooh_template_id: null`` go back to the shared templates; ``ack_paused_until: null``
    resumes acknowledgements the circuit breaker paused, ``ack_alert: null`` clears its alert."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=NO_NUL)
    language: str | None = Field(default=None, pattern=r"^[a-z]{2}$")
    timezone: str | None = Field(default=None, max_length=64)
    business_calendar_id: int | None = Field(default=None, ge=1, le=MAX_INTEGER)
    auto_ack_enabled: bool | None = None
    # Acknowledgement limits (app/acknowledgements/limits.py).
    ack_per_sender_hour: int | None = Field(default=None, ge=1, le=1000)
    ack_per_sender_day: int | None = Field(default=None, ge=1, le=10_000)
    ack_same_subject_minutes: int | None = Field(
        default=None, ge=0, le=7 * 24 * 60, description="0: no same-subject limit"
    )
    ack_breaker_per_minute: int | None = Field(default=None, ge=1, le=100_000)
    ack_template_id: int | None = Field(
        default=None, ge=1, le=MAX_INTEGER, description="a shared template; null: the shared ack"
    )
    ack_ooh_template_id: int | None = Field(
        default=None, ge=1, le=MAX_INTEGER, description="a shared template; null: the shared one"
    )
    ack_paused_until: None = Field(default=None, description="only null: resume acknowledgements")
    ack_alert: None = Field(default=None, description="only null: clear the breaker's alert")

    @model_validator(mode="after")
    def _no_null_except_calendar(self) -> MailboxUpdate:
        for name in (
            "name",
            "language",
            "timezone",
            "auto_ack_enabled",
            "ack_per_sender_hour",
            "ack_per_sender_day",
            "ack_same_subject_minutes",
            "ack_breaker_per_minute",
        ):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null; leave it out to keep it unchanged")
        return self
