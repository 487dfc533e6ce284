from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import JSON, CheckConstraint, Column, Date, ForeignKey, Index, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db.base import Base, TimestampMixin, utcnow
from app.db.types import enum_type


class Role(enum.StrEnum):
    AGENT = "agent"
    LEAD = "lead"
    ADMIN = "admin"


team_members = Table(
    "team_members",
    Base.metadata,
    Column("team_id", ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True),
    Column("agent_id", ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class Agent(TimestampMixin, Base):
    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(enum_type(Role, "agent_role"), default=Role.AGENT)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    signature: Mapped[str | None] = mapped_column(Text)
    skills: Mapped[list[str]] = mapped_column(JSON, default=list)
    is_active: Mapped[bool] = mapped_column(default=True)
    # A manual "away" switch (the agent, or a lead for them): never auto-assigned while set.
    away: Mapped[bool] = mapped_column(default=False)

    teams: Mapped[list[Team]] = relationship(
        secondary=team_members, back_populates="members", lazy="raise"
    )
    tokens: Mapped[list[ApiToken]] = relationship(back_populates="agent", lazy="raise")
    shifts: Mapped[list[AgentShift]] = relationship(
        lazy="raise",
        cascade="all, delete-orphan",
        order_by="[AgentShift.weekday, AgentShift.start_minute]",
    )
    time_off: Mapped[list[AgentTimeOff]] = relationship(
        lazy="raise", cascade="all, delete-orphan", order_by="AgentTimeOff.starts_on"
    )


class AgentShift(Base):
    """One stretch of an agent's weekly working hours, in the agent's own time zone.

    ``weekday`` 0 = Monday (Python's ``date.weekday()``); minutes from that day's midnight, the
    end exclusive and at most 1440: a night shift is two rows (22:00-24:00, 00:00-06:00). An agent
    without any shift rows is on shift at all hours (nobody has to enter a rota to use Inboxdesk).
    """

    __tablename__ = "agent_shifts"
    __table_args__ = (
        CheckConstraint("weekday >= 0 AND weekday <= 6", name="weekday_range"),
        CheckConstraint(
            "start_minute >= 0 AND end_minute <= 1440 AND start_minute < end_minute",
            name="minute_range",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    weekday: Mapped[int]
    start_minute: Mapped[int]
    end_minute: Mapped[int]


class AgentTimeOff(Base):
    """Out of office: whole days, both ends included, in the agent's time zone."""

    __tablename__ = "agent_time_off"
    __table_args__ = (Index("ix_agent_time_off_agent_id_ends_on", "agent_id", "ends_on"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date] = mapped_column(Date)
    reason: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Team(TimestampMixin, Base):
    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    mailbox_id: Mapped[int | None] = mapped_column(ForeignKey("mailboxes.id", ondelete="SET NULL"))
    # manual | round_robin | least_loaded | skills (app/assignment/service.py).
    assignment_strategy: Mapped[str] = mapped_column(String(32), default="manual")
    # The most open + pending tickets automatic assignment gives one member (None: no cap).
    agent_cap: Mapped[int | None]
    # Round-robin's place: the member who got the last ticket. A plain id, not a foreign key:
    # a stale value only moves the turn, and SQLite would have to rebuild the table for an FK.
    last_assigned_agent_id: Mapped[int | None]

    members: Mapped[list[Agent]] = relationship(
        secondary=team_members, back_populates="teams", lazy="raise"
    )


class ApiToken(Base):
    """A bearer token. Only its SHA-256 is stored; the token itself is shown once, at creation.

    Tokens carry 256 random bits, so a fast hash is enough (no password-style stretching): nobody
    can search that space, and the lookup by hash stays a single indexed query.
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="default")
    # The first characters of the token, to recognise it in listings without revealing it.
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    agent: Mapped[Agent] = relationship(back_populates="tokens", lazy="raise")
