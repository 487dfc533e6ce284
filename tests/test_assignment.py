"""Automatic assignment: each strategy's choice, the cap, availability, waiting tickets.

Every test runs the real service on the real database (SQLite and PostgreSQL); the concurrent
cases are in test_assignment_concurrency.py (PostgreSQL only)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from app.agents.models import Agent, AgentShift, AgentTimeOff, Team
from app.assignment.service import (
    Strategy,
    assign_ticket,
    assign_waiting,
    choose_agent,
    default_team_id,
)
from app.errors import NotFound
from app.mailboxes import service as mailboxes
from app.mailboxes.models import Mailbox
from app.tickets import service as tickets
from app.tickets.events import Actor
from app.tickets.models import Event, Status, Ticket, TicketThread
from app.tickets.schemas import TicketUpdate

# Monday 4 March 2024, 12:00 UTC: inside a 09:00-18:00 UTC shift.
MONDAY_NOON = datetime(2024, 3, 4, 12, tzinfo=UTC)
SYSTEM = Actor.system()


# -- helpers (also used by test_assignment_concurrency.py) --------------------------------------


def make_agents(session: Session, count: int, *, prefix: str = "agent") -> list[Agent]:
    # Empty rota and time off set up front: the collections are lazy="raise" once flushed.
    agents = [
        Agent(email=f"{prefix}{i}@team.test", name=f"{prefix} {i}", shifts=[], time_off=[])
        for i in range(count)
    ]
    session.add_all(agents)
    session.flush()
    return agents


def make_team(
    session: Session,
    members: Sequence[Agent],
    strategy: Strategy,
    *,
    cap: int | None = None,
    mailbox: Mailbox | None = None,
    name: str = "Support",
) -> Team:
    team = Team(
        name=name,
        assignment_strategy=strategy.value,
        agent_cap=cap,
        mailbox_id=mailbox.id if mailbox else None,
    )
    team.members = list(members)
    session.add(team)
    session.flush()
    return team


def new_ticket(
    session: Session,
    mailbox: Mailbox,
    *,
    tags: Sequence[str] = (),
    thread: str | None = None,
    subject: str = "Help",
) -> Ticket:
    return tickets.create_ticket(
        session,
        mailbox=mailbox,
        customer_email="bob@example.com",
        subject=subject,
        tags=list(tags),
        gmail_thread_id=thread,
        actor=SYSTEM,
    )


def give(session: Session, mailbox: Mailbox, agent: Agent, *statuses: Status) -> None:
    """Load ``agent`` with tickets in these statuses."""
    for status in statuses:
        ticket = new_ticket(session, mailbox, subject=f"load {status}")
        ticket.assignee_id = agent.id
        ticket.status = status
    session.flush()


def weekday_shifts(start: str = "09:00", end: str = "18:00") -> list[AgentShift]:
    def minute(text: str) -> int:
        return int(text[:2]) * 60 + int(text[3:])

    return [
        AgentShift(weekday=d, start_minute=minute(start), end_minute=minute(end)) for d in range(5)
    ]


def assign(session: Session, ticket: Ticket, *, now: datetime = MONDAY_NOON) -> Agent | None:
    return assign_ticket(session, ticket=ticket, actor=SYSTEM, now=now)


@contextmanager
def count_queries(session: Session) -> Iterator[list[str]]:
    statements: list[str] = []
    bind = session.connection()

    def record(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(bind, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(bind, "before_cursor_execute", record)


def events(session: Session, ticket: Ticket, field: str) -> list[Event]:
    stmt = (
        select(Event).where(Event.ticket_id == ticket.id, Event.field == field).order_by(Event.id)
    )
    return list(session.execute(stmt).scalars())


@pytest.fixture
def box(session: Session) -> Mailbox:
    return mailboxes.create_mailbox(session, email="support@shop.test", name="Shop")


# -- strategies ---------------------------------------------------------------------------------


def test_round_robin_takes_turns_after_the_last_assigned(session: Session, box: Mailbox) -> None:
    a, b, c = make_agents(session, 3)
    team = make_team(session, [a, b, c], Strategy.ROUND_ROBIN)
    team.last_assigned_agent_id = b.id
    chosen = []
    for _ in range(5):
        ticket = new_ticket(session, box)
        ticket.team_id = team.id
        chosen.append(assign(session, ticket))
    assert chosen == [c, a, b, c, a]
    assert team.last_assigned_agent_id == a.id


def test_round_robin_survives_a_departed_member(session: Session, box: Mailbox) -> None:
    a, b, c = make_agents(session, 3)
    team = make_team(session, [a, c], Strategy.ROUND_ROBIN)
    team.last_assigned_agent_id = b.id  # b has left the team: the turn goes on after b's id
    ticket = new_ticket(session, box)
    assert (
        assign_ticket(session, ticket=ticket, actor=SYSTEM, team_id=team.id, now=MONDAY_NOON) == c
    )


def test_least_loaded_counts_new_open_and_pending_only(session: Session, box: Mailbox) -> None:
    a, b, c = make_agents(session, 3)
    give(session, box, a, Status.OPEN, Status.OPEN, Status.PENDING)
    give(session, box, b, Status.NEW, Status.RESOLVED, Status.CLOSED, Status.CLOSED)
    give(session, box, c, Status.OPEN, Status.NEW, Status.PENDING)
    team = make_team(session, [a, b, c], Strategy.LEAST_LOADED)
    picks = []
    for _ in range(4):
        ticket = new_ticket(session, box)
        ticket.team_id = team.id
        picks.append(assign(session, ticket))
    # b: 1 → 2 → 3; then all three have 3: ties rotate after the last one served (b) → c, then
    # c has 4, a and b 3: after c comes a.
    assert picks == [b, b, c, a]


def test_least_loaded_never_exceeds_the_cap_and_then_waits(session: Session, box: Mailbox) -> None:
    a, b = make_agents(session, 2)
    give(session, box, a, Status.OPEN)
    team = make_team(session, [a, b], Strategy.LEAST_LOADED, cap=2)
    picks = []
    for _ in range(4):
        ticket = new_ticket(session, box)
        ticket.team_id = team.id
        picks.append(assign(session, ticket))
    assert Counter(p.id if p else None for p in picks) == {b.id: 2, a.id: 1, None: 1}
    waiting = ticket
    assert waiting.assignee_id is None
    assert waiting.awaiting_assignment
    [evt] = events(session, waiting, "assignment_waiting")
    assert evt.new_value == {"team_id": team.id}
    assert evt.actor_kind == "system"
    # A second failed attempt does not log the wait again.
    assert assign(session, waiting) is None
    assert len(events(session, waiting, "assignment_waiting")) == 1


def test_round_robin_skips_members_at_the_cap(session: Session, box: Mailbox) -> None:
    a, b, c = make_agents(session, 3)
    give(session, box, b, Status.PENDING, Status.OPEN)
    team = make_team(session, [a, b, c], Strategy.ROUND_ROBIN, cap=2)
    picks = []
    for _ in range(3):
        ticket = new_ticket(session, box)
        ticket.team_id = team.id
        picks.append(assign(session, ticket))
    assert picks == [a, c, a]


def test_skills_prefer_the_best_match_then_the_least_loaded(session: Session, box: Mailbox) -> None:
    billing, both, tech = make_agents(session, 3)
    billing.skills = ["billing"]
    both.skills = ["Billing", "refunds"]
    tech.skills = ["tech"]
    give(session, box, both, Status.OPEN, Status.OPEN)
    team = make_team(session, [billing, both, tech], Strategy.SKILLS)

    def route(*tags: str) -> Agent | None:
        ticket = new_ticket(session, box, tags=tags)
        ticket.team_id = team.id
        return assign(session, ticket)

    # Two matching tags beat one, whatever the load.
    assert route("billing", "refunds") == both
    # One matching tag each (case-insensitive): the less loaded of the two, not tech.
    assert route("BILLING") == billing
    assert route("tech", "urgent") == tech
    # Nobody has the skill: the least loaded available member (tech has 1, billing 1, both 3;
    # the tie rotates after the last one served, tech).
    assert route("shipping") == billing


def test_a_ticket_loaded_without_its_tags_is_still_routed_by_them(
    session: Session, box: Mailbox
) -> None:
    generalist, specialist = make_agents(session, 2)
    specialist.skills = ["refunds"]
    team = make_team(session, [generalist, specialist], Strategy.SKILLS)
    ticket_id = new_ticket(session, box, tags=["refunds"]).id
    session.expunge_all()
    bare = session.get(Ticket, ticket_id)  # tag_rows not loaded (lazy="raise")
    assert bare is not None
    chosen = choose_agent(session, team=session.get(Team, team.id), ticket=bare, now=MONDAY_NOON)
    assert chosen is not None
    assert chosen.id == specialist.id


def _unavailable_members(session: Session) -> list[Agent]:
    away, inactive, on_holiday, off_shift = make_agents(session, 4, prefix="absent")
    away.away = True
    inactive.is_active = False
    on_holiday.time_off = [AgentTimeOff(starts_on=date(2024, 3, 4), ends_on=date(2024, 3, 4))]
    # 09:00-18:00 in Vladivostok (UTC+10) is over by 12:00 UTC.
    off_shift.timezone = "Asia/Vladivostok"
    off_shift.shifts = weekday_shifts()
    for agent in (away, inactive, on_holiday, off_shift):
        agent.skills = ["billing"]
    session.flush()
    return [away, inactive, on_holiday, off_shift]


@pytest.mark.parametrize("strategy", [Strategy.ROUND_ROBIN, Strategy.LEAST_LOADED, Strategy.SKILLS])
def test_unavailable_members_are_never_chosen(
    session: Session, box: Mailbox, strategy: Strategy
) -> None:
    absent = _unavailable_members(session)
    [present] = make_agents(session, 1, prefix="present")
    present.shifts = weekday_shifts()  # on shift at 12:00 UTC
    team = make_team(session, [*absent, present], strategy)
    for _ in range(6):
        ticket = new_ticket(session, box, tags=["billing"])
        ticket.team_id = team.id
        assert assign(session, ticket) == present


@pytest.mark.parametrize("strategy", [Strategy.ROUND_ROBIN, Strategy.LEAST_LOADED, Strategy.SKILLS])
def test_nobody_available_means_the_ticket_waits(
    session: Session, box: Mailbox, strategy: Strategy
) -> None:
    team = make_team(session, _unavailable_members(session), strategy)
    ticket = new_ticket(session, box, tags=["billing"])
    assert (
        assign_ticket(session, ticket=ticket, actor=SYSTEM, team_id=team.id, now=MONDAY_NOON)
        is None
    )
    assert ticket.team_id == team.id
    assert ticket.assignee_id is None
    assert ticket.awaiting_assignment


def test_a_manual_team_never_assigns_nor_waits(session: Session, box: Mailbox) -> None:
    a, b = make_agents(session, 2)
    team = make_team(session, [a, b], Strategy.MANUAL)
    ticket = new_ticket(session, box)
    assert assign_ticket(session, ticket=ticket, actor=SYSTEM, team_id=team.id) is None
    assert ticket.team_id == team.id
    assert ticket.assignee_id is None
    assert not ticket.awaiting_assignment
    assert [e.field for e in events(session, ticket, "team")] == ["team"]
    assert events(session, ticket, "assignment_waiting") == []
    assert choose_agent(session, team=team, ticket=ticket, now=MONDAY_NOON) is None


def test_moving_a_waiting_ticket_to_a_manual_team_ends_its_wait(
    session: Session, box: Mailbox
) -> None:
    [a] = make_agents(session, 1)
    a.away = True
    automatic = make_team(session, [a], Strategy.ROUND_ROBIN, name="Auto")
    manual = make_team(session, [a], Strategy.MANUAL, name="Manual")
    ticket = new_ticket(session, box)
    assert assign_ticket(session, ticket=ticket, actor=SYSTEM, team_id=automatic.id) is None
    assert ticket.awaiting_assignment
    assert assign_ticket(session, ticket=ticket, actor=SYSTEM, team_id=manual.id) is None
    assert not ticket.awaiting_assignment
    moves = [(e.old_value, e.new_value) for e in events(session, ticket, "team")]
    assert moves == [(None, automatic.id), (automatic.id, manual.id)]


def test_an_unknown_team_is_refused(session: Session, box: Mailbox) -> None:
    ticket = new_ticket(session, box)
    with pytest.raises(NotFound):
        assign_ticket(session, ticket=ticket, actor=SYSTEM, team_id=424242)
    assert ticket.team_id is None


def test_assignment_leaves_events_and_queues_the_label_push(session: Session, box: Mailbox) -> None:
    a, b = make_agents(session, 2)
    team = make_team(session, [a, b], Strategy.ROUND_ROBIN)
    ticket = new_ticket(session, box, thread="thread-1")
    ticket.threads[0].labels_dirty = False
    session.flush()
    rule = Actor(kind="rule", id=7)  # type: ignore[arg-type]
    version = ticket.version
    assert assign_ticket(session, ticket=ticket, actor=rule, team_id=team.id, now=MONDAY_NOON) == a
    # One write of the ticket (team, assignee and flag together): one version step for clients.
    assert ticket.version == version + 1
    [team_event] = events(session, ticket, "team")
    assert (team_event.old_value, team_event.new_value) == (None, team.id)
    [assignee_event] = events(session, ticket, "assignee")
    assert (assignee_event.old_value, assignee_event.new_value) == (None, a.email)
    assert (assignee_event.actor_kind, assignee_event.actor_id) == ("rule", 7)
    thread = session.execute(
        select(TicketThread).where(TicketThread.ticket_id == ticket.id)
    ).scalar_one()
    assert thread.labels_dirty
    # What the API shows is the new assignee.
    shown = tickets.get_ticket(session, ticket.id)
    assert shown.assignee is not None
    assert shown.assignee.id == a.id


def test_an_assignment_from_a_fresh_session_reads_what_the_session_does_not_hold(
    session: Session, box: Mailbox
) -> None:
    """Tags, time off and the holder's address come from the database when the session holds
    nothing of the ticket or the team; the team's turn is written and the session's copy is
    current, not left to be written again."""
    a, b, c = make_agents(session, 3)
    a.skills, b.skills, c.skills = ["billing"], ["billing"], ["delivery"]
    b.time_off = [AgentTimeOff(starts_on=date(2024, 3, 3), ends_on=date(2024, 3, 5))]
    team = make_team(session, [a, b, c], Strategy.SKILLS)
    ticket = new_ticket(session, box, tags=["Billing"], thread="thread-9")
    ticket.threads[0].labels_dirty = False
    session.flush()
    ticket_id, team_id = ticket.id, team.id
    session.expunge_all()

    fresh = session.get_one(Ticket, ticket_id)
    first = assign_ticket(session, ticket=fresh, actor=SYSTEM, team_id=team_id, now=MONDAY_NOON)
    assert first is not None
    assert first.id == a.id
    session.expunge_all()
    fresh = session.get_one(Ticket, ticket_id)
    # a excluded, b on time off: nobody else has the skill, so the generalist c.
    again = assign_ticket(session, ticket=fresh, actor=SYSTEM, now=MONDAY_NOON, exclude={a.id})
    assert again is not None
    assert again.id == c.id
    changes = select(Event.field, Event.old_value, Event.new_value).where(
        Event.ticket_id == ticket_id, Event.field.in_(["team", "assignee"])
    )
    assert [tuple(row) for row in session.execute(changes.order_by(Event.id))] == [
        ("team", None, team_id),
        ("assignee", None, a.email),
        ("assignee", a.email, c.email),
    ]
    held = session.get_one(Team, team_id)
    assert held.last_assigned_agent_id == c.id
    assert not session.dirty
    stored = select(Team.last_assigned_agent_id).where(Team.id == team_id)
    assert session.execute(stored).scalar_one() == c.id
    dirty = select(TicketThread.labels_dirty).where(TicketThread.ticket_id == ticket_id)
    assert session.execute(dirty).scalar_one() is True
    assert (
        fresh.version
        == session.execute(select(Ticket.version).where(Ticket.id == ticket_id)).scalar_one()
    )


def test_reassigning_with_exclude_passes_the_ticket_on(session: Session, box: Mailbox) -> None:
    a, b, c = make_agents(session, 3)
    team = make_team(session, [a, b, c], Strategy.LEAST_LOADED)
    give(session, box, b, Status.OPEN)
    ticket = new_ticket(session, box)
    assert (
        assign_ticket(session, ticket=ticket, actor=SYSTEM, team_id=team.id, now=MONDAY_NOON) == a
    )
    # a is excluded; the ticket itself does not count in anyone's load: c (0) before b (1).
    again = assign_ticket(session, ticket=ticket, actor=SYSTEM, now=MONDAY_NOON, exclude={a.id})
    assert again == c
    assert ticket.assignee_id == c.id
    assignee_events = events(session, ticket, "assignee")
    assert [(e.old_value, e.new_value) for e in assignee_events] == [
        (None, a.email),
        (a.email, c.email),
    ]


def test_a_reassignment_that_finds_nobody_leaves_the_ticket_with_its_holder(
    session: Session, box: Mailbox
) -> None:
    holder, other = make_agents(session, 2)
    team = make_team(session, [holder, other], Strategy.ROUND_ROBIN)
    ticket = new_ticket(session, box)
    assert assign_ticket(session, ticket=ticket, actor=SYSTEM, team_id=team.id) == holder
    other.away = True
    again = assign_ticket(session, ticket=ticket, actor=SYSTEM, exclude={holder.id})
    assert again is None
    assert ticket.assignee_id == holder.id
    assert not ticket.awaiting_assignment
    assert events(session, ticket, "assignment_waiting") == []


def test_a_finished_ticket_is_not_assigned(session: Session, box: Mailbox) -> None:
    [a] = make_agents(session, 1)
    team = make_team(session, [a], Strategy.ROUND_ROBIN)
    ticket = new_ticket(session, box)
    ticket.status = Status.CLOSED
    assert assign_ticket(session, ticket=ticket, actor=SYSTEM, team_id=team.id) is None
    assert ticket.assignee_id is None
    assert not ticket.awaiting_assignment


def test_one_decision_is_a_handful_of_queries(session: Session, box: Mailbox) -> None:
    members = make_agents(session, 4)
    for member in members:
        member.shifts = weekday_shifts()
    team = make_team(session, members, Strategy.LEAST_LOADED, cap=50)
    ticket = new_ticket(session, box, thread="t-1")
    ticket.team_id = team.id
    session.flush()
    session.expunge_all()  # nothing cached: as in a fresh request
    ticket = tickets.get_ticket(session, ticket.id)
    with count_queries(session) as statements:
        assert assign(session, ticket) is not None
    # Team (locked), members, their shifts, their time off, the loads; then the ticket's UPDATE
    # and the event's INSERT.
    assert len(statements) <= 8, statements


# -- waiting tickets ----------------------------------------------------------------------------


def test_waiting_tickets_go_out_when_someone_comes_on_shift(session: Session, box: Mailbox) -> None:
    early, late = make_agents(session, 2)
    early.shifts = weekday_shifts("09:00", "17:00")
    late.shifts = weekday_shifts("10:00", "18:00")
    team = make_team(session, [early, late], Strategy.ROUND_ROBIN, cap=1)
    monday_evening = datetime(2024, 3, 4, 20, tzinfo=UTC)
    waiting = []
    for i in range(3):
        ticket = new_ticket(session, box, subject=f"evening {i}")
        ticket.created_at = monday_evening + timedelta(minutes=i)
        assert (
            assign_ticket(session, ticket=ticket, actor=SYSTEM, team_id=team.id, now=monday_evening)
            is None
        )
        waiting.append(ticket)
    assert all(t.awaiting_assignment for t in waiting)

    # Still night: nobody.
    assert assign_waiting(session, now=datetime(2024, 3, 5, 8, 59, tzinfo=UTC)) == 0
    # 09:00: early comes on shift and takes the oldest (cap 1).
    assert assign_waiting(session, now=datetime(2024, 3, 5, 9, tzinfo=UTC)) == 1
    assert waiting[0].assignee_id == early.id
    assert not waiting[0].awaiting_assignment
    # 10:00: late takes the next; the third still waits (both at the cap).
    assert assign_waiting(session, now=datetime(2024, 3, 5, 10, tzinfo=UTC)) == 1
    assert waiting[1].assignee_id == late.id
    assert waiting[2].assignee_id is None
    assert waiting[2].awaiting_assignment
    [evt] = events(session, waiting[0], "assignee")
    assert evt.actor_kind == "system"
    assert evt.new_value == early.email
    # early resolves a ticket: room under the cap.
    waiting[0].status = Status.RESOLVED
    assert assign_waiting(session, now=datetime(2024, 3, 5, 11, tzinfo=UTC)) == 1
    assert waiting[2].assignee_id == early.id


def test_assign_waiting_is_limited_to_a_mailbox(session: Session, box: Mailbox) -> None:
    other = mailboxes.create_mailbox(session, email="sales@shop.test", name="Sales")
    [a] = make_agents(session, 1)
    a.away = True
    team = make_team(session, [a], Strategy.ROUND_ROBIN)
    here, there = new_ticket(session, box), new_ticket(session, other)
    for ticket in (here, there):
        assign_ticket(session, ticket=ticket, actor=SYSTEM, team_id=team.id, now=MONDAY_NOON)
    a.away = False
    assert assign_waiting(session, mailbox_id=other.id, now=MONDAY_NOON) == 1
    assert there.assignee_id == a.id
    assert here.assignee_id is None
    assert assign_waiting(session, now=MONDAY_NOON, limit=5) == 1
    assert here.assignee_id == a.id


def test_assign_waiting_drops_tickets_that_no_longer_wait(session: Session, box: Mailbox) -> None:
    a, b = make_agents(session, 2)
    a.away = b.away = True
    team = make_team(session, [a, b], Strategy.ROUND_ROBIN)
    closed, taken, manual = (new_ticket(session, box) for _ in range(3))
    for ticket in (closed, taken, manual):
        assign_ticket(session, ticket=ticket, actor=SYSTEM, team_id=team.id, now=MONDAY_NOON)
        assert ticket.awaiting_assignment
    closed.status = Status.CLOSED
    # A person assigns one by hand: the flag goes with it (app/tickets/service.py update_ticket).
    lead = Actor(kind="agent", id=b.id, role="lead")  # type: ignore[arg-type]
    tickets.update_ticket(
        session,
        ticket_id=taken.id,
        update=TicketUpdate(version=taken.version, assignee=b.email),
        actor=lead,
    )
    assert not taken.awaiting_assignment
    manual_team = make_team(session, [a], Strategy.MANUAL, name="Manual")
    manual.team_id = manual_team.id
    a.away = b.away = False
    session.flush()
    assert assign_waiting(session, now=MONDAY_NOON) == 0
    session.expire_all()
    assert not any(t.awaiting_assignment for t in (closed, taken, manual))
    assert closed.assignee_id is None
    assert manual.assignee_id is None


def test_default_team_is_the_mailbox_s_lowest_id_team(session: Session, box: Mailbox) -> None:
    other = mailboxes.create_mailbox(session, email="sales@shop.test", name="Sales")
    assert default_team_id(session, mailbox_id=box.id) is None
    first = make_team(session, [], Strategy.ROUND_ROBIN, mailbox=box, name="First")
    make_team(session, [], Strategy.MANUAL, mailbox=box, name="Second")
    make_team(session, [], Strategy.MANUAL, name="Nowhere")
    assert default_team_id(session, mailbox_id=box.id) == first.id
    assert default_team_id(session, mailbox_id=other.id) is None
