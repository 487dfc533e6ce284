"""SLA rules: which targets a ticket gets, its due times, the pause while pending, its state.

**Policy choice.** A policy applies to one priority and optionally one mailbox and/or customer
segment; among those matching a ticket the most specific wins: mailbox + segment, then mailbox,
then segment, then neither (ties: the oldest policy). No match → the built-in defaults below.

**Built-in defaults** (business minutes; first-response ceiling 24 calendar hours):

=========  ==============  ==========
priority   first response  resolution
=========  ==============  ==========
urgent     60 (1 h)        480 (8 h)
high       240 (4 h)       1440 (24 h)
normal     480 (8 h)       2880 (48 h)
low        1440 (24 h)     5760 (96 h)
=========  ==============  ==========

**Calendar**: the policy's, else the mailbox's business calendar, else always open.

**Due times** (from the ticket's ``created_at``; ``P`` = business minutes already spent paused):
``first_response_due_at = min(add(created, target + P), add(created + ceiling, P))`` and
``resolution_due_at = add(created, target + P)``. The ``*_at_risk_at`` instants are the same with
``ceil(share × target)`` (and ``share × ceiling``), ``share`` = ``INBOXDESK_SLA_AT_RISK_SHARE``.

**Pause**: entering ``pending`` stores ``sla_paused_at``; leaving it measures the business minutes
``M`` since then, pushes the resolution due/at-risk instants ``M`` business minutes forward (and
the first-response ones while there is no first response), and adds ``M`` to
``sla_paused_minutes``. Pushing by ``M`` equals recomputing with ``P + M`` (business time adds up),
so a priority change recomputes from ``created_at`` with ``P`` and loses no paused time.

**State** of a target: met (first response given; resolved), or — while the ticket is new, open or
pending — breached once ``due <= now``, at risk once ``at_risk_at <= now < due``; a pending ticket
is judged at ``sla_paused_at`` (its clock stands still). Resolving or closing stops both clocks.
The ticket's ``sla`` is ``breached`` if a running target is, else ``at_risk`` if one is, else
``met`` when no target runs any more, else ``ok``. ``sla_condition`` is the same rule in SQL.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal, Protocol

from sqlalchemy import ColumnElement, and_, null, or_, select, update
from sqlalchemy.orm import Session

from app.config import get_settings
from app.customers.models import Customer
from app.db.base import utcnow
from app.errors import AlreadyExists, NotFound, ValidationFailed
from app.mailboxes.models import Mailbox
from app.sla.calendar import (
    WEEKDAYS,
    Calendar,
    NoBusinessTime,
    add_business_minutes,
    add_business_minutes_many,
    business_minutes_between,
    calendar_from_row,
    ceil_share,
    check_holiday_region,
    format_hhmm,
    next_business_start,
    weekly_hours_from_json,
)
from app.sla.models import DEFAULT_FIRST_RESPONSE_CEILING_MINUTES, BusinessCalendar, SlaPolicy
from app.sla.schemas import (
    CalendarCreate,
    CalendarUpdate,
    SlaPolicyCreate,
    SlaPolicyUpdate,
)
from app.tickets.models import Priority, Status, Ticket
from app.timezones import check_timezone

log = logging.getLogger(__name__)

# priority → (first response, resolution), business minutes. See the module docstring.
DEFAULT_TARGETS: dict[Priority, tuple[int, int]] = {
    Priority.URGENT: (60, 480),
    Priority.HIGH: (240, 1440),
    Priority.NORMAL: (480, 2880),
    Priority.LOW: (1440, 5760),
}

SlaState = Literal["ok", "at_risk", "breached", "met"]
_RUNNING = (Status.NEW, Status.OPEN, Status.PENDING)


@dataclass(frozen=True)
class Targets:
    """What a ticket is held to: a policy's numbers, or the built-in defaults (``policy_id``
    None)."""

    policy_id: int | None
    first_response_minutes: int
    resolution_minutes: int
    ceiling_minutes: int | None
    calendar_id: int | None

    @classmethod
    def of(cls, policy: SlaPolicy | None, priority: Priority) -> Targets:
        if policy is None:
            first, resolution = DEFAULT_TARGETS[priority]
            return cls(None, first, resolution, DEFAULT_FIRST_RESPONSE_CEILING_MINUTES, None)
        return cls(
            policy.id,
            policy.first_response_minutes,
            policy.resolution_minutes,
            policy.first_response_ceiling_minutes,
            policy.calendar_id,
        )


@dataclass(frozen=True)
class DueTimes:
    first_response_due_at: datetime
    first_response_at_risk_at: datetime
    resolution_due_at: datetime
    resolution_at_risk_at: datetime


def compute_due_times(
    calendar: Calendar,
    *,
    start: datetime,
    targets: Targets,
    paused_minutes: int = 0,
    share: float | None = None,
) -> DueTimes:
    """Due and at-risk instants for ``targets`` from ``start`` (pure; one calendar walk).

    A calendar without business time ahead (only possible if edited outside the API) is not
    allowed to fail a ticket's creation, and with it a whole sync chunk: the times are then
    computed as if always open, and a warning logged.
    """
    share = get_settings().sla_at_risk_share if share is None else share
    try:
        return _due_times(calendar, start, targets, paused_minutes, share)
    except NoBusinessTime as exc:
        log.warning("SLA due times computed as always open: %s", exc.message)
        return _due_times(Calendar.always_open(), start, targets, paused_minutes, share)


def _due_times(
    calendar: Calendar, start: datetime, targets: Targets, paused_minutes: int, share: float
) -> DueTimes:
    first, resolution = targets.first_response_minutes, targets.resolution_minutes
    first_due, first_risk, resolution_due, resolution_risk = add_business_minutes_many(
        calendar,
        start,
        [
            first + paused_minutes,
            ceil_share(first, share) + paused_minutes,
            resolution + paused_minutes,
            ceil_share(resolution, share) + paused_minutes,
        ],
    )
    ceiling = targets.ceiling_minutes
    if ceiling is not None:
        # The ceiling is calendar time, pushed like the rest by the business minutes paused.
        ceiling_due, ceiling_risk = (
            add_business_minutes(calendar, start + timedelta(minutes=minutes), paused_minutes)
            for minutes in (ceiling, ceil_share(ceiling, share))
        )
        first_due, first_risk = min(first_due, ceiling_due), min(first_risk, ceiling_risk)
    return DueTimes(first_due, first_risk, resolution_due, resolution_risk)


# -- choosing the policy and the calendar -------------------------------------------------------


def pick_policy(
    policies: Iterable[SlaPolicy], *, priority: Priority, mailbox_id: int, segment: str | None
) -> SlaPolicy | None:
    """The most specific matching policy: mailbox + segment > mailbox > segment > any."""
    best: SlaPolicy | None = None
    best_rank: tuple[bool, bool, int] | None = None
    for policy in policies:
        if policy.priority != priority.value:
            continue
        if policy.mailbox_id is not None and policy.mailbox_id != mailbox_id:
            continue
        if policy.segment is not None and policy.segment != segment:
            continue
        rank = (policy.mailbox_id is not None, policy.segment is not None, -policy.id)
        if best_rank is None or rank > best_rank:
            best, best_rank = policy, rank
    return best


def _candidate_policies(
    session: Session, *, mailbox_id: int, priority: Priority | None = None
) -> list[SlaPolicy]:
    stmt = select(SlaPolicy).where(
        or_(SlaPolicy.mailbox_id == mailbox_id, SlaPolicy.mailbox_id.is_(None))
    )
    if priority is not None:
        stmt = stmt.where(SlaPolicy.priority == priority.value)
    return list(session.execute(stmt).scalars())


def calendar_by_id(session: Session, calendar_id: int | None) -> Calendar:
    """A stored calendar as a ``Calendar``; ``None`` or a vanished row → always open."""
    if calendar_id is None:
        return Calendar.always_open()
    return calendar_from_row(session.get(BusinessCalendar, calendar_id))


def calendar_for_mailbox(session: Session, *, mailbox_id: int) -> Calendar:
    """The mailbox's business calendar (always open when it has none)."""
    mailbox = session.get(Mailbox, mailbox_id)
    if mailbox is None:
        raise NotFound(f"mailbox {mailbox_id} not found", code="mailbox_not_found")
    return calendar_by_id(session, mailbox.business_calendar_id)


def calendar_for_ticket(session: Session, *, ticket: Ticket) -> Calendar:
    """The calendar the ticket's due times run on: its policy's, else its mailbox's."""
    if ticket.sla_policy_id is not None:
        policy = session.get(SlaPolicy, ticket.sla_policy_id)
        if policy is not None and policy.calendar_id is not None:
            return calendar_by_id(session, policy.calendar_id)
    return calendar_for_mailbox(session, mailbox_id=ticket.mailbox_id)


# -- applying to tickets ------------------------------------------------------------------------


def apply_sla(
    session: Session,
    *,
    ticket: Ticket,
    now: datetime | None = None,
    policy: SlaPolicy | None = None,
) -> None:
    """Choose the ticket's policy and set its due and at-risk instants.

    The clock starts at ``now`` if given, else at the ticket's ``created_at`` (else the present).
    Paused minutes already spent (``sla_paused_minutes``) are kept. A ticket that already has its
    first response keeps its first-response times (they are history). ``policy`` given: its
    targets apply whatever the ticket's priority and segment (a triage rule's set_sla_policy).
    """
    start = now or ticket.created_at or utcnow()
    priority = Priority(ticket.priority or Priority.NORMAL)
    # No autoflush: the lookups must not write the caller's half-made change (and bump the
    # ticket's version twice).
    with session.no_autoflush:
        if policy is None:
            customer = session.get(Customer, ticket.customer_id)
            policy = pick_policy(
                _candidate_policies(session, mailbox_id=ticket.mailbox_id, priority=priority),
                priority=priority,
                mailbox_id=ticket.mailbox_id,
                segment=customer.segment if customer is not None else None,
            )
        targets = Targets.of(policy, priority)
        if targets.calendar_id is not None:
            calendar = calendar_by_id(session, targets.calendar_id)
        else:
            calendar = calendar_for_mailbox(session, mailbox_id=ticket.mailbox_id)
    due = compute_due_times(
        calendar, start=start, targets=targets, paused_minutes=ticket.sla_paused_minutes or 0
    )
    _store(ticket, targets.policy_id, due)


def apply_sla_many(
    session: Session,
    *,
    mailbox_id: int,
    tickets: Sequence[Ticket],
    segments: Sequence[str | None],
    start: datetime,
) -> None:
    """``apply_sla`` for new tickets of one mailbox whose clocks all start at ``start`` (a sync
    chunk): one query for the policies, each calendar built once, each distinct (targets,
    calendar) computed once."""
    if not tickets:
        return
    with session.no_autoflush:
        _apply_many(session, mailbox_id, tickets, segments, start)


def _apply_many(
    session: Session,
    mailbox_id: int,
    tickets: Sequence[Ticket],
    segments: Sequence[str | None],
    start: datetime,
) -> None:
    policies = _candidate_policies(session, mailbox_id=mailbox_id)
    mailbox = session.get(Mailbox, mailbox_id)
    mailbox_calendar_id = mailbox.business_calendar_id if mailbox is not None else None
    calendars: dict[int | None, Calendar] = {}
    computed: dict[tuple[Targets, int | None], DueTimes] = {}
    share = get_settings().sla_at_risk_share
    for ticket, segment in zip(tickets, segments, strict=True):
        priority = Priority(ticket.priority or Priority.NORMAL)
        policy = pick_policy(policies, priority=priority, mailbox_id=mailbox_id, segment=segment)
        targets = Targets.of(policy, priority)
        calendar_id = (
            targets.calendar_id if targets.calendar_id is not None else mailbox_calendar_id
        )
        key = (targets, calendar_id)
        if key not in computed:
            if calendar_id not in calendars:
                calendars[calendar_id] = calendar_by_id(session, calendar_id)
            computed[key] = compute_due_times(
                calendars[calendar_id], start=start, targets=targets, share=share
            )
        _store(ticket, targets.policy_id, computed[key])


def _store(ticket: Ticket, policy_id: int | None, due: DueTimes) -> None:
    ticket.sla_policy_id = policy_id
    if ticket.first_response_at is None:
        ticket.first_response_due_at = due.first_response_due_at
        ticket.first_response_at_risk_at = due.first_response_at_risk_at
    ticket.resolution_due_at = due.resolution_due_at
    ticket.resolution_at_risk_at = due.resolution_at_risk_at


def pause_sla(ticket: Ticket, *, now: datetime | None = None) -> None:
    """The ticket went pending: its clocks stop at ``now``."""
    if ticket.sla_paused_at is None:
        ticket.sla_paused_at = now or utcnow()


def resume_sla(session: Session, *, ticket: Ticket, now: datetime | None = None) -> int:
    """The ticket left pending: push its running targets forward by the business minutes spent
    paused; returns those minutes."""
    paused_at = ticket.sla_paused_at
    if paused_at is None:
        return 0
    with session.no_autoflush:
        calendar = calendar_for_ticket(session, ticket=ticket)
    ticket.sla_paused_at = None
    minutes = max(0, business_minutes_between(calendar, paused_at, now or utcnow()))
    if minutes == 0:
        return 0
    names = ["resolution_due_at", "resolution_at_risk_at"]
    if ticket.first_response_at is None:
        names += ["first_response_due_at", "first_response_at_risk_at"]
    for name in names:
        value = getattr(ticket, name)
        if value is not None:
            try:
                pushed = add_business_minutes(calendar, value, minutes)
            except NoBusinessTime:  # see compute_due_times
                pushed = value + timedelta(minutes=minutes)
            setattr(ticket, name, pushed)
    ticket.sla_paused_minutes = (ticket.sla_paused_minutes or 0) + minutes
    return minutes


# -- state ----------------------------------------------------------------------------------------


class _SlaFields(Protocol):
    status: Status
    first_response_at: datetime | None
    first_response_due_at: datetime | None
    first_response_at_risk_at: datetime | None
    resolved_at: datetime | None
    resolution_due_at: datetime | None
    resolution_at_risk_at: datetime | None
    sla_paused_at: datetime | None


def sla_state(ticket: _SlaFields, *, now: datetime | None = None) -> SlaState:
    """ok / at_risk / breached / met by the module docstring's rule (``sla_condition`` in SQL)."""
    if ticket.status not in _RUNNING:
        return "met"
    clock = ticket.sla_paused_at if ticket.status == Status.PENDING else (now or utcnow())
    running = []
    if ticket.first_response_at is None:
        running.append((ticket.first_response_due_at, ticket.first_response_at_risk_at))
    if ticket.resolved_at is None:
        running.append((ticket.resolution_due_at, ticket.resolution_at_risk_at))
    if not running:
        return "met"
    if clock is None:
        return "ok"
    if any(due is not None and due <= clock for due, _ in running):
        return "breached"
    if any(risk is not None and risk <= clock for _, risk in running):
        return "at_risk"
    return "ok"


def sla_condition(state: Literal["at_risk", "breached"], *, now: datetime) -> ColumnElement[bool]:
    """The SQL form of ``sla_state(ticket) == state``: comparisons of indexed columns with
    ``now`` (running tickets) or with ``sla_paused_at`` (pending ones)."""
    running = Ticket.status.in_([Status.NEW, Status.OPEN])
    paused = and_(Ticket.status == Status.PENDING, Ticket.sla_paused_at.is_not(None))
    targets = (
        (Ticket.first_response_at, Ticket.first_response_due_at, Ticket.first_response_at_risk_at),
        (Ticket.resolved_at, Ticket.resolution_due_at, Ticket.resolution_at_risk_at),
    )
    breached: list[ColumnElement[bool]] = []
    at_risk: list[ColumnElement[bool]] = []
    for met_at, due, risk in targets:
        unmet = met_at.is_(None)
        for when, clock in ((running, now), (paused, Ticket.sla_paused_at)):
            breached.append(and_(unmet, when, due.is_not(None), due <= clock))
            # At-risk and due instants are set together: "due > clock" is the selective part.
            at_risk.append(
                and_(unmet, when, due.is_not(None), due > clock, risk.is_not(None), risk <= clock)
            )
    if state == "breached":
        return or_(*breached)
    # At risk and breached on no target: "not breached" spelled out so that NULLs cannot hide rows.
    return and_(or_(*at_risk), ~or_(*breached))


# -- calendars (REST) -----------------------------------------------------------------------------


def list_calendars(session: Session) -> list[BusinessCalendar]:
    return list(session.execute(select(BusinessCalendar).order_by(BusinessCalendar.id)).scalars())


def get_calendar(session: Session, calendar_id: int) -> BusinessCalendar:
    row = session.get(BusinessCalendar, calendar_id)
    if row is None:
        raise NotFound(f"business calendar {calendar_id} not found", code="calendar_not_found")
    return row


def create_calendar(session: Session, *, data: CalendarCreate) -> BusinessCalendar:
    fields = _calendar_fields(data.model_dump())
    _check_calendar(session, fields, calendar_id=None)
    row = BusinessCalendar(**fields)
    session.add(row)
    session.flush()
    return row


def update_calendar(
    session: Session, *, calendar_id: int, update: CalendarUpdate
) -> BusinessCalendar:
    row = get_calendar(session, calendar_id)
    changes = update.model_dump(exclude_unset=True)
    if changes.get("holiday_country", "") is None:
        changes.setdefault("holiday_subdivision", None)
    fields = {
        "name": row.name,
        "timezone": row.timezone,
        "weekly_hours": row.weekly_hours,
        "holiday_country": row.holiday_country,
        "holiday_subdivision": row.holiday_subdivision,
        "custom_holidays": row.custom_holidays,
    }
    fields.update(_calendar_fields(changes))
    _check_calendar(session, fields, calendar_id=row.id)
    for name, value in fields.items():
        setattr(row, name, value)
    session.flush()
    return row


def delete_calendar(session: Session, *, calendar_id: int) -> None:
    """Delete; mailboxes and policies that used it fall back to always open / their mailbox's.
    Tickets keep the due times they have."""
    row = get_calendar(session, calendar_id)
    # What ON DELETE SET NULL does, spelled out so that no backend is left with a dangling id.
    session.execute(
        update(Mailbox)
        .where(Mailbox.business_calendar_id == row.id)
        .values(business_calendar_id=None)
    )
    session.execute(
        update(SlaPolicy).where(SlaPolicy.calendar_id == row.id).values(calendar_id=None)
    )
    session.delete(row)
    session.flush()


def _calendar_fields(data: dict[str, object]) -> dict[str, object]:
    """Request fields → column values (sorted intervals as "HH:MM" pairs, ISO dates)."""
    fields = dict(data)
    if "weekly_hours" in fields:
        hours = weekly_hours_from_json(fields["weekly_hours"])  # type: ignore[arg-type]
        fields["weekly_hours"] = {
            key: [[format_hhmm(start), format_hhmm(end)] for start, end in sorted(intervals)]
            for key, intervals in _by_name(hours).items()
        }
    if "custom_holidays" in fields:
        days = fields["custom_holidays"] or []
        fields["custom_holidays"] = sorted({day.isoformat() for day in days})  # type: ignore[attr-defined]
    if fields.get("holiday_country"):
        fields["holiday_country"] = str(fields["holiday_country"]).upper()
    return fields


def _by_name(hours: dict[int, tuple[object, ...]]) -> dict[str, tuple[object, ...]]:
    return {WEEKDAYS[day]: hours[day] for day in sorted(hours)}


def _check_calendar(
    session: Session, fields: dict[str, object], *, calendar_id: int | None
) -> None:
    check_timezone(str(fields["timezone"]))
    check_holiday_region(
        fields.get("holiday_country"),  # type: ignore[arg-type]
        fields.get("holiday_subdivision"),  # type: ignore[arg-type]
    )
    hours = fields["weekly_hours"]
    if not any(hours.values()):  # type: ignore[attr-defined]
        raise ValidationFailed(
            "a business calendar needs working hours on at least one day",
            code="calendar_never_open",
        )
    # Hours, but holidays on every working day for over a year (custom dates): refused too.
    calendar = Calendar(
        timezone=str(fields["timezone"]),
        weekly_hours=weekly_hours_from_json(hours),  # type: ignore[arg-type]
        holidays=frozenset(date.fromisoformat(d) for d in fields["custom_holidays"]),  # type: ignore[attr-defined]
    )
    next_business_start(calendar, utcnow())
    taken = session.execute(
        select(BusinessCalendar.id).where(BusinessCalendar.name == fields["name"])
    ).scalar_one_or_none()
    if taken is not None and taken != calendar_id:
        raise AlreadyExists(
            f"a business calendar named {fields['name']!r} exists", code="calendar_exists"
        )


# -- policies (REST) ------------------------------------------------------------------------------


def list_policies(session: Session) -> list[SlaPolicy]:
    return list(session.execute(select(SlaPolicy).order_by(SlaPolicy.id)).scalars())


def get_policy(session: Session, policy_id: int) -> SlaPolicy:
    policy = session.get(SlaPolicy, policy_id)
    if policy is None:
        raise NotFound(f"SLA policy {policy_id} not found", code="sla_policy_not_found")
    return policy


def create_policy(session: Session, *, data: SlaPolicyCreate) -> SlaPolicy:
    fields = data.model_dump()
    fields["priority"] = Priority(fields["priority"]).value
    _check_policy(session, fields, policy_id=None)
    if fields["first_response_ceiling_minutes"] is None:
        # The column's Python default (24 h) would replace a plain None on INSERT.
        fields["first_response_ceiling_minutes"] = null()
    policy = SlaPolicy(**fields)
    session.add(policy)
    session.flush()
    return policy


def update_policy(session: Session, *, policy_id: int, update: SlaPolicyUpdate) -> SlaPolicy:
    """Change a policy. Tickets keep the due times they were given; new tickets and priority
    changes use the new numbers."""
    policy = get_policy(session, policy_id)
    fields = {
        "name": policy.name,
        "priority": policy.priority,
        "segment": policy.segment,
        "mailbox_id": policy.mailbox_id,
        "calendar_id": policy.calendar_id,
        "first_response_minutes": policy.first_response_minutes,
        "resolution_minutes": policy.resolution_minutes,
        "first_response_ceiling_minutes": policy.first_response_ceiling_minutes,
    }
    changes = update.model_dump(exclude_unset=True)
    if "priority" in changes:
        changes["priority"] = Priority(changes["priority"]).value
    fields.update(changes)
    _check_policy(session, fields, policy_id=policy.id)
    for name, value in fields.items():
        setattr(policy, name, value)
    session.flush()
    return policy


def delete_policy(session: Session, *, policy_id: int) -> None:
    policy = get_policy(session, policy_id)
    # Tickets keep their due times; they only forget which policy gave them.
    session.execute(
        update(Ticket).where(Ticket.sla_policy_id == policy.id).values(sla_policy_id=None)
    )
    session.delete(policy)
    session.flush()


def _check_policy(session: Session, fields: dict[str, object], *, policy_id: int | None) -> None:
    mailbox_id, calendar_id = fields["mailbox_id"], fields["calendar_id"]
    if mailbox_id is not None and session.get(Mailbox, mailbox_id) is None:
        raise ValidationFailed(f"unknown mailbox {mailbox_id}", code="unknown_mailbox")
    if calendar_id is not None and session.get(BusinessCalendar, calendar_id) is None:
        raise ValidationFailed(f"no business calendar {calendar_id}", code="unknown_calendar")
    stmt = select(SlaPolicy.id).where(
        SlaPolicy.priority == fields["priority"],
        SlaPolicy.segment.is_(None)
        if fields["segment"] is None
        else SlaPolicy.segment == fields["segment"],
        SlaPolicy.mailbox_id.is_(None)
        if mailbox_id is None
        else SlaPolicy.mailbox_id == mailbox_id,
    )
    if policy_id is not None:
        stmt = stmt.where(SlaPolicy.id != policy_id)
    clash = session.execute(stmt.limit(1)).scalar_one_or_none()
    if clash is not None:
        raise AlreadyExists(
            f"SLA policy {clash} already covers this priority, segment and mailbox",
            code="sla_policy_exists",
            details={"policy_id": clash},
        )
