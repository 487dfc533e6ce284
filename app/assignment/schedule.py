"""Agents' weekly shifts, time off, and their availability as the assignment sees it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from itertools import pairwise

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from app.agents.models import Agent, AgentShift, AgentTimeOff
from app.assignment.availability import Availability, availability
from app.assignment.service import assign_waiting_for_agent
from app.db.base import utcnow
from app.errors import NotFound, ValidationFailed


def get_shifts(session: Session, *, agent_id: int) -> list[AgentShift]:
    return list(_agent(session, agent_id).shifts)


def set_shifts(
    session: Session, *, agent_id: int, shifts: Sequence[tuple[int, int, int]]
) -> list[AgentShift]:
    """Replace the agent's week with ``shifts`` (weekday, start minute, end minute). Stretches
    of one day must not overlap (touching is fine: 09:00-13:00 and 13:00-18:00)."""
    for weekday, start, end in shifts:
        if not (0 <= weekday <= 6 and 0 <= start < end <= 1440):
            raise ValidationFailed(
                f"bad shift: weekday {weekday}, minutes {start}-{end}", code="invalid_shift"
            )
    ordered = sorted(shifts)
    for (day_a, start_a, end_a), (day_b, start_b, end_b) in pairwise(ordered):
        if day_a == day_b and start_b < end_a:
            raise ValidationFailed(
                f"shifts overlap on weekday {day_a}: {_hh_mm(start_a)}-{_hh_mm(end_a)} and "
                f"{_hh_mm(start_b)}-{_hh_mm(end_b)}",
                code="overlapping_shifts",
                details={"weekday": day_a},
            )
    agent = _agent(session, agent_id)
    agent.shifts = [AgentShift(weekday=d, start_minute=s, end_minute=e) for d, s, e in ordered]
    session.flush()
    assign_waiting_for_agent(session, agent_id=agent.id)
    return list(agent.shifts)


def list_time_off(session: Session, *, agent_id: int) -> list[AgentTimeOff]:
    return list(_agent(session, agent_id).time_off)


def add_time_off(
    session: Session, *, agent_id: int, starts_on: date, ends_on: date, reason: str | None = None
) -> AgentTimeOff:
    if ends_on < starts_on:
        raise ValidationFailed(
            f"ends_on {ends_on} is before starts_on {starts_on}", code="invalid_time_off"
        )
    agent = _agent(session, agent_id)
    row = AgentTimeOff(starts_on=starts_on, ends_on=ends_on, reason=reason)
    agent.time_off.append(row)
    session.flush()
    return row


def delete_time_off(session: Session, *, agent_id: int, time_off_id: int) -> None:
    row = session.get(AgentTimeOff, time_off_id)
    if row is None or row.agent_id != agent_id:
        raise NotFound(f"time off {time_off_id} not found", code="time_off_not_found")
    session.delete(row)
    session.flush()
    # Back from time off earlier than planned: waiting tickets may go to them now.
    assign_waiting_for_agent(session, agent_id=agent_id)


def agent_availability(
    session: Session, *, agent_id: int, now: datetime | None = None
) -> Availability:
    return availability(_agent(session, agent_id), now=now or utcnow())


def _agent(session: Session, agent_id: int) -> Agent:
    stmt = (
        select(Agent)
        .where(Agent.id == agent_id)
        .options(selectinload(Agent.shifts), selectinload(Agent.time_off))
        # The assignment loads only recent time off (service._available_members): read it all.
        .execution_options(populate_existing=True)
    )
    agent = session.execute(stmt).scalar_one_or_none()
    if agent is None:
        raise NotFound(f"agent {agent_id} not found", code="agent_not_found")
    return agent


def _hh_mm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"
