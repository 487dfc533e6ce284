"""A whole mailbox through the sync: 158 real automated messages and 200 generated customer
conversations (with agents' replies from Gmail) → exactly one ticket a conversation, each message
stored once; a second sync and a forced full resync create nothing; a bounce of one of our
replies joins that reply's ticket.

The corpus files are dated 1998-2024, so the mailbox's full sync window is raised to 100 years
(``full_sync_days = 36500``): the window is a product setting for how far back a first sync
reaches, and what is proven here is that every message in it is handled, whatever its date.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.db.session import Database
from app.mailboxes import service as mailboxes
from app.mailboxes.models import Mailbox, MailboxAuthKind
from app.messages.models import Direction, Message
from app.tickets.models import Event, Status, Ticket, TicketTag, TicketThread
from gmail_sync.client import GmailClient, RetryPolicy
from gmail_sync.corpus import Conversation, arrival_order, generate_conversations
from gmail_sync.ingest import AUTOMATED_TAG
from gmail_sync.sync import MailboxSync, SyncReport
from labels.taxonomy import Taxonomy
from tests.conftest import CORPUS
from tests.emulator_fixtures import (  # noqa: F401
    MAILBOX,
    Emulator,
    emulator_fixture,
    emulator_server_fixture,
)

AUTOMATED_FILES = sorted((CORPUS / "automated").glob("*.eml"))
CONVERSATIONS = 200
# A Delivery Status Notification whose embedded original (message/rfc822) has this Message-ID
# once and no In-Reply-To / References: only the embedded id can tie it to a ticket.
BOUNCE_FILE = "lhost-amazonses-03.eml"
BOUNCED_ID = "00000132d6ca0cd4-ff6d8ee5-29a0-4501-a68a-3ff8695254bb-000000@email.amazonses.com"


def _counts(db: Database) -> dict[str, int]:
    with db.session() as s:
        return {
            name: s.scalar(select(func.count()).select_from(model)) or 0
            for name, model in (
                ("tickets", Ticket),
                ("messages", Message),
                ("events", Event),
                ("threads", TicketThread),
            )
        }


def _calls(emulator: Emulator) -> Counter[str]:
    methods = emulator.state.stats()["methods"]
    return Counter({k.removeprefix("gmail.users."): v["calls"] for k, v in methods.items()})


@pytest.fixture
def box(db: Database) -> int:
    with db.unit_of_work() as s:
        mailbox = mailboxes.create_mailbox(
            s, email=MAILBOX, name="Support", auth_kind=MailboxAuthKind.EMULATOR
        )
        mailbox.full_sync_days = 36500  # the corpus is old mail: see the module docstring
        return mailbox.id


@pytest.fixture
def gmail(emulator: Emulator) -> Iterator[GmailClient]:
    client = GmailClient.for_emulator(
        MAILBOX, api_url=emulator.url, retry=RetryPolicy(sleep=lambda _s: None)
    )
    with client:
        yield client


def _import_conversations(emulator: Emulator, conversations: list[Conversation]) -> dict[str, str]:
    """Every message in the order it arrives; agents' replies as Gmail keeps what it sent.
    Returns Message-ID → Gmail message id."""
    gmail_ids: dict[str, str] = {}
    for message in arrival_order(conversations):
        labels = ("SENT",) if message.from_agent else ("INBOX", "UNREAD")
        imported = emulator.state.import_raw(MAILBOX, message.raw, label_ids=labels)
        gmail_ids[message.message_id] = imported["id"]
    return gmail_ids


def test_every_conversation_is_one_ticket_and_nothing_happens_twice(
    db: Database, emulator: Emulator, box: int, gmail: GmailClient
) -> None:
    corpus_ids = {
        emulator.state.import_raw(MAILBOX, path.read_bytes())["id"]: path.name
        for path in AUTOMATED_FILES
    }
    assert len(corpus_ids) == 158
    start = datetime.now(UTC) - timedelta(days=14)
    conversations = generate_conversations(
        CONVERSATIONS, seed=3, mailbox=MAILBOX, start=start, agent_replies=True
    )
    gmail_ids = _import_conversations(emulator, conversations)
    total = len(corpus_ids) + len(gmail_ids)

    def sync() -> SyncReport:
        return MailboxSync(db, box, gmail, taxonomy=Taxonomy()).run()

    first = sync()
    assert first.full_sync
    assert first.fetched == total
    assert first.errors == []
    assert _calls(emulator)["messages.get"] == total  # each message fetched once
    assert _calls(emulator)["labels.list"] == 1

    with db.session() as s:
        rows = {m.gmail_message_id: m for m in s.scalars(select(Message))}
        tags = {(t.ticket_id, t.tag) for t in s.scalars(select(TicketTag))}
        tickets = {t.id: t for t in s.scalars(select(Ticket))}
    assert len(rows) == total  # every message stored, once (the key is unique)

    # Customers: one ticket per conversation, a different one for each.
    ticket_of_conversation: dict[int, int] = {}
    for index, conversation in enumerate(conversations):
        found = {rows[gmail_ids[m.message_id]].ticket_id for m in conversation.messages}
        assert len(found) == 1, (conversation.subject, found)
        ticket_id = found.pop()
        assert ticket_id is not None
        ticket_of_conversation[index] = ticket_id
        ticket = tickets[ticket_id]
        assert ticket.subject == conversation.subject
        assert (ticket_id, AUTOMATED_TAG) not in tags
        answered = any(m.from_agent for m in conversation.messages)
        assert ticket.status == (Status.OPEN if answered else Status.NEW)
        assert (ticket.first_response_at is not None) == answered
        for message in conversation.messages:
            row = rows[gmail_ids[message.message_id]]
            expected = Direction.OUTBOUND if message.from_agent else Direction.INBOUND
            assert row.direction == expected
            assert not row.is_automated or message.from_agent  # "sent-label" for ours
    assert len(set(ticket_of_conversation.values())) == CONVERSATIONS

    # Automated mail: stored with its verdict, on tickets tagged automated, none a customer's.
    customer_tickets = set(ticket_of_conversation.values())
    automated_tickets = set()
    for gmail_id, name in corpus_ids.items():
        row = rows[gmail_id]
        assert row.is_automated, name
        assert row.automated_reasons, name
        assert row.ticket_id is not None, name
        assert (row.ticket_id, AUTOMATED_TAG) in tags, name
        automated_tickets.add(row.ticket_id)
    assert not automated_tickets & customer_tickets
    assert len(tickets) == CONVERSATIONS + len(automated_tickets)

    # A second sync (history: only the echo of our label pushes) creates nothing.
    settled = _counts(db)
    second = sync()
    assert (second.full_sync, second.fetched, second.tickets_created) == (False, 0, 0)
    assert second.label_changes == 0
    assert _counts(db) == settled
    emulator.state.reset_stats()
    idle = sync()
    assert (idle.fetched, idle.labels_pushed) == (0, 0)
    assert dict(+_calls(emulator)) == {"history.list": 1}
    assert emulator.state.stats()["units"] == 2

    # A full resync forced by Gmail (history 404) and one forced by us: nothing new either.
    emulator.state.expire_history(MAILBOX)
    emulator.state.reset_stats()
    expired = sync()
    assert expired.full_sync
    assert (expired.fetched, expired.tickets_created, expired.label_changes) == (0, 0, 0)
    assert expired.labels_pushed == 0
    assert _calls(emulator)["messages.get"] == 0
    with db.unit_of_work() as s:
        s.get_one(Mailbox, box).history_id = None
    forced = sync()
    assert forced.full_sync
    assert (forced.fetched, forced.tickets_created, forced.label_changes) == (0, 0, 0)
    assert _counts(db) == settled

    # A bounce of one of OUR replies (sent through Gmail) joins that reply's ticket.
    conversation = conversations[0]
    ticket_id = ticket_of_conversation[0]
    thread_id = rows[gmail_ids[conversation.messages[0].message_id]].gmail_thread_id
    our_id = "reply-0001@shop.test"
    sent = gmail.send_raw(
        _reply(conversation, our_id),
        thread_id=thread_id,
    )
    sync()
    bounce_raw = _bounce_of(our_id)
    bounce = emulator.state.import_raw(MAILBOX, bounce_raw)
    assert bounce["threadId"] != thread_id
    report = sync()
    assert report.tickets_created == 0
    with db.session() as s:
        stored = s.scalar(select(Message).where(Message.gmail_message_id == bounce["id"]))
        reply = s.scalar(select(Message).where(Message.gmail_message_id == sent["id"]))
        threads = set(
            s.scalars(
                select(TicketThread.gmail_thread_id).where(TicketThread.ticket_id == ticket_id)
            )
        )
    assert reply is not None
    assert reply.ticket_id == ticket_id
    assert stored is not None
    assert stored.ticket_id == ticket_id
    assert stored.is_automated
    assert threads == {thread_id, bounce["threadId"]}
    assert _counts(db)["tickets"] == settled["tickets"]


def _reply(conversation: Conversation, message_id: str) -> bytes:
    last = conversation.messages[-1]
    return (
        f"From: Shop Support <{MAILBOX}>\r\n"
        f"To: {conversation.customer_email}\r\n"
        f"Subject: Re: {conversation.subject}\r\n"
        f"Message-ID: <{message_id}>\r\n"
        f"In-Reply-To: <{last.message_id}>\r\n"
        f"References: <{last.message_id}>\r\n"
        f"Date: {format_datetime(datetime.now(UTC))}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        "We have sent a replacement.\r\n"
    ).encode()


def _bounce_of(message_id: str) -> bytes:
    """A real bounce, its embedded original rewritten to carry our Message-ID."""
    raw = (Path(CORPUS / "automated" / BOUNCE_FILE)).read_bytes()
    assert raw.count(BOUNCED_ID.encode()) == 1
    return raw.replace(BOUNCED_ID.encode(), message_id.encode())
