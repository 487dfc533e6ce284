from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, computed_field, model_validator

from app.agents.schemas import AgentBrief
from app.api.validation import NO_NUL
from app.customers.schemas import CustomerBrief
from app.db.base import MAX_INTEGER
from app.mailboxes.schemas import MailboxBrief
from app.sla.service import SlaState, sla_state
from app.tickets.models import ActorKind, Priority, Status

_TAG = re.compile(r"^[\w][\w\-./:]*$")
MAX_TAGS = 30


def _normalize_tag(value: str) -> str:
    tag = value.strip().lower()
    if not 1 <= len(tag) <= 64 or not _TAG.match(tag):
        raise ValueError(
            "a tag is 1–64 letters, digits or - _ . / : and starts with a letter or digit"
        )
    return tag


Tag = Annotated[str, AfterValidator(_normalize_tag)]


def _dedupe(tags: list[str]) -> list[str]:
    return sorted(set(tags))


class TicketCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mailbox: str = Field(description="the mailbox's id or address", min_length=1, max_length=320)
    customer_email: str = Field(min_length=3, max_length=320)
    customer_name: str | None = Field(default=None, max_length=200, pattern=NO_NUL)
    subject: str = Field(min_length=1, max_length=998, pattern=NO_NUL)
    priority: Priority = Priority.NORMAL
    gmail_thread_id: str | None = Field(default=None, pattern=r"^[0-9a-zA-Z_\-]{1,64}$")
    tags: Annotated[list[Tag], AfterValidator(_dedupe)] = Field(default=[], max_length=MAX_TAGS)


class TicketUpdate(BaseModel):
    """A change to a ticket. ``version`` is the one the caller last saw (optimistic locking).

    ``assignee``: an agent's address, ``"me"``, or ``null`` to unassign; absent leaves it alone.
    """

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, le=MAX_INTEGER)
    status: Status | None = None
    priority: Priority | None = None
    assignee: str | None = Field(default=None, min_length=1, max_length=320)
    tags: Annotated[list[Tag], AfterValidator(_dedupe)] | None = Field(
        default=None, max_length=MAX_TAGS
    )

    @model_validator(mode="after")
    def _no_null_except_assignee(self) -> TicketUpdate:
        for name in ("status", "priority", "tags"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null; leave it out to keep it unchanged")
        return self

    @property
    def changes_assignee(self) -> bool:
        return "assignee" in self.model_fields_set


class TicketRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    number: int
    subject: str
    status: Status
    priority: Priority
    mailbox: MailboxBrief
    customer: CustomerBrief
    assignee: AgentBrief | None
    team_id: int | None
    tags: list[str]
    gmail_thread_ids: list[str]
    first_response_due_at: datetime | None
    resolution_due_at: datetime | None
    first_response_at_risk_at: datetime | None = Field(
        description="when the at-risk share of the first-response target is used"
    )
    resolution_at_risk_at: datetime | None
    sla_policy_id: int | None = Field(description="null: the built-in targets of its priority")
    sla_paused_at: datetime | None = Field(description="pending since then: the SLA clock stands")
    sla_paused_minutes: int = Field(description="business minutes spent pending before")
    first_response_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    previous_ticket_id: int | None
    created_at: datetime
    updated_at: datetime
    version: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def sla(self) -> SlaState:
        """ok / at_risk / breached now; met once no target runs (answered and resolved, or
        resolved or closed)."""
        return sla_state(self)


class TicketPage(BaseModel):
    items: list[TicketRead]
    total: int
    limit: int
    offset: int


TicketSort = Literal[
    "number",
    "-number",
    "created_at",
    "-created_at",
    "updated_at",
    "-updated_at",
    "priority",
    "-priority",
    "first_response_due_at",
    "-first_response_due_at",
    "resolution_due_at",
    "-resolution_due_at",
]


class NoteCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    body: str = Field(min_length=1, max_length=20000, pattern=NO_NUL)


class NoteRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    ticket_id: int
    author: AgentBrief | None
    body: str
    created_at: datetime


class EventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    ticket_id: int
    actor_kind: ActorKind
    actor_id: int | None
    field: str
    old_value: Any
    new_value: Any
    at: datetime
