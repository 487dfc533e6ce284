from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from app.agents.models import Role
from app.api.validation import NO_NUL


class AgentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=320)
    name: str = Field(min_length=1, max_length=200, pattern=NO_NUL)
    role: Role = Role.AGENT
    timezone: str = Field(default="UTC", max_length=64)


# A skill is matched against ticket tags (app/assignment/service.py), so it has a tag's shape.
Skill = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00\s]+$")]


class AgentUpdate(BaseModel):
    """Agents may change their own name, time zone, signature and away switch; leads set the away
    switch and the skills of anyone; role and activity are admins'."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=NO_NUL)
    timezone: str | None = Field(default=None, max_length=64)
    signature: str | None = Field(default=None, max_length=5000, pattern=NO_NUL)
    role: Role | None = None
    is_active: bool | None = None
    # While set, the agent is never assigned tickets automatically.
    away: bool | None = None
    skills: list[Skill] | None = Field(default=None, max_length=50)


class AgentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    name: str
    role: Role
    timezone: str
    signature: str | None
    is_active: bool
    away: bool
    skills: list[str]
    created_at: datetime


class AgentBrief(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    name: str


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="default", min_length=1, max_length=100, pattern=NO_NUL)


class TokenRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenIssued(TokenRead):
    """The only time the token itself is shown: it is stored hashed."""

    token: str
