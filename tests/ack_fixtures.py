"""Shared pieces of the acknowledgement tests: a mailbox on the emulator, its sync, and readers of
what the sync left in the database (outbox rows, events).

A test module gets the fixtures with
``from tests.ack_fixtures import ack_box_fixture, ack_gmail_fixture  # noqa: F401`` next to the
emulator's (``tests.emulator_fixtures``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest
from sqlalchemy import select

from app.db.session import Database
from app.mailboxes import service as mailboxes
from app.mailboxes.models import MailboxAuthKind
from app.outbox.models import OutboxMessage
from app.tickets.models import Event, Ticket
from gmail_sync.client import GmailClient, RetryPolicy
from gmail_sync.sync import MailboxSync, SyncReport
from labels.taxonomy import Taxonomy
from tests.emulator_fixtures import MAILBOX, Emulator


def now_header() -> str:
    """A Date header value for now: the first sync reads only recent mail."""
    return format_datetime(datetime.now(UTC))


def customer_mail(
    subject: str,
    *,
    message_id: str,
    sender: str = "ann@customer.test",
    body: str = "Hello, my order 4821 has not arrived yet.",
    in_reply_to: str | None = None,
    references: tuple[str, ...] = (),
    extra: tuple[str, ...] = (),
    charset: str = "utf-8",
    to: str = MAILBOX,
) -> bytes:
    """A customer's message, as a mail client writes it (8bit body, CRLF line ends)."""
    lines = [
        f"From: {sender}",
        f"To: {to}",
        f"Subject: {subject}",
        f"Message-ID: <{message_id}>",
        f"Date: {now_header()}",
    ]
    if in_reply_to:
        lines.append(f"In-Reply-To: <{in_reply_to}>")
    if references:
        lines.append("References: " + " ".join(f"<{r}>" for r in references))
    lines += list(extra)
    lines += [
        "MIME-Version: 1.0",
        f"Content-Type: text/plain; charset={charset}",
        "Content-Transfer-Encoding: 8bit",
        "",
        body,
        "",
    ]
    return "\r\n".join(lines).encode(charset)


def sync(db: Database, mailbox_id: int, gmail: GmailClient) -> SyncReport:
    return MailboxSync(db, mailbox_id, gmail, taxonomy=Taxonomy()).run()


def outbox_rows(db: Database) -> list[OutboxMessage]:
    with db.session() as s:
        return list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def events(db: Database, field: str) -> list[Event]:
    with db.session() as s:
        return list(s.scalars(select(Event).where(Event.field == field).order_by(Event.id)))


def tickets(db: Database) -> list[Ticket]:
    with db.session() as s:
        return list(s.scalars(select(Ticket).order_by(Ticket.number)))


def ticket_of_thread(db: Database, thread_id: str) -> Ticket:
    from app.tickets.models import TicketThread

    with db.session() as s:
        ticket_id = s.scalar(
            select(TicketThread.ticket_id).where(TicketThread.gmail_thread_id == thread_id)
        )
        ticket = s.get(Ticket, ticket_id)
        assert ticket is not None
        return ticket


@pytest.fixture(name="ack_box")
def ack_box_fixture(db: Database) -> int:
    """support@shop.test on the emulator, acknowledgements on (the default)."""
    with db.unit_of_work() as s:
        mailbox = mailboxes.create_mailbox(
            s, email=MAILBOX, name="Shop Support", auth_kind=MailboxAuthKind.EMULATOR
        )
        return mailbox.id


@pytest.fixture(name="ack_gmail")
def ack_gmail_fixture(emulator: Emulator) -> Iterator[GmailClient]:
    client = GmailClient.for_emulator(
        MAILBOX, api_url=emulator.url, retry=RetryPolicy(sleep=lambda _s: None)
    )
    with client:
        yield client


def import_inbox(emulator: Emulator, raw: bytes, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("label_ids", ("INBOX", "UNREAD"))
    return emulator.state.import_raw(MAILBOX, raw, **kwargs)
