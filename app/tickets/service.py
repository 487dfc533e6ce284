"""Ticket rules: creation with a gapless number, changes under optimistic locking, the event log.

The REST API, the add-on and the sync worker all change tickets through these functions, so every
path obeys the same status machine and rights and leaves the same audit trail.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Select, case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload, selectinload
from sqlalchemy.orm.exc import StaleDataError

from app.agents.models import Agent
from app.agents.service import resolve_assignee
from app.customers.models import Customer
from app.customers.service import upsert_customer, upsert_senders
from app.db.base import utcnow
from app.emails import normalize_email
from app.errors import AlreadyExists, Forbidden, NotFound, VersionConflict
from app.mailboxes.models import Mailbox
from app.sla.service import apply_sla, apply_sla_many, pause_sla, resume_sla, sla_condition
from app.tickets.events import Actor, record_event
from app.tickets.models import (
    Event,
    Note,
    Priority,
    Status,
    Ticket,
    TicketTag,
    TicketThread,
)
from app.tickets.numbering import allocate_ticket_number, allocate_ticket_numbers
from app.tickets.schemas import TicketUpdate
from app.tickets.status import check_transition

_FULL_TICKET = (
    # Only what a ticket shows of its mailbox: never drag the stored credentials along.
    joinedload(Ticket.mailbox).load_only(Mailbox.id, Mailbox.email, Mailbox.name, Mailbox.timezone),
    joinedload(Ticket.customer),
    joinedload(Ticket.assignee),
    selectinload(Ticket.tag_rows),
    selectinload(Ticket.threads),
)


def create_ticket(
    session: Session,
    *,
    mailbox: Mailbox,
    subject: str,
    actor: Actor,
    customer_email: str | None = None,
    customer: Customer | None = None,
    customer_name: str | None = None,
    priority: Priority = Priority.NORMAL,
    gmail_thread_id: str | None = None,
    tags: list[str] | None = None,
    previous_ticket_id: int | None = None,
) -> Ticket:
    """Open a ticket for a conversation; a Gmail thread belongs to at most one ticket."""
    if gmail_thread_id is not None:
        _ensure_thread_is_free(session, mailbox_id=mailbox.id, gmail_thread_id=gmail_thread_id)
    if customer is None:
        if customer_email is None:
            raise ValueError("create_ticket needs customer or customer_email")
        customer, _ = upsert_customer(session, email=customer_email, name=customer_name)
    now = utcnow()
    ticket = Ticket(
        number=allocate_ticket_number(session),
        mailbox_id=mailbox.id,
        customer_id=customer.id,
        subject=subject.strip()[:998] or "(no subject)",
        status=Status.NEW,
        priority=priority,
        previous_ticket_id=previous_ticket_id,
        created_at=now,
        updated_at=now,
        sla_paused_minutes=0,
    )
    # Due times go in with the INSERT (the acknowledgement promises the first-response one).
    apply_sla(session, ticket=ticket)
    ticket.tag_rows = [TicketTag(tag=tag) for tag in sorted(set(tags or []))]
    if gmail_thread_id is not None:
        ticket.threads = [TicketThread(mailbox_id=mailbox.id, gmail_thread_id=gmail_thread_id)]
    session.add(ticket)
    try:
        session.flush()
    except IntegrityError as exc:
        # Another transaction claimed the thread between our check and our insert.
        raise AlreadyExists(
            f"Gmail thread {gmail_thread_id} already belongs to a ticket", code="thread_taken"
        ) from exc
    record_event(session, ticket_id=ticket.id, actor=actor, field="created", new=ticket.number)
    return get_ticket(session, ticket.id)


def _ensure_thread_is_free(session: Session, *, mailbox_id: int, gmail_thread_id: str) -> None:
    stmt = (
        select(Ticket.number)
        .join(TicketThread, TicketThread.ticket_id == Ticket.id)
        .where(
            TicketThread.mailbox_id == mailbox_id,
            TicketThread.gmail_thread_id == gmail_thread_id,
        )
    )
    number = session.execute(stmt).scalar_one_or_none()
    if number is not None:
        raise AlreadyExists(
            f"Gmail thread {gmail_thread_id} already belongs to ticket #{number}",
            code="thread_taken",
            details={"number": number},
        )


def get_ticket(session: Session, ticket_id: int) -> Ticket:
    stmt = select(Ticket).where(Ticket.id == ticket_id).options(*_FULL_TICKET)
    ticket = session.execute(stmt).unique().scalar_one_or_none()
    if ticket is None:
        raise NotFound(f"ticket {ticket_id} not found", code="ticket_not_found")
    return ticket


def get_ticket_by_number(session: Session, number: int) -> Ticket:
    stmt = select(Ticket).where(Ticket.number == number).options(*_FULL_TICKET)
    ticket = session.execute(stmt).unique().scalar_one_or_none()
    if ticket is None:
        raise NotFound(f"ticket #{number} not found", code="ticket_not_found")
    return ticket


@dataclass(frozen=True)
class TicketFilters:
    """What the ticket list can be narrowed by. ``assignee``: an agent id, or "none"."""

    status: list[Status] | None = None
    assignee_id: int | None = None
    unassigned: bool = False
    priority: list[Priority] | None = None
    mailbox_id: int | None = None
    tag: str | None = None
    customer_email: str | None = None
    subject_contains: str | None = None
    number: int | None = None
    # Tickets whose SLA is "at_risk" or "breached" at ``now`` (None: the present).
    sla: Literal["at_risk", "breached"] | None = None
    now: datetime | None = None


_PRIORITY_ORDER = case(
    {p.value: rank for rank, p in enumerate(Priority)}, value=Ticket.priority, else_=0
)

_SORT_COLUMNS: dict[str, Any] = {
    "number": Ticket.number,
    "created_at": Ticket.created_at,
    "updated_at": Ticket.updated_at,
    "priority": _PRIORITY_ORDER,
    "first_response_due_at": Ticket.first_response_due_at,
    "resolution_due_at": Ticket.resolution_due_at,
}


def _filtered(filters: TicketFilters) -> Select[tuple[Ticket]]:
    stmt = select(Ticket)
    if filters.status:
        stmt = stmt.where(Ticket.status.in_(filters.status))
    if filters.unassigned:
        stmt = stmt.where(Ticket.assignee_id.is_(None))
    elif filters.assignee_id is not None:
        stmt = stmt.where(Ticket.assignee_id == filters.assignee_id)
    if filters.priority:
        stmt = stmt.where(Ticket.priority.in_(filters.priority))
    if filters.mailbox_id is not None:
        stmt = stmt.where(Ticket.mailbox_id == filters.mailbox_id)
    if filters.tag:
        tagged = select(TicketTag.ticket_id).where(TicketTag.tag == filters.tag.lower())
        stmt = stmt.where(Ticket.id.in_(tagged))
    if filters.customer_email:
        customer = select(Customer.id).where(
            Customer.email == normalize_email(filters.customer_email)
        )
        stmt = stmt.where(Ticket.customer_id.in_(customer.scalar_subquery()))
    if filters.subject_contains:
        # Case-insensitive on both backends; `%`/`_` typed by a user are literal, not wildcards.
        escaped = (
            filters.subject_contains.lower()
            .replace("\\", "\\\\")
            .replace("%", "\\%")
            .replace("_", "\\_")
        )
        stmt = stmt.where(func.lower(Ticket.subject).like(f"%{escaped}%", escape="\\"))
    if filters.number is not None:
        stmt = stmt.where(Ticket.number == filters.number)
    if filters.sla is not None:
        stmt = stmt.where(sla_condition(filters.sla, now=filters.now or utcnow()))
    return stmt


def list_tickets(
    session: Session,
    *,
    filters: TicketFilters,
    sort: str = "-number",
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Ticket], int]:
    """One page of tickets and the total. A constant number of queries, whatever the page size:
    the page, its count, and one query each for tags and threads (no N+1)."""
    stmt = _filtered(filters)
    total = session.execute(
        stmt.with_only_columns(func.count(Ticket.id)).order_by(None)
    ).scalar_one()
    descending = sort.startswith("-")
    column = _SORT_COLUMNS[sort.lstrip("-")]
    order = column.desc() if descending else column.asc()
    tiebreak = Ticket.id.desc() if descending else Ticket.id.asc()
    if sort.lstrip("-").endswith("_due_at"):
        # Tickets without a deadline go last whichever way the list is sorted.
        stmt = stmt.order_by(column.is_(None), order, tiebreak)
    else:
        stmt = stmt.order_by(order, tiebreak)
    stmt = stmt.options(*_FULL_TICKET).limit(limit).offset(offset)
    return list(session.execute(stmt).unique().scalars()), total


def update_ticket(
    session: Session, *, ticket_id: int, update: TicketUpdate, actor: Actor
) -> Ticket:
    """Apply a change made by ``actor`` to the ticket version ``update.version``.

    Rights: any agent changes status, priority and tags and takes a ticket; only leads and admins
    give a ticket to someone else or take it from them.
    """
    ticket = get_ticket(session, ticket_id)
    if update.version != ticket.version:
        raise VersionConflict(
            f"ticket #{ticket.number} was changed by someone else: you have version "
            f"{update.version}, the current one is {ticket.version}; reload and retry",
            details={"current_version": ticket.version},
        )
    changes: list[tuple[str, Any, Any]] = []

    if update.status is not None and update.status != ticket.status:
        check_transition(ticket.status, update.status)
        changes.append(("status", ticket.status.value, update.status.value))
        set_status(session, ticket, update.status)

    if update.priority is not None and update.priority != ticket.priority:
        changes.append(("priority", ticket.priority.value, update.priority.value))
        ticket.priority = update.priority
        # New targets from created_at, the paused minutes kept (app/sla/service.py).
        apply_sla(session, ticket=ticket)

    if update.changes_assignee:
        new_assignee = _assignee_for(session, update.assignee, actor)
        if (new_assignee.id if new_assignee else None) != ticket.assignee_id:
            _check_may_assign(ticket, new_assignee, actor)
            changes.append(
                (
                    "assignee",
                    ticket.assignee.email if ticket.assignee else None,
                    new_assignee.email if new_assignee else None,
                )
            )
            ticket.assignee = new_assignee
            ticket.awaiting_assignment = False  # a person decided: the worker stops trying

    if update.tags is not None and update.tags != ticket.tags:
        changes.append(("tags", ticket.tags, update.tags))
        kept = {row.tag: row for row in ticket.tag_rows}
        ticket.tag_rows = [kept.get(tag) or TicketTag(tag=tag) for tag in update.tags]

    if not changes:
        return ticket

    # An agent touching a new ticket has started on it (DESIGN §3: new = nobody touched it).
    if ticket.status == Status.NEW and actor.kind == "agent" and update.status is None:
        changes.append(("status", Status.NEW.value, Status.OPEN.value))
        set_status(session, ticket, Status.OPEN)

    if any(field in LABELLED_FIELDS for field, _, _ in changes):
        mark_labels_dirty(ticket)
    # Always UPDATE the ticket row, even for a tags-only change, so its version moves.
    ticket.updated_at = utcnow()
    number = ticket.number  # a failed flush expires the instance: read it first
    try:
        session.flush()
    except StaleDataError as exc:
        # Someone committed between our read and our UPDATE … WHERE version = ?.
        raise VersionConflict(
            f"ticket #{number} was changed by someone else meanwhile; reload and retry"
        ) from exc
    for field, old, new in changes:
        record_event(session, ticket_id=ticket.id, actor=actor, field=field, old=old, new=new)
    session.flush()
    return ticket


# Ticket fields that Gmail labels show (labels/taxonomy.py): a change re-pushes the labels.
# Tags too: "automated" and "sla-breached" are labels (a push with nothing to change costs no
# Gmail call).
LABELLED_FIELDS = frozenset({"status", "priority", "assignee", "tags"})


def mark_labels_dirty(ticket: Ticket) -> None:
    """Queue the ticket's threads for a label push, in the transaction that changed the ticket."""
    for thread in ticket.threads:
        thread.labels_dirty = True


def add_tag(session: Session, *, ticket: Ticket, tag: str, actor: Actor) -> bool:
    """Tag ``ticket`` (its ``tag_rows`` loaded) and record the change; False if it had the tag.
    Queues a label push: some tags show as Gmail labels (labels/taxonomy.py)."""
    old = ticket.tags
    if tag in old:
        return False
    ticket.tag_rows.append(TicketTag(tag=tag))
    record_event(
        session, ticket_id=ticket.id, actor=actor, field="tags", old=old, new=sorted([*old, tag])
    )
    mark_labels_dirty(ticket)
    return True


def set_status(session: Session, ticket: Ticket, status: Status) -> None:
    """Move ``ticket`` to ``status`` with the SLA pause and the resolved / closed times; the
    caller checks the transition and records the event."""
    now = utcnow()
    # The SLA clock stands still while the ticket waits on the customer.
    if status == Status.PENDING and ticket.status != Status.PENDING:
        pause_sla(ticket, now=now)
    elif ticket.status == Status.PENDING and status != Status.PENDING:
        resume_sla(session, ticket=ticket, now=now)
    if status == Status.RESOLVED:
        ticket.resolved_at = now
    elif status == Status.CLOSED:
        ticket.closed_at = now
        ticket.resolved_at = ticket.resolved_at or now
    elif status in (Status.OPEN, Status.PENDING):
        ticket.resolved_at = None
    ticket.status = status


def _assignee_for(session: Session, ref: str | None, actor: Actor) -> Agent | None:
    if ref is None:
        return None
    if ref == "me":
        if actor.id is None:
            raise Forbidden("only an agent can be 'me'")
        return session.get(Agent, actor.id)
    return resolve_assignee(session, ref)


def _check_may_assign(ticket: Ticket, new_assignee: Agent | None, actor: Actor) -> None:
    if actor.kind != "agent" or actor.is_lead_or_admin:
        return
    takes_it = new_assignee is not None and new_assignee.id == actor.id
    gives_back = new_assignee is None and ticket.assignee_id == actor.id
    if takes_it and ticket.assignee_id in (None, actor.id):
        return
    if gives_back:
        return
    raise Forbidden(
        "agents assign tickets to themselves only, and only unassigned ones; "
        "ask a lead to reassign",
        code="assign_forbidden",
    )


def add_note(session: Session, *, ticket_id: int, body: str, actor: Actor) -> Note:
    ticket = get_ticket(session, ticket_id)
    note = Note(ticket_id=ticket.id, author_id=actor.id, body=body)
    session.add(note)
    session.flush()
    # The event points at the note; the text stays in one place.
    record_event(session, ticket_id=ticket.id, actor=actor, field="note", new={"note_id": note.id})
    session.flush()
    stmt = select(Note).where(Note.id == note.id).options(joinedload(Note.author))
    return session.execute(stmt).scalar_one()


def list_notes(session: Session, *, ticket_id: int) -> list[Note]:
    get_ticket(session, ticket_id)
    stmt = (
        select(Note)
        .where(Note.ticket_id == ticket_id)
        .options(joinedload(Note.author))
        .order_by(Note.id)
    )
    return list(session.execute(stmt).scalars())


def list_events(
    session: Session, *, ticket_id: int, limit: int = 100, offset: int = 0
) -> list[Event]:
    get_ticket(session, ticket_id)
    stmt = (
        select(Event)
        .where(Event.ticket_id == ticket_id)
        .order_by(Event.id)
        .limit(limit)
        .offset(offset)
    )
    return list(session.execute(stmt).scalars())


# -- conversations (used by gmail_sync) ---------------------------------------------------------


def find_ticket_by_thread(
    session: Session, *, mailbox_id: int, gmail_thread_id: str
) -> Ticket | None:
    stmt = (
        select(Ticket)
        .join(TicketThread, TicketThread.ticket_id == Ticket.id)
        .where(
            TicketThread.mailbox_id == mailbox_id,
            TicketThread.gmail_thread_id == gmail_thread_id,
        )
        .options(*_FULL_TICKET)
    )
    return session.execute(stmt).unique().scalar_one_or_none()


def tickets_by_threads(
    session: Session, *, mailbox_id: int, gmail_thread_ids: Collection[str]
) -> dict[str, Ticket]:
    """Gmail thread id → its ticket (with its threads, which a change marks for a label push),
    for a whole sync chunk in two queries."""
    if not gmail_thread_ids:
        return {}
    stmt = (
        select(TicketThread.gmail_thread_id, Ticket)
        .join(Ticket, TicketThread.ticket_id == Ticket.id)
        .where(
            TicketThread.mailbox_id == mailbox_id,
            TicketThread.gmail_thread_id.in_(list(gmail_thread_ids)),
        )
        .options(selectinload(Ticket.threads))
    )
    return {thread_id: ticket for thread_id, ticket in session.execute(stmt)}


def tickets_by_ids(session: Session, *, ticket_ids: Collection[int]) -> dict[int, Ticket]:
    """Tickets by id, with their threads, in one query per kind (the sync's lookups)."""
    if not ticket_ids:
        return {}
    stmt = (
        select(Ticket).where(Ticket.id.in_(list(ticket_ids))).options(selectinload(Ticket.threads))
    )
    return {ticket.id: ticket for ticket in session.execute(stmt).scalars()}


def tickets_for_labels(session: Session, *, ticket_ids: Collection[int]) -> dict[int, Ticket]:
    """Tickets by id with what their Gmail labels show (assignee, tags): the label push."""
    if not ticket_ids:
        return {}
    stmt = (
        select(Ticket)
        .where(Ticket.id.in_(list(ticket_ids)))
        .options(joinedload(Ticket.assignee), selectinload(Ticket.tag_rows))
    )
    return {ticket.id: ticket for ticket in session.execute(stmt).unique().scalars()}


@dataclass
class Opening:
    """A conversation the sync found no ticket for (see ``open_tickets``)."""

    sender_email: str
    sender_name: str | None
    subject: str
    gmail_thread_id: str | None
    tags: Sequence[str] = ()
    previous_ticket_id: int | None = None


def open_tickets(
    session: Session, *, mailbox_id: int, openings: Sequence[Opening], actor: Actor
) -> list[Ticket]:
    """``create_ticket`` for a whole sync chunk: numbers in the given order from one counter
    update, and one multi-row INSERT per table (customers, tickets, threads, tags, events).

    A thread another transaction took meanwhile fails the flush on the unique (mailbox, thread)
    constraint, and with it the chunk, which the next pass redoes.
    """
    if not openings:
        return []
    customers = upsert_senders(session, [(o.sender_email, o.sender_name) for o in openings])
    numbers = allocate_ticket_numbers(session, len(openings))
    tickets: list[Ticket] = []
    segments: list[str | None] = []
    # One creation instant for the chunk: the SLA is computed once per policy and calendar.
    now = utcnow()
    for number, opening in zip(numbers, openings, strict=True):
        customer = customers[opening.sender_email.strip().lower()]
        ticket = Ticket(
            number=number,
            mailbox_id=mailbox_id,
            customer_id=customer.id,
            subject=opening.subject.strip()[:998] or "(no subject)",
            status=Status.NEW,
            priority=Priority.NORMAL,
            previous_ticket_id=opening.previous_ticket_id,
            created_at=now,
            updated_at=now,
            sla_paused_minutes=0,
        )
        segments.append(customer.segment)
        ticket.tag_rows = [TicketTag(tag=tag) for tag in sorted(set(opening.tags))]
        ticket.threads = (
            [TicketThread(mailbox_id=mailbox_id, gmail_thread_id=opening.gmail_thread_id)]
            if opening.gmail_thread_id is not None
            else []
        )
        tickets.append(ticket)
    apply_sla_many(session, mailbox_id=mailbox_id, tickets=tickets, segments=segments, start=now)
    session.add_all(tickets)
    session.flush()
    for ticket in tickets:
        record_event(session, ticket_id=ticket.id, actor=actor, field="created", new=ticket.number)
    return tickets


def find_ticket_by_number_in_mailbox(
    session: Session, *, mailbox_id: int, number: int
) -> Ticket | None:
    stmt = (
        select(Ticket)
        .where(Ticket.number == number, Ticket.mailbox_id == mailbox_id)
        .options(*_FULL_TICKET)
    )
    return session.execute(stmt).unique().scalar_one_or_none()


def attach_thread(session: Session, *, ticket: Ticket, gmail_thread_id: str) -> None:
    """Make a Gmail thread part of ``ticket`` (a reply Gmail put in a new thread), or move it to
    ``ticket`` (a new ticket opened by a message in a closed ticket's thread)."""
    row = session.execute(
        select(TicketThread).where(
            TicketThread.mailbox_id == ticket.mailbox_id,
            TicketThread.gmail_thread_id == gmail_thread_id,
        )
    ).scalar_one_or_none()
    if row is None:
        ticket.threads.append(
            TicketThread(mailbox_id=ticket.mailbox_id, gmail_thread_id=gmail_thread_id)
        )
    elif row.ticket_id != ticket.id:
        row.ticket_id = ticket.id
        row.labels_dirty = True
    session.flush()


def record_customer_message(session: Session, *, ticket: Ticket, actor: Actor) -> None:
    """A customer wrote again: a pending or resolved ticket goes back to the agents (DESIGN §3)."""
    if ticket.status in (Status.PENDING, Status.RESOLVED):
        old = ticket.status
        set_status(session, ticket, Status.OPEN)
        _touch(session, ticket, actor, [("status", old.value, Status.OPEN.value)])


def record_agent_reply(session: Session, *, ticket: Ticket, at: datetime, actor: Actor) -> None:
    """An agent answered from Gmail: the first such answer is the ticket's first response."""
    changes: list[tuple[str, Any, Any]] = []
    if ticket.first_response_at is None:
        ticket.first_response_at = at
        changes.append(("first_response_at", None, at.isoformat()))
    if ticket.status == Status.NEW:
        set_status(session, ticket, Status.OPEN)
        changes.append(("status", Status.NEW.value, Status.OPEN.value))
    if changes:
        _touch(session, ticket, actor, changes)


def _touch(
    session: Session, ticket: Ticket, actor: Actor, changes: list[tuple[str, Any, Any]]
) -> None:
    if any(field in LABELLED_FIELDS for field, _, _ in changes):
        mark_labels_dirty(ticket)
    # No flush here: the sync writes a chunk's changes in one flush at its end.
    ticket.updated_at = utcnow()
    for field, old, new in changes:
        record_event(session, ticket_id=ticket.id, actor=actor, field=field, old=old, new=new)
