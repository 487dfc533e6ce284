"""What the sidebar cards show, read from the database into plain values (cards.py draws them).

Reads only: the actions (actions.py) change tickets through the ticket and template services and
then load the fresh view from here. Every loader runs a fixed number of queries, whatever the
number of rows (the sidebar answers within Gmail's patience and the issue's budget: contextual
card p95 ≤ 50 ms, homepage ≤ 80 ms at 100,000 tickets).

**Who sees what.** There is no mailbox membership in Inboxdesk yet: every active agent works
every mailbox of the installation, so every agent sees every ticket, and a lead can give a ticket
to any active agent. (Teams carry a mailbox for routing, not for permission.) Rights on *changes*
are the ticket service's (app/tickets/service.py): agents take unassigned tickets or give back
their own; leads and admins assign anyone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.orm import Session

from app.addon.presence import Colleague, others_here
from app.agents.models import Agent, Role, Team
from app.customers.models import Customer
from app.db.base import utcnow
from app.mailboxes.models import Mailbox
from app.messages.models import Direction, Message
from app.sla.calendar import Calendar, business_minutes_between
from app.sla.service import SlaState, calendar_for_ticket, sla_condition, sla_state
from app.tickets.models import ActorKind, Event, Note, Priority, Status, Ticket, TicketThread
from app.tickets.status import ALLOWED_TRANSITIONS
from templates_replies.models import ReplyTemplate
from templates_replies.service import TemplateFilters, list_templates
from templates_replies.suggestions import suggest_templates
from templates_replies.text import strip_markup

RUNNING = (Status.NEW, Status.OPEN, Status.PENDING)
HOME_ROWS = 5
TEAM_ROWS = 3
PAGE_ROWS = 40
EARLIER_ROWS = 5
NOTE_ROWS = 5
NOTES_PAGE = 40
TEMPLATE_ROWS = 20
# Queues count up to this many rows beyond the page ("999+"): an exact count of a long queue
# reads every row of it, and the number only has to say "a lot".
COUNT_CAP = 999
SUGGESTIONS = 3
EXCERPT_CHARS = 120
LATEST_MESSAGE_CHARS = 600

# Gmail's add-on events may name messages and threads by their permanent ids,
# "msg-f:<decimal>" / "thread-f:<decimal>", where the Gmail API (and so our tables) use the same
# number in hexadecimal.
_PERMANENT_ID = re.compile(r"^(?:thread|msg)-[a-z]:(\d{1,20})$")
_API_ID = re.compile(r"^[0-9A-Za-z_\-]{1,64}$")


def gmail_api_id(value: str | None) -> str | None:
    """The Gmail API form of a message or thread id from an event; None if it is not one."""
    if not value:
        return None
    value = value.strip()
    match = _PERMANENT_ID.match(value)
    if match:
        return format(int(match.group(1)), "x")
    return value if _API_ID.match(value) else None


def gmail_thread_url(thread_id: str) -> str:
    return f"https://mail.google.com/mail/u/0/#all/{thread_id}"


def viewer_zone(agent: Agent, event_zone: str | None) -> str:
    """The zone to show times in: the Gmail user's (the event's ``timeZone.id``) when it is a
    real IANA name, else the agent's profile zone."""
    if event_zone:
        try:
            ZoneInfo(event_zone)
        except (ZoneInfoNotFoundError, ValueError):
            return agent.timezone
        return event_zone
    return agent.timezone


def is_lead(agent: Agent) -> bool:
    return agent.role in (Role.LEAD, Role.ADMIN)


# -- values the cards show --------------------------------------------------------------------


@dataclass(frozen=True)
class Due:
    """One running SLA target: ``minutes_left`` business minutes until ``at`` (≤ 0: overdue)."""

    target: str  # "first response" | "resolution"
    at: datetime
    minutes_left: int
    paused: bool


@dataclass(frozen=True)
class TicketRow:
    id: int
    number: int
    subject: str
    customer: str
    status: Status
    priority: Priority
    sla: SlaState
    due: Due | None
    thread_id: str | None


@dataclass(frozen=True)
class Queue:
    key: str
    title: str
    rows: list[TicketRow]
    total: int
    empty_text: str = "Nothing here."
    # ``total`` is a lower bound: the count stopped at COUNT_CAP.
    capped: bool = False

    @property
    def total_label(self) -> str:
        return f"{self.total}+" if self.capped else str(self.total)


@dataclass(frozen=True)
class Load:
    name: str
    running: int


@dataclass(frozen=True)
class HomeView:
    agent_name: str
    lead: bool
    queues: list[Queue]
    workload: list[Load]
    time_zone: str


@dataclass(frozen=True)
class AgentChoice:
    id: int
    name: str
    email: str


@dataclass(frozen=True)
class NoteItem:
    author: str
    at: datetime
    body: str


@dataclass(frozen=True)
class TemplateItem:
    id: int
    name: str
    excerpt: str
    language: str


@dataclass(frozen=True)
class TicketView:
    id: int
    number: int
    subject: str
    status: Status
    priority: Priority
    version: int
    tags: list[str]
    assignee: AgentChoice | None
    thread_id: str | None
    sla: SlaState
    dues: list[Due]
    customer_id: int
    customer_name: str | None
    customer_email: str
    segment: str
    earlier: list[TicketRow]
    earlier_total: int
    latest_message: str | None
    notes: list[NoteItem]
    notes_total: int
    also_here: list[Colleague]
    suggestions: list[TemplateItem]
    viewer_id: int
    viewer_lead: bool
    # Who the assignee dropdown offers; empty: the viewer cannot choose (read-only line).
    assignable: list[AgentChoice]
    allowed_statuses: list[Status]
    time_zone: str


@dataclass(frozen=True)
class MailboxChoice:
    id: int
    email: str


@dataclass(frozen=True)
class ThreadView:
    """A Gmail thread no ticket owns, with what we know of it for the "Create ticket" form."""

    thread_id: str | None
    message_id: str | None
    mailboxes: list[MailboxChoice]
    sender_email: str
    sender_name: str
    subject: str


@dataclass(frozen=True)
class ComposeView:
    ticket_id: int | None
    number: int | None
    subject: str | None
    thread_id: str | None
    query: str
    suggestions: list[TemplateItem]
    templates: list[TemplateItem]
    total: int
    offset: int


@dataclass(frozen=True)
class NotesView:
    ticket_id: int
    number: int
    thread_id: str | None
    notes: list[NoteItem]
    total: int
    offset: int
    time_zone: str


# -- SLA --------------------------------------------------------------------------------------


class _Calendars:
    """Calendars by (policy, mailbox) for one request: a page of rows shares a few."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._cache: dict[tuple[int | None, int], Calendar] = {}

    def of(self, ticket: Any) -> Calendar:
        key = (ticket.sla_policy_id, ticket.mailbox_id)
        calendar = self._cache.get(key)
        if calendar is None:
            # calendar_for_ticket reads only sla_policy_id and mailbox_id.
            calendar = calendar_for_ticket(self._session, ticket=cast(Ticket, ticket))
            self._cache[key] = calendar
        return calendar


def running_dues(ticket: Any, calendar: Calendar, now: datetime) -> list[Due]:
    """The ticket's running targets, nearest first, with the business minutes left (counted
    from the pause while pending: its clock stands still, app/sla/service.py)."""
    if ticket.status not in RUNNING:
        return []
    paused = ticket.status == Status.PENDING and ticket.sla_paused_at is not None
    clock = ticket.sla_paused_at if paused else now
    dues: list[Due] = []
    targets = (
        ("first response", ticket.first_response_at, ticket.first_response_due_at),
        ("resolution", ticket.resolved_at, ticket.resolution_due_at),
    )
    for target, met_at, due_at in targets:
        if met_at is None and due_at is not None:
            minutes = business_minutes_between(calendar, clock, due_at)
            dues.append(Due(target=target, at=due_at, minutes_left=minutes, paused=paused))
    dues.sort(key=lambda due: due.at)
    return dues


# Nearest deadline first: the first-response one until it is met, then the resolution one.
_NEXT_DUE = case(
    (Ticket.first_response_at.is_(None), Ticket.first_response_due_at),
    else_=Ticket.resolution_due_at,
)


def _row_select() -> Any:
    return select(
        Ticket.id,
        Ticket.number,
        Ticket.subject,
        Ticket.status,
        Ticket.priority,
        Ticket.mailbox_id,
        Ticket.sla_policy_id,
        Ticket.first_response_at,
        Ticket.first_response_due_at,
        Ticket.first_response_at_risk_at,
        Ticket.resolved_at,
        Ticket.resolution_due_at,
        Ticket.resolution_at_risk_at,
        Ticket.sla_paused_at,
        Customer.name.label("customer_name"),
        Customer.email.label("customer_email"),
    ).join(Customer, Customer.id == Ticket.customer_id)


def _first_threads(session: Session, ticket_ids: list[int]) -> dict[int, str]:
    if not ticket_ids:
        return {}
    rows = session.execute(
        select(TicketThread.ticket_id, TicketThread.gmail_thread_id)
        .where(TicketThread.ticket_id.in_(ticket_ids))
        .order_by(TicketThread.id)
    ).all()
    first: dict[int, str] = {}
    for ticket_id, thread_id in rows:
        first.setdefault(ticket_id, thread_id)
    return first


Order = Literal["due", "oldest", "newest"]


def _rows(
    session: Session,
    calendars: _Calendars,
    where: list[ColumnElement[bool]],
    *,
    order: Order,
    limit: int,
    offset: int = 0,
    now: datetime,
) -> tuple[list[TicketRow], int, bool]:
    """A page of ticket rows, the number of matching tickets (counted up to ``offset +
    COUNT_CAP``) and whether the count stopped there."""
    cap = offset + COUNT_CAP
    matching = select(Ticket.id).where(*where).limit(cap + 1).subquery()
    total = session.execute(select(func.count()).select_from(matching)).scalar_one()
    capped = total > cap
    total = min(total, cap)
    if total == 0 or offset >= total:
        return [], total, capped
    stmt = _row_select().where(*where)
    if order == "due":
        stmt = stmt.order_by(_NEXT_DUE.is_(None), _NEXT_DUE, Ticket.id)
    elif order == "oldest":
        # By number, which an index keeps in order: long queues need not be read to the end.
        stmt = stmt.order_by(Ticket.number)
    else:
        stmt = stmt.order_by(Ticket.number.desc())
    found = session.execute(stmt.limit(limit).offset(offset)).all()
    threads = _first_threads(session, [row.id for row in found])
    rows = []
    for row in found:
        dues = running_dues(row, calendars.of(row), now)
        rows.append(
            TicketRow(
                id=row.id,
                number=row.number,
                subject=row.subject,
                customer=row.customer_name or row.customer_email,
                status=row.status,
                priority=row.priority,
                sla=sla_state(row, now=now),
                due=dues[0] if dues else None,
                thread_id=threads.get(row.id),
            )
        )
    return rows, total, capped


# -- queues -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueSpec:
    key: str
    title: str
    where: list[ColumnElement[bool]]
    order: Order
    empty_text: str


def queue_spec(session: Session, agent: Agent, key: str, *, now: datetime) -> QueueSpec | None:
    """The queue named ``key`` (mine, unassigned, breached, at_risk, team:ID, customer:ID) as
    this agent sees it; None for a name that is none of these."""
    running = Ticket.status.in_(RUNNING)
    # Agents watch the deadlines they can act on: theirs and the unassigned ones.
    reachable = (
        []
        if is_lead(agent)
        else [or_(Ticket.assignee_id == agent.id, Ticket.assignee_id.is_(None))]
    )
    if key == "mine":
        return QueueSpec(
            key,
            "My open tickets",
            [running, Ticket.assignee_id == agent.id],
            "due",
            "No open tickets assigned to you.",
        )
    if key == "unassigned":
        return QueueSpec(
            key,
            "Unassigned",
            [running, Ticket.assignee_id.is_(None)],
            "oldest",
            "Every open ticket has an assignee.",
        )
    if key == "breached":
        return QueueSpec(
            key,
            "SLA breached",
            [sla_condition("breached", now=now), *reachable],
            "oldest",
            "No breached deadlines.",
        )
    if key == "at_risk":
        return QueueSpec(
            key,
            "SLA at risk",
            [sla_condition("at_risk", now=now), *reachable],
            "due",
            "No deadline at risk.",
        )
    kind, _, raw_id = key.partition(":")
    if not raw_id.isdigit() or len(raw_id) > 9:
        return None
    ident = int(raw_id)
    if kind == "team":
        team = session.get(Team, ident)
        if team is None:
            return None
        return QueueSpec(
            key,
            f"Team {team.name}",
            [running, Ticket.team_id == ident],
            "oldest",
            "No open tickets in this team.",
        )
    if kind == "customer":
        customer = session.get(Customer, ident)
        if customer is None:
            return None
        return QueueSpec(
            key,
            f"Tickets of {customer.name or customer.email}",
            [Ticket.customer_id == ident],
            "newest",
            "No tickets.",
        )
    return None


def load_queue(
    session: Session, agent: Agent, spec: QueueSpec, *, limit: int, offset: int = 0
) -> Queue:
    now = utcnow()
    rows, total, capped = _rows(
        session,
        _Calendars(session),
        spec.where,
        order=spec.order,
        limit=limit,
        offset=offset,
        now=now,
    )
    return Queue(spec.key, spec.title, rows, total, spec.empty_text, capped)


def load_home(session: Session, agent: Agent, *, time_zone: str | None = None) -> HomeView:
    """My open tickets, unassigned, breached and at risk; for leads also each team's queue and
    every active agent's number of running tickets."""
    now = utcnow()
    calendars = _Calendars(session)
    keys = ["mine", "unassigned", "breached", "at_risk"]
    lead = is_lead(agent)
    # Whole rows, held here: queue_spec's session.get then finds each in the identity map.
    teams = list(session.execute(select(Team).order_by(Team.name)).scalars()) if lead else []
    keys += [f"team:{team.id}" for team in teams]
    queues = []
    for key in keys:
        spec = queue_spec(session, agent, key, now=now)
        if spec is None:  # pragma: no cover - keys above always resolve
            continue
        limit = TEAM_ROWS if key.startswith("team:") else HOME_ROWS
        rows, total, capped = _rows(
            session, calendars, spec.where, order=spec.order, limit=limit, now=now
        )
        queues.append(Queue(spec.key, spec.title, rows, total, spec.empty_text, capped))
    workload: list[Load] = []
    if lead:
        counts = (
            select(Ticket.assignee_id, func.count().label("running"))
            .where(Ticket.status.in_(RUNNING), Ticket.assignee_id.is_not(None))
            .group_by(Ticket.assignee_id)
            .subquery()
        )
        workload = [
            Load(name, running or 0)
            for name, running in session.execute(
                select(Agent.name, counts.c.running)
                .outerjoin(counts, counts.c.assignee_id == Agent.id)
                .where(Agent.is_active.is_(True))
                .order_by(counts.c.running.desc().nulls_last(), Agent.name)
            )
        ]
    return HomeView(agent.name, lead, queues, workload, time_zone or agent.timezone)


# -- a ticket ---------------------------------------------------------------------------------


def find_ticket_by_thread(session: Session, thread_id: str) -> int | None:
    """The ticket owning the Gmail thread, in whichever mailbox (thread ids are unique per
    mailbox; the sidebar does not say which mailbox it shows). Looked up per mailbox so the
    unique (mailbox, thread) index serves it; the newest ticket wins the unlikely tie."""
    mailbox_ids = list(session.execute(select(Mailbox.id)).scalars())
    if not mailbox_ids:
        return None
    return session.execute(
        select(TicketThread.ticket_id)
        .where(
            or_(
                *(
                    and_(
                        TicketThread.mailbox_id == mailbox_id,
                        TicketThread.gmail_thread_id == thread_id,
                    )
                    for mailbox_id in mailbox_ids
                )
            )
        )
        .order_by(TicketThread.ticket_id.desc())
        .limit(1)
    ).scalar_one_or_none()


def ticket_has_thread(session: Session, *, ticket_id: int, thread_id: str) -> bool:
    return (
        session.execute(
            select(TicketThread.id).where(
                TicketThread.ticket_id == ticket_id, TicketThread.gmail_thread_id == thread_id
            )
        ).first()
        is not None
    )


def assignable_agents(session: Session, viewer: Agent, ticket: Ticket) -> list[AgentChoice]:
    """Leads: every active agent. Agents: themselves, when the ticket is unassigned or already
    theirs (the service refuses anything else)."""
    if is_lead(viewer):
        return [
            AgentChoice(agent_id, name, email)
            for agent_id, name, email in session.execute(
                select(Agent.id, Agent.name, Agent.email)
                .where(Agent.is_active.is_(True))
                .order_by(Agent.name, Agent.id)
            )
        ]
    if ticket.assignee_id in (None, viewer.id):
        return [AgentChoice(viewer.id, viewer.name, viewer.email)]
    return []


def _note_items(rows: Any) -> list[NoteItem]:
    return [NoteItem(author or "(former agent)", at, body) for body, at, author in rows]


def _notes(
    session: Session, ticket_id: int, *, limit: int, offset: int = 0
) -> tuple[list[NoteItem], int]:
    total = session.execute(
        select(func.count()).select_from(Note).where(Note.ticket_id == ticket_id)
    ).scalar_one()
    rows = session.execute(
        select(Note.body, Note.created_at, Agent.name)
        .outerjoin(Agent, Agent.id == Note.author_id)
        .where(Note.ticket_id == ticket_id)
        .order_by(Note.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return _note_items(rows), total


def load_notes(
    session: Session,
    agent: Agent,
    ticket: Ticket,
    *,
    thread_id: str | None,
    offset: int,
    time_zone: str | None = None,
) -> NotesView:
    notes, total = _notes(session, ticket.id, limit=NOTES_PAGE, offset=offset)
    zone = time_zone or agent.timezone
    return NotesView(ticket.id, ticket.number, thread_id, notes, total, offset, zone)


def _latest_customer_message(session: Session, ticket_id: int) -> str | None:
    row = session.execute(
        select(Message.text_body, Message.snippet)
        .where(Message.ticket_id == ticket_id, Message.direction == Direction.INBOUND)
        .order_by(Message.date.is_(None), Message.date.desc(), Message.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    text = (row.text_body or row.snippet or "").strip()
    return text[:LATEST_MESSAGE_CHARS] or None


def _template_item(template: ReplyTemplate) -> TemplateItem:
    # What the agent will read, not the template's source: variables and tags out, and lines
    # left with no word (the greeting line is all variables) dropped.
    lines = strip_markup(template.body).splitlines()
    excerpt = " ".join(" ".join(line for line in lines if any(c.isalpha() for c in line)).split())
    if len(excerpt) > EXCERPT_CHARS:
        excerpt = excerpt[: EXCERPT_CHARS - 1] + "…"
    return TemplateItem(template.id, template.name, excerpt, template.language)


def _suggestions(session: Session, agent: Agent, ticket_id: int) -> list[TemplateItem]:
    return [
        _template_item(template)
        for template, _ in suggest_templates(
            session, ticket_id=ticket_id, agent=agent, limit=SUGGESTIONS
        )
    ]


def load_ticket(
    session: Session,
    agent: Agent,
    ticket: Ticket,
    *,
    thread_id: str | None,
    time_zone: str | None = None,
) -> TicketView:
    """Everything the ticket card shows. ``ticket`` comes loaded with its customer, assignee,
    tags and threads (app.tickets.service.get_ticket)."""
    now = utcnow()
    calendars = _Calendars(session)
    customer = ticket.customer
    earlier, earlier_total, _ = _rows(
        session,
        calendars,
        [Ticket.customer_id == customer.id, Ticket.id != ticket.id],
        order="newest",
        limit=EARLIER_ROWS,
        now=now,
    )
    notes, notes_total = _notes(session, ticket.id, limit=NOTE_ROWS)
    assignee = ticket.assignee
    shown_thread = thread_id or (ticket.gmail_thread_ids[0] if ticket.threads else None)
    return TicketView(
        id=ticket.id,
        number=ticket.number,
        subject=ticket.subject,
        status=ticket.status,
        priority=ticket.priority,
        version=ticket.version,
        tags=ticket.tags,
        assignee=AgentChoice(assignee.id, assignee.name, assignee.email) if assignee else None,
        thread_id=shown_thread,
        sla=sla_state(ticket, now=now),
        dues=running_dues(ticket, calendars.of(ticket), now),
        customer_id=customer.id,
        customer_name=customer.name,
        customer_email=customer.email,
        segment=customer.segment,
        earlier=earlier,
        earlier_total=earlier_total,
        latest_message=_latest_customer_message(session, ticket.id),
        notes=notes,
        notes_total=notes_total,
        also_here=others_here(session, ticket_id=ticket.id, agent_id=agent.id, now=now),
        suggestions=_suggestions(session, agent, ticket.id),
        viewer_id=agent.id,
        viewer_lead=is_lead(agent),
        assignable=assignable_agents(session, agent, ticket),
        allowed_statuses=list(ALLOWED_TRANSITIONS[ticket.status]),
        time_zone=time_zone or agent.timezone,
    )


def last_actor_name(session: Session, ticket_id: int, *, viewer_id: int) -> str:
    """Who made the ticket's latest change, for "changed by Anna — reloaded"."""
    event = session.execute(
        select(Event.actor_kind, Event.actor_id)
        .where(Event.ticket_id == ticket_id)
        .order_by(Event.id.desc())
        .limit(1)
    ).first()
    if event is None:
        return "someone else"
    kind, actor_id = event
    if kind == ActorKind.AGENT and actor_id is not None:
        if actor_id == viewer_id:
            return "you (in another window)"
        name = session.execute(select(Agent.name).where(Agent.id == actor_id)).scalar()
        return name or "a former agent"
    if kind == ActorKind.CUSTOMER:
        return "the customer"
    if kind == ActorKind.SYNC:
        return "Gmail sync"
    if kind == ActorKind.RULE:
        return "an automation rule"
    return "the system"


# -- a thread without a ticket ----------------------------------------------------------------


def load_thread(session: Session, *, thread_id: str | None, message_id: str | None) -> ThreadView:
    """The "Create ticket" form's prefill: the open message's sender and subject when the sync
    stored it (looked up by Gmail message id, unique per mailbox), else blanks to type in."""
    mailboxes = [
        MailboxChoice(mailbox_id, email)
        for mailbox_id, email in session.execute(
            select(Mailbox.id, Mailbox.email).order_by(Mailbox.email)
        )
    ]
    sender_email = sender_name = subject = ""
    if message_id and mailboxes:
        found = session.execute(
            select(Message.from_address, Message.from_name, Message.subject)
            .where(
                or_(
                    *(
                        and_(Message.mailbox_id == m.id, Message.gmail_message_id == message_id)
                        for m in mailboxes
                    )
                )
            )
            .limit(1)
        ).first()
        if found is not None:
            sender_email = found.from_address or ""
            sender_name = found.from_name or ""
            subject = found.subject or ""
    return ThreadView(thread_id, message_id, mailboxes, sender_email, sender_name, subject)


# -- compose ----------------------------------------------------------------------------------


def load_compose(
    session: Session,
    agent: Agent,
    ticket: Ticket | None,
    *,
    thread_id: str | None,
    query: str = "",
    offset: int = 0,
) -> ComposeView:
    """The template picker: the ticket's suggestions first (on the first page of an empty
    search), then the visible templates matching ``query``, most used first."""
    query = query.strip()[:200]
    templates, total = list_templates(
        session,
        agent=agent,
        filters=TemplateFilters(q=query or None),
        limit=TEMPLATE_ROWS,
        offset=offset,
    )
    suggestions = (
        _suggestions(session, agent, ticket.id)
        if ticket is not None and not query and offset == 0
        else []
    )
    return ComposeView(
        ticket_id=ticket.id if ticket else None,
        number=ticket.number if ticket else None,
        subject=ticket.subject if ticket else None,
        thread_id=thread_id,
        query=query,
        suggestions=suggestions,
        templates=[_template_item(template) for template in templates],
        total=total,
        offset=offset,
    )
