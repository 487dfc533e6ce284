from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, computed_field

from app.api.validation import NO_NUL
from app.db.base import utcnow
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


class MailboxRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    name: str
    auth_kind: MailboxAuthKind
    state: MailboxState
    language: str
    timezone: str
    auto_ack_enabled: bool
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


class MailboxBrief(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    name: str
