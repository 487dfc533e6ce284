"""Teams, agents' shifts and time off, and availability (REST)."""

from __future__ import annotations

from fastapi import APIRouter, status

from app.agents.models import Agent, Role
from app.api.deps import CurrentAgent, RowId, SessionDep
from app.assignment import schedule, teams
from app.assignment.schemas import (
    AvailabilityRead,
    Shift,
    TeamCreate,
    TeamRead,
    TeamUpdate,
    TimeOffCreate,
    TimeOffRead,
    Week,
    minutes,
)
from app.errors import Forbidden

router = APIRouter(prefix="/api/v1", tags=["assignment"])


def _lead_or_admin(caller: Agent) -> None:
    if caller.role not in (Role.LEAD, Role.ADMIN):
        raise Forbidden("only leads and admins manage teams", code="teams_forbidden")


def _self_or_lead(caller: Agent, agent_id: int) -> None:
    if caller.id != agent_id and caller.role not in (Role.LEAD, Role.ADMIN):
        raise Forbidden(
            "agents manage their own shifts and time off; leads and admins anyone's",
            code="schedule_forbidden",
        )


# -- teams ----------------------------------------------------------------------------------------


@router.get("/teams", response_model=list[TeamRead])
def list_teams(session: SessionDep, _agent: CurrentAgent) -> list[TeamRead]:
    return [TeamRead.of(team) for team in teams.list_teams(session)]


@router.post("/teams", response_model=TeamRead, status_code=status.HTTP_201_CREATED)
def create_team(body: TeamCreate, session: SessionDep, caller: CurrentAgent) -> TeamRead:
    _lead_or_admin(caller)
    team = teams.create_team(
        session,
        name=body.name,
        mailbox_id=body.mailbox_id,
        assignment_strategy=body.assignment_strategy,
        agent_cap=body.agent_cap,
        member_ids=body.members,
    )
    return TeamRead.of(team)


@router.get("/teams/{team_id}", response_model=TeamRead)
def get_team(team_id: RowId, session: SessionDep, _agent: CurrentAgent) -> TeamRead:
    return TeamRead.of(teams.get_team(session, team_id))


@router.patch("/teams/{team_id}", response_model=TeamRead)
def update_team(
    team_id: RowId, body: TeamUpdate, session: SessionDep, caller: CurrentAgent
) -> TeamRead:
    _lead_or_admin(caller)
    return TeamRead.of(teams.update_team(session, team_id=team_id, update=body))


@router.delete("/teams/{team_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_team(team_id: RowId, session: SessionDep, caller: CurrentAgent) -> None:
    _lead_or_admin(caller)
    teams.delete_team(session, team_id=team_id)


# -- shifts, time off, availability ---------------------------------------------------------------


@router.get("/agents/{agent_id}/shifts", response_model=list[Shift], tags=["agents"])
def get_shifts(agent_id: RowId, session: SessionDep, _agent: CurrentAgent) -> list[Shift]:
    return [Shift.of(row) for row in schedule.get_shifts(session, agent_id=agent_id)]


@router.put("/agents/{agent_id}/shifts", response_model=list[Shift], tags=["agents"])
def set_shifts(
    agent_id: RowId, body: Week, session: SessionDep, caller: CurrentAgent
) -> list[Shift]:
    """Replace the agent's whole week. An empty list: on shift at all hours."""
    _self_or_lead(caller, agent_id)
    rows = schedule.set_shifts(
        session,
        agent_id=agent_id,
        shifts=[(s.weekday, minutes(s.start), minutes(s.end)) for s in body],
    )
    return [Shift.of(row) for row in rows]


@router.get("/agents/{agent_id}/time-off", response_model=list[TimeOffRead], tags=["agents"])
def list_time_off(agent_id: RowId, session: SessionDep, _agent: CurrentAgent) -> list[TimeOffRead]:
    rows = schedule.list_time_off(session, agent_id=agent_id)
    return [TimeOffRead.model_validate(row) for row in rows]


@router.post(
    "/agents/{agent_id}/time-off",
    response_model=TimeOffRead,
    status_code=status.HTTP_201_CREATED,
    tags=["agents"],
)
def add_time_off(
    agent_id: RowId, body: TimeOffCreate, session: SessionDep, caller: CurrentAgent
) -> TimeOffRead:
    _self_or_lead(caller, agent_id)
    row = schedule.add_time_off(
        session,
        agent_id=agent_id,
        starts_on=body.starts_on,
        ends_on=body.ends_on,
        reason=body.reason,
    )
    return TimeOffRead.model_validate(row)


@router.delete(
    "/agents/{agent_id}/time-off/{time_off_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["agents"],
)
def delete_time_off(
    agent_id: RowId, time_off_id: RowId, session: SessionDep, caller: CurrentAgent
) -> None:
    _self_or_lead(caller, agent_id)
    schedule.delete_time_off(session, agent_id=agent_id, time_off_id=time_off_id)


@router.get("/agents/{agent_id}/availability", response_model=AvailabilityRead, tags=["agents"])
def get_availability(
    agent_id: RowId, session: SessionDep, _agent: CurrentAgent
) -> AvailabilityRead:
    state = schedule.agent_availability(session, agent_id=agent_id)
    return AvailabilityRead(available=state.available, reason=state.reason, until=state.until)
