"""Concurrent writers on a database that really commits: numbering, optimistic locking, upserts.

SQLite serialises writers (every transaction begins IMMEDIATE, busy timeout 30 s); PostgreSQL
runs them in parallel. The properties hold on both, so nothing here is skipped on either.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import func, select

from app.agents.models import Role
from app.customers.models import Customer
from app.customers.service import upsert_customer
from app.db.session import Database
from app.mailboxes import service as mailboxes
from app.mailboxes.models import Mailbox
from app.tickets import service as tickets
from app.tickets.events import Actor
from app.tickets.models import Ticket
from tests.conftest import LiveServer

T = TypeVar("T")


def run_together(n: int, work: Callable[[int], T]) -> list[T]:
    """Run ``work(0..n-1)`` on n threads released at the same instant; re-raise any failure."""
    barrier = threading.Barrier(n, timeout=30)

    def start(i: int) -> T:
        barrier.wait()
        return work(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        futures = [pool.submit(start, i) for i in range(n)]
        return [future.result(timeout=180) for future in futures]


@pytest.fixture
def shop_mailbox(committed_db: Database) -> Mailbox:
    with committed_db.unit_of_work() as s:
        return mailboxes.create_mailbox(s, email="support@shop.test", name="Shop Support")


def _create(database: Database, mailbox: Mailbox, customer: str, subject: str) -> int:
    with database.unit_of_work() as s:
        ticket = tickets.create_ticket(
            s, mailbox=mailbox, customer_email=customer, subject=subject, actor=Actor.system()
        )
        return ticket.number


def test_parallel_creation_numbers_are_unique_and_gapless(
    committed_db: Database, shop_mailbox: Mailbox
) -> None:
    """8 threads × 50 creations, one transaction each → exactly #1001..#1400."""
    threads, per_thread = 8, 50

    def create_many(i: int) -> list[int]:
        return [
            # A few shared customers: creators also race on the customer upsert.
            _create(committed_db, shop_mailbox, f"buyer{(i + k) % 3}@example.com", f"t{i}-{k}")
            for k in range(per_thread)
        ]

    numbers = [n for batch in run_together(threads, create_many) for n in batch]

    assert len(numbers) == threads * per_thread
    assert len(set(numbers)) == len(numbers), "a number was handed out twice"
    assert min(numbers) == 1001
    assert sorted(numbers) == list(range(1001, 1001 + threads * per_thread)), "numbers have gaps"
    with committed_db.unit_of_work() as s:
        assert s.execute(select(func.count(Ticket.id))).scalar_one() == threads * per_thread
        assert s.execute(select(func.count(Customer.id))).scalar_one() == 3


class Boom(Exception):
    """Something going wrong after the ticket row was written."""


def test_rolled_back_creation_does_not_use_up_a_number(
    committed_db: Database, shop_mailbox: Mailbox
) -> None:
    """A creation whose transaction rolls back leaves no gap: the next ticket takes its number."""
    first = _create(committed_db, shop_mailbox, "ann@example.com", "first")

    doomed: list[int] = []

    def create_then_fail() -> None:
        with committed_db.unit_of_work() as s:
            ticket = tickets.create_ticket(
                s,
                mailbox=shop_mailbox,
                customer_email="bob@example.com",
                subject="doomed",
                actor=Actor.system(),
            )
            doomed.append(ticket.number)
            raise Boom

    with pytest.raises(Boom):
        create_then_fail()
    assert doomed == [first + 1], "inside its transaction the doomed ticket held the next number"

    second = _create(committed_db, shop_mailbox, "carl@example.com", "second")

    assert (first, second) == (1001, 1002)
    with committed_db.unit_of_work() as s:
        subjects = s.execute(select(Ticket.subject).order_by(Ticket.number)).scalars().all()
        emails = s.execute(select(Customer.email).order_by(Customer.email)).scalars().all()
    assert subjects == ["first", "second"]
    assert emails == ["ann@example.com", "carl@example.com"], "the rolled-back customer remained"


_STATUSES = ["open", "pending", "resolved", "closed"]
_PRIORITIES = ["low", "high", "urgent"]


def test_simultaneous_patches_with_one_version_let_exactly_one_win(
    live_server: LiveServer, shop_mailbox: Mailbox
) -> None:
    """20 clients PATCH version 1 at once over real HTTP: one 200, nineteen 409 version_conflict,
    and only the winner's change is stored and logged."""
    n = 20
    owner = live_server.make_caller(Role.ADMIN)
    with httpx.Client(base_url=live_server.url, headers=owner.headers, timeout=60) as client:
        created = client.post(
            "/api/v1/tickets",
            json={
                "mailbox": shop_mailbox.email,
                "customer_email": "eve@example.com",
                "subject": "Race me",
            },
        )
        assert created.status_code == 201, created.text
        ticket = created.json()
    assert (ticket["version"], ticket["status"], ticket["priority"]) == (1, "new", "normal")
    # One agent per client: nobody waits on a shared token row, they all hit the ticket at once.
    callers = [live_server.make_caller(Role.LEAD) for _ in range(n)]
    # Every payload is a real change (status and priority both differ from new/normal).
    payloads = [
        {"version": 1, "status": _STATUSES[i % 4], "priority": _PRIORITIES[i % 3]} for i in range(n)
    ]
    clients = [
        httpx.Client(base_url=live_server.url, headers=c.headers, timeout=60) for c in callers
    ]
    try:
        for c in clients:  # connect before the race, so the barrier releases ready requests
            assert c.get("/healthz").status_code == 200

        def patch(i: int) -> httpx.Response:
            return clients[i].patch(f"/api/v1/tickets/{ticket['id']}", json=payloads[i])

        responses = run_together(n, patch)
    finally:
        for c in clients:
            c.close()

    codes = sorted(r.status_code for r in responses)
    assert codes == [200] + [409] * (n - 1), [(r.status_code, r.text) for r in responses]
    winner = next(i for i, r in enumerate(responses) if r.status_code == 200)
    for r in responses:
        if r.status_code == 409:
            assert r.json()["error"]["code"] == "version_conflict", r.text

    with httpx.Client(base_url=live_server.url, headers=owner.headers, timeout=60) as client:
        final = client.get(f"/api/v1/tickets/{ticket['id']}").json()
        events = client.get(f"/api/v1/tickets/{ticket['id']}/events").json()
    assert final["version"] == 2
    assert (final["status"], final["priority"]) == (
        payloads[winner]["status"],
        payloads[winner]["priority"],
    )
    assert responses[winner].json()["version"] == 2
    changes = [(e["field"], e["old_value"], e["new_value"]) for e in events]
    assert changes[0][0] == "created"
    assert sorted(changes[1:]) == [
        ("priority", "normal", payloads[winner]["priority"]),
        ("status", "new", payloads[winner]["status"]),
    ], changes
    assert {e["actor_id"] for e in events[1:]} == {callers[winner].agent.id}


def test_simultaneous_upserts_of_one_address_make_one_customer(committed_db: Database) -> None:
    """8 threads upsert one address spelled differently → one row, created by exactly one."""
    spellings = [
        "Dana@Example.com",
        "dana@example.com",
        "DANA@EXAMPLE.COM",
        "dAnA@eXaMpLe.CoM",
        " dana@Example.COM",
        "Dana@example.COM ",
        "DANA@example.com",
        "dana@EXAMPLE.com",
    ]

    def upsert(i: int) -> tuple[int, bool]:
        with committed_db.unit_of_work() as s:
            customer, created = upsert_customer(s, email=spellings[i])
            return customer.id, created

    results: list[tuple[int, Any]] = run_together(len(spellings), upsert)

    assert len({customer_id for customer_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    with committed_db.unit_of_work() as s:
        assert s.execute(select(Customer.email)).scalars().all() == ["dana@example.com"]
