"""SLA escalation: a deadline close to passing (at risk) or passed (breached) triggers the actions
its escalation rule names (app/sla/escalation_rules.py), once per ticket, deadline, stage and due
time. The sync worker runs it for each mailbox it holds (gmail_sync/worker.py).

**Candidates** are the same rule as ``sla_state`` / ``sla_condition`` (app/sla/service.py), per
target: a running ticket (new or open) whose target is not met — first response: no
``first_response_at``; resolution: not resolved — and whose ``*_at_risk_at <= now < *_due_at``
(at risk) or ``*_due_at <= now`` (breached). A pending ticket's clock stands still, so it never
becomes a candidate while pending; when it leaves pending its due times have been pushed by the
pause, and it is judged again on those.

**Once.** The ``sla_escalations`` row goes in first, ``INSERT … ON CONFLICT DO NOTHING`` on the
unique (ticket, deadline, stage, due time) key, in a savepoint with the actions: a second worker,
or a second pass, inserts nothing and does nothing — a database fact, not a hope — and actions
that fail roll the row back with them, so the next pass tries again. A new due time (a priority
changed by a person, a pause) is a new promise and escalates again.

**Late first sight.** A target that is already breached when first seen gets only the breached
escalation: an "at risk" warning about a deadline that has passed would be noise, and the lead
would get two mails for one event. The at-risk stage is never recorded for that due time.

**Actions** run in a fixed order whatever the rule's order — the changes first (``raise_priority``,
``reassign``, ``add_label``), then ``notify_lead``, so that the mail tells the lead what was done:

- ``raise_priority``: one step (low → normal → high → urgent). The due times are *not* computed
  again: the promise made to the customer stands, and a higher priority's shorter targets would
  put the ticket in breach at once, escalating again, raising again — a cascade.
- ``reassign``: ``assign_ticket`` with the current assignee excluded, in the ticket's team (the
  mailbox's default team when it has none). Nobody else available: the assignee keeps it.
- ``add_label``: the tag ``sla-breached``, which labels/taxonomy.py shows as the Gmail label
  ``Support/SLA/Breached``.
- ``notify_lead``: a plain-text mail through the mailbox's outbox to each lead of the ticket's
  team (active members with role lead), else every active lead, else the active admins. Never to
  the customer's address, and in a thread of its own: no threadId, In-Reply-To or References, so
  the customer's conversation (in Gmail and in the customer's client) never shows it. The sync
  reads the sent copy back as our own mail (its Message-ID is the outbox row's: direction auto)
  and opens no ticket for it.

Each escalation leaves the event ``sla_escalated`` (actor system) with ``{"deadline", "stage",
"due_at", "actions"}``; the changes leave their usual events (priority, assignee, tags).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import String, and_, literal, select, union_all
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.orm.exc import StaleDataError

from app.agents.models import Agent, Role, team_members
from app.assignment.service import assign_ticket, default_team_id
from app.config import get_settings
from app.db.base import utcnow
from app.errors import AppError
from app.outbox.service import enqueue
from app.sla.escalation_rules import Stage, effective_rules
from app.sla.models import SlaEscalation
from app.tickets import service as tickets
from app.tickets.events import Actor, record_event
from app.tickets.models import Priority, Status, Ticket

log = logging.getLogger(__name__)

SLA_BREACHED_TAG = "sla-breached"
ESCALATED_EVENT = "sla_escalated"
# Escalations handled per mailbox and pass: a backlog (a worker down for a day) is worked off
# over a few passes instead of holding the mailbox's lease for minutes.
DEFAULT_LIMIT = 200

Deadline = Literal["first_response", "resolution"]
_RUNNING = (Status.NEW, Status.OPEN)
_NEXT_PRIORITY = {
    Priority.LOW: Priority.NORMAL,
    Priority.NORMAL: Priority.HIGH,
    Priority.HIGH: Priority.URGENT,
}
# Changes first, the mail that reports them last (see the module docstring).
_ORDER = ("raise_priority", "reassign", "add_label", "notify_lead")
_SHORT = {"first_response": "fr", "resolution": "rs"}
_WORDS = {"first_response": "first response", "resolution": "resolution"}


@dataclass
class EscalationReport:
    escalated: int = 0  # escalations done by this pass (each with its event)
    notified: int = 0  # lead notifications queued in the outbox
    failed: int = 0  # escalations rolled back (e.g. the ticket changed meanwhile): next pass


@dataclass(frozen=True)
class Candidate:
    ticket_id: int
    deadline: Deadline
    stage: Stage
    due_at: datetime


class _Moved(Exception):
    """The ticket is no longer what the candidate query saw: roll this escalation back."""


_Column = InstrumentedAttribute[datetime | None]


def _columns(deadline: Deadline) -> tuple[_Column, _Column, _Column]:
    """(met at, due at, at risk at) of a target."""
    if deadline == "first_response":
        return (
            Ticket.first_response_at,
            Ticket.first_response_due_at,
            Ticket.first_response_at_risk_at,
        )
    return Ticket.resolved_at, Ticket.resolution_due_at, Ticket.resolution_at_risk_at


def find_candidates(
    session: Session, *, mailbox_id: int, now: datetime, limit: int = DEFAULT_LIMIT
) -> list[Candidate]:
    """The mailbox's escalations due at ``now`` and not done yet, oldest due time first."""
    parts = []
    for deadline in ("first_response", "resolution"):
        met, due, risk = _columns(deadline)
        for stage in ("at_risk", "breached"):
            done = (
                select(SlaEscalation.id)
                .where(
                    SlaEscalation.ticket_id == Ticket.id,
                    SlaEscalation.deadline == deadline,
                    SlaEscalation.stage == stage,
                    SlaEscalation.due_at == due,
                )
                .exists()
            )
            reached = (
                due <= now
                if stage == "breached"
                else and_(risk.is_not(None), risk <= now, due > now)
            )
            parts.append(
                select(
                    Ticket.id.label("ticket_id"),
                    literal(deadline, String(16)).label("deadline"),
                    literal(stage, String(16)).label("stage"),
                    due.label("due_at"),
                ).where(
                    Ticket.mailbox_id == mailbox_id,
                    Ticket.status.in_(_RUNNING),
                    met.is_(None),
                    due.is_not(None),
                    reached,
                    ~done,
                )
            )
    found = union_all(*parts).subquery()
    rows = session.execute(
        select(found).order_by(found.c.due_at, found.c.ticket_id, found.c.deadline).limit(limit)
    )
    return [Candidate(r.ticket_id, r.deadline, r.stage, r.due_at) for r in rows]


def run_escalations(
    session: Session,
    *,
    mailbox_id: int,
    now: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
) -> EscalationReport:
    """Escalate what is due in the mailbox (see the module docstring). Flushes, never commits."""
    now = now or utcnow()
    report = EscalationReport()
    candidates = find_candidates(session, mailbox_id=mailbox_id, now=now, limit=limit)
    if not candidates:
        return report
    rules = effective_rules(session, mailbox_id=mailbox_id)
    for candidate in candidates:
        actions = tuple(a for a in _ORDER if a in rules[candidate.stage].actions)
        try:
            # A savepoint per escalation: its row and its actions stay together or not at all.
            with session.begin_nested():
                if _claim(session, candidate, now=now):
                    report.notified += _escalate(session, candidate, actions, now=now)
                    report.escalated += 1
        except (_Moved, StaleDataError, AppError) as exc:
            report.failed += 1
            log.warning(
                "escalation of ticket %d (%s %s) rolled back, next pass retries: %s",
                candidate.ticket_id,
                candidate.deadline,
                candidate.stage,
                getattr(exc, "message", None) or type(exc).__name__,
            )
    return report


def _claim(session: Session, candidate: Candidate, *, now: datetime) -> bool:
    """Insert the escalation's row; False when it exists (done by another pass or worker)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = (
        insert(SlaEscalation)
        .values(
            ticket_id=candidate.ticket_id,
            deadline=candidate.deadline,
            stage=candidate.stage,
            due_at=candidate.due_at,
            at=now,
        )
        .on_conflict_do_nothing(index_elements=["ticket_id", "deadline", "stage", "due_at"])
        .returning(SlaEscalation.id)
    )
    return session.execute(stmt).scalar_one_or_none() is not None


def _escalate(
    session: Session, candidate: Candidate, actions: Sequence[str], *, now: datetime
) -> int:
    """Run the actions on the ticket; returns the notifications queued."""
    ticket = tickets.get_ticket(session, candidate.ticket_id)
    _, due_column, _ = _columns(candidate.deadline)
    if ticket.status not in _RUNNING or getattr(ticket, due_column.key) != candidate.due_at:
        raise _Moved(f"ticket #{ticket.number} changed since it was found")
    actor = Actor.system()
    done: list[str] = []  # what the changes did, in words, for the lead's mail
    for action in actions:
        if action == "raise_priority":
            note = _raise_priority(session, ticket, actor)
        elif action == "reassign":
            note = _reassign(session, ticket, actor, now=now)
        elif action == "add_label":
            note = _add_label(session, ticket, actor)
        else:
            continue
        if note is not None:
            done.append(note)
    if done:
        # The ticket row is updated, so its version moves: an agent's stale edit gets a 409.
        ticket.updated_at = utcnow()
        session.flush()
    notified = 0
    if "notify_lead" in actions:
        notified = _notify_leads(session, ticket, candidate, done, now=now)
    record_event(
        session,
        ticket_id=ticket.id,
        actor=actor,
        field=ESCALATED_EVENT,
        new={
            "deadline": candidate.deadline,
            "stage": candidate.stage,
            "due_at": candidate.due_at.isoformat(),
            "actions": list(actions),
        },
    )
    session.flush()
    return notified


# -- actions: each returns what it changed, in words, or None -----------------------------------


def _raise_priority(session: Session, ticket: Ticket, actor: Actor) -> str | None:
    old = Priority(ticket.priority)
    new = _NEXT_PRIORITY.get(old)
    if new is None:
        return None  # urgent already
    # No apply_sla here: the due times stay (see the module docstring).
    ticket.priority = new
    record_event(
        session, ticket_id=ticket.id, actor=actor, field="priority", old=old.value, new=new.value
    )
    tickets.mark_labels_dirty(ticket)
    return f"priority raised from {old.value} to {new.value}"


def _reassign(session: Session, ticket: Ticket, actor: Actor, *, now: datetime) -> str | None:
    before = ticket.assignee
    team_id = None
    if ticket.team_id is None:
        team_id = default_team_id(session, mailbox_id=ticket.mailbox_id)
        if team_id is None:
            return None  # no team to choose from
    exclude = {before.id} if before is not None else set()
    chosen = assign_ticket(
        session, ticket=ticket, actor=actor, team_id=team_id, now=now, exclude=exclude
    )
    if chosen is None or (before is not None and chosen.id == before.id):
        return None
    return f"reassigned to {chosen.name} <{chosen.email}>" + (
        f" (was {before.name})" if before is not None else ""
    )


def _add_label(session: Session, ticket: Ticket, actor: Actor) -> str | None:
    # The tag shows as the Gmail label Support/SLA/Breached (labels/taxonomy.py).
    if not tickets.add_tag(session, ticket=ticket, tag=SLA_BREACHED_TAG, actor=actor):
        return None
    return f"tagged {SLA_BREACHED_TAG}"


def leads_to_notify(session: Session, *, ticket: Ticket) -> list[Agent]:
    """The active leads of the ticket's team; else every active lead; else the active admins."""
    base = select(Agent).where(Agent.is_active.is_(True)).order_by(Agent.id)
    if ticket.team_id is not None:
        team_leads = list(
            session.execute(
                base.join(team_members, team_members.c.agent_id == Agent.id).where(
                    team_members.c.team_id == ticket.team_id, Agent.role == Role.LEAD
                )
            ).scalars()
        )
        if team_leads:
            return team_leads
    for role in (Role.LEAD, Role.ADMIN):
        found = list(session.execute(base.where(Agent.role == role)).scalars())
        if found:
            return found
    return []


def _notify_leads(
    session: Session,
    ticket: Ticket,
    candidate: Candidate,
    done: Sequence[str],
    *,
    now: datetime,
) -> int:
    customer_address = ticket.customer.email.strip().lower()
    mailbox = ticket.mailbox
    domain = mailbox.email.rpartition("@")[2] or "inboxdesk.invalid"
    epoch = int(candidate.due_at.timestamp())
    queued = 0
    for lead in leads_to_notify(session, ticket=ticket):
        if lead.email.strip().lower() == customer_address:
            # The customer must never read the team's internal alarm about them.
            log.warning("lead %s is ticket #%s's customer: not notified", lead.id, ticket.number)
            continue
        # ≤ 32 characters (the column), unique per ticket with the outbox's (ticket, kind)
        # key: one mail per lead, deadline, stage and due time even if the escalation reran.
        kind = f"esc:{candidate.stage[0]}:{_SHORT[candidate.deadline]}:{epoch}:{lead.id}"
        row = enqueue(
            session,
            ticket_id=ticket.id,
            mailbox_id=ticket.mailbox_id,
            kind=kind,
            to_address=lead.email,
            subject=notification_subject(ticket, candidate),
            body=notification_body(ticket, candidate, done, lead=lead, now=now),
            is_html=False,
            # A thread of its own (RFC 5322 §3.6.4: no In-Reply-To / References; no Gmail
            # threadId): Gmail files a message in a thread only when asked to or when it
            # references one (Gmail API guide, "Managing threads").
            gmail_thread_id=None,
            in_reply_to=None,
            references=None,
            rfc822_message_id=f"<esc.{ticket.id}.{secrets.token_hex(8)}@{domain}>",
        )
        queued += row is not None
    return queued


# -- the mail -----------------------------------------------------------------------------------


def notification_subject(ticket: Ticket, candidate: Candidate) -> str:
    stage = "breached" if candidate.stage == "breached" else "at risk"
    return f"[SLA {stage}] #{ticket.number} {_WORDS[candidate.deadline]}: {ticket.subject}"


def notification_body(
    ticket: Ticket,
    candidate: Candidate,
    done: Sequence[str],
    *,
    lead: Agent,
    now: datetime,
) -> str:
    what = _WORDS[candidate.deadline]
    if candidate.stage == "breached":
        headline = (
            f"The {what} deadline of ticket #{ticket.number} has passed: "
            f"{duration(now - candidate.due_at)} late."
        )
    else:
        headline = (
            f"The {what} deadline of ticket #{ticket.number} is close: "
            f"due in {duration(candidate.due_at - now)}."
        )
    customer = ticket.customer
    who = f"{customer.name} <{customer.email}>" if customer.name else customer.email
    assignee = f"{ticket.assignee.name} <{ticket.assignee.email}>" if ticket.assignee else "nobody"
    lines = [
        headline,
        "",
        f"Ticket:    #{ticket.number} {ticket.subject}",
        f"Customer:  {who}",
        f"Priority:  {ticket.priority.value}",
        f"Assignee:  {assignee}",
        f"Due:       {_when(candidate.due_at, lead.timezone)}",
    ]
    if done:
        lines.append(f"Done:      {'; '.join(done)}")
    if ticket.threads:
        # The Gmail web client opens a thread by its API id (as the add-on's links do).
        thread_id = ticket.threads[0].gmail_thread_id
        lines.append(f"In Gmail:  https://mail.google.com/mail/u/0/#all/{thread_id}")
    public_url = get_settings().public_url.rstrip("/")
    if public_url:
        lines.append(f"API:       {public_url}/api/v1/tickets/{ticket.id}")
    lines += [
        "",
        "-- ",
        "Inboxdesk SLA escalation. This notice is internal: it is not part of the customer's",
        "conversation. Please act on the ticket rather than reply to this mail.",
    ]
    return "\n".join(lines) + "\n"


def duration(delta: timedelta) -> str:
    """``2 d 3 h``, ``4 h 10 min``, ``25 min``, ``under a minute``."""
    minutes = max(0, int(delta.total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min" if minutes else "under a minute"


def _when(at: datetime, zone: str | None) -> str:
    """The instant in the lead's own time zone (UTC when theirs is unknown)."""
    try:
        tz = ZoneInfo(zone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("UTC")
    local = at.astimezone(tz)
    return f"{local:%a %d %b %Y %H:%M} ({tz.key})"
