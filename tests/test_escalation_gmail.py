"""SLA escalation through the real worker pass against the Gmail emulator: the lead's notice
goes out through the mailbox, to the lead only, in a thread of its own; the next sync reads it
back as our own mail and opens no ticket; the breached label reaches the customer's thread, and a
person taking it off in Gmail dismisses the flag."""

from __future__ import annotations

import email
from datetime import timedelta
from email import policy
from typing import Any

import pytest
from sqlalchemy import func, select, update

from app.agents import service as agents
from app.agents.models import Role
from app.db.base import utcnow
from app.db.session import Database
from app.messages.models import Direction, Message
from app.outbox.models import OutboxMessage, OutboxStatus
from app.sla.escalation import ESCALATED_EVENT, SLA_BREACHED_TAG
from app.sla.models import SlaEscalation
from app.tickets import service as tickets
from app.tickets.models import ActorKind, Event, Priority, Ticket
from gmail_sync.client import GmailClient, RetryPolicy
from gmail_sync.emulator.mailbox import StoredMessage
from gmail_sync.sync import SyncReport
from gmail_sync.worker import Worker
from labels.taxonomy import Taxonomy
from tests.ack_fixtures import (  # noqa: F401
    ack_box_fixture,
    customer_mail,
    import_inbox,
)
from tests.emulator_fixtures import (  # noqa: F401
    MAILBOX,
    Emulator,
    emulator_fixture,
    emulator_server_fixture,
)

CUSTOMER = "ann@customer.test"
LEAD = "lee@shop.test"
NO_SLEEP = RetryPolicy(sleep=lambda _s: None)
BREACHED_LABEL = "Support/SLA/Breached"


def _worker(db: Database, emulator: Emulator) -> Worker:
    return Worker(
        db,
        lambda mailbox: GmailClient.for_emulator(
            mailbox.email, api_url=emulator.url, retry=NO_SLEEP
        ),
        taxonomy=Taxonomy(),
    )


def _pass(worker: Worker) -> SyncReport:
    (report,) = worker.run_once()
    assert report.errors == []
    return report


def _sent(emulator: Emulator) -> list[StoredMessage]:
    with emulator.state.lock:
        box = emulator.state.mailbox(MAILBOX)
        return [m for m in box.messages.values() if "SENT" in m.label_ids]


def _labels_on(emulator: Emulator, thread_id: str) -> set[str]:
    users = emulator.service().users()
    names = {
        label["id"]: label["name"] for label in users.labels().list(userId="me").execute()["labels"]
    }
    thread = users.threads().get(userId="me", id=thread_id, format="minimal").execute()
    found = {names[i] for m in thread["messages"] for i in m.get("labelIds", [])}
    return {n for n in found if n.startswith("Support/")}


def _make_overdue(db: Database) -> Ticket:
    """The clock moved on: the only ticket's first response was due an hour ago."""
    with db.unit_of_work() as s:
        ticket = s.scalars(select(Ticket)).one()
        s.execute(
            update(Ticket)
            .where(Ticket.id == ticket.id)
            .values(
                first_response_due_at=utcnow() - timedelta(hours=1),
                first_response_at_risk_at=utcnow() - timedelta(hours=3),
            )
        )
        return tickets.get_ticket(s, ticket.id)


@pytest.fixture
def desk(db: Database, emulator: Emulator, ack_box: int) -> dict[str, Any]:
    with db.unit_of_work() as s:
        lead = agents.create_agent(s, email=LEAD, name="Lee Lead", role=Role.LEAD)
    worker = _worker(db, emulator)
    _pass(worker)  # the first (empty) full sync sets the history cursor
    question = import_inbox(
        emulator, customer_mail("Order 4821 never came", message_id="q1@customer.test")
    )
    report = _pass(worker)
    assert (report.tickets_created, report.acks_sent, report.escalated) == (1, 1, 0)
    return {"worker": worker, "question": question, "lead": lead}


def test_a_breach_notifies_the_lead_through_gmail_and_opens_no_ticket(
    db: Database, emulator: Emulator, desk: dict[str, Any]
) -> None:
    worker, question = desk["worker"], desk["question"]
    ticket = _make_overdue(db)
    (ack,) = _sent(emulator)

    report = _pass(worker)
    assert (report.escalated, report.lead_notices, report.acks_sent) == (1, 1, 1)

    # The notice: sent from the mailbox to the lead, in a new thread, answering nothing.
    notices = [m for m in _sent(emulator) if m.id != ack.id]
    (notice,) = notices
    assert notice.thread_id not in (question["threadId"], ack.thread_id)
    headers = email.message_from_bytes(notice.raw, policy=policy.default)
    assert headers["To"] == LEAD
    assert headers["From"] == f"Shop Support <{MAILBOX}>"
    assert headers["Subject"] == f"[SLA breached] #{ticket.number} first response: " + (
        "Order 4821 never came"
    )
    assert headers["In-Reply-To"] is None
    assert headers["References"] is None
    assert headers["Auto-Submitted"] == "auto-generated"  # RFC 3834 §5: answers nothing
    assert CUSTOMER not in str(headers["To"]) + str(headers["Cc"]) + str(headers["Bcc"])
    body = headers.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert f"#{ticket.number} Order 4821 never came" in body
    assert "has passed: 1 h late." in body
    with db.session() as s:
        row = s.scalars(select(OutboxMessage).where(OutboxMessage.to_address == LEAD)).one()
    assert (row.status, row.gmail_message_id) == (OutboxStatus.SENT, notice.id)
    assert headers["Message-ID"] == row.rfc822_message_id

    # The breach shows in the customer's thread (pushed in the same pass): tag and priority.
    assert _labels_on(emulator, question["threadId"]) == {
        "Support/New",
        "Support/Unassigned",
        "Support/Priority/High",
        BREACHED_LABEL,
    }

    # The next pass reads the notice back: our own mail (auto), on no ticket, opening none.
    echo = _pass(worker)
    assert (echo.fetched, echo.tickets_created, echo.escalated, echo.acks_sent) == (1, 0, 0, 0)
    with db.session() as s:
        stored = s.scalars(select(Message).where(Message.gmail_message_id == notice.id)).one()
        assert (stored.direction, stored.ticket_id) == (Direction.AUTO, None)
        assert s.scalar(select(func.count()).select_from(Ticket)) == 1
        after = tickets.get_ticket(s, ticket.id)
        assert after.first_response_at is None  # a notice to the lead answers nobody
        assert s.scalar(select(func.count()).select_from(SlaEscalation)) == 1
    idle = _pass(worker)
    assert (idle.fetched, idle.escalated, idle.acks_sent) == (0, 0, 0)
    assert len(_sent(emulator)) == 2


def test_a_person_taking_the_breached_label_off_dismisses_the_flag(
    db: Database, emulator: Emulator, desk: dict[str, Any]
) -> None:
    worker, question = desk["worker"], desk["question"]
    ticket = _make_overdue(db)
    _pass(worker)
    _pass(worker)  # the echo of our label push and of the notice
    assert BREACHED_LABEL in _labels_on(emulator, question["threadId"])

    users = emulator.service().users()
    ids = {x["name"]: x["id"] for x in users.labels().list(userId="me").execute()["labels"]}
    users.threads().modify(
        userId="me", id=question["threadId"], body={"removeLabelIds": [ids[BREACHED_LABEL]]}
    ).execute()
    report = _pass(worker)

    assert report.label_changes == 1
    assert report.labels_pushed == 0  # not put back at the person
    assert BREACHED_LABEL not in _labels_on(emulator, question["threadId"])
    with db.session() as s:
        after = tickets.get_ticket(s, ticket.id)
        tag_events = list(
            s.scalars(
                select(Event).where(Event.ticket_id == ticket.id, Event.field == "tags")
                .order_by(Event.id)
            )
        )  # fmt: skip
        escalations = s.scalar(
            select(func.count()).select_from(Event).where(Event.field == ESCALATED_EVENT)
        )
    assert SLA_BREACHED_TAG not in after.tags
    # Nothing else about the ticket changed, and the escalation is not redone.
    assert (after.priority, after.status.value, after.assignee_id) == (Priority.HIGH, "new", None)
    assert [(e.actor_kind, e.new_value) for e in tag_events] == [
        (ActorKind.SYSTEM, [SLA_BREACHED_TAG]),
        (ActorKind.SYNC, []),
    ]
    assert escalations == 1
    quiet = _pass(worker)
    assert (quiet.label_changes, quiet.labels_pushed, quiet.escalated) == (0, 0, 0)


def test_a_lead_answering_the_notice_is_neither_the_customer_nor_a_new_ticket(
    db: Database, emulator: Emulator, desk: dict[str, Any]
) -> None:
    worker = desk["worker"]
    ticket = _make_overdue(db)
    _pass(worker)  # the notice goes out
    with db.unit_of_work() as s:
        notice = s.scalars(select(OutboxMessage).where(OutboxMessage.to_address == LEAD)).one()
        bare = notice.rfc822_message_id.strip("<>")
        # Waiting on the customer: a customer's message would reopen it.
        s.execute(update(Ticket).where(Ticket.id == ticket.id).values(status="pending"))

    import_inbox(
        emulator,
        customer_mail(
            "Re: [SLA breached]",
            message_id="lee-answer@shop.test",
            sender=LEAD,
            body="On it, calling the customer now.",
            in_reply_to=bare,
            references=(bare,),
        ),
    )
    report = _pass(worker)

    assert report.tickets_created == 0
    with db.session() as s:
        answer = s.scalars(
            select(Message).where(Message.rfc822_message_id.like("%lee-answer@shop.test%"))
        ).one()
        assert answer.ticket_id is None  # stored, nothing lost, but not the customer's message
        assert tickets.get_ticket(s, ticket.id).status.value == "pending"
        assert s.scalar(select(func.count()).select_from(Ticket)) == 1
