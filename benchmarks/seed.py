"""Fill an empty database with a year of a busy helpdesk: 100,000 tickets by default.

Why the shape matters: the planner picks its plan from the table's statistics, so a benchmark on
uniform or tiny data proves nothing. The distributions below follow a mid-sized support team:
most tickets closed or resolved, a quarter open, one in five nobody's, a few tags each, numbers
growing with creation time. A fixed random seed makes two runs seed the same data.

Speed: the few agents and mailboxes go through the services (so they are valid by construction),
the bulk goes through SQLAlchemy core ``insert()`` in chunks, which psycopg sends as multi-row
INSERTs; 100,000 tickets take seconds, not minutes.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, func, insert, select, text, update

from app.agents.models import Role
from app.agents.service import create_agent, find_agent
from app.customers.models import Customer
from app.db.session import Database
from app.mailboxes.service import create_mailbox, find_mailbox
from app.tickets.models import Priority, Status, Ticket, TicketCounter, TicketTag

# Addresses under the reserved `.test` domain (RFC 2606): seeded rows are recognisable as such.
BENCH_DOMAIN = "bench.inboxdesk.test"
CALLER_EMAIL = f"agent01@{BENCH_DOMAIN}"
FIRST_NUMBER = 1001  # the first number the app allocates (see alembic 0001's ticket_counters row)
CHUNK = 10_000

STATUS_WEIGHTS: dict[Status, float] = {
    Status.NEW: 0.10,
    Status.OPEN: 0.25,
    Status.PENDING: 0.15,
    Status.RESOLVED: 0.20,
    Status.CLOSED: 0.30,
}
PRIORITY_WEIGHTS: dict[Priority, float] = {
    Priority.LOW: 0.15,
    Priority.NORMAL: 0.60,
    Priority.HIGH: 0.20,
    Priority.URGENT: 0.05,
}
ASSIGNED_SHARE = 0.80
MAILBOXES = (
    (f"support@{BENCH_DOMAIN}", "Support", 0.70),
    (f"billing@{BENCH_DOMAIN}", "Billing", 0.20),
    (f"sales@{BENCH_DOMAIN}", "Sales", 0.10),
)
# A few tags are on many tickets, most on few (Zipf-like weights 1/rank).
_TAG_NAMES = """
    billing shipping refund login bug order-status returns invoice account feature-request vip
    damaged password subscription cancellation address-change warranty api integration mobile-app
    gdpr pricing discount gift-card exchange late-delivery tracking payment-failed duplicate-charge
    feedback
"""
TAGS = tuple(_TAG_NAMES.split())
TAG_WEIGHTS = tuple(1 / rank for rank in range(1, len(TAGS) + 1))
TAG_COUNT_WEIGHTS = (0.25, 0.40, 0.25, 0.10)  # 0, 1, 2 or 3 tags on a ticket

SUBJECTS = (
    "Refund for order #{n}",
    "Where is my order #{n}?",
    "Cannot log in to my account",
    "Password reset e-mail never arrives",
    "Invoice {month} shows the wrong amount",
    "Question about {product}",
    "{product} arrived damaged",
    "Change the shipping address of order #{n}",
    "Please cancel my subscription",
    "Charged twice for order #{n}",
    "Feature request: {feature}",
    "Bug: {feature} does not work on mobile",
    "Exchange {product} for another size",
    "Discount code not accepted",
    "Re: your order #{n} has shipped",
    "Warranty claim for {product}",
    "How do I export my data?",
    "Delivery is late again",
    "Gift card balance missing",
    "Update my billing details",
)
PRODUCTS = ("the blue jacket", "running shoes", "the coffee grinder", "a desk lamp", "the backpack")
FEATURES = ("dark mode", "CSV export", "two-factor login", "saved carts", "order history")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September")
FIRST_NAMES = ("Ana", "Ben", "Chloé", "Dev", "Emma", "Femi", "Gus", "Hana", "Ivan", "Jun", "Kai")
LAST_NAMES = ("Smith", "García", "Müller", "Okafor", "Tanaka", "Rossi", "Novak", "Silva", "Kim")

T = TypeVar("T")


@dataclass(frozen=True)
class SeedResult:
    """What the measurements need to know about the seeded data."""

    tickets: int
    customers: int
    agents: int
    tags: int
    seconds: float


def log(message: str) -> None:
    """Progress on stdout, flushed: seeding takes long enough that silence looks like a hang."""
    sys.stdout.write(f"  {message}\n")
    sys.stdout.flush()


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _weighted(rng: random.Random, weights: dict[T, float], k: int) -> list[T]:
    return rng.choices(list(weights), weights=list(weights.values()), k=k)


def seed(database: Database, *, tickets: int, customers: int, agents: int, seed: int) -> SeedResult:
    """Seed ``tickets`` tickets into an empty schema, then refresh the planner's statistics."""
    started = time.perf_counter()
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)

    mailbox_ids, agent_ids = _seed_people(database, agents=agents)
    log(f"{len(mailbox_ids)} mailboxes, {len(agent_ids)} agents ({CALLER_EMAIL} is the caller)")

    with database.engine.begin() as conn:
        customer_ids = _seed_customers(conn, rng, count=customers, now=now)
    log(f"{len(customer_ids):,} customers  [{time.perf_counter() - started:.1f} s]")

    with database.engine.begin() as conn:
        _seed_tickets(
            conn,
            rng,
            count=tickets,
            now=now,
            started=started,
            mailbox_ids=mailbox_ids,
            customer_ids=customer_ids,
            agent_ids=agent_ids,
        )
        tag_rows = _seed_tags(conn, rng)
        conn.execute(
            update(TicketCounter)
            .where(TicketCounter.name == "ticket")
            .values(value=select(func.max(Ticket.number)).scalar_subquery())
        )
    log(
        f"{tag_rows:,} ticket tags, ticket counter at {FIRST_NUMBER + tickets - 1}"
        f"  [{time.perf_counter() - started:.1f} s]"
    )

    command = analyze(database)
    seconds = time.perf_counter() - started
    log(f"{command} done  [{seconds:.1f} s]")
    return SeedResult(
        tickets=tickets,
        customers=len(customer_ids),
        agents=len(agent_ids),
        tags=tag_rows,
        seconds=seconds,
    )


def _seed_people(database: Database, *, agents: int) -> tuple[list[int], list[int]]:
    """Mailboxes and agents through the services; the caller is agent01, an ordinary agent.

    Existing ones are kept, so a run interrupted after this step can be repeated with --reuse.
    """
    with database.unit_of_work() as session:
        mailbox_ids = [
            (find_mailbox(session, email) or create_mailbox(session, email=email, name=name)).id
            for email, name, _ in MAILBOXES
        ]
        agent_ids = []
        for index in range(1, agents + 1):
            email = f"agent{index:02d}@{BENCH_DOMAIN}"
            role = (
                Role.ADMIN if index == agents else Role.LEAD if index > agents - 3 else Role.AGENT
            )
            name = f"{FIRST_NAMES[index % len(FIRST_NAMES)]} Agent{index:02d}"
            agent = find_agent(session, email) or create_agent(
                session, email=email, name=name, role=role
            )
            agent_ids.append(agent.id)
    return mailbox_ids, agent_ids


def _seed_customers(
    conn: Connection, rng: random.Random, *, count: int, now: datetime
) -> list[int]:
    rows = [
        {
            "email": f"customer{index:06d}@example.com",
            "name": f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
            "segment": "vip" if rng.random() < 0.03 else "regular",
            "timezone": None,
            "created_at": now - timedelta(days=400),
            "updated_at": now - timedelta(days=400),
        }
        for index in range(1, count + 1)
    ]
    for chunk in _chunks(rows, CHUNK):
        conn.execute(insert(Customer), list(chunk))
    return list(conn.execute(select(Customer.id).order_by(Customer.id)).scalars())


def _subject(rng: random.Random) -> str:
    return rng.choice(SUBJECTS).format(
        n=rng.randint(10_000, 99_999),
        month=rng.choice(MONTHS),
        product=rng.choice(PRODUCTS),
        feature=rng.choice(FEATURES),
    )


def _seed_tickets(
    conn: Connection,
    rng: random.Random,
    *,
    count: int,
    now: datetime,
    started: float,
    mailbox_ids: list[int],
    customer_ids: list[int],
    agent_ids: list[int],
) -> None:
    """Tickets numbered in creation order over the last year, the newest at the top."""
    year = 365 * 24 * 3600
    offsets = sorted(rng.randrange(year) for _ in range(count))  # seconds since a year ago
    statuses = _weighted(rng, STATUS_WEIGHTS, count)
    priorities = _weighted(rng, PRIORITY_WEIGHTS, count)
    mailbox_weights = [weight for _, _, weight in MAILBOXES]
    mailboxes = rng.choices(mailbox_ids, weights=mailbox_weights, k=count)
    start = now - timedelta(seconds=year)

    rows: list[dict[str, Any]] = []
    for index in range(count):
        created = start + timedelta(seconds=offsets[index])
        status = statuses[index]
        updated = min(now, created + timedelta(minutes=rng.randrange(1, 14 * 24 * 60)))
        answered = status is not Status.NEW
        done = status in (Status.RESOLVED, Status.CLOSED)
        rows.append(
            {
                "number": FIRST_NUMBER + index,
                "mailbox_id": mailboxes[index],
                "customer_id": rng.choice(customer_ids),
                "subject": _subject(rng),
                "status": status,
                "priority": priorities[index],
                "assignee_id": rng.choice(agent_ids) if rng.random() < ASSIGNED_SHARE else None,
                "team_id": None,
                "sla_policy_id": None,
                "first_response_due_at": created + timedelta(hours=8),
                "resolution_due_at": None if done else created + timedelta(days=3),
                "first_response_at": (
                    created + timedelta(hours=rng.randint(1, 12)) if answered else None
                ),
                "resolved_at": updated if done else None,
                "closed_at": updated if status is Status.CLOSED else None,
                "previous_ticket_id": None,
                "version": rng.randint(1, 6),
                "created_at": created,
                "updated_at": updated,
            }
        )
    for chunk in _chunks(rows, CHUNK):
        conn.execute(insert(Ticket), list(chunk))
        seeded = chunk[-1]["number"] - FIRST_NUMBER + 1
        log(f"{seeded:,} tickets  [{time.perf_counter() - started:.1f} s]")


def _seed_tags(conn: Connection, rng: random.Random) -> int:
    """0–3 tags per ticket, keyed by the ids the database gave the tickets."""
    ticket_ids = list(conn.execute(select(Ticket.id).order_by(Ticket.id)).scalars())
    counts = rng.choices(
        range(len(TAG_COUNT_WEIGHTS)), weights=TAG_COUNT_WEIGHTS, k=len(ticket_ids)
    )
    rows = []
    for ticket_id, how_many in zip(ticket_ids, counts, strict=True):
        tags = set(rng.choices(TAGS, weights=TAG_WEIGHTS, k=how_many))
        rows.extend({"ticket_id": ticket_id, "tag": tag} for tag in sorted(tags))
    for chunk in _chunks(rows, CHUNK):
        conn.execute(insert(TicketTag), list(chunk))
    return len(rows)


def analyze(database: Database) -> str:
    """Refresh statistics (and, on PostgreSQL, the visibility map) before measuring.

    ANALYZE gives the planner the real distributions. VACUUM as well because a freshly bulk-loaded
    table has no visibility map: index-only scans (the count of the main query is one) would visit
    the heap for every row, which no long-lived database does, and autovacuum would otherwise kick
    in at some random moment during the measurements.
    """
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        command = "VACUUM ANALYZE" if conn.dialect.name == "postgresql" else "ANALYZE"
        conn.execute(text(command))
    return command


def existing_rows(database: Database) -> dict[str, int]:
    """Rows in the tables a real installation fills; missing tables count as empty."""
    from sqlalchemy import inspect

    present = set(inspect(database.engine).get_table_names())
    counts: dict[str, int] = {}
    with database.engine.connect() as conn:
        for table in ("tickets", "customers", "agents", "mailboxes"):
            if table in present:
                counts[table] = conn.execute(
                    text(f"SELECT count(*) FROM {table}")  # noqa: S608 - fixed table names
                ).scalar_one()
    return counts


def ensure_caller(database: Database, email: str) -> int:
    """The id of the agent the benchmark calls as, created (as an ordinary agent) if missing."""
    with database.unit_of_work() as session:
        agent = find_agent(session, email)
        if agent is None:
            agent = create_agent(session, email=email, name="Benchmark caller", role=Role.AGENT)
        elif not agent.is_active:
            raise SystemExit(f"agent {email} is deactivated: pick another with --caller")
        return agent.id
