"""Assignment under concurrency, on PostgreSQL: many transactions deciding for one team at once.

Each thread is a separate session and transaction, as concurrent syncs and requests are. The team
row lock (app/assignment/service.py) must make round-robin exact and the cap unbreakable; without
it, concurrent decisions read the same turn and the same loads and pile onto one agent.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.agents.models import Agent, Team
from app.assignment.service import Strategy, assign_ticket, assign_waiting
from app.db.session import Database
from app.mailboxes import service as mailboxes
from app.tickets import service as tickets
from app.tickets.events import Actor
from app.tickets.models import Event, Ticket
from tests.test_assignment import make_agents, make_team, new_ticket

THREADS = 16


@pytest.fixture(autouse=True)
def _postgres_only(is_postgres: bool) -> None:
    if not is_postgres:
        pytest.skip(
            "concurrent transactions need a server database: the fairness rests on PostgreSQL's "
            "row lock on the team (SQLite lets one transaction write at a time anyway)"
        )


def _setup(
    database: Database, strategy: Strategy, *, tickets_count: int, cap: int | None = None
) -> tuple[int, list[int], list[int]]:
    """A team of four agents available at all hours and ``tickets_count`` new tickets."""
    with database.unit_of_work() as s:
        box = mailboxes.create_mailbox(s, email="support@shop.test", name="Shop")
        agents = make_agents(s, 4)
        team = make_team(s, agents, strategy, cap=cap, mailbox=box)
        ticket_ids = [new_ticket(s, box, subject=f"#{i}").id for i in range(tickets_count)]
        return team.id, [a.id for a in agents], ticket_ids


def _concurrently(
    work: Callable[[Session, int], object], items: list[int], database: Database
) -> list[object]:
    """``work(session, item)`` for every item, THREADS transactions at a time, all threads
    released together."""
    start = threading.Barrier(THREADS)
    slices = [items[i::THREADS] for i in range(THREADS)]

    def run(mine: list[int]) -> list[object]:
        start.wait()
        results = []
        for item in mine:
            with database.unit_of_work() as s:
                results.append(work(s, item))
        return results

    with ThreadPoolExecutor(THREADS) as pool:
        return [r for chunk in pool.map(run, slices) for r in chunk]


def _assign_new(team_id: int) -> Callable[[Session, int], int | None]:
    def work(s: Session, ticket_id: int) -> int | None:
        if ticket_id % 2:
            # Half the callers hold the team already (as the rules engine may): the lock is
            # then a refresh of the loaded row, and must serialise just the same.
            s.get(Team, team_id)
        ticket = tickets.get_ticket(s, ticket_id)
        agent = assign_ticket(s, ticket=ticket, actor=Actor.system(), team_id=team_id)
        return agent.id if agent else None

    return work


def _assignee_events_per_ticket(s: Session, ticket_ids: list[int]) -> Counter[int]:
    stmt = select(Event.ticket_id).where(Event.field == "assignee", Event.ticket_id.in_(ticket_ids))
    return Counter(s.execute(stmt).scalars())


def _running_load(s: Session, agent_ids: list[int]) -> dict[int, int]:
    stmt = (
        select(Ticket.assignee_id, func.count())
        .where(Ticket.assignee_id.in_(agent_ids))
        .group_by(Ticket.assignee_id)
    )
    return {agent_id: count for agent_id, count in s.execute(stmt)}


def test_round_robin_stays_fair_with_200_tickets_at_once(committed_db: Database) -> None:
    team_id, agent_ids, ticket_ids = _setup(committed_db, Strategy.ROUND_ROBIN, tickets_count=200)
    chosen = _concurrently(_assign_new(team_id), ticket_ids, committed_db)

    assert None not in chosen
    with committed_db.session() as s:
        assignees = dict(
            s.execute(select(Ticket.id, Ticket.assignee_id).where(Ticket.id.in_(ticket_ids))).all()
        )
        assert all(assignees[t] is not None for t in ticket_ids)
        # Exactly one assignment per ticket.
        assert _assignee_events_per_ticket(s, ticket_ids) == Counter(dict.fromkeys(ticket_ids, 1))
        per_agent = Counter(assignees.values())
    assert set(per_agent) == set(agent_ids)
    assert max(per_agent.values()) - min(per_agent.values()) <= 1, per_agent
    assert sorted(per_agent.values()) == [50, 50, 50, 50]


def test_least_loaded_never_exceeds_the_cap_at_once(committed_db: Database) -> None:
    cap = 10
    team_id, agent_ids, ticket_ids = _setup(
        committed_db, Strategy.LEAST_LOADED, tickets_count=60, cap=cap
    )
    chosen = _concurrently(_assign_new(team_id), ticket_ids, committed_db)

    # The loads only grow during the run: the final load is the highest there ever was.
    with committed_db.session() as s:
        loads = _running_load(s, agent_ids)
        waiting = s.scalar(
            select(func.count()).where(Ticket.id.in_(ticket_ids), Ticket.awaiting_assignment)
        )
        assert _assignee_events_per_ticket(s, ticket_ids) == Counter(
            {t: 1 for t, a in zip(ticket_ids, _ordered(chosen, ticket_ids), strict=True) if a}
        )
    assert loads == dict.fromkeys(agent_ids, cap)
    assert Counter(c is None for c in chosen) == {False: 40, True: 20}
    assert waiting == 20


def _ordered(chosen: list[object], ticket_ids: list[int]) -> list[object]:
    """``_concurrently`` returns results slice by slice: back to the items' order."""
    slices = [ticket_ids[i::THREADS] for i in range(THREADS)]
    order = [t for chunk in slices for t in chunk]
    by_ticket = dict(zip(order, chosen, strict=True))
    return [by_ticket[t] for t in ticket_ids]


def test_concurrent_passes_over_waiting_tickets_assign_each_once(committed_db: Database) -> None:
    """The worker and requests (an agent back from away) run assign_waiting at the same time:
    every waiting ticket is assigned once, and the turn stays fair."""
    team_id, agent_ids, ticket_ids = _setup(committed_db, Strategy.ROUND_ROBIN, tickets_count=100)
    with committed_db.unit_of_work() as s:
        for agent in s.execute(select(Agent).where(Agent.id.in_(agent_ids))).scalars():
            agent.away = True
        for ticket_id in ticket_ids:
            ticket = tickets.get_ticket(s, ticket_id)
            assert assign_ticket(s, ticket=ticket, actor=Actor.system(), team_id=team_id) is None
    with committed_db.unit_of_work() as s:
        for agent in s.execute(select(Agent).where(Agent.id.in_(agent_ids))).scalars():
            agent.away = False

    counts = _concurrently(
        lambda s, _i: assign_waiting(s, limit=30), list(range(THREADS * 2)), committed_db
    )
    assert sum(counts) == 100  # type: ignore[arg-type]
    with committed_db.session() as s:
        assert _assignee_events_per_ticket(s, ticket_ids) == Counter(dict.fromkeys(ticket_ids, 1))
        loads = _running_load(s, agent_ids)
    assert sorted(loads.values()) == [25, 25, 25, 25]
