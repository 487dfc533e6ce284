"""SLA rules on real tickets: the most specific policy wins, due and at-risk instants on the right
calendar (hand-computed), the 24-hour first-response ceiling, the pause over a weekend, a
priority change that keeps paused time, the SQL filter agreeing with the Python state, and the
sync's bulk creation resolving policies and calendars once per call."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from app.config import reset_settings
from app.customers.models import Customer
from app.customers.service import upsert_customer
from app.db.session import Database
from app.mailboxes import service as mailboxes
from app.mailboxes.models import Mailbox
from app.sla import service as sla
from app.sla.calendar import WEEKDAYS, add_business_minutes
from app.sla.models import SlaPolicy
from app.sla.schemas import CalendarCreate, SlaPolicyCreate
from app.tickets import service as tickets
from app.tickets.events import Actor
from app.tickets.models import Priority, Status, Ticket
from app.tickets.schemas import TicketUpdate

MSK = ZoneInfo("Europe/Moscow")
OFFICE_HOURS = {day: [("09:00", "18:00")] for day in ("mon", "tue", "wed", "thu", "fri")}
# Thursday 2026-11-19, 10:00 in Moscow.
THURSDAY_10 = datetime(2026, 11, 19, 10, tzinfo=MSK)


def msk(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=MSK)


def office_calendar(session: Session, name: str = "Moscow office") -> int:
    data = CalendarCreate(
        name=name,
        timezone="Europe/Moscow",
        weekly_hours=OFFICE_HOURS,  # type: ignore[arg-type]
        holiday_country="RU",
    )
    return sla.create_calendar(session, data=data).id


def policy(session: Session, **fields: Any) -> SlaPolicy:
    values: dict[str, Any] = {
        "name": "p",
        "priority": Priority.NORMAL,
        "first_response_minutes": 100,
        "resolution_minutes": 1000,
    }
    values.update(fields)
    return sla.create_policy(session, data=SlaPolicyCreate(**values))


def new_ticket(
    session: Session,
    mailbox: Mailbox,
    *,
    customer: str = "bob@example.com",
    segment: str | None = None,
    priority: Priority = Priority.NORMAL,
    created: datetime | None = None,
) -> Ticket:
    """A ticket made by the service; with ``created``, as if made then (SLA recomputed)."""
    person, _ = upsert_customer(session, email=customer, segment=segment)
    ticket = tickets.create_ticket(
        session,
        mailbox=mailbox,
        customer=person,
        subject="Help",
        priority=priority,
        actor=Actor.system(),
    )
    if created is not None:
        ticket.created_at = created
        sla.apply_sla(session, ticket=ticket)
        session.flush()
    return ticket


def mailbox_with_calendar(session: Session, calendar_id: int | None) -> Mailbox:
    box = mailboxes.create_mailbox(session, email="help@shop.test", name="Help")
    box.business_calendar_id = calendar_id
    session.flush()
    return box


# -- policy choice -----------------------------------------------------------------------------


def test_the_most_specific_policy_wins(session: Session) -> None:
    """mailbox + segment > mailbox > segment > any, per priority; nothing matching → defaults."""
    box_a = mailboxes.create_mailbox(session, email="a@shop.test", name="A")
    box_b = mailboxes.create_mailbox(session, email="b@shop.test", name="B")
    anyone = policy(session, name="any")
    vip = policy(session, name="vip", segment="vip")
    for_a = policy(session, name="A", mailbox_id=box_a.id)
    vip_in_a = policy(session, name="A vip", mailbox_id=box_a.id, segment="vip")
    high = policy(session, name="high", priority=Priority.HIGH)

    cases = [
        (box_a, "vip", Priority.NORMAL, vip_in_a.id),
        (box_a, "regular", Priority.NORMAL, for_a.id),
        (box_b, "vip", Priority.NORMAL, vip.id),
        (box_b, "regular", Priority.NORMAL, anyone.id),
        (box_b, "regular", Priority.HIGH, high.id),
        (box_a, "vip", Priority.LOW, None),
    ]
    for number, (box, segment, priority, expected) in enumerate(cases):
        ticket = new_ticket(
            session, box, customer=f"c{number}@example.com", segment=segment, priority=priority
        )
        assert ticket.sla_policy_id == expected, (box.email, segment, priority)


def test_two_policies_for_the_same_scope_are_refused(session: Session) -> None:
    policy(session, segment="vip")
    with pytest.raises(Exception, match="already covers") as caught:
        policy(session, segment="vip", first_response_minutes=5)
    assert getattr(caught.value, "code", None) == "sla_policy_exists"
    policy(session, segment="vip", priority=Priority.HIGH)  # another priority is another scope


# -- due times ---------------------------------------------------------------------------------


def test_default_targets_on_the_mailbox_calendar(session: Session) -> None:
    """Normal (480/2880) from Thursday 10:00 on a 9–18 Moscow office week: first response at
    18:00 that day (at risk at 16:00), resolution next Thursday 13:00 (at risk Wednesday 10:00)."""
    box = mailbox_with_calendar(session, office_calendar(session))
    ticket = new_ticket(session, box, created=THURSDAY_10)
    assert ticket.sla_policy_id is None
    assert ticket.first_response_due_at == msk(11, 19, 18)
    assert ticket.first_response_at_risk_at == msk(11, 19, 16)
    assert ticket.resolution_due_at == msk(11, 26, 13)
    assert ticket.resolution_at_risk_at == msk(11, 25, 10)


def test_without_a_calendar_business_minutes_are_calendar_minutes(session: Session) -> None:
    box = mailbox_with_calendar(session, None)
    ticket = new_ticket(session, box, priority=Priority.URGENT, created=THURSDAY_10)
    assert ticket.first_response_due_at == THURSDAY_10 + timedelta(minutes=60)
    assert ticket.resolution_due_at == THURSDAY_10 + timedelta(minutes=480)
    assert ticket.resolution_at_risk_at == THURSDAY_10 + timedelta(minutes=360)


def test_a_policy_calendar_beats_the_mailbox_calendar(session: Session) -> None:
    """The mailbox works 9–18 Moscow; the policy's calendar is always open (24×7 UTC)."""
    box = mailbox_with_calendar(session, office_calendar(session))
    round_the_clock = sla.create_calendar(
        session,
        data=CalendarCreate(
            name="24x7",
            weekly_hours={day: [("00:00", "24:00")] for day in WEEKDAYS},  # type: ignore[arg-type]
        ),
    )
    policy(session, calendar_id=round_the_clock.id, first_response_minutes=600)
    ticket = new_ticket(session, box, created=THURSDAY_10)
    assert ticket.first_response_due_at == THURSDAY_10 + timedelta(minutes=600)
    assert sla.calendar_for_ticket(session, ticket=ticket).is_always_open
    assert not sla.calendar_for_mailbox(session, mailbox_id=box.id).is_always_open


def test_the_first_response_ceiling_is_24_calendar_hours_by_default(session: Session) -> None:
    """Low (1440 business minutes) would be Monday 16:00; the ceiling makes it Friday 10:00,
    and the at-risk instant 18 calendar hours after creation (Friday 04:00)."""
    box = mailbox_with_calendar(session, office_calendar(session))
    ticket = new_ticket(session, box, priority=Priority.LOW, created=THURSDAY_10)
    assert ticket.first_response_due_at == msk(11, 20, 10)
    assert ticket.first_response_at_risk_at == msk(11, 20, 4)


def test_a_policy_may_drop_or_tighten_the_ceiling(session: Session) -> None:
    box = mailbox_with_calendar(session, office_calendar(session))
    policy(
        session,
        priority=Priority.LOW,
        first_response_minutes=1440,
        first_response_ceiling_minutes=None,
    )
    policy(
        session,
        priority=Priority.HIGH,
        first_response_minutes=1440,
        first_response_ceiling_minutes=120,
    )
    low = new_ticket(session, box, priority=Priority.LOW, created=THURSDAY_10)
    high = new_ticket(
        session, box, customer="h@example.com", priority=Priority.HIGH, created=THURSDAY_10
    )
    assert low.first_response_due_at == msk(11, 23, 16)  # 480 Thu + 540 Fri + 420 Mon
    assert high.first_response_due_at == msk(11, 19, 12)


def test_the_at_risk_share_is_configurable(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INBOXDESK_SLA_AT_RISK_SHARE", "0.5")
    reset_settings()
    try:
        box = mailbox_with_calendar(session, None)
        ticket = new_ticket(session, box, created=THURSDAY_10)
        assert ticket.first_response_at_risk_at == THURSDAY_10 + timedelta(minutes=240)
        assert ticket.resolution_at_risk_at == THURSDAY_10 + timedelta(minutes=1440)
    finally:
        monkeypatch.delenv("INBOXDESK_SLA_AT_RISK_SHARE")
        reset_settings()


def test_creation_sets_due_times_without_a_second_write(session: Session) -> None:
    """create_ticket stores the due times with the INSERT: version 1, times from created_at."""
    box = mailbox_with_calendar(session, None)
    ticket = new_ticket(session, box)
    assert ticket.version == 1
    assert ticket.first_response_due_at == ticket.created_at + timedelta(minutes=480)
    assert ticket.sla_paused_minutes == 0
    assert ticket.sla_paused_at is None


def test_a_calendar_broken_behind_the_api_never_blocks_ticket_creation(session: Session) -> None:
    """Hours removed straight in the database (the API refuses it): tickets are still created,
    with due times as if always open, instead of failing (and stalling the sync)."""
    calendar_id = office_calendar(session)
    box = mailbox_with_calendar(session, calendar_id)
    row = sla.get_calendar(session, calendar_id)
    row.weekly_hours = {}
    session.flush()
    ticket = new_ticket(session, box, created=THURSDAY_10)
    assert ticket.first_response_due_at == THURSDAY_10 + timedelta(minutes=480)
    ticket.status = Status.PENDING
    ticket.sla_paused_at = THURSDAY_10
    assert sla.resume_sla(session, ticket=ticket, now=THURSDAY_10 + timedelta(hours=1)) == 0


# -- pause and priority changes ------------------------------------------------------------------


def test_a_pending_weekend_pushes_the_due_times_by_business_minutes(session: Session) -> None:
    """Answered Friday 15:00, pending Friday 16:00 to Monday 11:00: 120 + 120 business minutes
    paused (the weekend counts nothing). Resolution moves from Thursday 13:00 to 17:00 (at risk
    Wednesday 10:00 → 14:00); the met first response keeps its due time."""
    box = mailbox_with_calendar(session, office_calendar(session))
    ticket = new_ticket(session, box, created=THURSDAY_10)
    ticket.first_response_at = msk(11, 20, 15)

    sla.pause_sla(ticket, now=msk(11, 20, 16))
    assert ticket.sla_paused_at == msk(11, 20, 16)
    assert sla.resume_sla(session, ticket=ticket, now=msk(11, 23, 11)) == 240

    assert ticket.sla_paused_at is None
    assert ticket.sla_paused_minutes == 240
    assert ticket.resolution_due_at == msk(11, 26, 17)
    assert ticket.resolution_at_risk_at == msk(11, 25, 14)
    assert ticket.first_response_due_at == msk(11, 19, 18)


def test_an_unanswered_ticket_pushes_its_first_response_too(session: Session) -> None:
    """Pending Thursday 12:00 (before any answer) to Friday 12:00: 360 + 180 = 540 minutes; the
    first response (due Thursday 18:00) moves to Friday 18:00 - the same 8 business hours left."""
    box = mailbox_with_calendar(session, office_calendar(session))
    ticket = new_ticket(session, box, created=THURSDAY_10)
    sla.pause_sla(ticket, now=msk(11, 19, 12))
    assert sla.resume_sla(session, ticket=ticket, now=msk(11, 20, 12)) == 540
    assert ticket.first_response_due_at == msk(11, 20, 18)
    assert ticket.first_response_at_risk_at == msk(11, 20, 16)


def test_status_changes_pause_and_resume_the_clock(session: Session) -> None:
    """Through update_ticket: pending stores the instant; open two hours later pushes the
    (always-open) due times by 120 minutes."""
    box = mailbox_with_calendar(session, None)
    ticket = new_ticket(session, box)
    due = ticket.resolution_due_at
    assert due is not None
    actor = Actor.system()
    ticket = tickets.update_ticket(
        session,
        ticket_id=ticket.id,
        update=TicketUpdate(version=ticket.version, status=Status.PENDING),
        actor=actor,
    )
    assert ticket.sla_paused_at is not None
    assert abs(ticket.sla_paused_at - datetime.now(UTC)) < timedelta(seconds=30)
    ticket.sla_paused_at -= timedelta(hours=2)  # as if it went pending two hours ago
    session.flush()

    ticket = tickets.update_ticket(
        session,
        ticket_id=ticket.id,
        update=TicketUpdate(version=ticket.version, status=Status.OPEN),
        actor=actor,
    )
    assert ticket.sla_paused_at is None
    assert ticket.sla_paused_minutes == 120
    assert ticket.resolution_due_at == due + timedelta(minutes=120)


def test_a_customer_reply_to_a_pending_ticket_resumes_the_clock(session: Session) -> None:
    box = mailbox_with_calendar(session, None)
    ticket = new_ticket(session, box)
    ticket.status = Status.PENDING
    ticket.sla_paused_at = datetime.now(UTC) - timedelta(minutes=30, seconds=5)
    due = ticket.first_response_due_at
    assert due is not None
    tickets.record_customer_message(session, ticket=ticket, actor=Actor.system())
    assert ticket.status == Status.OPEN
    assert ticket.sla_paused_minutes == 30
    assert ticket.first_response_due_at == due + timedelta(minutes=30)


def test_a_priority_change_recomputes_from_creation_keeping_paused_time(
    session: Session,
) -> None:
    """Normal → urgent with 30 minutes already paused: first response 60 + 30 business minutes
    after Thursday 10:00 (11:30), resolution 480 + 30 (Friday 09:30); answered tickets keep the
    first-response due time."""
    box = mailbox_with_calendar(session, office_calendar(session))
    ticket = new_ticket(session, box, created=THURSDAY_10)
    ticket.sla_paused_minutes = 30
    session.flush()
    version = ticket.version
    ticket = tickets.update_ticket(
        session,
        ticket_id=ticket.id,
        update=TicketUpdate(version=ticket.version, priority=Priority.URGENT),
        actor=Actor.system(),
    )
    assert ticket.version == version + 1  # one write for the change, not one per lookup
    assert ticket.first_response_due_at == msk(11, 19, 11, 30)
    assert ticket.resolution_due_at == msk(11, 20, 9, 30)

    ticket.first_response_at = msk(11, 19, 11)
    session.flush()
    ticket = tickets.update_ticket(
        session,
        ticket_id=ticket.id,
        update=TicketUpdate(version=ticket.version, priority=Priority.LOW),
        actor=Actor.system(),
    )
    assert ticket.first_response_due_at == msk(11, 19, 11, 30)  # history, unchanged
    # 5760 + 30 from Thursday 10:00: 480 that day, then 9 days of 540, then 450 minutes.
    assert ticket.resolution_due_at == msk(12, 3, 16, 30)


# -- state: Python and SQL agree -----------------------------------------------------------------

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)
# (at_risk_at, due) relative to NOW: fine, at risk, breached, no SLA.
PROFILES = {
    "ok": (NOW + HOUR, NOW + 2 * HOUR),
    "at_risk": (NOW - HOUR, NOW + HOUR),
    "breached": (NOW - 2 * HOUR, NOW - HOUR),
    "none": (None, None),
}


def test_the_sla_filter_and_the_sla_state_agree(session: Session) -> None:
    """Every mix of status, met targets, timing and pause: `sla=at_risk|breached` in SQL selects
    exactly the tickets whose Python state says so; spot checks pin the rule itself."""
    box = mailbox_with_calendar(session, None)
    person, _ = upsert_customer(session, email="grid@example.com")
    made: dict[tuple[Any, ...], Ticket] = {}
    paused_options: list[datetime | None] = [NOW - 90 * timedelta(minutes=1), None]
    grid = itertools.product(list(Status), [False, True], PROFILES, PROFILES, paused_options)
    for number, (status, answered, first, resolution, paused) in enumerate(grid, start=50_000):
        if paused is None and status != Status.PENDING:
            continue
        ticket = Ticket(
            number=number,
            mailbox_id=box.id,
            customer_id=person.id,
            subject="grid",
            status=status,
            first_response_at=NOW - 3 * HOUR if answered else None,
            resolved_at=NOW - HOUR if status in (Status.RESOLVED, Status.CLOSED) else None,
            first_response_at_risk_at=PROFILES[first][0],
            first_response_due_at=PROFILES[first][1],
            resolution_at_risk_at=PROFILES[resolution][0],
            resolution_due_at=PROFILES[resolution][1],
            sla_paused_at=paused if status == Status.PENDING else None,
        )
        session.add(ticket)
        made[(status, answered, first, resolution, paused)] = ticket
    session.flush()

    states = {key: sla.sla_state(ticket, now=NOW) for key, ticket in made.items()}
    assert set(states.values()) == {"ok", "at_risk", "breached", "met"}
    for wanted in ("at_risk", "breached"):
        found, total = tickets.list_tickets(
            session,
            filters=tickets.TicketFilters(sla=wanted, now=NOW),
            limit=1000,  # type: ignore[arg-type]
        )
        assert {t.id for t in found} == {
            made[key].id for key, state in states.items() if state == wanted
        }
        assert total == len(found)

    paused_at = NOW - 90 * timedelta(minutes=1)
    assert states[(Status.OPEN, False, "breached", "ok", paused_at)] == "breached"
    assert states[(Status.OPEN, True, "breached", "at_risk", paused_at)] == "at_risk"
    assert states[(Status.NEW, False, "ok", "none", paused_at)] == "ok"
    assert states[(Status.RESOLVED, False, "breached", "breached", paused_at)] == "met"
    assert states[(Status.CLOSED, False, "breached", "breached", paused_at)] == "met"
    # Pending: judged at the pause (NOW - 1.5 h): "breached" (due NOW - 1 h) was only at risk.
    assert states[(Status.PENDING, False, "breached", "none", paused_at)] == "at_risk"
    assert states[(Status.PENDING, False, "at_risk", "ok", paused_at)] == "ok"
    assert states[(Status.PENDING, False, "breached", "breached", None)] == "ok"


# -- the sync's bulk creation ------------------------------------------------------------------


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def test_open_tickets_resolves_policies_and_calendars_once(db: Database) -> None:
    """60 openings from regular and VIP customers: one query for the policies, one for the
    calendar; each ticket gets its segment's policy and the due times of the mailbox calendar."""
    with db.unit_of_work() as s:
        box = mailbox_with_calendar(s, office_calendar(s))
        vip_policy = policy(s, segment="vip", first_response_minutes=30).id
        for n in range(0, 60, 2):
            upsert_customer(s, email=f"c{n}@example.com", segment="vip")
        box_id = box.id
    openings = [
        tickets.Opening(
            sender_email=f"c{n}@example.com",
            sender_name=None,
            subject="hi",
            gmail_thread_id=f"t{n}",
        )
        for n in range(60)
    ]
    with db.unit_of_work() as s, statements(db) as seen:
        opened = tickets.open_tickets(s, mailbox_id=box_id, openings=openings, actor=Actor.system())
        sla_queries = [q for q in seen if "sla_policies" in q or "business_calendars" in q]
        assert len(sla_queries) == 2, sla_queries
        calendar = sla.calendar_for_mailbox(s, mailbox_id=box_id)
        for n, ticket in enumerate(opened):
            assert ticket.sla_policy_id == (vip_policy if n % 2 == 0 else None)
            target = 30 if n % 2 == 0 else 480
            expected = add_business_minutes(calendar, ticket.created_at, target)
            assert ticket.first_response_due_at == min(
                expected, ticket.created_at + timedelta(hours=24)
            )
            assert ticket.resolution_due_at is not None
    with db.session() as s:
        stored = s.get(Ticket, opened[1].id)
        assert stored is not None
        assert stored.first_response_due_at == opened[1].first_response_due_at
        assert s.get(Customer, stored.customer_id) is not None
