from __future__ import annotations

from fastapi import APIRouter, Response, status

from app.api.deps import AdminAgent, CurrentAgent, RowId, SessionDep
from app.sla import service
from app.sla.schemas import (
    CalendarCreate,
    CalendarRead,
    CalendarUpdate,
    SlaPolicyCreate,
    SlaPolicyRead,
    SlaPolicyUpdate,
)

router = APIRouter(prefix="/api/v1", tags=["sla"])

_CALENDAR_INVALID = {
    422: {
        "description": "unknown_timezone, unknown_holiday_country, unknown_holiday_subdivision, "
        "calendar_never_open (no hours on any day), or bad intervals (HH:MM, start < end, no "
        "overlap)"
    },
    409: {"description": "calendar_exists: the name is taken"},
}
_POLICY_INVALID = {
    422: {"description": "unknown_mailbox, unknown_calendar, or a target not in 1..527040"},
    409: {"description": "sla_policy_exists: another policy has this priority/segment/mailbox"},
}


@router.get("/calendars", response_model=list[CalendarRead])
def list_calendars(session: SessionDep, _agent: CurrentAgent) -> list[CalendarRead]:
    return [CalendarRead.model_validate(c) for c in service.list_calendars(session)]


@router.post(
    "/calendars",
    response_model=CalendarRead,
    status_code=status.HTTP_201_CREATED,
    responses=_CALENDAR_INVALID,
)
def create_calendar(body: CalendarCreate, session: SessionDep, _admin: AdminAgent) -> CalendarRead:
    return CalendarRead.model_validate(service.create_calendar(session, data=body))


@router.get("/calendars/{calendar_id}", response_model=CalendarRead)
def get_calendar(calendar_id: RowId, session: SessionDep, _agent: CurrentAgent) -> CalendarRead:
    return CalendarRead.model_validate(service.get_calendar(session, calendar_id))


@router.patch("/calendars/{calendar_id}", response_model=CalendarRead, responses=_CALENDAR_INVALID)
def update_calendar(
    calendar_id: RowId, body: CalendarUpdate, session: SessionDep, _admin: AdminAgent
) -> CalendarRead:
    row = service.update_calendar(session, calendar_id=calendar_id, update=body)
    return CalendarRead.model_validate(row)


@router.delete("/calendars/{calendar_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_calendar(calendar_id: RowId, session: SessionDep, _admin: AdminAgent) -> Response:
    """Mailboxes and policies using it lose it (always open / the mailbox's calendar);
    tickets keep their due times."""
    service.delete_calendar(session, calendar_id=calendar_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/sla-policies", response_model=list[SlaPolicyRead])
def list_policies(session: SessionDep, _agent: CurrentAgent) -> list[SlaPolicyRead]:
    return [SlaPolicyRead.model_validate(p) for p in service.list_policies(session)]


@router.post(
    "/sla-policies",
    response_model=SlaPolicyRead,
    status_code=status.HTTP_201_CREATED,
    responses=_POLICY_INVALID,
)
def create_policy(body: SlaPolicyCreate, session: SessionDep, _admin: AdminAgent) -> SlaPolicyRead:
    return SlaPolicyRead.model_validate(service.create_policy(session, data=body))


@router.get("/sla-policies/{policy_id}", response_model=SlaPolicyRead)
def get_policy(policy_id: RowId, session: SessionDep, _agent: CurrentAgent) -> SlaPolicyRead:
    return SlaPolicyRead.model_validate(service.get_policy(session, policy_id))


@router.patch("/sla-policies/{policy_id}", response_model=SlaPolicyRead, responses=_POLICY_INVALID)
def update_policy(
    policy_id: RowId, body: SlaPolicyUpdate, session: SessionDep, _admin: AdminAgent
) -> SlaPolicyRead:
    """Tickets keep the due times they have; new tickets and priority changes use the change."""
    return SlaPolicyRead.model_validate(
        service.update_policy(session, policy_id=policy_id, update=body)
    )


@router.delete("/sla-policies/{policy_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_policy(policy_id: RowId, session: SessionDep, _admin: AdminAgent) -> Response:
    service.delete_policy(session, policy_id=policy_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
