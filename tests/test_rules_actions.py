"""Rules applied to real tickets in the database: each action, the events it leaves signed by the
rule, the SLA recomputed, the reply path, and the compiled rule set's cache (seen to change after
an edit through the service and after one made behind its back, as another process would)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.agents.models import Agent, Team
from app.mailboxes import service as mailboxes
from app.mailboxes.models import Mailbox
from app.rules import service as rules
from app.rules.actions import FIRED_EVENT
from app.rules.facts import MessageFacts
from app.rules.models import Rule
from app.rules.schemas import RuleCreate, RuleUpdate
from app.sla.models import SlaPolicy
from app.tickets import service as tickets
from app.tickets.events import Actor
from app.tickets.models import ActorKind, Event, Priority, Status, Ticket

SYSTEM = Actor.system()


@pytest.fixture
def box(session: Session) -> Mailbox:
    return mailboxes.create_mailbox(session, email="support@shop.test", name="Shop Support")


def new_ticket(session: Session, box: Mailbox, *, thread: str = "t1") -> Ticket:
    return tickets.create_ticket(
        session,
        mailbox=box,
        customer_email="ann@customer.test",
        subject="Help",
        gmail_thread_id=thread,
        actor=SYSTEM,
    )


def add_rule(session: Session, **fields: Any) -> Rule:
    fields.setdefault("name", "rule")
    fields.setdefault("conditions", [])
    return rules.create_rule(session, data=RuleCreate.model_validate(fields))


def message(**overrides: Any) -> MessageFacts:
    values: dict[str, Any] = {
        "from_address": "ann@customer.test",
        "to": ("support@shop.test",),
        "subject": "Help",
        "body": "Our site is down",
        "segment": "regular",
    }
    values.update(overrides)
    return MessageFacts.build(**values)


def run(session: Session, box: Mailbox, ticket: Ticket, facts: MessageFacts | None = None) -> Any:
    rule_set = rules.rule_set_for_mailbox(session, mailbox_id=box.id)
    outcomes = rules.apply_rules_to_new_tickets(
        session, rule_set=rule_set, arrivals=[(ticket, facts or message())]
    )
    session.flush()
    return outcomes.get(ticket.id)


def events(session: Session, ticket: Ticket, field: str | None = None) -> list[Event]:
    stmt = select(Event).where(Event.ticket_id == ticket.id, Event.field != "created")
    if field is not None:
        stmt = stmt.where(Event.field == field)
    return list(session.scalars(stmt.order_by(Event.id)))


def make_agent(session: Session, name: str) -> Agent:
    agent = Agent(email=f"{name}@team.test", name=name, shifts=[], time_off=[])
    session.add(agent)
    session.flush()
    return agent


def make_team(session: Session, box: Mailbox, members: list[Agent], strategy: str) -> Team:
    team = Team(name=f"team {strategy}", assignment_strategy=strategy, mailbox_id=box.id)
    team.members = members
    session.add(team)
    session.flush()
    return team


def test_set_priority_recomputes_the_sla_and_signs_the_events(
    session: Session, box: Mailbox
) -> None:
    rule = add_rule(
        session,
        name="Outage",
        conditions=[{"field": "body", "op": "words", "value": ["down"]}],
        actions=[{"type": "set_priority", "value": "urgent"}],
    )
    ticket = new_ticket(session, box)
    normal_due = ticket.first_response_due_at
    assert normal_due == ticket.created_at + timedelta(minutes=480)  # always open, normal: 8 h
    for thread in ticket.threads:
        thread.labels_dirty = False
    outcome = run(session, box, ticket)
    assert [f.rule_id for f in outcome.fired] == [rule.id]
    assert ticket.priority == Priority.URGENT
    # Urgent: 1 business hour from creation, as an agent's priority change computes it.
    assert ticket.first_response_due_at == ticket.created_at + timedelta(minutes=60)
    assert ticket.resolution_due_at == ticket.created_at + timedelta(minutes=480)
    assert all(thread.labels_dirty for thread in ticket.threads)
    fired, changed = events(session, ticket)
    assert (fired.field, fired.actor_kind, fired.actor_id) == (FIRED_EVENT, ActorKind.RULE, rule.id)
    assert fired.new_value == {"rule": "Outage", "actions": ["set_priority"]}
    assert (changed.field, changed.old_value, changed.new_value) == ("priority", "normal", "urgent")
    assert (changed.actor_kind, changed.actor_id) == (ActorKind.RULE, rule.id)
    # Not firing: another message leaves the next ticket alone.
    calm = new_ticket(session, box, thread="t2")
    assert run(session, box, calm, message(body="All is fine")) is None
    assert calm.priority == Priority.NORMAL
    assert events(session, calm) == []


def test_only_raise_never_lowers(session: Session, box: Mailbox) -> None:
    add_rule(session, actions=[{"type": "set_priority", "value": "high", "only_raise": True}])
    ticket = new_ticket(session, box)
    ticket.priority = Priority.URGENT
    run(session, box, ticket)
    assert ticket.priority == Priority.URGENT
    assert [e.field for e in events(session, ticket)] == [FIRED_EVENT]
    lower = new_ticket(session, box, thread="t2")
    lower.priority = Priority.LOW
    run(session, box, lower)
    assert lower.priority == Priority.HIGH
    # Without only_raise the rule sets the priority whatever it was.
    add_rule(session, name="down", position=5, actions=[{"type": "set_priority", "value": "low"}])
    third = new_ticket(session, box, thread="t3")
    run(session, box, third)
    assert third.priority == Priority.LOW


def test_add_tag_once(session: Session, box: Mailbox) -> None:
    rule = add_rule(
        session,
        actions=[{"type": "add_tag", "value": "Billing"}, {"type": "add_tag", "value": "billing"}],
    )
    ticket = new_ticket(session, box)
    run(session, box, ticket)
    assert ticket.tags == ["billing"]
    (tags,) = events(session, ticket, "tags")
    assert (tags.old_value, tags.new_value, tags.actor_id) == ([], ["billing"], rule.id)
    session.expire_all()
    assert tickets.get_ticket(session, ticket.id).tags == ["billing"]


def test_set_team_and_assign_agent(session: Session, box: Mailbox) -> None:
    agent = make_agent(session, "nina")
    team = make_team(session, box, [agent], "manual")
    rule = add_rule(
        session,
        actions=[
            {"type": "set_team", "value": team.id},
            {"type": "assign_agent", "value": agent.id},
        ],
    )
    ticket = new_ticket(session, box)
    outcome = run(session, box, ticket)
    assert outcome.assigned
    assert (ticket.team_id, ticket.assignee_id) == (team.id, agent.id)
    by_field = {e.field: e for e in events(session, ticket)}
    assert (by_field["team"].old_value, by_field["team"].new_value) == (None, team.id)
    assert by_field["assignee"].new_value == "nina@team.test"
    assert {e.actor_id for e in by_field.values()} == {rule.id}


def test_assign_team_runs_the_team_strategy(session: Session, box: Mailbox) -> None:
    first, second = make_agent(session, "ann"), make_agent(session, "bob")
    team = make_team(session, box, [first, second], "round_robin")
    rule = add_rule(session, actions=[{"type": "assign_team", "value": team.id}])
    one, two = new_ticket(session, box), new_ticket(session, box, thread="t2")
    run(session, box, one)
    run(session, box, two)
    assert (one.team_id, two.team_id) == (team.id, team.id)
    assert {one.assignee_id, two.assignee_id} == {first.id, second.id}
    assignee = events(session, one, "assignee")[0]
    assert (assignee.actor_kind, assignee.actor_id) == (ActorKind.RULE, rule.id)


def test_set_sla_policy_holds_the_ticket_to_that_policy(session: Session, box: Mailbox) -> None:
    policy = SlaPolicy(
        name="VIP", priority="urgent", first_response_minutes=15, resolution_minutes=120
    )
    session.add(policy)
    session.flush()
    rule = add_rule(session, actions=[{"type": "set_sla_policy", "value": policy.id}])
    ticket = new_ticket(session, box)
    run(session, box, ticket)
    # The policy's targets, although the ticket stays normal priority.
    assert ticket.priority == Priority.NORMAL
    assert ticket.sla_policy_id == policy.id
    assert ticket.first_response_due_at == ticket.created_at + timedelta(minutes=15)
    assert ticket.resolution_due_at == ticket.created_at + timedelta(minutes=120)
    (event,) = events(session, ticket, "sla_policy")
    assert (event.old_value, event.new_value, event.actor_id) == (None, policy.id, rule.id)


def test_set_sla_policy_survives_a_priority_change_in_the_same_pass(
    session: Session, box: Mailbox
) -> None:
    policy = SlaPolicy(name="P", priority="low", first_response_minutes=20, resolution_minutes=90)
    session.add(policy)
    session.flush()
    add_rule(session, position=1, actions=[{"type": "set_sla_policy", "value": policy.id}])
    add_rule(session, position=2, actions=[{"type": "set_priority", "value": "urgent"}])
    ticket = new_ticket(session, box)
    run(session, box, ticket)
    assert ticket.priority == Priority.URGENT
    assert ticket.first_response_due_at == ticket.created_at + timedelta(minutes=20)


def test_skip_acknowledgement_and_close_as_spam(session: Session, box: Mailbox) -> None:
    agent = make_agent(session, "zed")
    team = make_team(session, box, [agent], "round_robin")
    quiet = add_rule(session, name="quiet", position=1, actions=[{"type": "skip_acknowledgement"}])
    ticket = new_ticket(session, box)
    outcome = run(session, box, ticket)
    assert outcome.skips_acknowledgement
    assert outcome.skip_ack_rule_id == quiet.id
    assert outcome.spam_rule_id is None
    assert ticket.status == Status.NEW
    spam = add_rule(
        session,
        name="spam",
        position=2,
        conditions=[{"field": "from_domain", "op": "is", "value": "spam.test"}],
        actions=[{"type": "close_as_spam"}, {"type": "assign_team", "value": team.id}],
    )
    junk = new_ticket(session, box, thread="t2")
    outcome = run(session, box, junk, message(from_address="win@prize.spam.test"))
    assert outcome.spam_rule_id == spam.id
    assert junk.status == Status.CLOSED
    assert junk.closed_at is not None
    assert junk.tags == ["spam"]
    # Closed is nobody's work: the assignment after it did nothing.
    assert junk.assignee_id is None
    assert not outcome.assigned
    status = events(session, junk, "status")[0]
    assert (status.old_value, status.new_value, status.actor_id) == ("new", "closed", spam.id)
    assert events(session, junk, "tags")[0].new_value == ["spam"]


def test_each_firing_is_an_event_with_its_rule_id(session: Session, box: Mailbox) -> None:
    a = add_rule(session, name="a", position=1, actions=[{"type": "add_tag", "value": "a"}])
    b = add_rule(
        session,
        name="b",
        position=2,
        actions=[{"type": "add_tag", "value": "b"}, {"type": "skip_acknowledgement"}],
    )
    ticket = new_ticket(session, box)
    run(session, box, ticket)
    fired = events(session, ticket, FIRED_EVENT)
    assert [(e.actor_id, e.new_value) for e in fired] == [
        (a.id, {"rule": "a", "actions": ["add_tag"]}),
        (b.id, {"rule": "b", "actions": ["add_tag", "skip_acknowledgement"]}),
    ]
    assert [e.actor_id for e in events(session, ticket, "tags")] == [a.id, b.id]


def test_a_vanished_team_skips_only_that_action(
    session: Session, box: Mailbox, caplog: pytest.LogCaptureFixture
) -> None:
    team = make_team(session, box, [], "manual")
    rule = add_rule(
        session,
        name="route",
        actions=[{"type": "set_team", "value": team.id}, {"type": "add_tag", "value": "routed"}],
    )
    session.delete(team)
    session.flush()
    caplog.set_level(logging.WARNING, logger="app.rules.actions")
    ticket = new_ticket(session, box)
    run(session, box, ticket)
    assert ticket.team_id is None
    assert ticket.tags == ["routed"]
    assert any(f"rule {rule.id} 'route': team {team.id}" in r.getMessage() for r in caplog.records)


def test_reply_rules_run_only_when_asked_and_load_what_they_change(
    session: Session, box: Mailbox
) -> None:
    add_rule(session, name="new only", actions=[{"type": "add_tag", "value": "first"}])
    reply_rule = add_rule(
        session,
        name="escalate on reply",
        run_on_replies=True,
        conditions=[{"field": "text", "op": "words", "value": ["urgent"]}],
        actions=[
            {"type": "set_priority", "value": "high", "only_raise": True},
            {"type": "add_tag", "value": "chased"},
        ],
    )
    ticket_id = new_ticket(session, box).id
    session.flush()
    session.expunge_all()
    # As the sync finds it: with its threads, without its tags.
    ticket = tickets.tickets_by_ids(session, ticket_ids={ticket_id})[ticket_id]
    rule_set = rules.rule_set_for_mailbox(session, mailbox_id=box.id)
    calm = rules.apply_rules_to_reply(
        session, rule_set=rule_set, ticket=ticket, facts=message(body="Thanks!")
    )
    assert calm.fired == []
    outcome = rules.apply_rules_to_reply(
        session, rule_set=rule_set, ticket=ticket, facts=message(body="This is URGENT now")
    )
    session.flush()
    assert [f.rule_id for f in outcome.fired] == [reply_rule.id]
    assert ticket.priority == Priority.HIGH
    assert ticket.tags == ["chased"]  # "new only" did not run
    assert ticket.version == 2


def test_the_rule_set_is_cached_until_the_rules_change(session: Session, box: Mailbox) -> None:
    other = mailboxes.create_mailbox(session, email="sales@shop.test", name="Sales")
    first = rules.rule_set_for_mailbox(session, mailbox_id=box.id)
    assert len(first) == 0
    assert rules.rule_set_for_mailbox(session, mailbox_id=box.id) is first
    mine = add_rule(
        session, name="mine", mailbox_id=box.id, actions=[{"type": "add_tag", "value": "m"}]
    )
    add_rule(session, name="global", actions=[{"type": "add_tag", "value": "g"}])
    add_rule(
        session, name="theirs", mailbox_id=other.id, actions=[{"type": "add_tag", "value": "t"}]
    )
    second = rules.rule_set_for_mailbox(session, mailbox_id=box.id)
    assert second is not first
    assert [f.name for f in second.evaluate(message())] == ["mine", "global"]
    assert rules.rule_set_for_mailbox(session, mailbox_id=box.id) is second
    # An edit through the service.
    rules.update_rule(session, rule_id=mine.id, update=RuleUpdate(enabled=False))
    third = rules.rule_set_for_mailbox(session, mailbox_id=box.id)
    assert [f.name for f in third.evaluate(message())] == ["global"]
    # An edit behind the service's back (another process): the key query sees it.
    session.execute(
        text("UPDATE rules SET enabled = :on, updated_at = :at WHERE id = :id"),
        {"on": True, "at": mine.updated_at + timedelta(seconds=1), "id": mine.id},
    )
    session.expire_all()
    fourth = rules.rule_set_for_mailbox(session, mailbox_id=box.id)
    assert [f.name for f in fourth.evaluate(message())] == ["mine", "global"]
    rules.delete_rule(session, rule_id=mine.id)
    assert [
        f.name for f in rules.rule_set_for_mailbox(session, mailbox_id=box.id).evaluate(message())
    ] == ["global"]


def test_a_bad_stored_rule_does_not_stop_the_others(session: Session, box: Mailbox) -> None:
    add_rule(session, name="good", actions=[{"type": "add_tag", "value": "ok"}])
    session.add(
        Rule(
            name="broken",
            conditions=[{"field": "subject", "op": "regex", "value": "("}],
            actions=[{"type": "add_tag", "value": "never"}],
        )
    )
    session.flush()
    ticket = new_ticket(session, box)
    run(session, box, ticket)
    assert ticket.tags == ["ok"]
