"""SLA escalation (app/sla/escalation.py): at risk and breached, each once per ticket, deadline,
stage and due time; configured rules against the defaults; who is notified and how; priority,
reassignment and the breached tag. ``now`` is moved instead of waiting: a ticket's due times come
from its real creation instant (built-in targets, no calendar: always open)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, update

from app.agents import service as agents
from app.agents.models import Agent, Role, Team
from app.db.session import Database
from app.mailboxes import service as mailboxes
from app.mailboxes.models import Mailbox
from app.outbox.models import OutboxMessage
from app.sla import escalation_rules
from app.sla.escalation import (
    ESCALATED_EVENT,
    SLA_BREACHED_TAG,
    EscalationReport,
    duration,
    run_escalations,
)
from app.sla.models import SlaEscalation
from app.sla.schemas import EscalationRuleCreate
from app.tickets import service as tickets
from app.tickets.events import Actor
from app.tickets.models import ActorKind, Event, Priority, Status, Ticket
from app.tickets.schemas import TicketUpdate

CUSTOMER = "ann@customer.test"
H = timedelta(hours=1)
M = timedelta(minutes=1)


@dataclass
class Desk:
    db: Database
    mailbox_id: int

    def ticket(
        self,
        subject: str = "Order 4821 lost",
        *,
        customer: str = CUSTOMER,
        thread: str | None = None,
        team_id: int | None = None,
        assignee_id: int | None = None,
    ) -> Ticket:
        with self.db.unit_of_work() as s:
            mailbox = s.get_one(Mailbox, self.mailbox_id)
            ticket = tickets.create_ticket(
                s,
                mailbox=mailbox,
                subject=subject,
                actor=Actor.system(),
                customer_email=customer,
                customer_name="Ann Smith",
                gmail_thread_id=thread,
            )
            if team_id is not None or assignee_id is not None:
                ticket.team_id, ticket.assignee_id = team_id, assignee_id
                s.flush()
            return tickets.get_ticket(s, ticket.id)

    def escalate(self, now: datetime) -> EscalationReport:
        with self.db.unit_of_work() as s:
            return run_escalations(s, mailbox_id=self.mailbox_id, now=now)

    def get(self, ticket_id: int) -> Ticket:
        with self.db.session() as s:
            return tickets.get_ticket(s, ticket_id)

    def done(self, ticket_id: int) -> list[tuple[str, str]]:
        with self.db.session() as s:
            rows = s.execute(
                select(SlaEscalation.deadline, SlaEscalation.stage)
                .where(SlaEscalation.ticket_id == ticket_id)
                .order_by(SlaEscalation.id)
            )
            return [(r.deadline, r.stage) for r in rows]

    def events(self, ticket_id: int, field: str) -> list[Event]:
        with self.db.session() as s:
            return list(
                s.scalars(
                    select(Event)
                    .where(Event.ticket_id == ticket_id, Event.field == field)
                    .order_by(Event.id)
                )
            )

    def mails(self, ticket_id: int | None = None) -> list[OutboxMessage]:
        with self.db.session() as s:
            stmt = select(OutboxMessage).order_by(OutboxMessage.id)
            if ticket_id is not None:
                stmt = stmt.where(OutboxMessage.ticket_id == ticket_id)
            return list(s.scalars(stmt))

    def agent(self, email: str, role: Role = Role.AGENT, *, name: str | None = None) -> Agent:
        with self.db.unit_of_work() as s:
            return agents.create_agent(s, email=email, name=name or email.split("@")[0], role=role)

    def team(self, name: str, members: list[Agent], strategy: str = "round_robin") -> int:
        with self.db.unit_of_work() as s:
            team = Team(
                name=name,
                mailbox_id=self.mailbox_id,
                assignment_strategy=strategy,
                members=[s.get_one(Agent, m.id) for m in members],
            )
            s.add(team)
            s.flush()
            return team.id

    def rule(self, stage: str, actions: list[str], *, mailbox_id: int | None = -1) -> int:
        box = self.mailbox_id if mailbox_id == -1 else mailbox_id
        data = EscalationRuleCreate.model_validate(
            {"mailbox_id": box, "stage": stage, "actions": [{"type": a} for a in actions]}
        )
        with self.db.unit_of_work() as s:
            return escalation_rules.create_rule(s, data=data).id


@pytest.fixture
def desk(db: Database) -> Desk:
    with db.unit_of_work() as s:
        box = mailboxes.create_mailbox(s, email="support@shop.test", name="Shop Support")
    return Desk(db, box.id)


@pytest.fixture
def lee(desk: Desk) -> Agent:
    return desk.agent("lee@shop.test", Role.LEAD, name="Lee Lead")


def test_at_risk_then_breached_each_once(desk: Desk, lee: Agent) -> None:
    ticket = desk.ticket(thread="t-1")
    created = ticket.created_at
    # Normal priority, built-in targets, always open: first response due after 8 h, at risk
    # after 6 h (0.75 share); resolution after 48 h, at risk after 36 h.
    assert ticket.first_response_due_at == created + 8 * H
    assert ticket.first_response_at_risk_at == created + 6 * H
    due = (ticket.first_response_due_at, ticket.resolution_due_at)

    assert desk.escalate(created + 6 * H - M) == EscalationReport()
    assert desk.done(ticket.id) == []

    at_risk = desk.escalate(created + 6 * H + M)
    assert (at_risk.escalated, at_risk.notified) == (1, 1)
    assert desk.done(ticket.id) == [("first_response", "at_risk")]
    (event,) = desk.events(ticket.id, ESCALATED_EVENT)
    assert event.actor_kind == ActorKind.SYSTEM
    assert event.new_value == {
        "deadline": "first_response",
        "stage": "at_risk",
        "due_at": ticket.first_response_due_at.isoformat(),
        "actions": ["notify_lead"],
    }
    (mail,) = desk.mails(ticket.id)
    assert mail.to_address == "lee@shop.test"
    assert mail.subject == f"[SLA at risk] #{ticket.number} first response: Order 4821 lost"
    assert mail.kind == f"esc:a:fr:{int(ticket.first_response_due_at.timestamp())}:{lee.id}"
    assert "due in 1 h 59 min" in mail.body
    # At risk only warns: nothing about the ticket changed.
    after = desk.get(ticket.id)
    assert (after.priority, after.tags, after.version) == (Priority.NORMAL, [], ticket.version)

    # The same instant again, and later but before the due time: done already.
    assert desk.escalate(created + 6 * H + M).escalated == 0
    assert desk.escalate(created + 8 * H - M).escalated == 0

    breached = desk.escalate(created + 8 * H + 30 * M)
    assert (breached.escalated, breached.notified) == (1, 1)
    after = desk.get(ticket.id)
    # Defaults: notify, raise one step, tag — and the due times stay what was promised.
    assert after.priority == Priority.HIGH
    assert after.tags == [SLA_BREACHED_TAG]
    assert (after.first_response_due_at, after.resolution_due_at) == due
    assert after.version > ticket.version
    assert all(t.labels_dirty for t in after.threads)
    by_system = {
        (e.field, str(e.old_value), str(e.new_value))
        for e in [*desk.events(ticket.id, "priority"), *desk.events(ticket.id, "tags")]
        if e.actor_kind == ActorKind.SYSTEM
    }
    assert by_system == {("priority", "normal", "high"), ("tags", "[]", "['sla-breached']")}
    _, second_mail = desk.mails(ticket.id)
    assert second_mail.subject.startswith(f"[SLA breached] #{ticket.number} first response")
    assert "has passed: 30 min late" in second_mail.body
    assert "priority raised from normal to high" in second_mail.body
    assert "Priority:  high" in second_mail.body
    assert desk.escalate(created + 20 * H).escalated == 0

    # The resolution deadline is a target of its own.
    later = desk.escalate(created + 36 * H + M)
    assert later.escalated == 1
    assert desk.done(ticket.id)[-1] == ("resolution", "at_risk")
    assert desk.escalate(created + 36 * H + M).escalated == 0


def test_a_ticket_first_seen_breached_gets_only_the_breached_escalation(
    desk: Desk, lee: Agent
) -> None:
    ticket = desk.ticket()
    report = desk.escalate(ticket.created_at + 9 * H)
    assert (report.escalated, report.notified) == (1, 1)
    assert desk.done(ticket.id) == [("first_response", "breached")]
    # The skipped at-risk stage is not made up later either.
    assert desk.escalate(ticket.created_at + 10 * H).escalated == 0
    (mail,) = desk.mails(ticket.id)
    assert mail.subject.startswith("[SLA breached]")


def test_a_new_due_time_is_a_new_promise_and_escalates_again(desk: Desk, lee: Agent) -> None:
    ticket = desk.ticket()
    now = ticket.created_at + 9 * H
    assert desk.escalate(now).escalated == 1
    raised = desk.get(ticket.id)
    assert raised.priority == Priority.HIGH

    # A person makes it urgent: the due times are computed again (1 h from creation) —
    # already passed, a new breach of a new promise.
    with desk.db.unit_of_work() as s:
        tickets.update_ticket(
            s,
            ticket_id=ticket.id,
            update=TicketUpdate(version=raised.version, priority=Priority.URGENT),
            actor=Actor.for_agent(lee),
        )
    urgent = desk.get(ticket.id)
    assert urgent.first_response_due_at == ticket.created_at + H

    for _ in range(2):
        desk.escalate(now)
    # Urgent's resolution target (8 h) has passed too.
    assert sorted(desk.done(ticket.id)) == [
        ("first_response", "breached"),
        ("first_response", "breached"),
        ("resolution", "breached"),
    ]
    first_response = [
        e.new_value["due_at"]
        for e in desk.events(ticket.id, ESCALATED_EVENT)
        if e.new_value["deadline"] == "first_response"
    ]
    assert first_response == [
        ticket.first_response_due_at.isoformat(),
        urgent.first_response_due_at.isoformat(),
    ]
    # Urgent is the top: nothing to raise; one mail per deadline and due time.
    assert desk.get(ticket.id).priority == Priority.URGENT
    assert len({m.kind for m in desk.mails(ticket.id)}) == 3


def test_pending_tickets_never_escalate_and_resume_where_they_stopped(
    desk: Desk, lee: Agent
) -> None:
    ticket = desk.ticket()
    with desk.db.unit_of_work() as s:
        tickets.update_ticket(
            s,
            ticket_id=ticket.id,
            update=TicketUpdate(version=ticket.version, status=Status.PENDING),
            actor=Actor.for_agent(lee),
        )
    far = ticket.created_at + 100 * H
    assert desk.escalate(far) == EscalationReport()
    assert desk.done(ticket.id) == []

    # Back to open (a few seconds paused, nothing to push): both deadlines are long past.
    with desk.db.unit_of_work() as s:
        current = tickets.get_ticket(s, ticket.id)
        tickets.update_ticket(
            s,
            ticket_id=ticket.id,
            update=TicketUpdate(version=current.version, status=Status.OPEN),
            actor=Actor.for_agent(lee),
        )
    assert desk.escalate(far).escalated == 2
    assert sorted(desk.done(ticket.id)) == [
        ("first_response", "breached"),
        ("resolution", "breached"),
    ]


def test_met_and_finished_targets_do_not_escalate(desk: Desk, lee: Agent) -> None:
    answered = desk.ticket("Answered")
    resolved = desk.ticket("Resolved", customer="bob@customer.test")
    with desk.db.unit_of_work() as s:
        s.execute(
            update(Ticket)
            .where(Ticket.id == answered.id)
            .values(first_response_at=answered.created_at + H, status=Status.OPEN)
        )
        current = tickets.get_ticket(s, resolved.id)
        tickets.update_ticket(
            s,
            ticket_id=resolved.id,
            update=TicketUpdate(version=current.version, status=Status.RESOLVED),
            actor=Actor.for_agent(lee),
        )
    desk.escalate(answered.created_at + 40 * H)
    assert desk.done(answered.id) == [("resolution", "at_risk")]
    assert desk.done(resolved.id) == []


def test_configured_rules_beat_the_defaults(desk: Desk, lee: Agent, db: Database) -> None:
    with db.unit_of_work() as s:
        other = mailboxes.create_mailbox(s, email="billing@shop.test", name="Billing")
    # This mailbox: silence at risk; everybody: breached only tags.
    desk.rule("at_risk", [])
    desk.rule("breached", ["add_label"], mailbox_id=None)
    ticket = desk.ticket()

    desk.escalate(ticket.created_at + 6 * H + M)
    (event,) = desk.events(ticket.id, ESCALATED_EVENT)
    assert event.new_value["actions"] == []
    desk.escalate(ticket.created_at + 9 * H)
    after = desk.get(ticket.id)
    assert (after.priority, after.tags) == (Priority.NORMAL, [SLA_BREACHED_TAG])
    assert desk.mails() == []

    # The other mailbox: its own breached rule beats the global one; at risk falls back to
    # the built-in default (notify).
    billing = Desk(db, other.id)
    billing.rule("breached", ["notify_lead", "raise_priority"])
    second = billing.ticket(customer="bob@customer.test")
    billing.escalate(second.created_at + 6 * H + M)
    billing.escalate(second.created_at + 9 * H)
    after = billing.get(second.id)
    assert (after.priority, after.tags) == (Priority.HIGH, [])
    assert [m.subject[:15] for m in billing.mails()] == ["[SLA at risk] #", "[SLA breached] "]
    with db.session() as s:
        effective = escalation_rules.effective_rules(s, mailbox_id=other.id)
    assert {k: (v.source, v.actions) for k, v in effective.items()} == {
        "at_risk": ("default", ("notify_lead",)),
        "breached": ("mailbox", ("notify_lead", "raise_priority")),
    }


def test_a_disabled_mailbox_rule_falls_back_to_the_global_one(desk: Desk) -> None:
    own = desk.rule("breached", ["reassign"])
    desk.rule("breached", ["add_label"], mailbox_id=None)
    with desk.db.unit_of_work() as s:
        s.execute(
            update(escalation_rules.EscalationRule)
            .where(escalation_rules.EscalationRule.id == own)
            .values(enabled=False)
        )
        effective = escalation_rules.effective_rules(s, mailbox_id=desk.mailbox_id)
    assert (effective["breached"].source, effective["breached"].actions) == (
        "global",
        ("add_label",),
    )


def test_the_leads_of_the_ticket_s_team_are_notified_else_all_leads_else_admins(
    desk: Desk,
) -> None:
    admin = desk.agent("ada@shop.test", Role.ADMIN)
    ticket = desk.ticket("Nobody leads")
    desk.escalate(ticket.created_at + 9 * H)
    assert [m.to_address for m in desk.mails(ticket.id)] == [admin.email]

    team_lead = desk.agent("tess@shop.test", Role.LEAD)
    other_lead = desk.agent("olga@shop.test", Role.LEAD)
    gone = desk.agent("gone@shop.test", Role.LEAD)
    with desk.db.unit_of_work() as s:
        s.get_one(Agent, gone.id).is_active = False
    member = desk.agent("max@shop.test")
    team = desk.team("Tier 1", [team_lead, member], strategy="manual")

    in_team = desk.ticket("In a team", customer="bob@customer.test", team_id=team)
    no_team = desk.ticket("No team", customer="cid@customer.test")
    desk.escalate(in_team.created_at + 9 * H)
    assert [m.to_address for m in desk.mails(in_team.id)] == [team_lead.email]
    assert sorted(m.to_address for m in desk.mails(no_team.id)) == [
        other_lead.email,
        team_lead.email,
    ]


def test_the_customer_never_gets_the_notice(desk: Desk) -> None:
    """A lead who is also the ticket's customer (an agent writing to their own desk) is skipped;
    the notice is in no thread and answers no message of the customer's."""
    desk.agent(CUSTOMER, Role.LEAD)
    lee = desk.agent("lee@shop.test", Role.LEAD)
    ticket = desk.ticket(thread="customer-thread")
    report = desk.escalate(ticket.created_at + 9 * H)
    (mail,) = desk.mails()
    assert report.notified == 1
    assert mail.to_address == lee.email
    assert (mail.gmail_thread_id, mail.in_reply_to, mail.references) == (None, None, None)
    assert mail.rfc822_message_id.startswith(f"<esc.{ticket.id}.")
    assert mail.rfc822_message_id.endswith("@shop.test>")
    assert "https://mail.google.com/mail/u/0/#all/customer-thread" in mail.body
    assert f"/api/v1/tickets/{ticket.id}" in mail.body
    assert "Ann Smith <ann@customer.test>" in mail.body


def test_reassign_gives_the_ticket_to_another_available_agent(desk: Desk, lee: Agent) -> None:
    desk.rule("breached", ["reassign", "notify_lead"])
    ann = desk.agent("ann.agent@shop.test", name="Ann Agent")
    bob = desk.agent("bob.agent@shop.test", name="Bob Agent")
    away = desk.agent("away@shop.test")
    with desk.db.unit_of_work() as s:
        s.get_one(Agent, away.id).away = True
    team = desk.team("Tier 1", [ann, bob, away])
    ticket = desk.ticket(team_id=team, assignee_id=ann.id, thread="t-r")

    desk.escalate(ticket.created_at + 9 * H)
    after = desk.get(ticket.id)
    assert after.assignee_id == bob.id
    (event,) = desk.events(ticket.id, "assignee")
    assert (event.actor_kind, event.old_value, event.new_value) == (
        ActorKind.SYSTEM,
        ann.email,
        bob.email,
    )
    assert after.priority == Priority.NORMAL  # only what the rule says
    (mail,) = desk.mails(ticket.id)
    assert "reassigned to Bob Agent <bob.agent@shop.test> (was Ann Agent)" in mail.body
    assert "Assignee:  Bob Agent <bob.agent@shop.test>" in mail.body


def test_reassign_without_anybody_else_keeps_the_assignee(desk: Desk, lee: Agent) -> None:
    desk.rule("breached", ["reassign"])
    ann = desk.agent("ann.agent@shop.test")
    team = desk.team("Solo", [ann])
    ticket = desk.ticket(team_id=team, assignee_id=ann.id)
    assert desk.escalate(ticket.created_at + 9 * H).escalated == 1
    assert desk.get(ticket.id).assignee_id == ann.id
    assert desk.events(ticket.id, "assignee") == []


def test_raise_priority_stops_at_urgent_and_keeps_the_due_times(desk: Desk, lee: Agent) -> None:
    desk.rule("at_risk", ["raise_priority"])
    ticket = desk.ticket()
    with desk.db.unit_of_work() as s:
        s.execute(update(Ticket).where(Ticket.id == ticket.id).values(priority=Priority.HIGH))
    desk.escalate(ticket.created_at + 6 * H + M)  # first response at risk: high → urgent
    desk.escalate(ticket.created_at + 9 * H)  # breached (defaults): urgent stays
    desk.escalate(ticket.created_at + 36 * H + M)  # resolution at risk: urgent stays
    after = desk.get(ticket.id)
    assert after.priority == Priority.URGENT
    assert (after.first_response_due_at, after.resolution_due_at) == (
        ticket.first_response_due_at,
        ticket.resolution_due_at,
    )
    assert [e.new_value for e in desk.events(ticket.id, "priority")] == ["urgent"]


def test_a_backlog_is_worked_off_a_limited_number_per_pass(desk: Desk, lee: Agent) -> None:
    made = [desk.ticket(f"T{i}", customer=f"c{i}@customer.test") for i in range(5)]
    now = made[-1].created_at + 9 * H
    with desk.db.unit_of_work() as s:
        first = run_escalations(s, mailbox_id=desk.mailbox_id, now=now, limit=3)
    with desk.db.unit_of_work() as s:
        second = run_escalations(s, mailbox_id=desk.mailbox_id, now=now, limit=3)
    assert (first.escalated, second.escalated) == (3, 2)
    # Oldest due time first.
    assert [desk.done(t.id) != [] for t in made] == [True] * 5
    with desk.db.session() as s:
        order = list(s.scalars(select(SlaEscalation.ticket_id).order_by(SlaEscalation.id)))
    assert order == [t.id for t in made]


def test_duration_words() -> None:
    assert duration(timedelta(seconds=20)) == "under a minute"
    assert duration(timedelta(minutes=25)) == "25 min"
    assert duration(timedelta(hours=4)) == "4 h"
    assert duration(timedelta(hours=4, minutes=10)) == "4 h 10 min"
    assert duration(timedelta(days=2, hours=3, minutes=5)) == "2 d 3 h"
    assert duration(timedelta(days=1)) == "1 d"
    assert duration(timedelta(minutes=-5)) == "under a minute"


def test_two_workers_at_once_escalate_once(committed_db: Database) -> None:
    """Two transactions escalating one mailbox at the same instant: the second waits on the
    first's uncommitted row (PostgreSQL: the unique key under ON CONFLICT; SQLite: the write
    lock) and then does nothing — one row, one event, one mail."""
    with committed_db.unit_of_work() as s:
        box = mailboxes.create_mailbox(s, email="support@shop.test", name="Shop Support")
        agents.create_agent(s, email="lee@shop.test", name="Lee", role=Role.LEAD)
    desk = Desk(committed_db, box.id)
    ticket = desk.ticket()
    now = ticket.created_at + 9 * H
    second: list[EscalationReport] = []

    def other_worker() -> None:
        with committed_db.unit_of_work() as s:
            second.append(run_escalations(s, mailbox_id=box.id, now=now))

    with committed_db.unit_of_work() as s:
        first = run_escalations(s, mailbox_id=box.id, now=now)
        thread = threading.Thread(target=other_worker)
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive()  # waiting on our uncommitted escalation
    thread.join(timeout=30)
    assert first.escalated == 1
    assert second == [EscalationReport()]
    assert desk.done(ticket.id) == [("first_response", "breached")]
    assert len(desk.events(ticket.id, ESCALATED_EVENT)) == 1
    assert len(desk.mails(ticket.id)) == 1
    assert desk.get(ticket.id).priority == Priority.HIGH
