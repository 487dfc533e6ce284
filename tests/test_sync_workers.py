"""Sync workers sharing mailboxes through row leases, and a mailbox that fails alone.

PostgreSQL only for the two-worker tests: ``FOR UPDATE SKIP LOCKED`` is what lets two workers
claim at once without blocking on or taking the same row; SQLite has no row locks (one process
writes at a time anyway, so two workers there would only queue). The rest runs on both.
"""

from __future__ import annotations

import itertools
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.agents.models import Role
from app.config import Settings
from app.db.session import Database
from app.mailboxes import service as mailboxes
from app.mailboxes.models import Mailbox, MailboxAuthKind
from app.main import create_app
from app.messages.models import Message
from app.tickets.models import Ticket
from gmail_sync.client import GmailClient, HistoryPage, RetryPolicy
from gmail_sync.mailbox_access import client_for_mailbox
from gmail_sync.worker import ClientFactory, Worker
from labels.taxonomy import Taxonomy
from tests.conftest import _make_caller
from tests.emulator_fixtures import (  # noqa: F401
    Emulator,
    emulator_fixture,
    emulator_server_fixture,
    mail,
)
from tests.scratch_db import scratch_database_url
from tests.test_sync_crash import SyncProcess, run_cli, sync_env

NOW = format_datetime(datetime.now(UTC))
BOXES = [f"desk{i}@shop.test" for i in range(10)]
NO_SLEEP = RetryPolicy(sleep=lambda _s: None)

needs_postgres = pytest.mark.usefixtures("_postgres_only")


@pytest.fixture
def _postgres_only(is_postgres: bool) -> None:
    if not is_postgres:
        pytest.skip(
            "two workers at once need a server database: the claim relies on PostgreSQL's "
            "FOR UPDATE SKIP LOCKED (SQLite lets one process write at a time anyway)"
        )


# -- helpers -----------------------------------------------------------------------------------
@dataclass
class Pass:
    worker: str
    mailbox: int
    start: float
    end: float | None = None


class RecordedClient(GmailClient):
    """The real client; records when its pass ends (the worker closes it after each pass) and,
    on some passes of a slow mailbox, waits before reading the history: a pass longer than the
    lease."""

    record: Pass
    delay: float = 0.0

    def iter_history(self, *args: Any, **kwargs: Any) -> Iterator[HistoryPage]:
        time.sleep(self.delay)
        return super().iter_history(*args, **kwargs)

    def close(self) -> None:
        self.record.end = time.monotonic()
        super().close()


@dataclass
class PassLog:
    passes: list[Pass] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def factory(self, worker: str, url: str, *, slow: dict[str, float]) -> ClientFactory:
        """Clients for ``worker``; the second pass over a mailbox in ``slow`` (its first read of
        history: the first pass is a full sync) and every third after it take that long."""

        def make(mailbox: Mailbox) -> GmailClient:
            record = Pass(worker, mailbox.id, time.monotonic())
            with self.lock:
                self.passes.append(record)
                nth = sum(p.mailbox == mailbox.id for p in self.passes)
            client = RecordedClient.for_emulator(mailbox.email, api_url=url, retry=NO_SLEEP)
            client.record = record  # type: ignore[attr-defined]
            if nth % 3 == 2:
                client.delay = slow.get(mailbox.email, 0.0)  # type: ignore[attr-defined]
            return client

        return make

    def overlaps(self) -> list[tuple[Pass, Pass]]:
        """Pairs of passes over one mailbox that ran at the same time."""
        found = []
        by_mailbox: dict[int, list[Pass]] = {}
        for p in self.passes:
            by_mailbox.setdefault(p.mailbox, []).append(p)
        for passes in by_mailbox.values():
            passes.sort(key=lambda p: p.start)
            for earlier, later in itertools.pairwise(passes):
                if earlier.end is None or later.start < earlier.end:
                    found.append((earlier, later))
        return found


def _connect(database: Database, addresses: list[str]) -> dict[str, int]:
    with database.unit_of_work() as s:
        return {
            address: mailboxes.connect_mailbox(
                s,
                email=address,
                name=address,
                auth_kind=MailboxAuthKind.EMULATOR,
                credentials=None,
                secret_key=None,
                # These tests count the mail the sync stores; acknowledgements have their own.
                auto_ack=False,
            ).id
            for address in addresses
        }


class Mail:
    """New customer conversations for the emulator's mailboxes; remembers what it sent."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.sent: dict[str, list[str]] = {}  # address → Gmail ids
        self.count = 0

    def arrive(self, address: str, messages: int = 1) -> None:
        for _ in range(messages):
            self.count += 1
            raw = mail(
                f"Order {self.count} is late",
                message_id=f"m{self.count}@customer.test",
                sender=f"c{self.count}@customer.test",
                to=address,
                date=NOW,
            )
            answer = self.emulator.state.import_raw(address, raw)
            self.sent.setdefault(address, []).append(answer["id"])

    def all_ids(self) -> Counter[tuple[str, str]]:
        return Counter((a, i) for a, ids in self.sent.items() for i in ids)


def _stored(database: Database, ids: dict[str, int]) -> Counter[tuple[str, str]]:
    address_of = {v: k for k, v in ids.items()}
    with database.session() as s:
        rows = s.execute(select(Message.mailbox_id, Message.gmail_message_id)).all()
    return Counter((address_of[r.mailbox_id], r.gmail_message_id) for r in rows)


# -- two workers, in threads -------------------------------------------------------------------
@needs_postgres
def test_two_workers_never_sync_one_mailbox_at_once(
    committed_db: Database, emulator: Emulator
) -> None:
    """Two workers claim, sync and release 10 mailboxes over and over while mail arrives, one
    mailbox's passes outlasting the lease: no two passes over one mailbox ever overlap (the
    heartbeat keeps a long pass's lease), both workers work, and every message is stored once."""
    emulator.new_state(clock=time.monotonic, mailboxes=BOXES)
    ids = _connect(committed_db, BOXES)
    arrivals = Mail(emulator)
    for address in BOXES:
        arrivals.arrive(address, 2)
    lease = 1.0
    log = PassLog()
    slow = {BOXES[0]: lease * 1.6}
    workers = [
        Worker(
            committed_db,
            log.factory(name, emulator.url, slow=slow),
            taxonomy=Taxonomy(),
            owner=name,
            lease_seconds=lease,
            interval_seconds=0.01,
        )
        for name in ("worker-a", "worker-b")
    ]
    stop = threading.Event()
    errors: list[BaseException] = []

    def rounds(worker: Worker, seed: int) -> None:
        pause = random.Random(seed)
        try:
            while not stop.is_set():
                worker.run_once()
                time.sleep(pause.uniform(0.0, 0.03))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=rounds, args=(w, i)) for i, w in enumerate(workers)]
    for thread in threads:
        thread.start()
    feed = random.Random(7)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        arrivals.arrive(feed.choice(BOXES), feed.randint(1, 3))
        time.sleep(0.1)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    workers[0].run_once()  # the last arrivals

    assert log.overlaps() == []
    per_worker = Counter(p.worker for p in log.passes)
    # Both workers really worked (how much each does depends on the machine's load).
    assert per_worker["worker-a"] >= 3, per_worker
    assert per_worker["worker-b"] >= 3, per_worker
    # The mailboxes really changed hands (else "never at once" would prove little).
    handovers = sum(
        earlier.worker != later.worker
        for m in ids.values()
        for earlier, later in itertools.pairwise(
            sorted((p for p in log.passes if p.mailbox == m), key=lambda p: p.start)
        )
    )
    print(f"\n{len(log.passes)} passes {dict(per_worker)}, {handovers} handovers")  # noqa: T201
    assert handovers >= 3
    slow_passes = [p for p in log.passes if p.mailbox == ids[BOXES[0]] and p.end is not None]
    assert max(p.end - p.start for p in slow_passes) > lease  # type: ignore[operator]
    assert _stored(committed_db, ids) == arrivals.all_ids()
    with committed_db.session() as s:
        assert s.scalar(select(func.count(Ticket.id))) == arrivals.count
        held = select(func.count(Mailbox.id)).where(Mailbox.lease_owner.is_not(None))
        assert s.scalar(held) == 0


# -- two workers, as processes; one is killed --------------------------------------------------
@pytest.fixture
def worker_database_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    with scratch_database_url(database_url, tmp_path, prefix="inboxdesk_workers") as url:
        yield url


def _leases(database: Database) -> dict[int, tuple[str | None, datetime | None]]:
    with database.session() as s:
        rows = s.execute(select(Mailbox.id, Mailbox.lease_owner, Mailbox.last_synced_at)).all()
    return {r.id: (r.lease_owner, r.last_synced_at) for r in rows}


def _pid(owner: str | None) -> int | None:
    # default_owner(): "<host>:<pid>:<random>"
    return int(owner.split(":")[1]) if owner else None


@needs_postgres
def test_a_killed_worker_s_mailboxes_are_taken_over_within_the_lease(
    worker_database_url: str, emulator: Emulator, tmp_path: Path
) -> None:
    """Two `inboxdesk sync` processes over 10 mailboxes; SIGKILL the one holding more: the other
    claims each orphaned mailbox within lease + interval (+ slack) and ingests the mail that
    arrived there meanwhile; then SIGTERM stops it cleanly, leases released."""
    lease, interval = 2.0, 0.05
    emulator.new_state(clock=time.monotonic, mailboxes=BOXES)
    env = sync_env(
        tmp_path,
        worker_database_url,
        emulator.url,
        INBOXDESK_LEASE_SECONDS=str(lease),
        INBOXDESK_SYNC_INTERVAL_SECONDS=str(interval),
    )
    upgraded = run_cli(env, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    database = Database.from_url(worker_database_url)
    processes: list[SyncProcess] = []
    try:
        ids = _connect(database, BOXES)
        arrivals = Mail(emulator)
        for address in BOXES:
            arrivals.arrive(address)
        processes = [SyncProcess(env), SyncProcess(env)]
        for process in processes:
            process.wait_started()
        deadline = time.monotonic() + 20
        while not all(synced for _, synced in _leases(database).values()):
            assert time.monotonic() < deadline, _leases(database)
            time.sleep(0.05)

        holders = Counter(_pid(owner) for owner, _ in _leases(database).values())
        victim, survivor = sorted(processes, key=lambda p: -holders[p.proc.pid])
        orphaned = {
            m for m, (owner, _) in _leases(database).items() if _pid(owner) == victim.proc.pid
        }
        assert orphaned, holders
        victim.signal(signal.SIGKILL)
        killed_at = time.monotonic()
        assert victim.wait(10) == -signal.SIGKILL
        address_of = {v: k for k, v in ids.items()}
        for mailbox_id in orphaned:
            arrivals.arrive(address_of[mailbox_id])

        claimed_after: dict[int, float] = {}
        ingested_after: dict[int, float] = {}
        deadline = killed_at + lease + 15
        while len(ingested_after) < len(orphaned) and time.monotonic() < deadline:
            now = time.monotonic() - killed_at
            for mailbox_id, (owner, _) in _leases(database).items():
                if mailbox_id in orphaned and _pid(owner) == survivor.proc.pid:
                    claimed_after.setdefault(mailbox_id, now)
            stored = _stored(database, ids)
            for mailbox_id in orphaned:
                if all(
                    stored[(address_of[mailbox_id], g)]
                    for g in arrivals.sent[address_of[mailbox_id]]
                ):
                    ingested_after.setdefault(mailbox_id, now)
            time.sleep(0.02)
        print(  # noqa: T201 - the figures (pytest -s)
            f"\n{len(orphaned)} orphaned mailboxes; claimed by the survivor after "
            f"{max(claimed_after.values(), default=float('nan')):.2f} s at most, new mail in after "
            f"{max(ingested_after.values(), default=float('nan')):.2f} s (lease {lease} s)"
        )
        assert claimed_after.keys() == orphaned
        assert ingested_after.keys() == orphaned
        # Bounds, not timings: taken over once the lease ran out and within a pass or two of the
        # survivor's (each pass visits its other mailboxes first; a loaded machine is slower).
        assert max(claimed_after.values()) <= lease + interval + 3.0
        assert max(ingested_after.values()) <= lease + interval + 6.0

        survivor.signal(signal.SIGTERM)
        assert survivor.wait(10) == 0, survivor.log
        assert "stopped" in survivor.log
        assert all(owner is None for owner, _ in _leases(database).values())
        assert _stored(database, ids) == arrivals.all_ids()
    finally:
        for process in processes:
            process.kill()
        database.dispose()


# -- one bad mailbox; the status in the API ----------------------------------------------------
def test_a_mailbox_with_bad_credentials_fails_alone(
    committed_db: Database, emulator: Emulator
) -> None:
    """A mailbox Gmail refuses (401) and one never given credentials go to ``needs_reauth`` with
    their error, released, while the others sync on; GET /api/v1/mailboxes shows state, last
    sync, lag and error; connected again, the mailbox syncs like the others."""
    good = ["desk0@shop.test", "desk1@shop.test"]
    refused = "gone@shop.test"  # connected to the emulator, which does not know it
    emulator.new_state(mailboxes=good)
    ids = _connect(committed_db, [*good, refused])
    with committed_db.unit_of_work() as s:
        # Created through the API: no Gmail credentials at all.
        ids["bare@shop.test"] = mailboxes.create_mailbox(s, email="bare@shop.test", name="Bare").id
    settings = Settings(gmail_api_url=emulator.url)
    worker = Worker(
        committed_db,
        lambda mailbox: client_for_mailbox(mailbox, settings, retry=NO_SLEEP),
        taxonomy=Taxonomy(),
        lease_seconds=30,
    )
    arrivals = Mail(emulator)
    for address in good:
        arrivals.arrive(address)

    reports = worker.run_once()
    assert sorted(r.mailbox for r in reports) == good
    assert set(worker.failures) == {ids[refused], ids["bare@shop.test"]}
    arrivals.arrive(good[0], 2)
    assert [r.fetched for r in worker.run_once()] == [2, 0]  # the bad ones are not retried
    assert _stored(committed_db, ids) == arrivals.all_ids()

    admin = _make_caller(committed_db)(Role.ADMIN)
    with TestClient(create_app(committed_db)) as api:
        answer = api.get("/api/v1/mailboxes", headers=admin.headers)
    assert answer.status_code == 200
    status = {m["email"]: m for m in answer.json()}
    for address in good:
        assert status[address]["state"] == "active"
        assert status[address]["last_error"] is None
        assert status[address]["last_synced_at"] is not None
        assert 0 <= status[address]["lag_seconds"] < 30
        assert status[address]["lease_owner"] is None
    for address in (refused, "bare@shop.test"):
        assert status[address]["state"] == "needs_reauth"
        assert status[address]["last_synced_at"] is None
        assert status[address]["lag_seconds"] is None
        assert status[address]["lease_owner"] is None
    assert "credentials refused" in status[refused]["last_error"]
    assert "no Gmail credentials" in status["bare@shop.test"]["last_error"]

    # The address exists in Gmail now and is connected again: it syncs like the others.
    emulator.state.add_mailbox(refused)
    arrivals.arrive(refused)
    _connect(committed_db, [refused])
    assert [r.mailbox for r in worker.run_once()] == [*good, refused]
    assert _stored(committed_db, ids) == arrivals.all_ids()


# -- SIGTERM ------------------------------------------------------------------------------------
def test_sigterm_stops_the_worker_cleanly(
    worker_database_url: str, emulator: Emulator, tmp_path: Path
) -> None:
    """SIGTERM to a running `inboxdesk sync`: it exits 0 within seconds, says so, and leaves no
    lease behind, so `sync --reconcile` — which kept off the mailbox while the worker held it,
    as `sync --once` did (exit 0: skipped is not failed) — gets it at once; what the worker
    synced stays synced."""
    env = sync_env(tmp_path, worker_database_url, emulator.url, INBOXDESK_LEASE_SECONDS="60")
    for args in (
        ("db", "upgrade"),
        ("mailbox", "add", "support@shop.test", "--emulator", "--no-ack"),
    ):
        done = run_cli(env, *args)
        assert done.returncode == 0, done.stderr
    arrivals = Mail(emulator)
    arrivals.arrive("support@shop.test", 3)
    database = Database.from_url(worker_database_url)
    process = SyncProcess(env)
    try:
        process.wait_started()
        deadline = time.monotonic() + 20
        while not all(synced for _, synced in _leases(database).values()):
            assert time.monotonic() < deadline, process.log
            time.sleep(0.05)
        assert [_pid(owner) for owner, _ in _leases(database).values()] == [process.proc.pid]
        held = run_cli(env, "sync", "--reconcile")
        assert held.returncode == 0, held.stderr
        assert "support@shop.test: not reconciled, held by the worker" in held.stdout
        # Another `--once` next to it: skipped, not failed.
        once = run_cli(env, "sync", "--once")
        assert once.returncode == 0, once.stderr
        assert "skipped support@shop.test: its lease is held by" in once.stderr

        process.signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert process.wait(10) == 0, process.log
        assert time.monotonic() - signalled < 5
        assert "stopped" in process.log
        assert "Traceback" not in process.log
        assert [owner for owner, _ in _leases(database).values()] == [None]
        with database.session() as s:
            assert s.scalar(select(func.count(Message.id))) == 3
        free = run_cli(env, "sync", "--reconcile")
        assert free.returncode == 0, free.stderr
        assert free.stdout == "support@shop.test: 3 threads checked, 0 drifted, 0 repaired\n"
        assert [owner for owner, _ in _leases(database).values()] == [None]
    finally:
        process.kill()
        database.dispose()
