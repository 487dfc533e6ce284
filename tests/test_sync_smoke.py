"""Sync end to end on a few messages: the emulator over HTTP, the real client, the database."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

from sqlalchemy import func, select

from app.db.session import Database
from app.mailboxes import service as mailboxes
from app.mailboxes.models import MailboxAuthKind
from app.messages.models import Message
from app.tickets.models import Ticket
from gmail_sync.client import GmailClient, RetryPolicy
from gmail_sync.sync import MailboxSync
from labels.taxonomy import Taxonomy
from tests.emulator_fixtures import (  # noqa: F401
    MAILBOX,
    Emulator,
    emulator_fixture,
    emulator_server_fixture,
    mail,
)

NOW = format_datetime(datetime.now(UTC))


def _sync(db: Database, emulator: Emulator, mailbox_id: int):  # type: ignore[no-untyped-def]
    client = GmailClient.for_emulator(
        MAILBOX, api_url=emulator.url, retry=RetryPolicy(sleep=lambda _s: None)
    )
    return MailboxSync(db, mailbox_id, client, taxonomy=Taxonomy()).run()


def test_first_sync_then_incremental(db: Database, emulator: Emulator) -> None:
    with db.unit_of_work() as s:
        box = mailboxes.create_mailbox(
            s, email=MAILBOX, name="Support", auth_kind=MailboxAuthKind.EMULATOR
        )
    emulator.import_raw(mail("Order 1 lost", message_id="a1@c.test", date=NOW))
    emulator.import_raw(
        mail("Re: Order 1 lost", message_id="a2@c.test", references=("a1@c.test",), date=NOW)
    )
    report = _sync(db, emulator, box.id)
    assert report.full_sync
    assert report.tickets_created == 1
    emulator.import_raw(
        mail("Refund", message_id="b1@c.test", sender="bob@customer.test", date=NOW)
    )
    report = _sync(db, emulator, box.id)
    assert not report.full_sync
    assert report.tickets_created == 1
    with db.session() as s:
        assert s.scalar(select(func.count(Ticket.id))) == 2
        assert s.scalar(select(func.count(Message.id))) == 3
    again = _sync(db, emulator, box.id)
    assert again.tickets_created == 0
    assert again.fetched == 0


def test_labels_follow_the_ticket(db: Database, emulator: Emulator) -> None:
    with db.unit_of_work() as s:
        box = mailboxes.create_mailbox(
            s, email=MAILBOX, name="Support", auth_kind=MailboxAuthKind.EMULATOR
        )
    imported = emulator.import_raw(mail("Help", message_id="h1@c.test", date=NOW))
    report = _sync(db, emulator, box.id)
    assert report.labels_pushed == 1
    client = GmailClient.for_emulator(MAILBOX, api_url=emulator.url)
    names = {label["id"]: label["name"] for label in client.list_labels()}
    on_thread = {names[i] for i in client.get_thread_label_ids(imported["threadId"])}
    assert {"Support/New", "Support/Unassigned"} <= on_thread
    # The echo of our own write changes nothing.
    echo = _sync(db, emulator, box.id)
    assert echo.label_changes == 0
    assert echo.labels_pushed == 0
