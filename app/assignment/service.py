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
from datetime import date, datetime, timedelta

from sqlalchemy import (
    ColumnElement,
    Date,
    Integer,
    ScalarSelect,
    bindparam,
    func,
    inspect,
    literal,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.util import identity_key

from app.agents.models import Agent, AgentShift, AgentTimeOff, Team, team_members
from app.assignment.availability import on_duty
from app.db.base import utcnow
from app.errors import NotFound
from app.tickets.events import Actor, record_event
from app.tickets.models import Status, Ticket, TicketTag, TicketThread


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
    return _decide(session, team=locked, ticket=ticket, now=now, exclude=exclude)


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
    if team is not None and automatic and ticket.status in RUNNING:
        agent = _decide(session, team=team, ticket=ticket, now=now, exclude=exclude)
    new_assignee = agent is not None and agent.id != ticket.assignee_id
    old_assignee = None
    if new_assignee and ticket.assignee_id is not None:
        old_assignee = session.get(Agent, ticket.assignee_id)
    if new_assignee:
        _mark_labels_dirty(session, ticket)

    changed = moving or new_assignee
    if moving:
        record_event(
            session, ticket_id=ticket.id, actor=actor, field="team", old=ticket.team_id, new=team_id
        )
        ticket.team_id = team_id
    if agent is not None and new_assignee:
        record_event(
            session,
            ticket_id=ticket.id,
            actor=actor,
            field="assignee",
            old=old_assignee.email if old_assignee is not None else None,
            new=agent.email,
        )
        ticket.assignee_id = agent.id
        _refresh_assignee(ticket, agent)
    # Waiting: an automatic team found nobody for a running unassigned ticket (a reassignment
    # that found nobody leaves the ticket with its holder); anything else ends a wait.
    waits = agent is None and automatic and ticket.status in RUNNING and ticket.assignee_id is None
    if team is not None and waits and not ticket.awaiting_assignment:
        record_event(
            session,
            ticket_id=ticket.id,
            actor=actor,
            field="assignment_waiting",
            new={"team_id": team.id},
        )
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
    session: Session, *, team: Team, ticket: Ticket, now: datetime, exclude: Collection[int]
) -> Agent | None:
    """choose_agent's body, for a team row this transaction has locked already."""
    if team.assignment_strategy == Strategy.MANUAL:
        return None
    # Read after the lock: the loads include what the previous holder assigned.
    members, loads = _available_members(
        session, team_id=team.id, ticket=ticket, now=now, exclude=exclude
    )
    if not members:
        return None
    cap = team.agent_cap
    candidates = [m for m in members if cap is None or loads.get(m.id, 0) < cap]
    if not candidates:
        return None
    chosen = _pick(
        session,
        strategy=team.assignment_strategy,
        team=team,
        ticket=ticket,
        candidates=candidates,
        loads=loads,
    )
    if team.last_assigned_agent_id != chosen.id:
        team.last_assigned_agent_id = chosen.id
    return chosen


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
_MEMBERS = (
    select(Agent, _load_of(Agent.id))
    .join(team_members, team_members.c.agent_id == Agent.id)
    .where(
        team_members.c.team_id == bindparam("team_id"),
        Agent.is_active.is_(True),
        Agent.away.is_(False),
    )
    .order_by(Agent.id)
)
_MEMBERS_EXCEPT = _MEMBERS.where(Agent.id.not_in(bindparam("exclude", expanding=True)))

# Shifts and recent time off as plain tuples, in one query: a team's week is a hundred-odd
# shift rows, and an ORM object for each would cost more than the rest of the decision.
_NO_DAY = literal(None, Date())
_NO_MINUTE = literal(None, Integer())
_ROTA = union_all(
    select(
        AgentShift.agent_id,
        AgentShift.weekday,
        AgentShift.start_minute,
        AgentShift.end_minute,
        _NO_DAY,
        _NO_DAY,
    ).where(AgentShift.agent_id.in_(bindparam("agent_ids", expanding=True))),
    select(
        AgentTimeOff.agent_id,
        _NO_MINUTE,
        _NO_MINUTE,
        _NO_MINUTE,
        AgentTimeOff.starts_on,
        AgentTimeOff.ends_on,
    ).where(
        AgentTimeOff.agent_id.in_(bindparam("agent_ids", expanding=True)),
        AgentTimeOff.ends_on >= bindparam("recent", type_=Date()),
    ),
)


def _available_members(
    session: Session, *, team_id: int, ticket: Ticket, now: datetime, exclude: Collection[int]
) -> tuple[list[Agent], dict[int, int]]:
    """The team's members available at ``now``, and each one's load (see _load_of)."""
    if exclude:
        params = {"team_id": team_id, "exclude": list(exclude)}
        rows = session.execute(_MEMBERS_EXCEPT, params).all()
    else:
        rows = session.execute(_MEMBERS, {"team_id": team_id}).all()
    if not rows:
        return [], {}
    loads = {agent.id: load for agent, load in rows}
    # A reassignment must not weigh against the ticket's current holder.
    if ticket.assignee_id in loads and ticket.id is not None and ticket.status in RUNNING:
        loads[ticket.assignee_id] -= 1
    shifts: dict[int, list[tuple[int, int, int]]] = {}
    time_off: dict[int, list[tuple[date, date]]] = {}
    # Time off that ended before yesterday (in any time zone) cannot cover today.
    recent = (now - timedelta(days=2)).date()
    rota = session.execute(_ROTA, {"agent_ids": list(loads), "recent": recent}).all()
    for agent_id, weekday, start, end, starts_on, ends_on in rota:
        if weekday is not None:
            shifts.setdefault(agent_id, []).append((weekday, start, end))
        else:
            time_off.setdefault(agent_id, []).append((starts_on, ends_on))
    available = [
        agent
        for agent, _ in rows
        if on_duty(
            timezone=agent.timezone,
            shifts=shifts.get(agent.id, ()),
            time_off=time_off.get(agent.id, ()),
            now=now,
        )
    ]
    return available, loads


def _pick(
    session: Session,
    *,
    strategy: str,
    team: Team,
    ticket: Ticket,
    candidates: Sequence[Agent],
    loads: dict[int, int],
) -> Agent:
    if strategy == Strategy.ROUND_ROBIN:
        return _next_in_turn(candidates, team.last_assigned_agent_id)
    if strategy == Strategy.SKILLS:
        tags = {t.lower() for t in _ticket_tags(session, ticket)}
        scores = {c.id: len(tags & {s.lower() for s in c.skills or ()}) for c in candidates}
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


def _ticket_tags(session: Session, ticket: Ticket) -> list[str]:
    if "tag_rows" not in inspect(ticket).unloaded:
        return ticket.tags
    stmt = select(TicketTag.tag).where(TicketTag.ticket_id == ticket.id)
    return list(session.execute(stmt).scalars())


def _refresh_assignee(ticket: Ticket, agent: Agent) -> None:
    # Keep a loaded ``assignee`` consistent with the new id (it is lazy="raise" otherwise).
    if "assignee" not in inspect(ticket).unloaded:
        ticket.assignee = agent


def _mark_labels_dirty(session: Session, ticket: Ticket) -> None:
    """The assignee shows as a Gmail label: queue the ticket's threads for a label push."""
    if "threads" not in inspect(ticket).unloaded:
        for thread in ticket.threads:
            thread.labels_dirty = True
        return
    # A Core statement on the connection: no autoflush, so the ticket and the team are still
    # written together in the caller's one flush.
    threads = TicketThread.__table__
    session.connection().execute(
        update(threads).where(threads.c.ticket_id == ticket.id).values(labels_dirty=True)
    )


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
