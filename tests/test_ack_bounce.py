"""Bounces of our own mail, through the real sync: a delivery failure notice naming one of our
Message-IDs — an acknowledgement (by its outbox row, or by the HMAC once the row is purged) or
an agent's reply sent from Gmail — joins that ticket, opens none, and leaves one
``delivery_failed`` event saying who could not be reached and why; once per notice, whatever
is synced again. A notice about mail that is not ours opens an automated ticket, no event.
The failure summary is read from the DSN (or Exim's header) of the real bounces in the corpus."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from app.db.session import Database
from app.messages.models import Message
from app.outbox.models import OutboxMessage
from app.tickets.models import TicketTag, TicketThread
from gmail_sync.bounce import failure_summary
from gmail_sync.client import GmailClient
from gmail_sync.ingest import AUTOMATED_TAG
from tests.ack_fixtures import (  # noqa: F401
    ack_box_fixture,
    ack_gmail_fixture,
    customer_mail,
    events,
    import_inbox,
    outbox_rows,
    sync,
    tickets,
)
from tests.conftest import CORPUS
from tests.emulator_fixtures import (  # noqa: F401
    MAILBOX,
    Emulator,
    emulator_fixture,
    emulator_server_fixture,
)

AUTOMATED = CORPUS / "automated"
# An Amazon SES bounce whose embedded original (message/rfc822) carries this Message-ID once,
# with no In-Reply-To / References: only the embedded id ties it to a ticket.
BOUNCE_FILE = "lhost-amazonses-03.eml"
BOUNCED_ID = "00000132d6ca0cd4-ff6d8ee5-29a0-4501-a68a-3ff8695254bb-000000@email.amazonses.com"
FAILED = "kijitora@example.jp: 5.0.0 (smtp; 5.1.0 - Unknown address error 550-'5.2.2"
DELIVERY_FAILED = "delivery_failed"


def _bounce_of(message_id: str) -> bytes:
    """The real bounce, its embedded original rewritten to be ``message_id`` (bare)."""
    raw = (AUTOMATED / BOUNCE_FILE).read_bytes()
    assert raw.count(BOUNCED_ID.encode()) == 1
    return raw.replace(BOUNCED_ID.encode(), message_id.encode())


def _threads_of(db: Database, ticket_id: int) -> set[str]:
    with db.session() as s:
        return set(
            s.scalars(
                select(TicketThread.gmail_thread_id).where(TicketThread.ticket_id == ticket_id)
            )
        )


@pytest.mark.parametrize("purged", [False, True], ids=["outbox-row", "hmac-only"])
def test_a_bounce_of_our_acknowledgement_is_an_event_on_its_ticket(
    db: Database, emulator: Emulator, ack_box: int, ack_gmail: GmailClient, purged: bool
) -> None:
    first = import_inbox(emulator, customer_mail("Order", message_id="o1@customer.test"))
    sync(db, ack_box, ack_gmail)
    (row,) = outbox_rows(db)
    if purged:
        with db.unit_of_work() as s:
            s.execute(delete(OutboxMessage))
    bounce = import_inbox(emulator, _bounce_of(row.rfc822_message_id.strip("<>")))
    assert bounce["threadId"] != first["threadId"]
    report = sync(db, ack_box, ack_gmail)
    assert report.tickets_created == 0

    with db.session() as s:
        stored = s.scalar(select(Message).where(Message.gmail_message_id == bounce["id"]))
    assert stored is not None
    assert stored.ticket_id == row.ticket_id
    assert stored.is_automated
    assert _threads_of(db, row.ticket_id) == {first["threadId"], bounce["threadId"]}
    (event,) = events(db, DELIVERY_FAILED)
    assert event.ticket_id == row.ticket_id
    assert str(event.new_value).startswith(FAILED)
    assert event.actor_kind.value == "sync"

    # Once per notice: a second pass and a full resync add nothing.
    sync(db, ack_box, ack_gmail)
    emulator.state.expire_history(MAILBOX)
    sync(db, ack_box, ack_gmail)
    assert len(events(db, DELIVERY_FAILED)) == 1
    assert len(tickets(db)) == 1


def test_a_bounce_of_an_agent_reply_sent_from_gmail_is_an_event_too(
    db: Database, emulator: Emulator, ack_box: int, ack_gmail: GmailClient
) -> None:
    """Our mail is also what agents send from Gmail (synced from Sent); without a DSN the event
    names the bounced Message-ID."""
    first = import_inbox(emulator, customer_mail("Invoice", message_id="i1@customer.test"))
    reply = (
        f"From: Shop Support <{MAILBOX}>\r\nTo: ann@customer.test\r\nSubject: Re: Invoice\r\n"
        "Message-ID: <reply-1@shop.test>\r\nIn-Reply-To: <i1@customer.test>\r\n"
        f"Date: {format_datetime(datetime.now(UTC))}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nAttached.\r\n"
    ).encode()
    emulator.state.import_raw(MAILBOX, reply, label_ids=("SENT",), thread_id=first["threadId"])
    sync(db, ack_box, ack_gmail)
    # A bounce without a machine-readable part: a multipart/report whose DSN part is missing,
    # quoting our headers as text.
    notice = (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.org>\r\n"
        f"To: {MAILBOX}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <notice-1@mx.example.org>\r\n"
        f"Date: {format_datetime(datetime.now(UTC))}\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nI could not deliver your message.\r\n"
        "--b\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        "Message-ID: <reply-1@shop.test>\r\nSubject: Re: Invoice\r\n\r\n--b--\r\n"
    ).encode()
    import_inbox(emulator, notice)
    report = sync(db, ack_box, ack_gmail)
    assert report.tickets_created == 0
    (ticket,) = tickets(db)
    (event,) = events(db, DELIVERY_FAILED)
    assert (event.ticket_id, event.new_value) == (ticket.id, "reply-1@shop.test")


def test_a_bounce_of_mail_that_is_not_ours_opens_an_automated_ticket(
    db: Database, emulator: Emulator, ack_box: int, ack_gmail: GmailClient
) -> None:
    sync(db, ack_box, ack_gmail)  # the first, full sync: the bounce (dated 2012) comes later
    import_inbox(emulator, _bounce_of("somebody-else@elsewhere.example"))
    report = sync(db, ack_box, ack_gmail)
    assert report.tickets_created == 1
    assert events(db, DELIVERY_FAILED) == []
    assert outbox_rows(db) == []
    with db.session() as s:
        tags = set(s.scalars(select(TicketTag.tag)))
    assert tags == {AUTOMATED_TAG}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "lhost-amavis-02.eml",
            "neko@example.co.jp: 5.1.1 (smtp; 550 5.1.1 <neko@example.co.jp>: Recipient address "
            "rejected: User unknown in virtual mailbox table)",
        ),
        ("lhost-exim-31.eml", "kijitora@example.net"),  # X-Failed-Recipients only
        ("rfc3464-35.eml", "kijitora@nyaan.example.com: 5.0.0"),  # broken MIME: from the text
        ("arf-01.eml", None),  # a complaint, not a delivery failure
    ],
)
def test_failure_summary(name: str, expected: str | None) -> None:
    assert failure_summary((AUTOMATED / name).read_bytes()) == expected


def test_failure_summary_reads_most_real_bounces() -> None:
    """Of the corpus's delivery status notifications, nearly all name the failed recipient."""
    from gmail_sync.automated import automated_verdict
    from gmail_sync.parse import parse_message

    notices = read = 0
    for path in sorted(Path(AUTOMATED).glob("*.eml")):
        raw = path.read_bytes()
        if "message/delivery-status" in automated_verdict(parse_message(raw)).reasons:
            notices += 1
            summary = failure_summary(raw)
            read += summary is not None and "@" in summary
    assert notices >= 60
    assert read >= notices - 5
