"""Timing the triage automation: the rules for one message, and one assignment decision.

Rules: 50 rules (the default urgency and segment set plus generated rules of every condition
kind: addresses, domains, aliases, substrings, regular expressions, word-form phrases, language,
segment, attachments, business hours) compiled once, as the sync's cache holds them; then per
message the facts are built from the parsed message (language detection, lower-casing) and the
rule set is evaluated. The messages are real MIME from the conversation generator (Russian and
English, several charsets), parsed before the clock starts: parsing belongs to the sync.

Assignment: a scratch PostgreSQL database with the list benchmark's 100,000 tickets (20 agents),
made a helpdesk's shape: history resolved and closed, each agent with at most ``RUNNING_PER_AGENT``
new/open/pending tickets (the list benchmark's ~1,000 open tickets per agent are a stress test of
the list, not a team anyone runs), three teams of eight (round-robin, least-loaded with a cap,
skills) and shifts for every agent; each timed call is ``assign_ticket`` for a new unassigned
ticket — the team row locked, availability and load read, the agent chosen, the ticket written
and flushed — then committed outside the clock.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from sqlalchemy import func, select, update

from app.agents.models import Agent, AgentShift, Team
from app.assignment.service import assign_ticket
from app.db import migrations
from app.db.session import Database
from app.rules.defaults import load_default_rules
from app.rules.engine import RuleSet, compile_rules
from app.rules.facts import MessageFacts
from app.rules.models import Rule
from app.tickets.events import Actor
from app.tickets.models import Status, Ticket, TicketTag
from benchmarks import seed as list_seed
from benchmarks.sync_speed import Verdict, scratch_postgres_database
from benchmarks.ticket_list import percentile
from gmail_sync.corpus import generate_conversations
from gmail_sync.parse import ParsedMessage, parse_message

RULES_BUDGET_MS = 1.0
ASSIGN_BUDGET_MS = 5.0
RULE_COUNT = 50
RUNNING_PER_AGENT = 40
PG_DATABASE = "inboxdesk_triage_bench"
MAILBOX = "support@triage-bench.test"


@dataclass(frozen=True)
class Options:
    messages: int = 300
    evaluations: int = 3_000
    warmup: int = 300
    tickets: int = 100_000
    customers: int = 20_000
    agents: int = 20
    assignments: int = 600
    assign_warmup: int = 60
    seed: int = 7


@dataclass
class Timings:
    times_ms: list[float] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def line(self, label: str) -> str:
        t = self.times_ms
        return (
            f"  {label:<28} {len(t):>5} {percentile(t, 50):>7.3f} {percentile(t, 95):>7.3f} "
            f"{percentile(t, 99):>7.3f} {max(t):>7.3f}\n"
        )


# -- rules ---------------------------------------------------------------------------------


def _generated_rule(index: int, rng: random.Random) -> dict[str, Any]:
    """One rule of a kind a team lead writes: routing by address, alias, words or pattern."""
    kinds: list[list[dict[str, Any]]] = [
        [{"field": "from_domain", "op": "in", "value": [f"client{index}.com", "bigcorp.test"]}],
        [{"field": "to", "op": "is", "value": f"billing{index}@shop.test"}],
        [{"field": "subject", "op": "contains", "value": f"invoice {index}"}],
        [{"field": "body", "op": "regex", "value": rf"\border\s*#?\s*{index}\d{{3,}}\b"}],
        [{"field": "text", "op": "words", "value": ["возврат денег", "refund", f"тариф {index}"]}],
        [
            {"field": "language", "op": "is", "value": rng.choice(["ru", "en"])},
            {"field": "has_attachment", "op": "is", "value": True},
        ],
        [
            {"field": "segment", "op": "in", "value": ["enterprise", "partner"]},
            {"field": "business_hours", "op": "is", "value": False},
        ],
        [{"field": "from", "op": "regex", "value": rf"^(noreply|billing){index}@"}],
    ]
    conditions = kinds[index % len(kinds)]
    return {
        "name": f"Generated rule {index}",
        "match": "all",
        "conditions": conditions,
        "actions": [{"type": "add_tag", "value": f"route-{index}"}],
    }


def bench_rules() -> list[Rule]:
    """The default rules plus generated ones, ``RULE_COUNT`` in all, as unsaved rows."""
    rng = random.Random(11)
    specs = [dict(spec) for spec in load_default_rules()]
    specs += [_generated_rule(i, rng) for i in range(RULE_COUNT - len(specs))]
    return [
        Rule(
            id=index + 1,
            mailbox_id=None,
            name=spec["name"],
            position=index,
            enabled=spec.get("enabled", True),
            match=spec.get("match", "all"),
            conditions=spec.get("conditions", []),
            actions=spec.get("actions", []),
            run_on_replies=spec.get("run_on_replies", False),
            stop_processing=False,
        )
        for index, spec in enumerate(specs[:RULE_COUNT])
    ]


def measure_rules(options: Options, out: TextIO) -> tuple[Timings, int]:
    rules = bench_rules()
    began = time.perf_counter()
    rule_set: RuleSet = compile_rules(rules)
    compile_ms = (time.perf_counter() - began) * 1000
    conversations = generate_conversations(
        options.messages, seed=options.seed, mailbox=MAILBOX, start=datetime.now(UTC)
    )
    messages: list[ParsedMessage] = [parse_message(c.messages[0].raw) for c in conversations]
    out.write(
        f"  {len(rules)} rules compiled in {compile_ms:.1f} ms; {len(messages)} generated customer "
        f"messages; {options.warmup} warm-up + {options.evaluations} timed evaluations ...\n"
    )
    out.flush()
    rng = random.Random(options.seed)
    timings = Timings()
    segments = ["regular", "regular", "regular", "vip", "enterprise"]
    for index in range(options.warmup + options.evaluations):
        parsed = rng.choice(messages)
        segment = rng.choice(segments)
        business_hours = rng.random() < 0.7
        started = time.perf_counter()
        facts = MessageFacts.from_parsed(
            parsed, segment=segment, business_hours=business_hours, automated=False
        )
        fired = rule_set.evaluate(facts)
        elapsed = (time.perf_counter() - started) * 1000
        if index >= options.warmup:
            timings.times_ms.append(elapsed)
            key = "fired" if fired else "none fired"
            timings.counts[key] = timings.counts.get(key, 0) + 1
    return timings, len(rules)


def run_rules(options: Options, out: TextIO) -> list[Verdict]:
    out.write("\n[triage 1/2] rules: facts + evaluation of one message (in process)\n")
    timings, count = measure_rules(options, out)
    out.write(f"\n  {'':<28} {'n':>5} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7}\n")
    out.write(timings.line(f"{count} rules, one message"))
    counts = ", ".join(f"{n} {what}" for what, n in sorted(timings.counts.items()))
    out.write(f"  (ms per message: facts from the parsed message + evaluation; {counts})\n")
    p95 = percentile(timings.times_ms, 95)
    passed = p95 <= RULES_BUDGET_MS
    return [
        Verdict(
            "rules evaluation",
            passed,
            f"p95 {p95:.3f} ms {'<=' if passed else '>'} {RULES_BUDGET_MS:g} ms for {count} "
            f"rules on one message ({len(timings.times_ms)} messages)",
        )
    ]


# -- assignment ----------------------------------------------------------------------------

STRATEGIES = ("round_robin", "least_loaded", "skills")
SKILLS = ("billing", "delivery", "refund", "api", "account", "russian")


def _close_history(database: Database) -> int:
    """Close every running ticket but each agent's newest ``RUNNING_PER_AGENT``; returns how
    many are still running."""
    running = (Status.NEW, Status.OPEN, Status.PENDING)
    ranked = (
        select(
            Ticket.id,
            func.row_number()
            .over(partition_by=Ticket.assignee_id, order_by=Ticket.id.desc())
            .label("rank"),
        )
        .where(Ticket.status.in_(running))
        .subquery()
    )
    with database.unit_of_work() as session:
        session.execute(
            update(Ticket)
            .where(Ticket.id.in_(select(ranked.c.id).where(ranked.c.rank > RUNNING_PER_AGENT)))
            .values(status=Status.CLOSED, closed_at=func.now(), resolved_at=func.now())
            .execution_options(synchronize_session=False)
        )
        count = select(func.count()).select_from(Ticket).where(Ticket.status.in_(running))
        return session.execute(count).scalar_one()


def _seed_teams(database: Database, options: Options) -> tuple[list[int], list[int]]:
    """Three teams of eight agents with shifts covering every hour (all on shift now) and skills;
    returns the team ids and the ids of unassigned new tickets to assign."""
    rng = random.Random(options.seed)
    with database.unit_of_work() as session:
        agents = list(session.execute(select(Agent).order_by(Agent.id)).scalars())
        for agent in agents:
            agent.skills = sorted(rng.sample(SKILLS, 2))
            # Two stretches a day, every day: the shift check runs, and always passes.
            for weekday in range(7):
                session.add(
                    AgentShift(agent_id=agent.id, weekday=weekday, start_minute=0, end_minute=720)
                )
                session.add(
                    AgentShift(
                        agent_id=agent.id, weekday=weekday, start_minute=720, end_minute=1440
                    )
                )
        teams = []
        for index, strategy in enumerate(STRATEGIES):
            team = Team(
                name=f"Bench team {strategy}",
                assignment_strategy=strategy,
                agent_cap=None if strategy == "round_robin" else 10_000,
            )
            team.members = agents[index * 6 : index * 6 + 8]
            session.add(team)
            teams.append(team)
        session.flush()
        team_ids = [team.id for team in teams]
        # The newest tickets, made new and unassigned again: what arrives to be assigned.
        candidates = list(
            session.execute(
                select(Ticket.id)
                .order_by(Ticket.id.desc())
                .limit(options.assign_warmup + options.assignments)
            ).scalars()
        )
        session.execute(
            update(Ticket)
            .where(Ticket.id.in_(candidates))
            .values(
                status=Status.NEW,
                assignee_id=None,
                team_id=None,
                awaiting_assignment=False,
                resolved_at=None,
                closed_at=None,
            )
        )
        for ticket_id in candidates[::2]:
            session.merge(TicketTag(ticket_id=ticket_id, tag=rng.choice(SKILLS)))
    return team_ids, candidates


def measure_assignment(url: str, options: Options, out: TextIO) -> dict[str, Timings]:
    migrations.upgrade(url=url)
    database = Database.from_url(url)
    try:
        began = time.perf_counter()
        list_seed.seed(
            database,
            tickets=options.tickets,
            customers=options.customers,
            agents=options.agents,
            seed=options.seed,
        )
        running = _close_history(database)
        team_ids, ticket_ids = _seed_teams(database, options)
        list_seed.analyze(database)
        out.write(
            f"  {options.tickets:,} tickets ({running:,} running: at most {RUNNING_PER_AGENT} "
            f"per agent), {options.agents} agents with shifts, teams "
            f"{', '.join(STRATEGIES)}  [{time.perf_counter() - began:.1f} s]\n"
            f"  {options.assign_warmup} warm-up + {options.assignments} timed assignments ...\n"
        )
        out.flush()
        by_strategy = {strategy: Timings() for strategy in STRATEGIES}
        actor = Actor.system()
        for index, ticket_id in enumerate(ticket_ids):
            strategy_index = index % len(STRATEGIES)
            with database.unit_of_work() as session:
                ticket = session.get_one(Ticket, ticket_id)
                started = time.perf_counter()
                agent = assign_ticket(
                    session, ticket=ticket, actor=actor, team_id=team_ids[strategy_index]
                )
                elapsed = (time.perf_counter() - started) * 1000
            if agent is None:
                raise RuntimeError(f"ticket {ticket_id}: nobody was chosen")
            if index >= options.assign_warmup:
                timings = by_strategy[STRATEGIES[strategy_index]]
                timings.times_ms.append(elapsed)
        return by_strategy
    finally:
        database.dispose()


def run_assignment(postgres_url: str | None, options: Options, out: TextIO) -> list[Verdict]:
    out.write("\n[triage 2/2] assignment decision on PostgreSQL (a scratch database)\n")
    if not postgres_url:
        out.write("  skipped: no PostgreSQL URL\n")
        return [Verdict("assignment PostgreSQL", None, "not measured (no PostgreSQL)")]
    with scratch_postgres_database(postgres_url, PG_DATABASE) as url:
        by_strategy = measure_assignment(url, options, out)
    out.write(f"\n  {'strategy':<28} {'n':>5} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7}\n")
    everything: list[float] = []
    for strategy, timings in by_strategy.items():
        out.write(timings.line(strategy))
        everything += timings.times_ms
    out.write("  (ms per assignment: team lock + availability + load + choice + ticket write)\n")
    p95 = percentile(everything, 95)
    passed = p95 <= ASSIGN_BUDGET_MS
    return [
        Verdict(
            "assignment PostgreSQL",
            passed,
            f"p95 {p95:.2f} ms {'<=' if passed else '>'} {ASSIGN_BUDGET_MS:g} ms per decision "
            f"and write ({len(everything)} assignments over {len(by_strategy)} strategies, "
            f"{options.tickets:,} tickets)",
        )
    ]


def run(postgres_url: str | None, options: Options, out: TextIO) -> list[Verdict]:
    return run_rules(options, out) + run_assignment(postgres_url, options, out)
