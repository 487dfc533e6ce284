"""Faults change nothing but the cost: one scenario run twice, against a well-behaved Gmail and
against one where 20 % of calls (batch parts included) answer 429 / 500 / 503 and the history
expires once in the middle — the tickets, messages, events and Gmail labels end up the same.

The scenario: 40 generated conversations (customers and agents' replies from Gmail) arriving in
three waves, a status / priority / assignee change through the REST API, and a person's label
change in Gmail. Each run gets a fresh emulator and its own mailbox, so Gmail ids come out the
same in both runs and the two final states can be compared as sets.

Like the worker, the test calls passes until one completes: with few retries allowed, a pass
sometimes gives up half-way, and the next one must pick up where it stopped without doing
anything twice.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from googleapiclient.errors import HttpError
from sqlalchemy import select

from app.db.session import Database
from app.mailboxes import service as mailboxes
from app.mailboxes.models import Mailbox, MailboxAuthKind
from app.messages.models import Message
from app.tickets import service as tickets
from app.tickets.models import Event, Ticket
from gmail_sync.client import GmailClient, GmailError, RetryPolicy
from gmail_sync.corpus import arrival_order, generate_conversations
from gmail_sync.emulator import EmulatorState
from gmail_sync.sync import MailboxSync, SyncReport
from labels.taxonomy import Taxonomy
from tests.conftest import Caller
from tests.emulator_fixtures import (  # noqa: F401
    MAILBOX,
    OTHER_MAILBOX,
    Emulator,
    emulator_fixture,
    emulator_server_fixture,
)

CONVERSATIONS = 40
FAULT_RATE = 0.2
# Few tries per call, so that some passes do give up (0.2² per call; a batch fails when any of
# its parts fails twice) and the recovery across passes is exercised, yet every wave
# settles well within MAX_PASSES.
RETRY = RetryPolicy(max_attempts=2, sleep=lambda _s: None)
MAX_PASSES = 20
TAXONOMY = Taxonomy()
# Both runs get the same mail: the same dates too (inside the 30-day full sync window).
START = (datetime.now(UTC) - timedelta(days=6)).replace(microsecond=0)


@dataclass
class Run:
    db: Database
    emulator: Emulator
    api: TestClient
    lead: Caller
    address: str
    faults: bool
    state: EmulatorState | None = None
    passes: int = 0
    failed_passes: int = 0
    stats: dict[str, Any] | None = None
    lost_cursor: int | None = None
    full_syncs: int = 0

    def __post_init__(self) -> None:
        with self.db.unit_of_work() as s:
            self.mailbox_id = mailboxes.create_mailbox(
                s, email=self.address, name=self.address, auth_kind=MailboxAuthKind.EMULATOR
            ).id
        self.client = GmailClient.for_emulator(self.address, api_url=self.emulator.url, retry=RETRY)

    def lose_history(self) -> None:
        """Gmail forgets the history after our cursor: history.list answers 404 until a full
        sync moves the cursor (the emulator's switch is one-shot, so it is set again while the
        cursor stays where it was, e.g. when the full sync gave up half-way)."""
        with self.db.session() as s:
            self.lost_cursor = s.get_one(Mailbox, self.mailbox_id).history_id

    def _keep_history_lost(self) -> None:
        if self.lost_cursor is None:
            return
        with self.db.session() as s:
            cursor = s.get_one(Mailbox, self.mailbox_id).history_id
        if cursor == self.lost_cursor:
            assert self.state is not None
            self.state.expire_history(self.address)
        else:
            self.lost_cursor = None

    def settle(self) -> SyncReport:
        """Passes until one completes with every label push done (the worker's loop)."""
        for _ in range(MAX_PASSES):
            self._keep_history_lost()
            self.passes += 1
            try:
                report = MailboxSync(self.db, self.mailbox_id, self.client, taxonomy=TAXONOMY).run()
            except GmailError:
                self.failed_passes += 1
                continue
            self.full_syncs += int(report.full_sync)
            if report.labels_failed == 0:
                return report
        raise AssertionError(f"no complete pass in {MAX_PASSES}")

    def person(self, request: Any) -> Any:
        """A person in Gmail: a failed click is simply clicked again."""
        for _ in range(MAX_PASSES):
            try:
                return request.execute(num_retries=0)
            except HttpError as exc:
                if exc.resp.status not in (429, 500, 503):
                    raise
        raise AssertionError("Gmail never answered the person")

    def ticket_id_of(self, gmail_id: str) -> int:
        with self.db.session() as s:
            found = s.scalar(
                select(Message.ticket_id).where(
                    Message.mailbox_id == self.mailbox_id, Message.gmail_message_id == gmail_id
                )
            )
        assert found is not None
        return found


def _scenario(run: Run) -> dict[str, Any]:
    state = run.state = run.emulator.new_state()
    if run.faults:
        state.set_faults(FAULT_RATE, [429, 500, 503], seed=5)
    conversations = generate_conversations(
        CONVERSATIONS, seed=17, mailbox=run.address, start=START, agent_replies=True
    )
    arrivals = arrival_order(conversations)
    imported: dict[str, dict[str, str]] = {}  # Message-ID → {"id", "threadId"} in Gmail

    def arrive(part: list[Any]) -> None:
        for message in part:
            labels = ("SENT",) if message.from_agent else ("INBOX", "UNREAD")
            imported[message.message_id] = state.import_raw(
                run.address, message.raw, label_ids=labels
            )

    third = len(arrivals) // 3
    arrive(arrivals[:third])
    run.settle()

    # An agent changes a ticket through the REST API...
    first_id = run.ticket_id_of(imported[conversations[0].messages[0].message_id]["id"])
    current = run.api.get(f"/api/v1/tickets/{first_id}", headers=run.lead.headers).json()
    changed = run.api.patch(
        f"/api/v1/tickets/{first_id}",
        json={
            "version": current["version"],
            "status": "pending",
            "priority": "urgent",
            "assignee": run.lead.agent.email,
        },
        headers=run.lead.headers,
    )
    assert changed.status_code == 200, changed.text
    # ...more mail arrives, and a person resolves another ticket in Gmail with a label.
    arrive(arrivals[third : 2 * third])
    thread_id = imported[conversations[1].messages[0].message_id]["threadId"]
    gmail = run.emulator.service(run.address).users()
    ids = {
        label["name"]: label["id"]
        for label in run.person(gmail.labels().list(userId="me"))["labels"]
    }
    body = {
        "addLabelIds": [ids["Support/Resolved"], ids["Support/Priority/High"]],
        "removeLabelIds": [ids[f"Support/{s}"] for s in ("New", "Open", "Pending")],
    }
    run.person(gmail.threads().modify(userId="me", id=thread_id, body=body))
    if run.faults:
        run.lose_history()  # Gmail lost the history of this stretch, label change included
    run.settle()

    arrive(arrivals[2 * third :])
    run.settle()
    run.settle()  # reads the echo of the last pushes
    run.stats = state.stats()
    state.clear_faults()
    return _final_state(run, gmail, thread_ids={m["threadId"] for m in imported.values()})


def _final_state(run: Run, gmail: Any, *, thread_ids: set[str]) -> dict[str, Any]:
    with run.db.session() as s:
        rows = list(
            s.scalars(
                select(Ticket.id).where(Ticket.mailbox_id == run.mailbox_id).order_by(Ticket.id)
            )
        )
        messages = list(s.scalars(select(Message).where(Message.mailbox_id == run.mailbox_id)))
        by_ticket: dict[int | None, list[str]] = {}
        for m in messages:
            by_ticket.setdefault(m.ticket_id, []).append(m.gmail_message_id)
        keys: dict[int, tuple[str, str]] = {}
        ticket_set = set()
        for ticket_id in rows:
            t = tickets.get_ticket(s, ticket_id)
            keys[t.id] = (t.customer.email, t.subject)
            ticket_set.add(
                (
                    t.customer.email,
                    t.subject,
                    t.status.value,
                    t.priority.value,
                    t.assignee.email if t.assignee else None,
                    tuple(t.tags),
                    str(t.first_response_at),
                    tuple(sorted(by_ticket.get(t.id, []))),
                    tuple(sorted(t.gmail_thread_ids)),
                )
            )
        events = Counter(
            (keys[e.ticket_id], e.field, str(e.old_value), str(e.new_value), e.actor_kind.value)
            for e in s.scalars(select(Event).where(Event.ticket_id.in_(rows)))
            if e.field != "created"  # its value is the ticket number, which may differ
        )
    message_rows = Counter(
        (m.gmail_message_id, m.direction.value, m.is_automated, m.ticket_id is None)
        for m in messages
    )
    names = {
        label["id"]: label["name"] for label in gmail.labels().list(userId="me").execute()["labels"]
    }
    labels = {}
    for thread_id in sorted(thread_ids):
        thread = gmail.threads().get(userId="me", id=thread_id, format="minimal").execute()
        on = {names[i] for m in thread["messages"] for i in m.get("labelIds", [])}
        labels[thread_id] = sorted(n for n in on if TAXONOMY.is_ours(n))
    return {
        "tickets": ticket_set,
        "ticket_count": len(rows),
        "messages": message_rows,
        "events": events,
        "labels": labels,
    }


def test_faults_and_a_lost_history_leave_the_same_final_state(
    db: Database, emulator: Emulator, client: TestClient, lead: Caller
) -> None:
    clean = Run(db, emulator, client, lead, MAILBOX, faults=False)
    expected = _scenario(clean)
    faulty = Run(db, emulator, client, lead, OTHER_MAILBOX, faults=True)
    actual = _scenario(faulty)
    stats = faulty.stats
    assert stats is not None

    assert expected["ticket_count"] == CONVERSATIONS
    assert actual["ticket_count"] == expected["ticket_count"]
    assert actual["tickets"] == expected["tickets"]
    assert actual["messages"] == expected["messages"]
    assert actual["events"] == expected["events"]
    assert actual["labels"] == expected["labels"]
    # The scenario did what it says: the API change and the person's label both landed.
    statuses = Counter(t[2] for t in expected["tickets"])
    assert statuses["pending"] == 1
    assert statuses["resolved"] == 1
    assert stats["faults_injected"] >= 0.1 * stats["calls"]
    assert faulty.failed_passes > 0  # the recovery across passes was exercised
    assert (clean.full_syncs, faulty.full_syncs) == (1, 2)  # the first, and the one after 404
    print(  # noqa: T201
        f"\nfault-free: {clean.passes} passes; with faults: {faulty.passes} passes "
        f"({faulty.failed_passes} gave up); {stats['faults_injected']} faults injected in "
        f"{stats['calls']} calls"
    )
