from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.api.validation import NO_NUL


class CustomerUpsert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=320)
    name: str | None = Field(default=None, max_length=200, pattern=NO_NUL)
    segment: str | None = Field(default=None, pattern=r"^[a-z0-9_\-]{1,32}$")
    timezone: str | None = Field(default=None, max_length=64)


class CustomerUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200, pattern=NO_NUL)
    segment: str | None = Field(default=None, pattern=r"^[a-z0-9_\-]{1,32}$")
    timezone: str | None = Field(default=None, max_length=64)


class CustomerRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    name: str | None
    segment: str
    timezone: str | None
    created_at: datetime


class CustomerBrief(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    name: str | None
    segment: str


class CustomerPage(BaseModel):
    items: list[CustomerRead]
    total: int
    limit: int
    offset: int
