"""Ticket state ⇄ Gmail labels, both ways: the REST API to labels, a person's labels to tickets.

The REST API runs in-process (TestClient) on the same database as the sync; "a person in Gmail"
is a call to the emulator's Gmail API made with the unmodified Google client. Label state is read
back from the emulator with threads.get, the quota spent from its stats.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.agents.models import Role
from app.db.session import Database
from app.mailboxes import service as mailboxes
from app.mailboxes.models import Mailbox, MailboxAuthKind
from app.messages.models import Message
from app.tickets.models import ActorKind, Event, Status, Ticket
from gmail_sync.client import GmailClient, RetryPolicy
from gmail_sync.labels_sync import LabelSync
from gmail_sync.sync import MailboxSync, SyncReport
from labels.taxonomy import Taxonomy
from tests.conftest import Caller, MakeCaller
from tests.emulator_fixtures import (  # noqa: F401
    MAILBOX,
    Emulator,
    emulator_fixture,
    emulator_server_fixture,
    mail,
)

NOW = format_datetime(datetime.now(UTC))
TAXONOMY = Taxonomy()


@dataclass
class Desk:
    db: Database
    emulator: Emulator
    api: TestClient
    mailbox_id: int
    client: GmailClient

    def sync(self) -> SyncReport:
        return MailboxSync(self.db, self.mailbox_id, self.client, taxonomy=TAXONOMY).run()

    # -- Gmail as a person sees it -------------------------------------------------------------
    def gmail(self) -> Any:
        return self.emulator.service().users()

    def label_ids_by_name(self) -> dict[str, str]:
        labels = self.gmail().labels().list(userId="me").execute()["labels"]
        return {label["name"]: label["id"] for label in labels}

    def labels_on(self, thread_id: str) -> set[str]:
        """Our label names on a thread (the union over its messages, as Gmail shows a thread)."""
        names = {v: k for k, v in self.label_ids_by_name().items()}
        thread = self.gmail().threads().get(userId="me", id=thread_id, format="minimal").execute()
        found = {names[i] for m in thread["messages"] for i in m.get("labelIds", [])}
        # Casefolded: Gmail treats label names case-insensitively, a person's may differ in case.
        return {name for name in found if name.casefold().startswith("support/")}

    def person_relabels(self, thread_id: str, *, add: list[str], remove: list[str]) -> None:
        ids = self.label_ids_by_name()
        body = {"addLabelIds": [ids[n] for n in add], "removeLabelIds": [ids[n] for n in remove]}
        self.gmail().threads().modify(userId="me", id=thread_id, body=body).execute()

    # -- the helpdesk --------------------------------------------------------------------------
    def receive(self, subject: str, message_id: str, **kwargs: Any) -> dict[str, str]:
        kwargs.setdefault("date", NOW)
        return self.emulator.import_raw(mail(subject, message_id=message_id, **kwargs))

    def ticket(self, thread_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            ticket_id = s.scalar(
                select(Message.ticket_id).where(Message.gmail_thread_id == thread_id)
            )
        return self.get(ticket_id)

    def get(self, ticket_id: int | None, caller: Caller | None = None) -> dict[str, Any]:
        assert ticket_id is not None
        headers = caller.headers if caller else self._reader.headers
        response = self.api.get(f"/api/v1/tickets/{ticket_id}", headers=headers)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def patch(self, ticket: dict[str, Any], caller: Caller, **changes: Any) -> dict[str, Any]:
        response = self.api.patch(
            f"/api/v1/tickets/{ticket['id']}",
            json={"version": ticket["version"], **changes},
            headers=caller.headers,
        )
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def events(self, ticket_id: int) -> list[Event]:
        with self.db.session() as s:
            return list(s.scalars(select(Event).where(Event.ticket_id == ticket_id)))

    _reader: Caller = None  # type: ignore[assignment]


@pytest.fixture
def lead(make_caller: MakeCaller) -> Caller:
    return make_caller(Role.LEAD, email="lee@shop.test", name="Lee Lead")


@pytest.fixture
def desk(db: Database, emulator: Emulator, client: TestClient, lead: Caller) -> Iterator[Desk]:
    with db.unit_of_work() as s:
        box = mailboxes.create_mailbox(
            s, email=MAILBOX, name="Support", auth_kind=MailboxAuthKind.EMULATOR
        )
    gmail = GmailClient.for_emulator(
        MAILBOX, api_url=emulator.url, retry=RetryPolicy(sleep=lambda _s: None)
    )
    with gmail:
        desk = Desk(db=db, emulator=emulator, api=client, mailbox_id=box.id, client=gmail)
        desk._reader = lead
        yield desk


def _calls(emulator: Emulator) -> dict[str, int]:
    return {k: v["calls"] for k, v in emulator.state.stats()["methods"].items() if v["calls"]}


def _units(emulator: Emulator) -> int:
    return int(emulator.state.stats()["units"])


def test_api_changes_appear_as_labels_in_gmail(desk: Desk, lead: Caller) -> None:
    """Status, priority and assignee changed through the REST API: one threads.modify puts the
    matching labels on the thread and takes the stale ones off."""
    first = desk.receive("Scratched table", "t1@customer.test")
    desk.sync()
    assert desk.labels_on(first["threadId"]) == {"Support/New", "Support/Unassigned"}
    ticket = desk.ticket(first["threadId"])

    desk.emulator.state.reset_stats()
    desk.patch(ticket, lead, status="pending", priority="urgent", assignee="lee@shop.test")
    report = desk.sync()

    assert report.labels_pushed == 1
    # One threads.modify; the only label to create is the new assignee's (statuses and
    # priorities were created with the first push).
    assert _calls(desk.emulator) == {
        "gmail.users.history.list": 1,
        "gmail.users.labels.list": 1,
        "gmail.users.labels.create": 1,
        "gmail.users.threads.modify": 1,
    }
    assert desk.labels_on(first["threadId"]) == {
        "Support/Pending",
        "Support/Priority/Urgent",
        "Support/Assigned/Lee Lead",
    }
    # Back to normal priority and unassigned: those labels go, Unassigned comes back.
    ticket = desk.get(ticket["id"])
    desk.patch(ticket, lead, priority="normal", assignee=None, status="open")
    desk.sync()
    assert desk.labels_on(first["threadId"]) == {"Support/Open", "Support/Unassigned"}
    # Low priority has no label: Gmail already shows it, so nothing is written.
    desk.sync()
    desk.emulator.state.reset_stats()
    desk.patch(desk.get(ticket["id"]), lead, priority="low")
    report = desk.sync()
    assert report.labels_pushed == 0
    assert _calls(desk.emulator) == {"gmail.users.history.list": 1}


def test_a_persons_label_change_becomes_the_ticket_change(desk: Desk, lead: Caller) -> None:
    """threads.modify by a person (Pending on, Open off) → the ticket is pending, with an event
    by the sync; the echo of our own writes changes nothing and pushes nothing after that."""
    first = desk.receive("Lost parcel", "l1@customer.test")
    desk.sync()
    ticket = desk.patch(desk.ticket(first["threadId"]), lead, status="open")
    desk.sync()
    desk.sync()  # reads the echo of the push above
    assert desk.labels_on(first["threadId"]) == {"Support/Open", "Support/Unassigned"}

    desk.person_relabels(
        first["threadId"], add=["Support/Pending", "Support/Priority/High"], remove=["Support/Open"]
    )
    report = desk.sync()

    assert report.label_changes == 1
    after = desk.get(ticket["id"])
    assert after["status"] == "pending"
    assert after["priority"] == "high"
    by_sync = {
        (e.field, e.old_value, e.new_value)
        for e in desk.events(ticket["id"])
        if e.actor_kind == ActorKind.SYNC
    }
    assert ("status", "open", "pending") in by_sync
    assert ("priority", "normal", "high") in by_sync
    # Gmail already shows what the ticket now is: nothing to push back.
    assert report.labels_pushed == 0
    assert desk.labels_on(first["threadId"]) == {
        "Support/Pending",
        "Support/Priority/High",
        "Support/Unassigned",
    }

    # No loop: further passes find only our own history, change nothing, push nothing.
    version = after["version"]
    desk.emulator.state.reset_stats()
    for _ in range(2):
        again = desk.sync()
        assert (again.label_changes, again.labels_pushed, again.fetched) == (0, 0, 0)
    assert desk.get(ticket["id"])["version"] == version
    assert _calls(desk.emulator) == {"gmail.users.history.list": 2}
    assert _units(desk.emulator) == 4


def test_reading_a_new_reply_in_gmail_changes_nothing(desk: Desk, lead: Caller) -> None:
    """A person opening the customer's new reply removes UNREAD from that message only: the
    thread keeps our labels, so the ticket keeps its assignee and priority."""
    first = desk.receive("Damaged box", "b1@customer.test")
    desk.sync()
    ticket = desk.patch(
        desk.ticket(first["threadId"]), lead, assignee="lee@shop.test", priority="high"
    )
    desk.sync()
    reply = desk.receive("Re: Damaged box", "b2@customer.test", references=("b1@customer.test",))
    desk.sync()
    before = desk.get(ticket["id"])
    events = len(desk.events(ticket["id"]))

    desk.gmail().messages().modify(
        userId="me", id=reply["id"], body={"removeLabelIds": ["UNREAD"]}
    ).execute()
    report = desk.sync()

    after = desk.get(ticket["id"])
    assert report.label_changes == 0
    assert (after["assignee"]["email"], after["priority"]) == ("lee@shop.test", "high")
    assert after["version"] == before["version"]
    assert len(desk.events(ticket["id"])) == events
    assert "Support/Assigned/Lee Lead" in desk.labels_on(first["threadId"])


def test_labels_are_created_once_and_existing_ones_reused(desk: Desk, db: Database) -> None:
    """Our labels are created on the first push only; later passes use the ids cached on the
    mailbox (no labels.list); a label a person made already — same name, or same name in
    another case (Gmail answers 409) — is reused, not duplicated."""
    gmail = desk.gmail()
    exact = gmail.labels().create(userId="me", body={"name": "Support/Unassigned"}).execute()
    other_case = gmail.labels().create(userId="me", body={"name": "support/new"}).execute()

    first = desk.receive("Invoice missing", "i1@customer.test")
    desk.sync()
    with db.session() as s:
        cached = s.get_one(Mailbox, desk.mailbox_id).label_ids
    assert cached["Support/Unassigned"] == exact["id"]
    assert cached["Support/New"] == other_case["id"]
    names = [n.casefold() for n in desk.label_ids_by_name()]
    assert len(names) == len(set(names))  # no duplicates
    assert desk.labels_on(first["threadId"]) == {"support/new", "Support/Unassigned"}

    desk.emulator.state.reset_stats()
    desk.receive("Invoice missing too", "i2@customer.test", sender="bob@customer.test")
    desk.sync()
    calls = _calls(desk.emulator)
    assert "gmail.users.labels.create" not in calls
    assert "gmail.users.labels.list" not in calls
    assert calls["gmail.users.threads.modify"] == 1


def test_reopening_a_closed_ticket_by_label_is_refused(desk: Desk, lead: Caller) -> None:
    """Closed is final (DESIGN §3): the person's Open label is taken off, Closed put back."""
    first = desk.receive("Thanks, all good", "c1@customer.test")
    desk.sync()
    ticket = desk.patch(desk.ticket(first["threadId"]), lead, status="closed")
    desk.sync()
    events = len(desk.events(ticket["id"]))

    desk.person_relabels(first["threadId"], add=["Support/Open"], remove=["Support/Closed"])
    report = desk.sync()

    assert report.label_changes == 0
    assert desk.get(ticket["id"])["status"] == "closed"
    assert len(desk.events(ticket["id"])) == events
    assert report.labels_pushed == 1
    assert desk.labels_on(first["threadId"]) == {"Support/Closed", "Support/Unassigned"}
    quiet = desk.sync()
    assert (quiet.label_changes, quiet.labels_pushed) == (0, 0)


def test_reconcile_repairs_drift_made_behind_our_back(desk: Desk, db: Database) -> None:
    first = desk.receive("Wrong colour", "w1@customer.test")
    second = desk.receive("Late delivery", "d1@customer.test", sender="bob@customer.test")
    desk.sync()
    desk.sync()
    desk.person_relabels(first["threadId"], add=[], remove=["Support/New", "Support/Unassigned"])

    labels = LabelSync(db, desk.client, TAXONOMY)
    assert labels.reconcile(desk.mailbox_id) == (2, 1)
    assert labels.push_dirty(desk.mailbox_id).pushed == 1
    assert desk.labels_on(first["threadId"]) == {"Support/New", "Support/Unassigned"}
    assert desk.labels_on(second["threadId"]) == {"Support/New", "Support/Unassigned"}
    assert labels.reconcile(desk.mailbox_id) == (2, 0)
    # The history of the removal and of the repair reads as no change by anyone.
    report = desk.sync()
    assert (report.label_changes, report.labels_pushed) == (0, 0)
    with db.session() as s:
        assert s.scalar(select(func.count(Ticket.id)).where(Ticket.status == Status.NEW)) == 2


def test_a_label_change_lost_with_expired_history_is_still_applied(
    desk: Desk, lead: Caller
) -> None:
    """History 404 → full resync: the person's label change of the lost stretch still becomes
    the ticket change (read from the labels themselves), and nothing else happens twice."""
    first = desk.receive("Need an invoice", "n1@customer.test")
    desk.sync()
    ticket = desk.patch(desk.ticket(first["threadId"]), lead, status="open")
    desk.sync()
    desk.person_relabels(first["threadId"], add=["Support/Resolved"], remove=["Support/Open"])
    desk.emulator.state.expire_history(MAILBOX)

    report = desk.sync()

    assert report.full_sync
    assert (report.fetched, report.tickets_created) == (0, 0)
    assert report.label_changes == 1
    assert desk.get(ticket["id"])["status"] == "resolved"
    assert desk.labels_on(first["threadId"]) == {"Support/Resolved", "Support/Unassigned"}
    quiet = desk.sync()
    assert (quiet.label_changes, quiet.labels_pushed, quiet.fetched) == (0, 0, 0)


def test_an_idle_pass_costs_one_history_list(desk: Desk) -> None:
    desk.receive("Hello", "h1@customer.test")
    desk.sync()
    desk.sync()  # the echo of the first label push
    desk.emulator.state.reset_stats()
    report = desk.sync()
    stats = desk.emulator.state.stats()
    assert (report.fetched, report.label_changes, report.labels_pushed) == (0, 0, 0)
    assert _calls(desk.emulator) == {"gmail.users.history.list": 1}
    assert stats["units"] == 2


def test_a_deleted_thread_is_not_pushed_forever(desk: Desk, lead: Caller) -> None:
    first = desk.receive("Never mind", "x1@customer.test")
    desk.sync()
    ticket = desk.ticket(first["threadId"])
    desk.gmail().threads().delete(userId="me", id=first["threadId"]).execute()
    desk.patch(ticket, lead, status="pending")

    report = desk.sync()

    assert (report.labels_pushed, report.labels_failed) == (0, 0)
    desk.emulator.state.reset_stats()
    desk.sync()
    assert "gmail.users.threads.modify" not in _calls(desk.emulator)


def test_a_label_deleted_in_gmail_is_created_again(desk: Desk, lead: Caller) -> None:
    """Gmail refuses the cached id of a label a person deleted (400): the cache is dropped, and
    the next pass creates the label again and pushes, instead of failing on every pass."""
    first = desk.receive("Where is the manual", "m1@customer.test")
    desk.sync()
    ticket = desk.ticket(first["threadId"])
    pending = desk.label_ids_by_name()["Support/Pending"]
    desk.gmail().labels().delete(userId="me", id=pending).execute()
    desk.patch(ticket, lead, status="pending")

    refused = desk.sync()
    assert (refused.labels_pushed, refused.labels_failed) == (0, 1)
    repaired = desk.sync()

    assert (repaired.labels_pushed, repaired.labels_failed) == (1, 0)
    assert desk.label_ids_by_name()["Support/Pending"] != pending
    assert desk.labels_on(first["threadId"]) == {"Support/Pending", "Support/Unassigned"}
