"""The Gmail sync benchmark: quota units per new message, throughput, and memory.

Issue 3 ("Speed") sets the targets:

* quota: units spent per new message ≤ 1.1 × the floor, the floor being one history.list (2 units)
  per poll + one messages.get (5) per message + one threads.modify (10) per new ticket (the
  emulator charges Gmail's published costs, developers.google.com/gmail/api/reference/quota); and
  a poll that finds nothing costs exactly one history.list (2 units);
* throughput: ≥ 500 new messages a second from the emulator into SQLite and into PostgreSQL on the
  2-core development machine, with the peak memory reported and flat up to 20,000 messages.

Everything real: the Gmail emulator under uvicorn in a child process (``emulator_process``), the
unmodified google-api-python-client inside ``GmailClient.for_emulator``, ``MailboxSync`` writing to
the database. Seeding happens inside the emulator and is not timed.

The measured sync is the steady-state path: the cursor is set by a first pass over the empty
mailbox, then the mail arrives, so the pass reads history.list pages and fetches the new messages
in batches — what every poll after the first does (and what follows an outage, with a backlog).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from benchmarks import sync_pass
from benchmarks.emulator_process import EmulatorHandle, running_emulator

# Gmail's costs as the emulator charges them (gmail_sync/emulator/methods.py).
HISTORY_LIST_UNITS = 2
MESSAGES_GET_UNITS = 5
THREADS_MODIFY_UNITS = 10
# Gmail's per-user limit. The quota run keeps it; the throughput runs lift it, because at
# 15,000 units a minute one mailbox can take in at most ~1,000 new conversations a minute
# (15 units each), and the target is about what our side can do.
GMAIL_UNITS_PER_MINUTE = 15_000
UNLIMITED_UNITS = 10**9
# History records the throughput emulator keeps: more than the largest backlog plus our label
# writes, so the pass reads history rather than falling back to a full sync.
BACKLOG_RETENTION = 1_000_000

UNITS_RATIO_TARGET = 1.1
IDLE_POLL_UNITS = 2
RATE_TARGET = 500.0
MEMORY_RATIO_TARGET = 1.2
PG_DATABASE = "inboxdesk_sync_bench"


@dataclass(frozen=True)
class Options:
    quota_waves: int = 5
    wave_size: int = 100
    # Backlogs synced into SQLite, each by a fresh process: the first gives the SQLite rate, all
    # the memory curve (the largest also shows its peak after every 5,000 messages).
    sqlite_sizes: tuple[int, ...] = (5_000, 20_000)
    pg_messages: int = 5_000
    seed: int = 3


@dataclass
class Verdict:
    name: str
    passed: bool | None  # None: not measured (skipped)
    detail: str


@dataclass
class QuotaResult:
    messages: int = 0
    tickets: int = 0
    polls: int = 0
    units: int = 0
    by_method: dict[str, dict[str, int]] = field(default_factory=dict)
    rate_limited: int = 0
    echo_poll_units: int = 0
    echo_poll_methods: dict[str, int] = field(default_factory=dict)
    idle_poll_units: int = 0
    idle_poll_methods: dict[str, int] = field(default_factory=dict)

    @property
    def floor(self) -> int:
        return (
            HISTORY_LIST_UNITS * self.polls
            + MESSAGES_GET_UNITS * self.messages
            + THREADS_MODIFY_UNITS * self.tickets
        )


@dataclass
class BacklogRun:
    database: str  # "SQLite" / "PostgreSQL"
    messages: int
    conversations: int
    result: sync_pass.PassResult
    # The emulator's CPU time over the pass (ingest and label writes), if it could be read.
    emulator_cpu_seconds: float | None = None

    @property
    def rate(self) -> float:
        return self.result.fetched / self.result.ingest_seconds

    @property
    def push_rate(self) -> float | None:
        r = self.result
        return r.pushed / r.push_seconds if r.pushed and r.push_seconds else None

    @property
    def end_to_end_rate(self) -> float | None:
        """Messages a second with every new ticket's labels written too, at the measured pace
        of the pass's label writes (push_dirty does at most 500 a pass; the rest follow)."""
        if self.push_rate is None:
            return None
        r = self.result
        return r.fetched / (r.ingest_seconds + r.tickets_created / self.push_rate)


# --------------------------------------------------------------------------------------- setup


def _prepare(url: str, address: str) -> int:
    """Schema and a mailbox row; returns the mailbox id."""
    from app.db import migrations
    from app.db.session import Database
    from app.mailboxes import service as mailboxes
    from app.mailboxes.models import MailboxAuthKind

    migrations.upgrade(url=url)
    database = Database.from_url(url)
    try:
        with database.unit_of_work() as session:
            box = mailboxes.create_mailbox(
                session, email=address, name="Support", auth_kind=MailboxAuthKind.EMULATOR
            )
            return box.id
    finally:
        database.dispose()


def _set_cursor(url: str, mailbox_id: int, emulator: EmulatorHandle, address: str) -> None:
    """The first pass over the still empty mailbox: stores the historyId cursor."""
    report = _one_pass(url, mailbox_id, emulator, address)
    if not report.full_sync or report.fetched:
        raise RuntimeError(f"expected an empty first full sync, got {report}")


def _one_pass(url: str, mailbox_id: int, emulator: EmulatorHandle, address: str) -> Any:
    from app.db.session import Database
    from gmail_sync.client import GmailClient
    from gmail_sync.sync import MailboxSync
    from labels.taxonomy import Taxonomy

    database = Database.from_url(url)
    try:
        with GmailClient.for_emulator(address, api_url=emulator.url) as client:
            return MailboxSync(database, mailbox_id, client, taxonomy=Taxonomy()).run()
    finally:
        database.dispose()


@contextmanager
def _postgres_database(server_url: str) -> Iterator[str]:
    """A scratch database on the benchmark's PostgreSQL server, dropped afterwards.

    Not the database the ticket-list benchmark fills: each measurement starts from empty tables.
    """
    with scratch_postgres_database(server_url, PG_DATABASE) as url:
        yield url


@contextmanager
def scratch_postgres_database(server_url: str, name: str) -> Iterator[str]:
    """Database ``name`` on this server, created empty and dropped (forcibly) afterwards."""
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# --------------------------------------------------------------------------------------- quota


def _units_by_method(stats: dict[str, Any]) -> dict[str, dict[str, int]]:
    return {
        name.removeprefix("gmail.users."): values
        for name, values in stats["methods"].items()
        if values["calls"]
    }


def measure_quota(options: Options, workdir: Path) -> QuotaResult:
    """Waves of new one-message conversations under Gmail's real quota, one poll per wave."""
    result = QuotaResult()
    address = "quota@shop.test"
    url = f"sqlite:///{workdir / 'quota.db'}"
    mailbox_id = _prepare(url, address)
    with running_emulator(
        quota_per_minute=GMAIL_UNITS_PER_MINUTE, history_retention=10_000
    ) as emulator:
        emulator.add_mailbox(address)
        _set_cursor(url, mailbox_id, emulator, address)
        emulator.reset_stats()
        for wave in range(options.quota_waves):
            emulator.seed(
                address, options.wave_size, seed=options.seed * 1000 + wave, first_only=True
            )
            report = _one_pass(url, mailbox_id, emulator, address)
            result.polls += 1
            result.messages += report.fetched
            result.tickets += report.tickets_created
            if report.labels_pushed != report.tickets_created:
                raise RuntimeError(
                    f"wave {wave}: {report.labels_pushed} label pushes for "
                    f"{report.tickets_created} new tickets (push limit reached?)"
                )
        stats = emulator.stats()
        result.by_method = _units_by_method(stats)
        result.units = int(stats["units"])
        result.rate_limited = int(stats["rate_limited"])
        expected = options.quota_waves * options.wave_size
        if result.messages != expected or result.tickets != expected:
            raise RuntimeError(
                f"quota run: {result.messages} messages fetched and {result.tickets} tickets "
                f"opened for {expected} new one-message conversations"
            )

        # The poll after a wave reads the history records of our own label writes (the echo).
        emulator.reset_stats()
        _one_pass(url, mailbox_id, emulator, address)
        stats = emulator.stats()
        result.echo_poll_units = int(stats["units"])
        result.echo_poll_methods = {k: v["calls"] for k, v in _units_by_method(stats).items()}
        # And then nothing at all has happened.
        emulator.reset_stats()
        _one_pass(url, mailbox_id, emulator, address)
        stats = emulator.stats()
        result.idle_poll_units = int(stats["units"])
        result.idle_poll_methods = {k: v["calls"] for k, v in _units_by_method(stats).items()}
    return result


def print_quota(result: QuotaResult, options: Options, out: TextIO) -> list[Verdict]:
    out.write(
        f"  {options.quota_waves} waves x {options.wave_size} new one-message conversations, "
        "one poll (MailboxSync pass) per wave;\n"
        f"  Gmail's limit of {GMAIL_UNITS_PER_MINUTE:,} units/min kept "
        f"({result.rate_limited} calls answered 429)\n\n"
    )
    out.write(f"  {'method':<22} {'calls':>7} {'units':>8} {'units/msg':>10}\n")
    for name, values in sorted(result.by_method.items()):
        per = values["units"] / result.messages
        out.write(f"  {name:<22} {values['calls']:>7,} {values['units']:>8,} {per:>10.3f}\n")
    per_message = result.units / result.messages
    floor = result.floor / result.messages
    ratio = result.units / result.floor
    out.write(f"  {'total':<22} {'':>7} {result.units:>8,} {per_message:>10.3f}\n\n")
    out.write(
        f"  floor = {HISTORY_LIST_UNITS} x {result.polls} history.list (one per poll)\n"
        f"        + {MESSAGES_GET_UNITS} x {result.messages:,} messages.get (one per message)\n"
        f"        + {THREADS_MODIFY_UNITS} x {result.tickets:,} threads.modify (one label write "
        f"per new ticket; Gmail charges {THREADS_MODIFY_UNITS})\n"
        f"        = {result.floor:,} units = {floor:.3f} units/message\n"
    )
    out.write(
        f"  spent {per_message:.3f} units/message = {ratio:.3f} x the floor "
        "(one-time label creation included)\n"
    )
    out.write(
        f"  poll right after the last wave (reads our own label writes back): "
        f"{result.echo_poll_units} units {result.echo_poll_methods}\n"
    )
    out.write(
        f"  idle poll (nothing new): {result.idle_poll_units} units {result.idle_poll_methods}\n"
    )
    idle_ok = result.idle_poll_units == IDLE_POLL_UNITS and result.idle_poll_methods == {
        "history.list": 1
    }
    return [
        Verdict(
            "quota units per new message",
            ratio <= UNITS_RATIO_TARGET,
            f"{per_message:.3f} units/message = {ratio:.3f} x floor {floor:.3f} "
            f"({'<=' if ratio <= UNITS_RATIO_TARGET else '>'} {UNITS_RATIO_TARGET})",
        ),
        Verdict(
            "idle poll",
            idle_ok,
            f"{result.idle_poll_units} units in {result.idle_poll_methods} "
            f"({'==' if idle_ok else '!='} one history.list, {IDLE_POLL_UNITS} units)",
        ),
    ]


# ---------------------------------------------------------------------------------- throughput


def _run_child(url: str, api_url: str, mailbox_id: int) -> sync_pass.PassResult:
    command = [
        sys.executable,
        "-m",
        "benchmarks.sync_pass",
        "--api-url",
        api_url,
        "--mailbox-id",
        str(mailbox_id),
    ]
    completed = subprocess.run(  # noqa: S603 - our own interpreter and module
        command,
        env={**os.environ, sync_pass.URL_VARIABLE: url},
        stdout=subprocess.PIPE,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"the sync child exited with code {completed.returncode}")
    data = json.loads(completed.stdout.decode().strip().splitlines()[-1])
    data["rss_curve"] = [tuple(point) for point in data["rss_curve"]]
    return sync_pass.PassResult(**data)


def measure_backlog(
    emulator: EmulatorHandle,
    *,
    url: str,
    database: str,
    messages: int,
    seed: int,
    out: TextIO,
) -> BacklogRun:
    address = f"{database.lower()}-{messages}@shop.test"
    mailbox_id = _prepare(url, address)
    emulator.add_mailbox(address)
    _set_cursor(url, mailbox_id, emulator, address)
    started = time.perf_counter()
    seeded = emulator.seed(address, messages, seed=seed, first_only=False)
    out.write(
        f"  {database}: {seeded['messages']:,} messages ({seeded['conversations']:,} "
        f"conversations) seeded in {time.perf_counter() - started:.1f} s (not timed); "
        "syncing ...\n"
    )
    out.flush()
    emulator_cpu = emulator.cpu_seconds()
    result = _run_child(url, emulator.url, mailbox_id)
    emulator_after = emulator.cpu_seconds()
    if result.full_sync:
        raise RuntimeError(f"{database}: the measured pass fell back to a full sync")
    if result.fetched != seeded["messages"] or result.tickets_created != seeded["conversations"]:
        raise RuntimeError(
            f"{database}: {result.fetched:,} messages fetched and {result.tickets_created:,} "
            f"tickets opened for {seeded['messages']:,} messages in "
            f"{seeded['conversations']:,} conversations"
        )
    return BacklogRun(
        database,
        seeded["messages"],
        seeded["conversations"],
        result,
        None if emulator_cpu is None or emulator_after is None else emulator_after - emulator_cpu,
    )


def print_throughput(runs: list[BacklogRun], out: TextIO) -> None:
    out.write(
        f"\n  {'database':<10} {'messages':>8} {'tickets':>7} {'ingest':>8} {'msg/s':>6}"
        f" {'CPU ms/msg: sync':>16} {'emulator':>8}   {'labels':>6} {'per s':>5}"
        f"   {'msg/s with labels':>17}\n"
    )
    for run in runs:
        r = run.result
        emulator = (
            f"{run.emulator_cpu_seconds * 1000 / r.fetched:>8.2f}"
            if run.emulator_cpu_seconds is not None
            else f"{'-':>8}"
        )
        push_rate = f"{run.push_rate:>5.0f}" if run.push_rate else f"{'-':>5}"
        overall = f"{run.end_to_end_rate:>17.0f}" if run.end_to_end_rate else f"{'-':>17}"
        out.write(
            f"  {run.database:<10} {run.messages:>8,} {r.tickets_created:>7,} "
            f"{r.ingest_seconds:>7.2f}s {run.rate:>6.0f} "
            f"{r.ingest_cpu_seconds * 1000 / r.fetched:>16.2f} {emulator}   "
            f"{r.pushed:>6,} {push_rate}   {overall}\n"
        )
    out.write(
        "  ingest: the pass's history.list + batched messages.get + parse + store, committed;\n"
        "  msg/s = messages / ingest (the target). CPU ms/msg: the sync process's own CPU over\n"
        "  the ingest, and the emulator's over the whole pass, labels included (the rest of the\n"
        "  wall time is the database, or waiting for a CPU). labels: the same pass's push_dirty,\n"
        "  one threads.modify per new ticket (at most 500 a pass); msg/s with labels =\n"
        "  messages / (ingest + every new ticket's label write at that pace).\n"
    )


def print_memory(runs: list[BacklogRun], out: TextIO) -> None:
    out.write(
        f"\n  {'database':<11} {'backlog':>8} {'RSS at start':>13} {'peak RSS':>9} {'growth':>7}"
        "   peak RSS as the pass went (messages: MiB)\n"
    )
    for run in runs:
        r = run.result
        marks = _curve_marks(r.rss_curve, run.messages)
        curve = ", ".join(f"{n:,}: {kb / 1024:.0f}" for n, kb in marks)
        out.write(
            f"  {run.database:<11} {run.messages:>8,} {r.rss_start_kb / 1024:>10.0f} MiB "
            f"{r.peak_rss_kb / 1024:>5.0f} MiB {(r.peak_rss_kb - r.rss_start_kb) / 1024:>4.0f} MiB"
            f"   {curve}\n"
        )


def _curve_marks(curve: list[tuple[int, int]], total: int) -> list[tuple[int, int]]:
    """The first point at or past each 5,000 messages, and the last."""
    marks: list[tuple[int, int]] = []
    next_mark = 5_000
    for count, kb in curve:
        if count >= next_mark:
            marks.append((count, kb))
            next_mark = (count // 5_000 + 1) * 5_000
    if curve and (not marks or marks[-1][0] != curve[-1][0]):
        marks.append(curve[-1])
    return [(n, kb) for n, kb in marks if n <= total]


# ------------------------------------------------------------------------------------------ all


def run(postgres_url: str | None, options: Options, out: TextIO) -> list[Verdict]:
    """Measure everything, print the tables, return the verdicts."""
    verdicts: list[Verdict] = []
    with tempfile.TemporaryDirectory(prefix="inboxdesk-sync-bench-") as tmp:
        workdir = Path(tmp)
        out.write("\n[sync 1/3] Gmail quota: units per new message, and an idle poll\n")
        out.flush()
        quota = measure_quota(options, workdir)
        verdicts += print_quota(quota, options, out)

        out.write(
            "\n[sync 2/3] throughput: a backlog of new mail (generated conversations, 1-4 "
            "messages each)\n  synced by incremental history (history.list + batches of "
            "messages.get), the steady-state path;\n  one fresh sync process per backlog; "
            "emulator quota lifted, history kept\n"
        )
        out.flush()
        runs: list[BacklogRun] = []
        with running_emulator(
            quota_per_minute=UNLIMITED_UNITS, history_retention=BACKLOG_RETENTION
        ) as emulator:
            for index, size in enumerate(options.sqlite_sizes):
                runs.append(
                    measure_backlog(
                        emulator,
                        url=f"sqlite:///{workdir / f'sync-{size}.db'}",
                        database="SQLite",
                        messages=size,
                        seed=options.seed + index,
                        out=out,
                    )
                )
            if postgres_url:
                with _postgres_database(postgres_url) as pg_url:
                    runs.append(
                        measure_backlog(
                            emulator,
                            url=pg_url,
                            database="PostgreSQL",
                            messages=options.pg_messages,
                            seed=options.seed,
                            out=out,
                        )
                    )
            else:
                out.write("  PostgreSQL: skipped (no PostgreSQL URL; `make bench` provides one)\n")
        # The first SQLite backlog and the PostgreSQL one give the rates.
        rate_runs = [r for r in runs if r.database != "SQLite"]
        rate_runs.insert(0, runs[0])
        print_throughput(rate_runs, out)

        out.write("\n[sync 3/3] memory of the sync process (peak resident set: VmHWM)\n")
        print_memory(runs, out)

    for run_ in rate_runs:
        passed = run_.rate >= RATE_TARGET
        with_labels = run_.end_to_end_rate
        verdicts.append(
            Verdict(
                f"throughput {run_.database}",
                passed,
                f"{run_.rate:.0f} new messages/s {'>=' if passed else '<'} {RATE_TARGET:.0f} "
                f"({run_.messages:,} messages in {run_.result.ingest_seconds:.2f} s"
                + (f"; {with_labels:.0f}/s with label writes)" if with_labels else ")"),
            )
        )
    if not postgres_url:
        verdicts.append(Verdict("throughput PostgreSQL", None, "not measured (no PostgreSQL)"))
    sqlite_runs = sorted((r for r in runs if r.database == "SQLite"), key=lambda r: r.messages)
    if len(sqlite_runs) >= 2:
        small, large = sqlite_runs[0], sqlite_runs[-1]
        ratio = large.result.peak_rss_kb / small.result.peak_rss_kb
        passed = ratio <= MEMORY_RATIO_TARGET
        verdicts.append(
            Verdict(
                "memory flat",
                passed,
                f"peak RSS {large.result.peak_rss_kb / 1024:.0f} MiB at {large.messages:,} "
                f"messages = {ratio:.2f} x {small.result.peak_rss_kb / 1024:.0f} MiB at "
                f"{small.messages:,} ({'<=' if passed else '>'} {MEMORY_RATIO_TARGET})",
            )
        )
    else:
        verdicts.append(Verdict("memory flat", None, "needs two SQLite backlogs (--sync-sizes)"))
    return verdicts
