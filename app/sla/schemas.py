from __future__ import annotations

from datetime import date, datetime
from itertools import pairwise
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.api.validation import NO_NUL
from app.db.base import MAX_INTEGER
from app.tickets.models import Priority

# A year of minutes: more would be a typo, and the calendar walk would run for years.
MAX_TARGET_MINUTES = 366 * 24 * 60

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Start = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]
End = Annotated[str, Field(pattern=r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$")]
Interval = tuple[Start, End]
WeeklyHours = dict[Weekday, Annotated[list[Interval], Field(max_length=12)]]
SEGMENT = r"^[a-z0-9_\-]{1,32}$"
COUNTRY = r"^[A-Za-z]{2,3}$"
SUBDIVISION = r"^[A-Za-z0-9 \-]{1,16}$"


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def check_weekly_hours(hours: WeeklyHours | None) -> None:
    """Each interval starts before it ends, and a day's intervals do not overlap (touching is
    fine: 09:00–13:00 and 13:00–18:00)."""
    for day, intervals in (hours or {}).items():
        spans = sorted((_minutes(start), _minutes(end)) for start, end in intervals)
        for start, end in spans:
            if start >= end:
                raise ValueError(f"{day}: an interval must start before it ends")
        for (_, previous_end), (start, _) in pairwise(spans):
            if start < previous_end:
                raise ValueError(f"{day}: intervals overlap")


class CalendarCreate(BaseModel):
    """A business calendar. ``weekly_hours``: ``{"mon": [["09:00", "13:00"], ["14:00",
    "18:00"]], …}`` in the calendar's zone, end "24:00" for midnight; ``holiday_country``: an
    ISO 3166-1 code the ``holidays`` package knows (e.g. RU), ``holiday_subdivision`` a region of
    it; ``custom_holidays``: more closed dates."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=NO_NUL)
    timezone: str = Field(default="UTC", max_length=64, description="IANA zone")
    weekly_hours: WeeklyHours
    holiday_country: str | None = Field(default=None, pattern=COUNTRY)
    holiday_subdivision: str | None = Field(default=None, pattern=SUBDIVISION)
    custom_holidays: list[date] = Field(default=[], max_length=1000)

    @model_validator(mode="after")
    def _hours(self) -> CalendarCreate:
        check_weekly_hours(self.weekly_hours)
        return self


class CalendarUpdate(BaseModel):
    """Absent fields stay; ``holiday_country: null`` drops country holidays (and the
    subdivision)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=NO_NUL)
    timezone: str | None = Field(default=None, max_length=64)
    weekly_hours: WeeklyHours | None = None
    holiday_country: str | None = Field(default=None, pattern=COUNTRY)
    holiday_subdivision: str | None = Field(default=None, pattern=SUBDIVISION)
    custom_holidays: list[date] | None = Field(default=None, max_length=1000)

    @model_validator(mode="after")
    def _check(self) -> CalendarUpdate:
        for name in ("name", "timezone", "weekly_hours", "custom_holidays"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null; leave it out to keep it unchanged")
        check_weekly_hours(self.weekly_hours)
        return self


class CalendarRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    timezone: str
    weekly_hours: dict[str, list[list[str]]]
    holiday_country: str | None
    holiday_subdivision: str | None
    custom_holidays: list[date]
    created_at: datetime
    updated_at: datetime


Target = Annotated[int, Field(ge=1, le=MAX_TARGET_MINUTES)]
RowRef = Annotated[int, Field(ge=1, le=MAX_INTEGER)]


class SlaPolicyCreate(BaseModel):
    """Targets for one priority, optionally only for one mailbox and/or customer segment.
    Business minutes on the calendar (``calendar_id``, else the mailbox's, else always open);
    ``first_response_ceiling_minutes``: calendar minutes the first response never exceeds
    (default 24 h; null: no ceiling)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=NO_NUL)
    priority: Priority
    segment: str | None = Field(default=None, pattern=SEGMENT)
    mailbox_id: RowRef | None = None
    calendar_id: RowRef | None = None
    first_response_minutes: Target
    resolution_minutes: Target
    first_response_ceiling_minutes: Target | None = 24 * 60


class SlaPolicyUpdate(BaseModel):
    """Absent fields stay; ``segment``, ``mailbox_id``, ``calendar_id`` and the ceiling may be
    set to null."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=NO_NUL)
    priority: Priority | None = None
    segment: str | None = Field(default=None, pattern=SEGMENT)
    mailbox_id: RowRef | None = None
    calendar_id: RowRef | None = None
    first_response_minutes: Target | None = None
    resolution_minutes: Target | None = None
    first_response_ceiling_minutes: Target | None = None

    @model_validator(mode="after")
    def _no_null(self) -> SlaPolicyUpdate:
        for name in ("name", "priority", "first_response_minutes", "resolution_minutes"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null; leave it out to keep it unchanged")
        return self


class SlaPolicyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    priority: Priority
    segment: str | None
    mailbox_id: int | None
    calendar_id: int | None
    first_response_minutes: int
    resolution_minutes: int
    first_response_ceiling_minutes: int | None
    created_at: datetime
    updated_at: datetime


# -- escalation rules ----------------------------------------------------------------------------

EscalationStage = Literal["at_risk", "breached"]
EscalationActionType = Literal["notify_lead", "raise_priority", "reassign", "add_label"]


class EscalationAction(BaseModel):
    """One thing an escalation does: ``notify_lead`` (an e-mail to the ticket team's leads
    through the mailbox), ``raise_priority`` (one step, due times kept), ``reassign`` (to another
    available agent of the team), ``add_label`` (tag ``sla-breached``, Gmail label
    ``Support/SLA/Breached``)."""

    model_config = ConfigDict(extra="forbid")

    type: EscalationActionType


def _unique_actions(actions: list[EscalationAction]) -> list[EscalationAction]:
    """Each action once, in the order given: doing one twice in an escalation means nothing."""
    seen: set[str] = set()
    kept = []
    for action in actions:
        if action.type not in seen:
            seen.add(action.type)
            kept.append(action)
    return kept


Actions = Annotated[list[EscalationAction], Field(max_length=8)]


class EscalationRuleCreate(BaseModel):
    """What happens at one stage of a deadline. ``mailbox_id`` null: every mailbox without a rule
    of its own for that stage. ``actions: []`` is a rule that does nothing (silences the
    built-in defaults); a disabled rule counts as absent."""

    model_config = ConfigDict(extra="forbid")

    mailbox_id: RowRef | None = None
    stage: EscalationStage
    actions: Actions
    enabled: bool = True

    @model_validator(mode="after")
    def _dedupe(self) -> EscalationRuleCreate:
        self.actions = _unique_actions(self.actions)
        return self


class EscalationRuleUpdate(BaseModel):
    """Absent fields stay; ``mailbox_id: null`` makes the rule global."""

    model_config = ConfigDict(extra="forbid")

    mailbox_id: RowRef | None = None
    stage: EscalationStage | None = None
    actions: Actions | None = None
    enabled: bool | None = None

    @model_validator(mode="after")
    def _check(self) -> EscalationRuleUpdate:
        for name in ("stage", "actions", "enabled"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null; leave it out to keep it unchanged")
        if self.actions is not None:
            self.actions = _unique_actions(self.actions)
        return self


class EscalationRuleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    mailbox_id: int | None
    stage: EscalationStage
    actions: list[EscalationAction]
    enabled: bool
    created_at: datetime
    updated_at: datetime


class EffectiveStage(BaseModel):
    """What an escalation at ``stage`` does for the mailbox, and where that comes from: the
    mailbox's own rule, the global rule, or the built-in default (``rule_id`` null)."""

    stage: EscalationStage
    actions: list[EscalationAction]
    source: Literal["mailbox", "global", "default"]
    rule_id: int | None


class EffectiveEscalation(BaseModel):
    mailbox_id: int | None
    stages: list[EffectiveStage]
