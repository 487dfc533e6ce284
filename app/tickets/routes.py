from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, status

from app.agents.service import find_agent
from app.api.deps import CurrentActor, CurrentAgent, RowId, SessionDep
from app.api.validation import NO_NUL
from app.errors import NotFound
from app.mailboxes.service import resolve_mailbox
from app.tickets import service
from app.tickets.models import Priority, Status
from app.tickets.schemas import (
    EventRead,
    NoteCreate,
    NoteRead,
    TicketCreate,
    TicketPage,
    TicketRead,
    TicketSort,
    TicketUpdate,
)

router = APIRouter(prefix="/api/v1/tickets", tags=["tickets"])


@router.get("", response_model=TicketPage)
def list_tickets(
    session: SessionDep,
    agent: CurrentAgent,
    status_: Annotated[list[Status] | None, Query(alias="status")] = None,
    assignee: Annotated[
        str | None, Query(description="`me`, `none`, or an agent's address", max_length=320)
    ] = None,
    priority: Annotated[list[Priority] | None, Query()] = None,
    mailbox: Annotated[str | None, Query(description="id or address", max_length=320)] = None,
    tag: Annotated[str | None, Query(max_length=64, pattern=NO_NUL)] = None,
    customer: Annotated[str | None, Query(description="customer address", max_length=320)] = None,
    q: Annotated[
        str | None, Query(description="text in the subject", max_length=200, pattern=NO_NUL)
    ] = None,
    number: Annotated[
        int | None, Query(ge=1, le=2**53, description="a ticket number: 404 if there is none")
    ] = None,
    sla: Annotated[
        Literal["at_risk", "breached"] | None,
        Query(description="tickets whose SLA is at risk (a share of a target used) or breached"),
    ] = None,
    sort: TicketSort = "-number",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> TicketPage:
    filters = service.TicketFilters(
        status=status_,
        unassigned=assignee == "none",
        assignee_id=_assignee_id(session, assignee, agent.id),
        priority=priority,
        mailbox_id=resolve_mailbox(session, mailbox).id if mailbox else None,
        tag=tag,
        customer_email=customer,
        subject_contains=q,
        number=number,
        sla=sla,
    )
    items, total = service.list_tickets(
        session, filters=filters, sort=sort, limit=limit, offset=offset
    )
    if number is not None and not items:
        raise NotFound(f"ticket #{number} not found", code="ticket_not_found")
    return TicketPage(
        items=[TicketRead.model_validate(t) for t in items], total=total, limit=limit, offset=offset
    )


def _assignee_id(session: SessionDep, assignee: str | None, me: int) -> int | None:
    if assignee in (None, "none"):
        return None
    if assignee == "me":
        return me
    found = find_agent(session, assignee)
    # An unknown agent has no tickets: an empty list, not an error (filters never 404).
    return found.id if found else -1


@router.post("", response_model=TicketRead, status_code=status.HTTP_201_CREATED)
def create_ticket(body: TicketCreate, session: SessionDep, actor: CurrentActor) -> TicketRead:
    ticket = service.create_ticket(
        session,
        mailbox=resolve_mailbox(session, body.mailbox),
        customer_email=body.customer_email,
        customer_name=body.customer_name,
        subject=body.subject,
        priority=body.priority,
        gmail_thread_id=body.gmail_thread_id,
        tags=body.tags,
        actor=actor,
    )
    return TicketRead.model_validate(ticket)


@router.get("/{ticket_id}", response_model=TicketRead)
def get_ticket(ticket_id: RowId, session: SessionDep, _agent: CurrentAgent) -> TicketRead:
    return TicketRead.model_validate(service.get_ticket(session, ticket_id))


@router.patch(
    "/{ticket_id}",
    response_model=TicketRead,
    responses={409: {"description": "stale version or a transition the status machine forbids"}},
)
def update_ticket(
    ticket_id: RowId, body: TicketUpdate, session: SessionDep, actor: CurrentActor
) -> TicketRead:
    ticket = service.update_ticket(session, ticket_id=ticket_id, update=body, actor=actor)
    return TicketRead.model_validate(ticket)


@router.get("/{ticket_id}/notes", response_model=list[NoteRead])
def list_notes(ticket_id: RowId, session: SessionDep, _agent: CurrentAgent) -> list[NoteRead]:
    return [NoteRead.model_validate(n) for n in service.list_notes(session, ticket_id=ticket_id)]


@router.post("/{ticket_id}/notes", response_model=NoteRead, status_code=status.HTTP_201_CREATED)
def add_note(
    ticket_id: RowId, body: NoteCreate, session: SessionDep, actor: CurrentActor
) -> NoteRead:
    note = service.add_note(session, ticket_id=ticket_id, body=body.body, actor=actor)
    return NoteRead.model_validate(note)


@router.get("/{ticket_id}/events", response_model=list[EventRead])
def list_events(
    ticket_id: RowId,
    session: SessionDep,
    _agent: CurrentAgent,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> list[EventRead]:
    events = service.list_events(session, ticket_id=ticket_id, limit=limit, offset=offset)
    return [EventRead.model_validate(e) for e in events]
