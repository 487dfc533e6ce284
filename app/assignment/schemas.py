from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Self

from fastapi import Body
from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.agents.models import AgentShift, Team
from app.api.validation import NO_NUL
from app.assignment.service import Strategy
from app.db.base import MAX_INTEGER

AgentId = Annotated[int, Field(ge=1, le=MAX_INTEGER)]
# More running tickets than anyone could hold: beyond it a cap means nothing.
MAX_CAP = 10_000
# Time off is whole local days; dates far in the future are a typo, and near year 9999 the
# instant "the day after" would not exist.
EARLIEST_DAY = date(2000, 1, 1)
LATEST_DAY = date(2999, 12, 31)

_HH_MM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
_HH_MM_OR_24 = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"


def minutes(hh_mm: str) -> int:
    hours, mins = hh_mm.split(":")
    return int(hours) * 60 + int(mins)


def hh_mm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


class TeamCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=NO_NUL)
    mailbox_id: int | None = Field(default=None, ge=1, le=MAX_INTEGER)
    assignment_strategy: Strategy = Strategy.MANUAL
    agent_cap: int | None = Field(default=None, ge=1, le=MAX_CAP)
    members: list[AgentId] = Field(default_factory=list, max_length=1000)


class TeamUpdate(BaseModel):
    """Only the fields sent change; ``mailbox_id`` and ``agent_cap`` may be set to null."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=NO_NUL)
    mailbox_id: int | None = Field(default=None, ge=1, le=MAX_INTEGER)
    assignment_strategy: Strategy | None = None
    agent_cap: int | None = Field(default=None, ge=1, le=MAX_CAP)
    members: list[AgentId] | None = Field(default=None, max_length=1000)


class TeamRead(BaseModel):
    id: int
    name: str
    mailbox_id: int | None
    assignment_strategy: Strategy
    agent_cap: int | None
    # Round-robin's place: the member who got the last automatic assignment.
    last_assigned_agent_id: int | None
    members: list[int]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, team: Team) -> TeamRead:
        return cls(
            id=team.id,
            name=team.name,
            mailbox_id=team.mailbox_id,
            assignment_strategy=Strategy(team.assignment_strategy),
            agent_cap=team.agent_cap,
            last_assigned_agent_id=team.last_assigned_agent_id,
            members=sorted(member.id for member in team.members),
            created_at=team.created_at,
            updated_at=team.updated_at,
        )


class Shift(BaseModel):
    """One stretch of weekly hours in the agent's time zone: weekday 0 = Monday, "HH:MM" times,
    the end exclusive (up to "24:00"). A night shift is two stretches (22:00-24:00, 00:00-06:00)."""

    model_config = ConfigDict(extra="forbid")

    weekday: int = Field(ge=0, le=6)
    start: str = Field(pattern=_HH_MM, examples=["09:00"])
    end: str = Field(pattern=_HH_MM_OR_24, examples=["18:00"])

    @model_validator(mode="after")
    def _start_before_end(self) -> Self:
        if minutes(self.start) >= minutes(self.end):
            raise ValueError(f"start {self.start} must be before end {self.end}")
        return self

    @classmethod
    def of(cls, row: AgentShift) -> Shift:
        return cls(weekday=row.weekday, start=hh_mm(row.start_minute), end=hh_mm(row.end_minute))


# The whole week: at most one stretch per half hour of it.
Week = Annotated[list[Shift], Body(max_length=7 * 48)]


class TimeOffCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    starts_on: date = Field(ge=EARLIEST_DAY, le=LATEST_DAY)
    # Inclusive: starts_on == ends_on is one day off.
    ends_on: date = Field(ge=EARLIEST_DAY, le=LATEST_DAY)
    reason: str | None = Field(default=None, max_length=200, pattern=NO_NUL)

    @model_validator(mode="after")
    def _ends_after_start(self) -> Self:
        if self.ends_on < self.starts_on:
            raise ValueError(f"ends_on {self.ends_on} is before starts_on {self.starts_on}")
        return self


class TimeOffRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    starts_on: date
    ends_on: date
    reason: str | None
    created_at: datetime


class AvailabilityRead(BaseModel):
    available: bool
    # Why not: "inactive" | "away" | "time_off" | "off_shift"; null when available.
    reason: str | None
    # When `available` next changes, as far as the rota and time off tell; null if open-ended.
    until: datetime | None
