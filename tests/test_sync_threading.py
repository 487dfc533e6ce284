"""Which ticket a Gmail message joins: threads, our Message-IDs, ``[#number]``, closed tickets.

Each test drives the real sync (``MailboxSync``) against the emulator over HTTP with the unmodified
Google client, and reads the outcome from the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from sqlalchemy import func, select

from app.db.session import Database
from app.mailboxes import service as mailboxes
from app.mailboxes.models import MailboxAuthKind
from app.messages.models import Direction, Message
from app.tickets import service as tickets
from app.tickets.events import Actor
from app.tickets.models import ActorKind, Event, Status, Ticket, TicketThread
from app.tickets.schemas import TicketUpdate
from gmail_sync.client import GmailClient, RetryPolicy
from gmail_sync.sync import MailboxSync, SyncReport
from labels.taxonomy import Taxonomy
from tests.emulator_fixtures import (  # noqa: F401
    MAILBOX,
    Emulator,
    emulator_fixture,
    emulator_server_fixture,
    mail,
)

NOW = format_datetime(datetime.now(UTC))
CUSTOMER = "ann@customer.test"
STRANGER = "mallory@elsewhere.test"


@dataclass
class Desk:
    """One mailbox of the helpdesk wired to the emulator."""

    db: Database
    emulator: Emulator
    mailbox_id: int
    client: GmailClient

    def sync(self) -> SyncReport:
        return MailboxSync(self.db, self.mailbox_id, self.client, taxonomy=Taxonomy()).run()

    def receive(self, subject: str, message_id: str, **kwargs: object) -> dict[str, str]:
        """A customer's message arrives in INBOX (dated now, so a full sync sees it)."""
        kwargs.setdefault("date", NOW)
        return self.emulator.import_raw(mail(subject, message_id=message_id, **kwargs))  # type: ignore[arg-type]

    def agent_sends(self, subject: str, message_id: str, **kwargs: object) -> dict[str, str]:
        """An agent answers from Gmail itself: the message carries SENT and our address."""
        kwargs.setdefault("date", NOW)
        kwargs.setdefault("sender", MAILBOX)
        kwargs.setdefault("to", CUSTOMER)
        raw = mail(subject, message_id=message_id, **kwargs)  # type: ignore[arg-type]
        return self.emulator.import_raw(raw, labels=("SENT",))

    def ticket_of(self, gmail_id: str) -> Ticket | None:
        with self.db.session() as s:
            ticket_id = s.scalar(
                select(Message.ticket_id).where(Message.gmail_message_id == gmail_id)
            )
            return None if ticket_id is None else tickets.get_ticket(s, ticket_id)

    def ticket_count(self) -> int:
        with self.db.session() as s:
            return s.scalar(select(func.count(Ticket.id))) or 0

    def set_status(self, ticket_id: int, status: Status) -> None:
        with self.db.unit_of_work() as s:
            ticket = tickets.get_ticket(s, ticket_id)
            tickets.update_ticket(
                s,
                ticket_id=ticket_id,
                update=TicketUpdate(version=ticket.version, status=status),
                actor=Actor.system(),
            )

    def events(self, ticket_id: int, field: str) -> list[Event]:
        with self.db.session() as s:
            stmt = select(Event).where(Event.ticket_id == ticket_id, Event.field == field)
            return list(s.scalars(stmt.order_by(Event.id)))


@pytest.fixture
def desk(db: Database, emulator: Emulator) -> Iterator[Desk]:
    with db.unit_of_work() as s:
        box = mailboxes.create_mailbox(
            s, email=MAILBOX, name="Support", auth_kind=MailboxAuthKind.EMULATOR
        )
    client = GmailClient.for_emulator(
        MAILBOX, api_url=emulator.url, retry=RetryPolicy(sleep=lambda _s: None)
    )
    with client:
        yield Desk(db=db, emulator=emulator, mailbox_id=box.id, client=client)


def test_reply_in_a_new_gmail_thread_joins_by_our_message_id(desk: Desk) -> None:
    """A changed subject makes Gmail start a new thread; a reference to OUR message still joins
    the ticket, while a reference to the customer's own message (not ours) does not."""
    first = desk.receive("Order 17 never arrived", "c1@customer.test")
    desk.sync()
    desk.agent_sends(
        "Re: Order 17 never arrived", "agent1@shop.test", references=("c1@customer.test",)
    )
    desk.sync()
    ticket = desk.ticket_of(first["id"])
    assert ticket is not None

    moved = desk.receive(
        "Still nothing - tracking number?",
        "c2@customer.test",
        references=("c1@customer.test", "agent1@shop.test"),
    )
    assert moved["threadId"] != first["threadId"]  # Gmail did not thread it
    desk.sync()
    joined = desk.ticket_of(moved["id"])
    assert joined is not None
    assert joined.id == ticket.id
    assert set(joined.gmail_thread_ids) == {first["threadId"], moved["threadId"]}

    own_only = desk.receive(
        "A different question", "c3@customer.test", references=("c1@customer.test",)
    )
    desk.sync()
    other = desk.ticket_of(own_only["id"])
    assert other is not None
    assert other.id != ticket.id
    assert desk.ticket_count() == 2


def test_ticket_number_in_the_subject_joins_only_for_its_customer(desk: Desk) -> None:
    first = desk.receive("Broken kettle", "k1@customer.test")
    desk.sync()
    ticket = desk.ticket_of(first["id"])
    assert ticket is not None
    tag = f"[#{ticket.number}]"

    own = desk.receive(f"Photos for {tag}", "k2@customer.test")
    stranger = desk.receive(f"About {tag}", "m1@elsewhere.test", sender=STRANGER)
    desk.sync()

    assert own["threadId"] != first["threadId"]
    joined = desk.ticket_of(own["id"])
    assert joined is not None
    assert joined.id == ticket.id
    separate = desk.ticket_of(stranger["id"])
    assert separate is not None
    assert separate.id != ticket.id
    with desk.db.session() as s:
        assert tickets.get_ticket(s, separate.id).customer.email == STRANGER
    assert desk.ticket_count() == 2


def test_message_on_a_closed_ticket_opens_a_linked_ticket_and_moves_the_thread(
    desk: Desk,
) -> None:
    first = desk.receive("Refund for order 5", "r1@customer.test")
    desk.sync()
    old = desk.ticket_of(first["id"])
    assert old is not None
    desk.set_status(old.id, Status.CLOSED)

    again = desk.receive(
        "Re: Refund for order 5", "r2@customer.test", references=("r1@customer.test",)
    )
    assert again["threadId"] == first["threadId"]
    desk.sync()

    new = desk.ticket_of(again["id"])
    assert new is not None
    assert new.id != old.id
    assert new.previous_ticket_id == old.id
    assert new.status == Status.NEW
    assert new.gmail_thread_ids == [first["threadId"]]
    with desk.db.session() as s:
        assert tickets.get_ticket(s, old.id).status == Status.CLOSED
        assert tickets.get_ticket(s, old.id).gmail_thread_ids == []
        owner = s.scalar(
            select(TicketThread.ticket_id).where(TicketThread.gmail_thread_id == first["threadId"])
        )
    assert owner == new.id
    # The earlier message stays with the ticket it was part of.
    kept = desk.ticket_of(first["id"])
    assert kept is not None
    assert kept.id == old.id


@pytest.mark.parametrize("status", [Status.PENDING, Status.RESOLVED])
def test_customer_reply_reopens(desk: Desk, status: Status) -> None:
    first = desk.receive("Wrong size", "w1@customer.test")
    desk.sync()
    ticket = desk.ticket_of(first["id"])
    assert ticket is not None
    desk.set_status(ticket.id, Status.OPEN)
    desk.set_status(ticket.id, status)

    reply = desk.receive("Re: Wrong size", "w2@customer.test", references=("w1@customer.test",))
    desk.sync()

    after = desk.ticket_of(reply["id"])
    assert after is not None
    assert after.id == ticket.id
    assert after.status == Status.OPEN
    last = desk.events(ticket.id, "status")[-1]
    assert (last.old_value, last.new_value) == (status.value, Status.OPEN.value)
    assert last.actor_kind == ActorKind.CUSTOMER
    assert last.actor_id == after.customer_id


def test_agent_reply_from_gmail_is_the_first_response(desk: Desk) -> None:
    first = desk.receive("Where is my parcel", "p1@customer.test")
    desk.sync()
    ticket = desk.ticket_of(first["id"])
    assert ticket is not None
    assert ticket.status == Status.NEW
    assert ticket.first_response_at is None

    sent_at = datetime.now(UTC).replace(microsecond=0)
    reply = desk.agent_sends(
        "Re: Where is my parcel",
        "a1@shop.test",
        references=("p1@customer.test",),
        date=format_datetime(sent_at),
    )
    desk.sync()

    after = desk.ticket_of(reply["id"])
    assert after is not None
    assert after.id == ticket.id
    assert after.status == Status.OPEN
    assert after.first_response_at is not None
    assert after.first_response_at.replace(tzinfo=UTC) == sent_at
    with desk.db.session() as s:
        stored = s.scalar(select(Message).where(Message.gmail_message_id == reply["id"]))
    assert stored is not None
    assert stored.direction == Direction.OUTBOUND
    status_event = desk.events(ticket.id, "status")[-1]
    assert status_event.actor_kind == ActorKind.SYNC
    # A second agent reply is not a first response any more.
    desk.agent_sends("Re: Where is my parcel", "a2@shop.test", references=("a1@shop.test",))
    desk.sync()
    assert len(desk.events(ticket.id, "first_response_at")) == 1


def test_drafts_spam_and_trash_are_not_tickets(desk: Desk) -> None:
    """Neither on the first (full) sync nor later; mail rescued from spam becomes a ticket."""
    desk.emulator.import_raw(mail("Draft", message_id="d1@shop.test", date=NOW), labels=("DRAFT",))
    spam = desk.emulator.import_raw(
        mail("Cheap pills", message_id="s1@spam.test", date=NOW), labels=("SPAM",)
    )
    desk.emulator.import_raw(mail("Old", message_id="t1@c.test", date=NOW), labels=("TRASH",))
    desk.sync()
    desk.emulator.import_raw(
        mail("Draft 2", message_id="d2@shop.test", date=NOW), labels=("DRAFT",)
    )
    desk.emulator.import_raw(mail("Spam 2", message_id="s2@spam.test", date=NOW), labels=("SPAM",))
    desk.emulator.import_raw(mail("Old 2", message_id="t2@c.test", date=NOW), labels=("TRASH",))
    desk.sync()
    assert desk.ticket_count() == 0
    # Not even fetched: the listing and the history records say what they are.
    assert "gmail.users.messages.get" not in desk.emulator.state.stats()["methods"]

    # A person marks the message "not spam": it moves to INBOX and is a customer's after all.
    desk.emulator.service().users().messages().modify(
        userId="me", id=spam["id"], body={"addLabelIds": ["INBOX"], "removeLabelIds": ["SPAM"]}
    ).execute()
    desk.sync()
    rescued = desk.ticket_of(spam["id"])
    assert rescued is not None
    assert desk.ticket_count() == 1


def test_one_thread_one_ticket_even_in_one_batch(desk: Desk) -> None:
    """Several messages of one thread fetched in the same batch (full sync and history pass)."""
    a = desk.receive("Two items missing", "b1@customer.test")
    desk.receive("Re: Two items missing", "b2@customer.test", references=("b1@customer.test",))
    desk.receive(
        "Re: Two items missing",
        "b3@customer.test",
        references=("b1@customer.test", "b2@customer.test"),
    )
    first = desk.sync()
    assert first.full_sync
    assert first.tickets_created == 1

    c = desk.receive("Gift card", "g1@customer.test", sender="bob@customer.test")
    desk.receive(
        "Re: Gift card",
        "g2@customer.test",
        sender="bob@customer.test",
        references=("g1@customer.test",),
    )
    # Gmail threads by threadId too: a different subject in the same thread is the same ticket.
    desk.emulator.import_raw(
        mail(
            "Also: the card code",
            message_id="g3@customer.test",
            sender="bob@customer.test",
            date=NOW,
        ),
        thread_id=c["threadId"],
    )
    second = desk.sync()
    assert not second.full_sync
    assert second.tickets_created == 1

    with desk.db.session() as s:
        per_thread = dict(
            s.execute(
                select(
                    Message.gmail_thread_id, func.count(func.distinct(Message.ticket_id))
                ).group_by(Message.gmail_thread_id)
            ).all()
        )
    assert per_thread == {a["threadId"]: 1, c["threadId"]: 1}
    assert desk.ticket_count() == 2


def test_one_pass_sees_the_messages_it_stores_itself(desk: Desk) -> None:
    """A whole conversation arriving between two passes, stored in one chunk: the agent's reply
    from Gmail is the first response of the ticket its customer's message opened in the same
    chunk, and the customer's answer in a new Gmail thread joins through that reply's
    Message-ID, which is in no table yet when the chunk starts."""
    desk.sync()  # the first (full) pass of an empty mailbox: later mail comes through history
    first = desk.receive("Invoice is wrong", "i1@customer.test")
    sent_at = datetime.now(UTC).replace(microsecond=0)
    reply = desk.agent_sends(
        "Re: Invoice is wrong",
        "ia1@shop.test",
        references=("i1@customer.test",),
        date=format_datetime(sent_at),
    )
    moved = desk.receive(
        "VAT number for the invoice",
        "i2@customer.test",
        references=("i1@customer.test", "ia1@shop.test"),
    )
    stranger = desk.receive(
        "Invoices in general",
        "x1@elsewhere.test",
        sender=STRANGER,
        references=("i1@customer.test",),
    )
    assert len({first["threadId"], moved["threadId"], stranger["threadId"]}) == 3

    report = desk.sync()

    assert not report.full_sync
    assert report.tickets_created == 2
    ticket = desk.ticket_of(first["id"])
    assert ticket is not None
    for later in (reply, moved):
        joined = desk.ticket_of(later["id"])
        assert joined is not None
        assert joined.id == ticket.id
    assert set(ticket.gmail_thread_ids) == {first["threadId"], moved["threadId"]}
    assert ticket.status == Status.OPEN
    assert ticket.first_response_at is not None
    assert ticket.first_response_at.replace(tzinfo=UTC) == sent_at
    assert [e.new_value for e in desk.events(ticket.id, "status")] == [Status.OPEN.value]
    other = desk.ticket_of(stranger["id"])
    assert other is not None
    assert other.id != ticket.id
    assert other.number == ticket.number + 1
