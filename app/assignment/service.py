"""Which member of a team gets a ticket, and the tickets that wait because nobody could.

Strategies (``Team.assignment_strategy``):

- ``manual``: never assigned automatically.
- ``round_robin``: the next available member after ``Team.last_assigned_agent_id`` in id order.
- ``least_loaded``: the available member with the fewest running tickets (new, open, pending).
- ``skills``: the members whose skills share most of the ticket's tags, then the least loaded of
  them; when no available member has a matching skill, the least loaded available member (a
  ticket is better answered by a generalist now than by a specialist after the weekend).

Every strategy picks among members available now (app/assignment/availability.py) and below
``Team.agent_cap`` running tickets; ties go to the next member in round-robin order after the
last one who got a ticket, so equal loads rotate instead of always favouring the lowest id.

Concurrency: the decision locks the team row (``FOR NO KEY UPDATE``, see ``_lock_team``) before
it counts loads, so on PostgreSQL two decisions for one team run one after the other, the second
seeing the first's assignment (under READ COMMITTED each statement after the lock is granted sees
what the first committed). The lock lasts until the
caller's transaction ends, which keeps the cap and the round-robin turn exact under concurrency.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Date,
    Executable,
    Insert,
    ScalarSelect,
    String,
    Update,
    bindparam,
    cast,
    func,
    insert,
    inspect,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, aliased, selectinload
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from app.agents.models import Agent, AgentShift, AgentTimeOff, Team, team_members
from app.assignment.availability import on_duty
from app.db.base import utcnow
from app.errors import NotFound
from app.tickets.events import Actor
from app.tickets.models import Event, Status, Ticket, TicketTag, TicketThread


class Strategy(enum.StrEnum):
    MANUAL = "manual"
    ROUND_ROBIN = "round_robin"
    LEAST_LOADED = "least_loaded"
    SKILLS = "skills"


# The statuses that count as an agent's load (and that a waiting ticket must still be in).
RUNNING = (Status.NEW, Status.OPEN, Status.PENDING)


def choose_agent(
    session: Session,
    *,
    team: Team,
    ticket: Ticket,
    now: datetime,
    exclude: Collection[int] = (),
) -> Agent | None:
    """The member of ``team`` who should get ``ticket`` now, or None (manual team, or nobody
    available below the cap). Locks the team row until the transaction ends and records the
    round-robin turn on it: a caller that chooses is expected to assign."""
    locked = _lock_team(session, team.id)
    if locked is None:  # deleted meanwhile
        return None
    return _decide(session, team=locked, ticket=ticket, now=now, exclude=exclude)[0]


def assign_ticket(
    session: Session,
    *,
    ticket: Ticket,
    actor: Actor,
    team_id: int | None = None,
    now: datetime | None = None,
    exclude: Collection[int] = (),
) -> Agent | None:
    """Give ``ticket`` to a member of its team (``team_id``: move it to that team first).

    Returns the agent chosen; None for a manual team, a ticket without a team or no longer
    running, or when nobody is available (an unassigned ticket then waits:
    ``awaiting_assignment``; an assigned one stays with its holder). ``exclude``: agents not to
    choose (a reassignment excludes the current holder).
    """
    now = now or utcnow()
    target = team_id if team_id is not None else ticket.team_id
    # Locked first, before the ticket row names it: see _lock_team on the foreign-key lock.
    team = _lock_team(session, target) if target is not None else None
    if team_id is not None and team is None:
        raise NotFound(f"team {team_id} not found", code="team_not_found")
    moving = team_id is not None and team_id != ticket.team_id
    automatic = team is not None and team.assignment_strategy != Strategy.MANUAL
    # The decision's reads come before any change to the ticket, so that the ticket is written
    # once, in the flush at the end (each write of a ticket row bumps its version).
    agent = None
    read = None
    if team is not None and automatic and ticket.status in RUNNING:
        agent, read = _decide(
            session, team=team, ticket=ticket, now=now, exclude=exclude, record_turn=False
        )
    new_assignee = agent is not None and agent.id != ticket.assignee_id
    write = _Write(ticket_id=ticket.id, actor=actor)
    if new_assignee:
        if "threads" in inspect(ticket).unloaded:
            write.threads_dirty = True
        else:
            _mark_labels_dirty(ticket)
    if agent is not None and team is not None and team.last_assigned_agent_id != agent.id:
        write.turn = (team, agent.id)

    changed = moving or new_assignee
    if moving:
        write.event("team", old=ticket.team_id, new=team_id)
    if agent is not None and new_assignee:
        write.event("assignee", old=_holder_email(session, ticket, read), new=agent.email)
    # Waiting: an automatic team found nobody for a running unassigned ticket (a reassignment
    # that found nobody leaves the ticket with its holder); anything else ends a wait.
    waits = agent is None and automatic and ticket.status in RUNNING and ticket.assignee_id is None
    if team is not None and waits and not ticket.awaiting_assignment:
        write.event("assignment_waiting", new={"team_id": team.id})
    # Before the ticket changes: the statements go out on the connection, and nothing of the
    # ticket is flushed ahead of its one write below.
    write.execute(session)
    if moving:
        ticket.team_id = team_id
    if agent is not None and new_assignee:
        ticket.assignee_id = agent.id
        _refresh_assignee(ticket, agent)
    if ticket.awaiting_assignment != waits:
        ticket.awaiting_assignment = waits
        changed = True
    if changed:
        ticket.updated_at = utcnow()
    session.flush()
    return agent


def assign_waiting(
    session: Session,
    *,
    mailbox_id: int | None = None,
    now: datetime | None = None,
    limit: int = 200,
    team_ids: Collection[int] | None = None,
) -> int:
    """Assign up to ``limit`` tickets waiting for somebody available, each team's oldest first.
    Returns how many were assigned.

    Teams are handled in id order, so two callers lock team rows in the same order and never
    deadlock on each other. Under a team's lock its waiting tickets are read afresh (what another
    caller assigned meanwhile is gone); a team that found nobody is left at its first failure,
    as its members' loads only grow during this call.
    """
    now = now or utcnow()
    _clear_stale_waiting(session, mailbox_id=mailbox_id)
    waiting = [
        Ticket.awaiting_assignment.is_(True),
        Ticket.assignee_id.is_(None),
        Ticket.status.in_(RUNNING),
    ]
    if mailbox_id is not None:
        waiting.append(Ticket.mailbox_id == mailbox_id)
    teams_stmt = select(Ticket.team_id).where(*waiting, Ticket.team_id.is_not(None)).distinct()
    if team_ids is not None:
        teams_stmt = teams_stmt.where(Ticket.team_id.in_(list(team_ids)))
    found = sorted(t for t in session.execute(teams_stmt).scalars() if t is not None)
    assigned = 0
    handled = 0
    actor = Actor.system()
    for team_id in found:
        if handled >= limit:
            break
        if _lock_team(session, team_id) is None:
            continue
        # SKIP LOCKED leaves alone a ticket that someone is editing right now (its UPDATE would
        # fail the version check after their commit); the next pass takes it.
        rows = session.execute(
            select(Ticket)
            .where(*waiting, Ticket.team_id == team_id)
            .order_by(Ticket.created_at, Ticket.id)
            .limit(limit - handled)
            .options(selectinload(Ticket.threads), selectinload(Ticket.tag_rows))
            .with_for_update(skip_locked=True, of=Ticket)
            .execution_options(populate_existing=True)
        ).scalars()
        for ticket in list(rows):
            handled += 1
            if assign_ticket(session, ticket=ticket, actor=actor, now=now) is None:
                break
            assigned += 1
    return assigned


def assign_waiting_for_agent(
    session: Session, *, agent_id: int, now: datetime | None = None
) -> int:
    """The agent may have become available (back from away, a new rota, time off removed): the
    tickets waiting in their teams are assigned in the same request, not at the worker's next
    pass."""
    team_ids = (
        session.execute(select(team_members.c.team_id).where(team_members.c.agent_id == agent_id))
        .scalars()
        .all()
    )
    if not team_ids:
        return 0
    return assign_waiting(session, now=now, team_ids=team_ids)


def default_team_id(session: Session, *, mailbox_id: int) -> int | None:
    """The team that gets a mailbox's new tickets: the lowest-id team bound to the mailbox."""
    stmt = select(Team.id).where(Team.mailbox_id == mailbox_id).order_by(Team.id).limit(1)
    return session.execute(stmt).scalar_one_or_none()


# -- internals ------------------------------------------------------------------------------------


def _decide(
    session: Session,
    *,
    team: Team,
    ticket: Ticket,
    now: datetime,
    exclude: Collection[int],
    record_turn: bool = True,
) -> tuple[Agent | None, _Members | None]:
    """choose_agent's body, for a team row this transaction has locked already; also what it
    read of the members. ``record_turn=False``: the caller writes the round-robin turn."""
    if team.assignment_strategy == Strategy.MANUAL:
        return None, None
    # Read after the lock, in a statement of its own: under READ COMMITTED its snapshot is taken
    # once the lock is granted, so the loads include what the previous holder assigned (a read
    # in the locking statement itself would see the snapshot from before the wait).
    read = _available_members(session, team_id=team.id, ticket=ticket, now=now, exclude=exclude)
    if not read.available:
        return None, read
    cap = team.agent_cap
    loads = read.loads
    candidates = [m for m in read.available if cap is None or loads.get(m.id, 0) < cap]
    if not candidates:
        return None, read
    chosen = _pick(
        strategy=team.assignment_strategy,
        team=team,
        ticket=ticket,
        candidates=candidates,
        loads=loads,
        tags=read.tags,
    )
    if record_turn and team.last_assigned_agent_id != chosen.id:
        team.last_assigned_agent_id = chosen.id
    return chosen, read


# What a decision reads of its team: re-read under the lock, as the previous holder left it.
_DECISION_FIELDS = ("assignment_strategy", "agent_cap", "last_assigned_agent_id")


def _lock_team(session: Session, team_id: int) -> Team | None:
    """Lock the team row until the transaction ends; None if it no longer exists.

    FOR NO KEY UPDATE, not FOR UPDATE: decisions still queue on each other, but not on the FOR
    KEY SHARE lock that PostgreSQL's foreign-key check takes on the team row when a ticket row
    naming the team is written. With FOR UPDATE, two transactions that had each set a ticket's
    team_id would wait on each other's key-share lock: a deadlock (PostgreSQL docs, "Explicit
    Locking", conflicting row-level locks). SQLite ignores the clause; its transactions begin
    IMMEDIATE (app/db/session.py), which serialises writers anyway.
    """
    lock = {"key_share": True}
    known = session.identity_map.get(identity_key(Team, team_id))
    if known is not None:
        # Refresh only what the decision reads: the caller's loaded members stay loaded.
        session.flush()
        try:
            session.refresh(known, attribute_names=_DECISION_FIELDS, with_for_update=lock)
        except InvalidRequestError:  # deleted meanwhile
            return None
        return known
    return session.execute(_LOCK, {"team_id": team_id}).scalar_one_or_none()


_LOCK = select(Team).where(Team.id == bindparam("team_id")).with_for_update(key_share=True)


def _load_of(agent_id: ColumnElement[int]) -> ScalarSelect[int]:
    """An agent's running tickets (across all teams: an agent in two teams is one person),
    counted from the index ix_tickets_assignee_status_number alone."""
    return (
        select(func.count())
        .where(Ticket.assignee_id == agent_id, Ticket.status.in_(RUNNING))
        .scalar_subquery()
    )


# The decision's statements are built once: constructing them costs as much Python time as
# running them (benchmarks/triage.py).

# Separates aggregated values: tags are free text, so not a comma (shift and time-off values are
# digits, dates and colons only).
_UNIT = "\x1f"


class _IsoDay(FunctionElement[str]):
    """A date as 'YYYY-MM-DD' text whatever the server's DateStyle (PostgreSQL's plain cast
    follows DateStyle; SQLite stores dates as that text already)."""

    type = String()
    inherit_cache = True


@compiles(_IsoDay)
def _iso_day_default(element: _IsoDay, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS VARCHAR)"


@compiles(_IsoDay, "postgresql")
def _iso_day_postgresql(element: _IsoDay, compiler: SQLCompiler, **kw: Any) -> str:
    return f"to_char({compiler.process(element.clauses, **kw)}, 'YYYY-MM-DD')"


def _text(column: ColumnElement[Any]) -> ColumnElement[str]:
    return cast(column, String)


# Each member's week as "weekday:start:end,..." and time off that can still cover today (time off
# that ended before yesterday, in any time zone, cannot) as "first:last,...": read with the
# member row, not by a query per member or a second round trip; a team's week is a hundred-odd
# shift rows, and an ORM object for each would cost more than the rest of the decision.
_SHIFTS_OF = (
    select(
        func.aggregate_strings(
            _text(AgentShift.weekday)
            + ":"
            + _text(AgentShift.start_minute)
            + ":"
            + _text(AgentShift.end_minute),
            ",",
        )
    )
    .where(AgentShift.agent_id == Agent.id)
    .scalar_subquery()
)
_TIME_OFF_OF = (
    select(
        func.aggregate_strings(
            _IsoDay(AgentTimeOff.starts_on) + ":" + _IsoDay(AgentTimeOff.ends_on), ","
        )
    )
    .where(
        AgentTimeOff.agent_id == Agent.id,
        AgentTimeOff.ends_on >= bindparam("recent", type_=Date()),
    )
    .scalar_subquery()
)
# Not per member, but in the same statement: the ticket's tags (for the skills strategy) and its
# current holder's address (for the reassignment's event), each evaluated once.
_TAGS = (
    select(func.aggregate_strings(TicketTag.tag, _UNIT))
    .where(TicketTag.ticket_id == bindparam("ticket_id"))
    .scalar_subquery()
)
_Holder = aliased(Agent)
_HOLDER_EMAIL = select(_Holder.email).where(_Holder.id == bindparam("holder_id")).scalar_subquery()
_MEMBERS = (
    select(Agent, _load_of(Agent.id), _SHIFTS_OF, _TIME_OFF_OF, _TAGS, _HOLDER_EMAIL)
    .join(team_members, team_members.c.agent_id == Agent.id)
    .where(
        team_members.c.team_id == bindparam("team_id"),
        Agent.is_active.is_(True),
        Agent.away.is_(False),
    )
    .order_by(Agent.id)
)
_MEMBERS_EXCEPT = _MEMBERS.where(Agent.id.not_in(bindparam("exclude", expanding=True)))


@dataclass
class _Members:
    """What one statement read of a team under its lock (see _MEMBERS)."""

    available: list[Agent]
    loads: dict[int, int]
    # The ticket's tags, and its holder's email (None when unassigned): read with the members.
    tags: list[str] = field(default_factory=list)
    holder_email: str | None = None


def _shifts(text: str | None) -> list[tuple[int, int, int]]:
    if not text:
        return []
    out = []
    for item in text.split(","):
        weekday, start, end = item.split(":")
        out.append((int(weekday), int(start), int(end)))
    return out


def _days(text: str | None) -> list[tuple[date, date]]:
    if not text:
        return []
    out = []
    for item in text.split(","):
        first, last = item.split(":")
        out.append((date.fromisoformat(first), date.fromisoformat(last)))
    return out


def _available_members(
    session: Session, *, team_id: int, ticket: Ticket, now: datetime, exclude: Collection[int]
) -> _Members:
    """The team's members available at ``now``, and each one's load (see _load_of)."""
    params: dict[str, Any] = {
        "team_id": team_id,
        # Time off that ended before yesterday (in any time zone) cannot cover today.
        "recent": (now - timedelta(days=2)).date(),
        "ticket_id": ticket.id,
        "holder_id": ticket.assignee_id,
    }
    if exclude:
        params["exclude"] = list(exclude)
    rows = session.execute(_MEMBERS_EXCEPT if exclude else _MEMBERS, params).all()
    if not rows:
        return _Members([], {})
    loads = {agent.id: load for agent, load, *_ in rows}
    # A reassignment must not weigh against the ticket's current holder.
    if ticket.assignee_id in loads and ticket.id is not None and ticket.status in RUNNING:
        loads[ticket.assignee_id] -= 1
    available = [
        agent
        for agent, _, shifts, time_off, _, _ in rows
        if on_duty(
            timezone=agent.timezone, shifts=_shifts(shifts), time_off=_days(time_off), now=now
        )
    ]
    tags, holder_email = rows[0][4], rows[0][5]
    return _Members(available, loads, tags.split(_UNIT) if tags else [], holder_email)


def _pick(
    *,
    strategy: str,
    team: Team,
    ticket: Ticket,
    candidates: Sequence[Agent],
    loads: dict[int, int],
    tags: list[str],
) -> Agent:
    if strategy == Strategy.ROUND_ROBIN:
        return _next_in_turn(candidates, team.last_assigned_agent_id)
    if strategy == Strategy.SKILLS:
        # Tags added in this session and not yet flushed count too.
        wanted = {
            t.lower() for t in (tags if "tag_rows" in inspect(ticket).unloaded else ticket.tags)
        }
        scores = {c.id: len(wanted & {s.lower() for s in c.skills or ()}) for c in candidates}
        best = max(scores.values())
        if best > 0:
            candidates = [c for c in candidates if scores[c.id] == best]
    fewest = min(loads.get(c.id, 0) for c in candidates)
    tied = [c for c in candidates if loads.get(c.id, 0) == fewest]
    return _next_in_turn(tied, team.last_assigned_agent_id)


def _next_in_turn(candidates: Sequence[Agent], last_id: int | None) -> Agent:
    """The first candidate after ``last_id`` in id order, wrapping round."""
    ordered = sorted(candidates, key=lambda a: a.id)
    if last_id is not None:
        for agent in ordered:
            if agent.id > last_id:
                return agent
    return ordered[0]


_EVENTS = Event.__table__
_TEAMS = Team.__table__
_THREADS = TicketThread.__table__
_EVENT_COLUMNS = ("ticket_id", "actor_kind", "actor_id", "field", "old_value", "new_value", "at")


def _events_insert(count: int) -> Insert:
    """The events as one INSERT ... SELECT of UNION ALL rows, in order (ids follow the rows). A
    multi-row VALUES insert would be compiled afresh each time: SQLAlchemy does not cache it."""
    rows = [
        select(
            *(
                bindparam(f"e{i}_{name}", type_=_EVENTS.c[name].type).label(name)
                for name in _EVENT_COLUMNS
            )
        )
        for i in range(count)
    ]
    source = rows[0] if count == 1 else union_all(*rows)
    return insert(_EVENTS).from_select(list(_EVENT_COLUMNS), source)


_THREADS_DIRTY = (
    update(_THREADS)
    .where(_THREADS.c.ticket_id == bindparam("w_ticket_id"))
    .values(labels_dirty=True)
)
_TURN = (
    update(_TEAMS)
    .where(_TEAMS.c.id == bindparam("w_team_id"))
    .values(last_assigned_agent_id=bindparam("w_turn"), updated_at=bindparam("w_at"))
)
# Built once per shape: (threads, events, turn, one statement).
_WRITES: dict[tuple[bool, int, bool, bool], list[Executable]] = {}


@dataclass
class _Write:
    """What an assignment writes besides the ticket row: the audit events, the round-robin turn
    on the team, the threads' labels to push. Core statements on the connection (no ORM object
    per event, no autoflush); on PostgreSQL one statement, the others as data-modifying WITH
    queries (PostgreSQL docs, "WITH Queries", 7.8.4), so one round trip. The ticket row itself
    stays with the ORM, whose flush checks and bumps its version."""

    ticket_id: int
    actor: Actor
    events: list[dict[str, Any]] = field(default_factory=list)
    threads_dirty: bool = False
    # The team and the member whose turn it was.
    turn: tuple[Team, int] | None = None

    def event(self, name: str, *, old: Any = None, new: Any = None) -> None:
        self.events.append({"field": name, "old_value": old, "new_value": new})

    def execute(self, session: Session) -> None:
        params: dict[str, Any] = {}
        at = utcnow()
        for i, row in enumerate(self.events):
            row.update(
                ticket_id=self.ticket_id,
                actor_kind=self.actor.kind,
                actor_id=self.actor.id,
                at=at,
            )
            params.update({f"e{i}_{name}": row[name] for name in _EVENT_COLUMNS})
        if self.threads_dirty:
            params["w_ticket_id"] = self.ticket_id
        if self.turn is not None:
            params.update(w_team_id=self.turn[0].id, w_turn=self.turn[1], w_at=at)
        if not params:
            return
        connection = session.connection()
        together = connection.dialect.name == "postgresql"
        shape = (self.threads_dirty, len(self.events), self.turn is not None, together)
        statements = _WRITES.get(shape)
        if statements is None:
            statements = _WRITES[shape] = _write_statements(*shape)
        for statement in statements:
            connection.execute(statement, params)
        if self.turn is not None:
            # Written above: the session's copy is current, not a change to flush again.
            team, agent_id = self.turn
            set_committed_value(team, "last_assigned_agent_id", agent_id)
            set_committed_value(team, "updated_at", at)


def _write_statements(threads: bool, events: int, turn: bool, together: bool) -> list[Executable]:
    parts: list[Insert | Update] = []
    if threads:
        parts.append(_THREADS_DIRTY)
    if events:
        parts.append(_events_insert(events))
    if turn:
        parts.append(_TURN)
    if not together or len(parts) < 2:
        return list(parts)
    last = parts[-1]
    for index, part in enumerate(parts[:-1]):
        last = last.add_cte(part.cte(f"write_{index}"))
    return [last]


def _holder_email(session: Session, ticket: Ticket, read: _Members | None) -> str | None:
    """The address of the ticket's current holder, for the assignee event: from the decision's
    read, without a query of its own."""
    if ticket.assignee_id is None:
        return None
    if "assignee" not in inspect(ticket).unloaded and ticket.assignee is not None:
        return ticket.assignee.email
    if read is not None and read.holder_email is not None:
        return read.holder_email
    holder = session.get(Agent, ticket.assignee_id)
    return holder.email if holder is not None else None


def _refresh_assignee(ticket: Ticket, agent: Agent) -> None:
    # Keep a loaded ``assignee`` consistent with the new id (it is lazy="raise" otherwise).
    if "assignee" not in inspect(ticket).unloaded:
        ticket.assignee = agent


def _mark_labels_dirty(ticket: Ticket) -> None:
    """The assignee shows as a Gmail label: queue the ticket's loaded threads for a label push
    (unloaded ones are marked by _Write's statement, without loading them)."""
    for thread in ticket.threads:
        thread.labels_dirty = True


def _clear_stale_waiting(session: Session, *, mailbox_id: int | None) -> None:
    """Tickets flagged as waiting that no longer wait: assigned by hand or by a rule, resolved or
    closed, without a team, or whose team went manual. A flag only, so no version bump: an
    agent editing such a ticket is not sent a conflict for it."""
    manual_teams = select(Team.id).where(Team.assignment_strategy == Strategy.MANUAL)
    stmt = (
        update(Ticket)
        .where(
            Ticket.awaiting_assignment.is_(True),
            or_(
                Ticket.assignee_id.is_not(None),
                Ticket.status.not_in(RUNNING),
                Ticket.team_id.is_(None),
                Ticket.team_id.in_(manual_teams),
            ),
        )
        .values(awaiting_assignment=False)
        .execution_options(synchronize_session=False)
    )
    if mailbox_id is not None:
        stmt = stmt.where(Ticket.mailbox_id == mailbox_id)
    session.execute(stmt)
