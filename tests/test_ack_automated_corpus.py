"""Never an acknowledgement to automated mail: the 158 real automated messages of
``../shared/corpus/automated/`` (bounces, auto-replies, lists, complaints …) go through the real
sync against the emulator — half in the first, full sync, half in a later, incremental one — and
every one is stored as automated with at least one reason, and none gets an outbox row (nor a
"skipped" event: they are not candidates at all). Customers' mail in the same passes is
acknowledged, so the pipeline under test is live.

The corpus is dated 1998-2024: the mailbox's first-sync window is raised to 100 years (see
tests/test_sync_corpus.py)."""

from __future__ import annotations

from sqlalchemy import select

from app.db.session import Database
from app.mailboxes.models import Mailbox
from app.messages.models import Message
from gmail_sync.client import GmailClient
from tests.ack_fixtures import (  # noqa: F401
    ack_box_fixture,
    ack_gmail_fixture,
    customer_mail,
    events,
    import_inbox,
    outbox_rows,
    sync,
)
from tests.conftest import CORPUS
from tests.emulator_fixtures import (  # noqa: F401
    MAILBOX,
    Emulator,
    emulator_fixture,
    emulator_server_fixture,
)

AUTOMATED_FILES = sorted((CORPUS / "automated").glob("*.eml"))


def test_no_acknowledgement_for_any_automated_message(
    db: Database, emulator: Emulator, ack_box: int, ack_gmail: GmailClient
) -> None:
    assert len(AUTOMATED_FILES) == 158
    with db.unit_of_work() as s:
        s.get_one(Mailbox, ack_box).full_sync_days = 36500
    names: dict[str, str] = {}
    half = len(AUTOMATED_FILES) // 2
    for path in AUTOMATED_FILES[:half]:
        names[emulator.state.import_raw(MAILBOX, path.read_bytes())["id"]] = path.name
    control_1 = import_inbox(emulator, customer_mail("Order", message_id="c1@customer.test"))
    first = sync(db, ack_box, ack_gmail)
    assert first.full_sync
    for path in AUTOMATED_FILES[half:]:
        names[emulator.state.import_raw(MAILBOX, path.read_bytes())["id"]] = path.name
    control_2 = import_inbox(
        emulator, customer_mail("Refund", message_id="c2@customer.test", sender="bob@c.test")
    )
    second = sync(db, ack_box, ack_gmail)
    assert not second.full_sync
    assert first.fetched + second.fetched == 160

    with db.session() as s:
        rows = {m.gmail_message_id: m for m in s.scalars(select(Message))}
    automated_tickets: set[int] = set()
    for gmail_id, name in names.items():
        row = rows[gmail_id]
        assert row.is_automated, name
        assert len(row.automated_reasons) >= 1, name
        assert row.ticket_id is not None, name
        automated_tickets.add(row.ticket_id)

    queued = outbox_rows(db)
    assert not {r.ticket_id for r in queued} & automated_tickets
    assert sorted(r.ticket_id for r in queued) == sorted(
        rows[c["id"]].ticket_id for c in (control_1, control_2)
    )
    assert not {e.ticket_id for e in events(db, "acknowledgement_skipped")} & automated_tickets
