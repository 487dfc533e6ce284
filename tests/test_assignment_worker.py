"""The sync worker's periodic pass assigns tickets that found nobody available: a customer's
mail arrives while the mailbox team's only agent is away, the ticket waits unassigned, and the
next worker pass after the agent is back (changed in the database, as a shift starting would,
without any request that assigns at once) gives it to them and pushes the label."""

from __future__ import annotations

from sqlalchemy import select, update

from app.agents import service as agents
from app.agents.models import Agent, Role
from app.assignment.service import Strategy
from app.assignment.teams import create_team
from app.db.session import Database
from app.tickets.models import Event, Ticket
from gmail_sync.client import GmailClient, RetryPolicy
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

NO_SLEEP = RetryPolicy(sleep=lambda _s: None)


def _labels_on(emulator: Emulator, thread_id: str) -> set[str]:
    users = emulator.service().users()
    names = {x["id"]: x["name"] for x in users.labels().list(userId="me").execute()["labels"]}
    thread = users.threads().get(userId="me", id=thread_id, format="minimal").execute()
    return {names[i] for m in thread["messages"] for i in m.get("labelIds", []) if i in names}


def test_the_worker_assigns_waiting_tickets_once_someone_is_back(
    db: Database, emulator: Emulator, ack_box: int
) -> None:
    with db.unit_of_work() as s:
        ann = agents.create_agent(s, email="ann@shop.test", name="Ann", role=Role.AGENT)
        ann.away = True
        create_team(
            s,
            name="Support",
            mailbox_id=ack_box,
            assignment_strategy=Strategy.ROUND_ROBIN,
            member_ids=[ann.id],
        )
        ann_id = ann.id
    worker = Worker(
        db,
        lambda mailbox: GmailClient.for_emulator(
            mailbox.email, api_url=emulator.url, retry=NO_SLEEP
        ),
        taxonomy=Taxonomy(),
    )
    worker.run_once()  # the first (empty) full sync sets the history cursor
    question = import_inbox(emulator, customer_mail("Where is my order?", message_id="w1@c.test"))

    (report,) = worker.run_once()
    assert (report.tickets_created, report.assigned) == (1, 0)
    with db.session() as s:
        ticket = s.scalars(select(Ticket)).one()
        assert (ticket.assignee_id, ticket.awaiting_assignment) == (None, True)
    assert "Support/Unassigned" in _labels_on(emulator, question["threadId"])

    (idle,) = worker.run_once()
    assert idle.assigned == 0, "still away: the ticket keeps waiting"

    with db.unit_of_work() as s:
        s.execute(update(Agent).where(Agent.id == ann_id).values(away=False))
    (back,) = worker.run_once()

    assert back.assigned == 1
    with db.session() as s:
        ticket = s.scalars(select(Ticket)).one()
        assert (ticket.assignee_id, ticket.awaiting_assignment) == (ann_id, False)
        fields = [e.field for e in s.scalars(select(Event).where(Event.ticket_id == ticket.id))]
    assert fields.count("assignment_waiting") == 1
    assert fields.count("assignee") == 1
    assert "Support/Assigned/Ann" in _labels_on(emulator, question["threadId"])
    (quiet,) = worker.run_once()
    assert quiet.assigned == 0
