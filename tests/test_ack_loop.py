"""Two Inboxdesk mailboxes writing to each other: each acknowledges the other's person once, and
neither acknowledges the other's acknowledgement — the exchange stops.

The emulator delivers a send to the mailboxes it hosts (To/Cc/Bcc → the recipient's INBOX), so
each mailbox's acknowledgement really lands in the other's INBOX and is synced there. Once as two
mailboxes of one installation (one database, one signing key), once as two installations (two
databases, each with its own key: only the acknowledgement's own headers can stop the loop).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.db import migrations
from app.db.session import Database
from app.mailboxes import service as mailboxes
from app.mailboxes.models import MailboxAuthKind
from app.messages.models import Direction, Message
from app.outbox.models import OutboxMessage, OutboxStatus
from app.tickets.models import Ticket
from gmail_sync.client import GmailClient, RetryPolicy
from gmail_sync.emulator.mailbox import StoredMessage
from gmail_sync.parse import parse_message
from gmail_sync.worker import Worker
from labels.taxonomy import Taxonomy
from tests.emulator_fixtures import (  # noqa: F401
    MAILBOX,
    OTHER_MAILBOX,
    Emulator,
    emulator_fixture,
    emulator_server_fixture,
    mail,
)
from tests.scratch_db import scratch_database_url

A, B = MAILBOX, OTHER_MAILBOX
NO_SLEEP = RetryPolicy(sleep=lambda _s: None)
PASSES = 6


def _client(emulator: Emulator, address: str) -> GmailClient:
    return GmailClient.for_emulator(address, api_url=emulator.url, retry=NO_SLEEP)


def _worker(database: Database, emulator: Emulator, only: str | None = None) -> Worker:
    return Worker(
        database,
        lambda mailbox: _client(emulator, mailbox.email),
        taxonomy=Taxonomy(),
        only_mailbox=only,
    )


def _add_mailbox(database: Database, address: str, name: str) -> None:
    with database.unit_of_work() as s:
        mailboxes.create_mailbox(s, email=address, name=name, auth_kind=MailboxAuthKind.EMULATOR)


def _people_write_to_each_other(emulator: Emulator) -> None:
    """A person at each desk writes to the other desk from Gmail (no robot headers)."""
    now = format_datetime(datetime.now(UTC))
    for sender, to, subject in ((A, B, "Invoice 77 for the shop"), (B, A, "Parcel 12 is late")):
        with _client(emulator, sender) as gmail:
            raw = mail(subject, message_id=f"person-{sender}", sender=sender, to=to, date=now)
            gmail.send_raw(raw)


def _messages(emulator: Emulator, address: str) -> list[StoredMessage]:
    with emulator.state.lock:
        return list(emulator.state.mailbox(address).messages.values())


def _auto_replies(emulator: Emulator, address: str, label: str) -> list[StoredMessage]:
    return [
        m
        for m in _messages(emulator, address)
        if label in m.label_ids
        and parse_message(m.raw).headers.get("auto-submitted") == ("auto-replied",)
    ]


def _assert_one_ack_each_way(emulator: Emulator) -> None:
    for own, other in ((A, B), (B, A)):
        (ack,) = _auto_replies(emulator, own, "SENT")
        assert parse_message(ack.raw).to == (other,)
        (received,) = _auto_replies(emulator, own, "INBOX")
        assert parse_message(received.raw).from_address == other
        # Each mailbox holds: its person's mail (SENT), its ack (SENT), the other's two (INBOX).
        assert len(_messages(emulator, own)) == 4


def _assert_database(database: Database, own: tuple[str, ...]) -> None:
    """Each mailbox of this database: one acknowledgement, sent to the other desk; the other
    desk's acknowledgement stored as automated mail (RFC 3834's header among the reasons) and
    acknowledged by nobody."""
    with database.session() as s:
        rows = list(s.scalars(select(OutboxMessage)))
        assert sorted(r.to_address for r in rows) == sorted(B if a == A else A for a in own)
        assert {r.status for r in rows} == {OutboxStatus.SENT}
        received = list(
            s.scalars(
                select(Message).where(
                    Message.direction == Direction.INBOUND, Message.is_automated.is_(True)
                )
            )
        )
        assert len(received) == len(own)
        for message in received:
            assert "auto-submitted:auto-replied" in message.automated_reasons
            assert message.ticket_id is not None
        # The people's mail opened one ticket each; an acknowledgement opens at most one more
        # (or joins the ticket its "[#n]" names, when that ticket's customer is its sender).
        tickets = s.scalar(select(func.count(Ticket.id)))
        assert len(own) <= tickets <= 2 * len(own)


def test_two_mailboxes_of_one_installation_stop_after_one_ack_each_way(
    db: Database, emulator: Emulator
) -> None:
    """One worker syncs both mailboxes, pass after pass: two acknowledgements in all, then
    silence."""
    _add_mailbox(db, A, "Shop Support")
    _add_mailbox(db, B, "Shop Billing")
    worker = _worker(db, emulator)
    worker.run_once()
    _people_write_to_each_other(emulator)
    sent = [sum(r.acks_sent for r in worker.run_once()) for _ in range(PASSES)]
    assert sum(sent) == 2, sent
    assert sent[-3:] == [0, 0, 0]
    _assert_one_ack_each_way(emulator)
    _assert_database(db, (A, B))


@pytest.fixture
def two_installations(database_url: str, tmp_path: Path) -> Iterator[tuple[Database, Database]]:
    """Two empty databases on the suite's backend, migrated: two Inboxdesk installations."""
    with (
        scratch_database_url(database_url, tmp_path, prefix="inboxdesk_loop_a") as url_a,
        scratch_database_url(database_url, tmp_path, prefix="inboxdesk_loop_b") as url_b,
    ):
        databases = []
        for url in (url_a, url_b):
            migrations.upgrade(url=url)
            databases.append(Database.from_url(url))
        try:
            yield databases[0], databases[1]
        finally:
            for database in databases:
                database.dispose()


def test_two_installations_writing_to_each_other_stop_after_one_ack_each_way(
    two_installations: tuple[Database, Database], emulator: Emulator
) -> None:
    """Two helpdesks that know nothing of each other (separate databases and signing keys),
    each with its worker: the acknowledgement's Auto-Submitted header alone ends the exchange."""
    db_a, db_b = two_installations
    _add_mailbox(db_a, A, "Shop Support")
    _add_mailbox(db_b, B, "Partner Desk")
    workers = [_worker(db_a, emulator), _worker(db_b, emulator)]
    for worker in workers:
        worker.run_once()
    _people_write_to_each_other(emulator)
    sent = [sum(r.acks_sent for w in workers for r in w.run_once()) for _ in range(PASSES)]
    assert sum(sent) == 2, sent
    assert sent[-3:] == [0, 0, 0]
    _assert_one_ack_each_way(emulator)
    _assert_database(db_a, (A,))
    _assert_database(db_b, (B,))
