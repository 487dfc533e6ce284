from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.api.validation import NO_NUL
from app.mailboxes.models import MailboxAuthKind, MailboxState


class MailboxCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=320)
    name: str = Field(min_length=1, max_length=200, pattern=NO_NUL)
    language: str = Field(default="en", pattern=r"^[a-z]{2}$")


class MailboxRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    name: str
    auth_kind: MailboxAuthKind
    state: MailboxState
    language: str
    auto_ack_enabled: bool
    last_synced_at: datetime | None
    created_at: datetime


class MailboxBrief(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    name: str
