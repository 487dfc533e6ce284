"""Timing one acknowledgement's decision and text: the automated-mail verdict of the customer's
parsed message, the mailbox's rate limits (read from the outbox), the template choice (business
hours on the mailbox's calendar) and the render with the ticket's context — what the sync does
per new ticket before it queues the outbox row.

Measured in this process on PostgreSQL (a scratch database on the benchmark's server: the verdict)
and on SQLite, each inside an open transaction that is rolled back, so nothing is queued and every
measurement sees the same outbox. The customers' messages are real MIME from the conversation
generator (Russian and English, several charsets and mail clients), parsed before the clock starts:
parsing belongs to the sync's ingest, measured by the sync benchmark.
"""

from __future__ import annotations

import random
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from sqlalchemy import insert
from sqlalchemy.orm import Session

from app.acknowledgements.compose import (
    ACK_KIND,
    AckTemplates,
    CustomerMessage,
    compose_ack,
    load_signing_key,
)
from app.acknowledgements.limits import AckBudget
from app.db import migrations
from app.db.session import Database
from app.mailboxes.models import Mailbox
from app.mailboxes.service import create_mailbox
from app.outbox.models import OutboxMessage, OutboxStatus
from app.sla.calendar import is_business_time
from app.sla.service import calendar_for_mailbox
from app.tickets import service as tickets
from app.tickets.events import Actor
from app.tickets.models import Ticket
from benchmarks.sync_speed import Verdict, scratch_postgres_database
from benchmarks.ticket_list import percentile
from gmail_sync.automated import automated_verdict
from gmail_sync.corpus import generate_conversations
from gmail_sync.parse import ParsedMessage, parse_message
from templates_replies.library import seed_default_templates

BUDGET_MS = 5.0
PG_DATABASE = "inboxdesk_ack_bench"
MAILBOX = "support@ack-bench.test"


@dataclass(frozen=True)
class Options:
    tickets: int = 300
    # Acknowledgements already queued (the limits count them): a busy hour of the mailbox.
    history: int = 2_000
    requests: int = 500
    warmup: int = 50
    seed: int = 5


@dataclass
class Run:
    database: str
    times_ms: list[float] = field(default_factory=list)
    languages: dict[str, int] = field(default_factory=dict)
    automated: int = 0


@dataclass(frozen=True)
class Seeded:
    mailbox_id: int
    # (ticket id, the customer's parsed first message)
    cases: list[tuple[int, ParsedMessage]]


def seed(database: Database, options: Options) -> Seeded:
    """A mailbox with the default templates, tickets opened by generated customer mail, and
    ``history`` acknowledgements queued over the last hour by other senders."""
    conversations = generate_conversations(
        options.tickets, seed=options.seed, mailbox=MAILBOX, start=datetime.now(UTC)
    )
    cases: list[tuple[int, ParsedMessage]] = []
    with database.unit_of_work() as session:
        mailbox = create_mailbox(session, email=MAILBOX, name="Ack Bench Support")
        seed_default_templates(session)
        actor = Actor.system()
        for conversation in conversations:
            parsed = parse_message(conversation.messages[0].raw)
            ticket = tickets.create_ticket(
                session,
                mailbox=mailbox,
                customer_email=parsed.from_address or "unknown@ack-bench.test",
                customer_name=parsed.from_name,
                subject=parsed.subject,
                actor=actor,
            )
            cases.append((ticket.id, parsed))
        # Earlier acknowledgements, each of its own (filler) ticket: the limits count the rows.
        fillers = tickets.open_tickets(
            session,
            mailbox_id=mailbox.id,
            openings=[
                tickets.Opening(
                    sender_email=f"earlier{index % 500}@example.com",
                    sender_name=None,
                    subject=f"Earlier question {index}",
                    gmail_thread_id=f"bench-thread-{index}",
                )
                for index in range(options.history)
            ],
            actor=actor,
        )
        now = datetime.now(UTC)
        session.execute(
            insert(OutboxMessage),
            [
                {
                    "ticket_id": filler.id,
                    "mailbox_id": mailbox.id,
                    "kind": ACK_KIND,
                    "status": OutboxStatus.SENT,
                    "rfc822_message_id": f"<bench.{index}@ack-bench.test>",
                    "to_address": f"earlier{index % 500}@example.com",
                    "subject": filler.subject,
                    "body": "…",
                    # Spread over the hour: ~33 a minute, under the circuit breaker.
                    "created_at": now - timedelta(seconds=index * 3600 // options.history),
                }
                for index, filler in enumerate(fillers)
            ],
        )
        return Seeded(mailbox.id, cases)


def acknowledge_one(
    session: Session, mailbox: Mailbox, ticket: Ticket, parsed: ParsedMessage
) -> str:
    """What the sync does for one new ticket before queueing its acknowledgement; the language of
    the text it produced."""
    now = datetime.now(UTC)
    verdict = automated_verdict(parsed, own_addresses=[mailbox.email], label_ids=["INBOX"])
    if verdict.automated:
        return "automated"
    sender = parsed.from_address or ""
    budget = AckBudget.load(session, mailbox=mailbox, addresses={sender}, now=now)
    if budget.check(sender, parsed.subject, now) is not None:
        return "limited"
    templates = AckTemplates.load(session, mailbox=mailbox)
    out_of_hours = not is_business_time(calendar_for_mailbox(session, mailbox_id=mailbox.id), now)
    ack = compose_ack(
        session,
        ticket=ticket,
        mailbox=mailbox,
        message=CustomerMessage(
            from_address=sender,
            subject=parsed.subject,
            text=parsed.text,
            message_id=parsed.message_id,
            references=parsed.references,
        ),
        templates=templates,
        out_of_hours=out_of_hours,
        now=now,
    )
    if not ack.body.strip():
        raise RuntimeError(f"ticket {ticket.id}: the acknowledgement rendered empty")
    return "ru" if any("а" <= ch <= "я" for ch in ack.body.lower()) else "en"


def measure(database: Database, seeded: Seeded, run: Run, options: Options) -> None:
    rng = random.Random(options.seed)
    for index in range(options.warmup + options.requests):
        ticket_id, parsed = rng.choice(seeded.cases)
        with database.session() as session:
            # Inside the sync's open transaction, as in production; rolled back, nothing queued.
            session.connection()
            load_signing_key(session)  # once per sync chunk
            mailbox = session.get_one(Mailbox, seeded.mailbox_id)
            ticket = session.get_one(Ticket, ticket_id)
            started = time.perf_counter()
            outcome = acknowledge_one(session, mailbox, ticket, parsed)
            elapsed = (time.perf_counter() - started) * 1000
            session.rollback()
        if outcome in ("automated", "limited"):
            raise RuntimeError(f"ticket {ticket_id}: {outcome}, not acknowledged")
        if index >= options.warmup:
            run.times_ms.append(elapsed)
            run.languages[outcome] = run.languages.get(outcome, 0) + 1


def run_database(url: str, name: str, options: Options, out: TextIO) -> Run:
    migrations.upgrade(url=url)
    database = Database.from_url(url)
    try:
        began = time.perf_counter()
        seeded = seed(database, options)
        out.write(
            f"  {len(seeded.cases)} tickets from generated customer mail, the default templates, "
            f"{options.history:,} acknowledgements queued in the last hour  "
            f"[{time.perf_counter() - began:.1f} s]\n"
            f"  {options.warmup} warm-up + {options.requests} timed acknowledgements ...\n"
        )
        out.flush()
        run = Run(name)
        measure(database, seeded, run, options)
        return run
    finally:
        database.dispose()


def run(postgres_url: str | None, options: Options, out: TextIO) -> list[Verdict]:
    runs: list[Run] = []
    if postgres_url:
        out.write("\n[acknowledgements 1/2] PostgreSQL (a scratch database on the same server)\n")
        with scratch_postgres_database(postgres_url, PG_DATABASE) as url:
            runs.append(run_database(url, "PostgreSQL", options, out))
    else:
        out.write("\n[acknowledgements 1/2] PostgreSQL: skipped (no PostgreSQL URL)\n")
    out.write("\n[acknowledgements 2/2] SQLite (a temp file)\n")
    with tempfile.TemporaryDirectory(prefix="inboxdesk-ack-bench-") as tmp:
        runs.append(run_database(f"sqlite:///{Path(tmp) / 'acks.db'}", "SQLite", options, out))

    out.write(f"\n  {'database':<10} {'n':>4} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7}  texts\n")
    for r in runs:
        languages = ", ".join(f"{n} {lang}" for lang, n in sorted(r.languages.items()))
        out.write(
            f"  {r.database:<10} {len(r.times_ms):>4} {percentile(r.times_ms, 50):>7.2f} "
            f"{percentile(r.times_ms, 95):>7.2f} {percentile(r.times_ms, 99):>7.2f} "
            f"{max(r.times_ms):>7.2f}  {languages}\n"
        )
    out.write("  (ms per acknowledgement: verdict + rate limits + template choice + render)\n")
    by_name = {r.database: r for r in runs}
    sqlite_p95 = percentile(by_name["SQLite"].times_ms, 95)
    postgres = by_name.get("PostgreSQL")
    if postgres is None:
        return [
            Verdict(
                "acknowledgement PostgreSQL",
                None,
                f"not measured (no PostgreSQL); SQLite p95 {sqlite_p95:.2f} ms",
            )
        ]
    p95 = percentile(postgres.times_ms, 95)
    passed = p95 <= BUDGET_MS
    return [
        Verdict(
            "acknowledgement PostgreSQL",
            passed,
            f"p95 {p95:.2f} ms {'<=' if passed else '>'} {BUDGET_MS:g} ms for verdict + "
            f"rate-limit check + render ({len(postgres.times_ms)} acknowledgements; "
            f"SQLite {sqlite_p95:.2f} ms)",
        )
    ]
