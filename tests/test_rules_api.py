"""/api/v1/rules: rights (agents read, leads and admins write), validation on save (422 naming the
condition or action, nothing stored), CRUD, and the dry run (raw message, stored message, fields)
that changes nothing in the database."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.agents.models import Agent, Team
from app.customers.models import Customer
from app.db.session import Database
from app.mailboxes.models import Mailbox
from app.messages.models import Direction, Message
from app.outbox.models import OutboxMessage
from app.rules.models import Rule
from app.sla.models import BusinessCalendar, SlaPolicy
from app.tickets import service as tickets
from app.tickets.events import Actor
from app.tickets.models import Event, Priority, Ticket, TicketTag
from tests.conftest import Caller

URL = "/api/v1/rules"
TABLES = (Rule, Ticket, TicketTag, Event, Customer, Message, OutboxMessage, Team)


def counts(db: Database) -> dict[str, int]:
    with db.session() as s:
        return {m.__tablename__: s.scalar(select(func.count()).select_from(m)) or 0 for m in TABLES}


def rule_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Urgent words",
        "conditions": [{"field": "text", "op": "words", "value": ["urgent", "срочно"]}],
        "actions": [{"type": "set_priority", "value": "urgent"}],
    }
    body.update(overrides)
    return body


def test_agents_read_leads_and_admins_write(
    client: TestClient, agent: Caller, lead: Caller, admin: Caller, mailbox: Mailbox
) -> None:
    created = client.post(URL, json=rule_body(mailbox_id=mailbox.id), headers=lead.headers)
    assert created.status_code == 201, created.text
    rule = created.json()
    assert rule["mailbox_id"] == mailbox.id
    assert rule["actions"] == [{"type": "set_priority", "value": "urgent", "only_raise": False}]
    assert client.get(URL, headers=agent.headers).json()[0]["id"] == rule["id"]
    assert client.get(f"{URL}/{rule['id']}", headers=agent.headers).json()["name"] == "Urgent words"
    for method, path, body in (
        ("POST", URL, rule_body()),
        ("PATCH", f"{URL}/{rule['id']}", {"enabled": False}),
        ("DELETE", f"{URL}/{rule['id']}", None),
        ("POST", f"{URL}/dry-run", {"mailbox_id": mailbox.id, "fields": {"from": "a@b.test"}}),
    ):
        answer = client.request(method, path, json=body, headers=agent.headers)
        assert answer.status_code == 403, (method, path)
        assert answer.json()["error"]["code"] == "rules_forbidden"
    assert client.get(URL).status_code == 401
    patched = client.patch(
        f"{URL}/{rule['id']}", json={"enabled": False, "position": 5}, headers=admin.headers
    )
    assert patched.status_code == 200
    assert (patched.json()["enabled"], patched.json()["position"]) == (False, 5)
    assert patched.json()["conditions"] == rule["conditions"]
    assert client.delete(f"{URL}/{rule['id']}", headers=admin.headers).status_code == 204
    assert client.get(f"{URL}/{rule['id']}", headers=agent.headers).status_code == 404


def test_list_by_mailbox_is_the_evaluation_order(
    client: TestClient, db: Database, lead: Caller, mailbox: Mailbox
) -> None:
    with db.unit_of_work() as s:
        other = Mailbox(email="sales@shop.test", name="Sales")
        s.add(other)
        s.flush()
        other_id = other.id
    made = {}
    for name, box, position in (
        ("late global", None, 9),
        ("mine", mailbox.id, 3),
        ("theirs", other_id, 1),
        ("early global", None, 1),
    ):
        body = rule_body(name=name, mailbox_id=box, position=position)
        made[name] = client.post(URL, json=body, headers=lead.headers).json()["id"]
    listed = client.get(URL, params={"mailbox": mailbox.id}, headers=lead.headers).json()
    assert [r["name"] for r in listed] == ["early global", "mine", "late global"]
    assert len(client.get(URL, headers=lead.headers).json()) == 4
    missing = client.get(URL, params={"mailbox": 999_999}, headers=lead.headers)
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("change", "code", "fragment"),
    [
        (
            {"conditions": [{"field": "subject", "op": "regex", "value": "(order"}]},
            "invalid_rule",
            "conditions[0] (subject regex): not a valid regular expression",
        ),
        (
            {"conditions": [{"field": "body", "op": "regex", "value": "x" * 1001}]},
            "invalid_rule",
            "longer than 1000 characters",
        ),
        (
            {
                "conditions": [
                    {"field": "segment", "op": "is", "value": "vip"},
                    {"field": "language", "op": "contains", "value": "r"},
                ]
            },
            "invalid_rule",
            "conditions[1]: field 'language' takes op in, is",
        ),
        (
            {"conditions": [{"field": "automated", "op": "is", "value": "yes"}]},
            "invalid_rule",
            "conditions[0] (automated is): the value must be true or false",
        ),
        (
            {"conditions": [{"field": "colour", "op": "is", "value": "red"}]},
            "validation_error",
            "conditions.0.field",
        ),
        (
            {"conditions": [{"field": "subject", "op": "matches", "value": "x"}]},
            "validation_error",
            "conditions.0.op",
        ),
        (
            {"conditions": [{"field": "subject", "op": "contains", "value": 42}]},
            "validation_error",
            "conditions.0.value",
        ),
        ({"actions": [{"type": "explode"}]}, "validation_error", "actions.0.type"),
        (
            {
                "actions": [
                    {"type": "add_tag", "value": "ok"},
                    {"type": "set_priority", "value": "x"},
                ]
            },
            "invalid_rule",
            "actions[1] (set_priority)",
        ),
        ({"actions": []}, "validation_error", "actions"),
        ({"match": "some"}, "validation_error", "match"),
        ({"actions": [{"type": "set_team", "value": 999_999}]}, "unknown_team", "no team 999999"),
        (
            {
                "actions": [
                    {"type": "add_tag", "value": "x"},
                    {"type": "assign_agent", "value": 99_999},
                ]
            },
            "unknown_agent",
            "actions[1] (assign_agent): no agent 99999",
        ),
        (
            {"actions": [{"type": "assign_team", "value": 99_999}]},
            "unknown_team",
            "actions[0] (assign_team)",
        ),
        (
            {"actions": [{"type": "set_sla_policy", "value": 99_999}]},
            "unknown_sla_policy",
            "no SLA policy 99999",
        ),
        ({"mailbox_id": 99_999}, "unknown_mailbox", "no mailbox 99999"),
    ],
)
def test_invalid_rules_are_refused_and_nothing_is_stored(
    client: TestClient,
    db: Database,
    lead: Caller,
    mailbox: Mailbox,
    change: dict[str, Any],
    code: str,
    fragment: str,
) -> None:
    existing = client.post(URL, json=rule_body(), headers=lead.headers).json()
    before = counts(db)
    answer = client.post(URL, json=rule_body(**change), headers=lead.headers)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == code
    assert fragment in error["message"]
    # The same change as a PATCH of a stored rule: refused, the rule unchanged.
    patch = client.patch(f"{URL}/{existing['id']}", json=change, headers=lead.headers)
    assert patch.status_code == 422, patch.text
    assert patch.json()["error"]["code"] == code
    assert counts(db) == before
    assert client.get(f"{URL}/{existing['id']}", headers=lead.headers).json() == existing


def test_a_deactivated_agent_is_refused(
    client: TestClient, db: Database, admin: Caller, agent: Caller
) -> None:
    with db.unit_of_work() as s:
        s.get_one(Agent, agent.agent.id).is_active = False
    body = rule_body(actions=[{"type": "assign_agent", "value": agent.agent.id}])
    answer = client.post(URL, json=body, headers=admin.headers)
    assert answer.status_code == 422
    assert "deactivated" in answer.json()["error"]["message"]


def test_known_ids_are_accepted(
    client: TestClient, db: Database, admin: Caller, agent: Caller, mailbox: Mailbox
) -> None:
    with db.unit_of_work() as s:
        team = Team(name="Billing", mailbox_id=mailbox.id)
        policy = SlaPolicy(
            name="Fast", priority="high", first_response_minutes=30, resolution_minutes=60
        )
        s.add_all([team, policy])
        s.flush()
        team_id, policy_id = team.id, policy.id
    body = rule_body(
        mailbox_id=mailbox.id,
        actions=[
            {"type": "set_team", "value": team_id},
            {"type": "assign_team", "value": team_id},
            {"type": "assign_agent", "value": agent.agent.id},
            {"type": "set_sla_policy", "value": policy_id},
            {"type": "add_tag", "value": "Billing"},
            {"type": "skip_acknowledgement"},
            {"type": "close_as_spam"},
        ],
    )
    answer = client.post(URL, json=body, headers=admin.headers)
    assert answer.status_code == 201, answer.text
    assert answer.json()["actions"][4] == {"type": "add_tag", "value": "billing"}


def _stored_message(db: Database, mailbox: Mailbox) -> tuple[int, int]:
    """A ticket and its first message as the sync stores them: (message id, ticket id)."""
    with db.unit_of_work() as s:
        box = s.get_one(Mailbox, mailbox.id)
        ticket = tickets.create_ticket(
            s,
            mailbox=box,
            customer_email="vip@big.test",
            subject="Не проходит оплата",
            actor=Actor.system(),
            priority=Priority.HIGH,
        )
        s.get_one(Customer, ticket.customer_id).segment = "vip"
        message = Message(
            mailbox_id=box.id,
            ticket_id=ticket.id,
            gmail_message_id="g1",
            gmail_thread_id="t1",
            direction=Direction.INBOUND,
            from_address="vip@big.test",
            to_addresses=["support@shop.test"],
            cc_addresses=[],
            subject="Не проходит оплата",
            text_body="Срочно! Клиенты не могут оплатить заказ.",
            attachments=[{"filename": "a.png", "content_type": "image/png", "size": 10}],
        )
        s.add(message)
        s.flush()
        return message.id, ticket.id


def test_dry_run_from_fields_raw_and_a_stored_message_changes_nothing(
    client: TestClient, db: Database, lead: Caller, mailbox: Mailbox
) -> None:
    with db.unit_of_work() as s:
        calendar = BusinessCalendar(
            name="Never", timezone="UTC", weekly_hours={"mon": [["00:00", "00:01"]]}
        )
        s.add(calendar)
        s.flush()
        s.get_one(Mailbox, mailbox.id).business_calendar_id = calendar.id
    urgent = client.post(
        URL, json=rule_body(mailbox_id=mailbox.id, position=1), headers=lead.headers
    )
    vip = client.post(
        URL,
        json=rule_body(
            name="VIP",
            position=2,
            run_on_replies=True,
            conditions=[{"field": "segment", "op": "is", "value": "vip"}],
            actions=[
                {"type": "set_priority", "value": "high", "only_raise": True},
                {"type": "add_tag", "value": "vip"},
            ],
        ),
        headers=lead.headers,
    )
    after_hours = client.post(
        URL,
        json=rule_body(
            name="Night",
            position=3,
            conditions=[{"field": "business_hours", "op": "is", "value": False}],
            actions=[{"type": "skip_acknowledgement"}],
        ),
        headers=lead.headers,
    )
    ids = [urgent.json()["id"], vip.json()["id"], after_hours.json()["id"]]
    message_id, _ticket_id = _stored_message(db, mailbox)
    before = counts(db)

    fields = client.post(
        f"{URL}/dry-run",
        json={
            "mailbox_id": mailbox.id,
            "fields": {"from": "Someone@Else.test", "subject": "URGENT: site down", "body": "x"},
        },
        headers=lead.headers,
    )
    assert fields.status_code == 200, fields.text
    result = fields.json()
    assert result["facts"]["from"] == "someone@else.test"
    assert result["facts"]["segment"] == "regular"  # an unknown sender would be created so
    assert result["facts"]["business_hours"] is False  # the mailbox's calendar, now
    assert [f["rule_id"] for f in result["fired"]] == [ids[0], ids[2]]
    assert result["effects"]["priority"] == "urgent"
    assert result["effects"]["skip_acknowledgement"] is True

    raw = (
        "From: VIP <vip@big.test>\r\nTo: support@shop.test\r\nSubject: Hello\r\n"
        "Message-ID: <x@big.test>\r\n\r\nJust a question.\r\n"
    )
    raw_result = client.post(
        f"{URL}/dry-run", json={"mailbox_id": mailbox.id, "raw": raw}, headers=lead.headers
    ).json()
    assert raw_result["facts"]["segment"] == "vip"  # the stored customer's
    assert [f["name"] for f in raw_result["fired"]] == ["VIP", "Night"]
    assert raw_result["effects"]["priority"] == "high"
    assert raw_result["effects"]["tags_added"] == ["vip"]

    stored = client.post(
        f"{URL}/dry-run",
        json={"mailbox_id": mailbox.id, "message_id": message_id, "reply": True},
        headers=lead.headers,
    ).json()
    assert stored["facts"]["has_attachment"] is True
    assert stored["facts"]["language"] == "ru"
    # As a reply: only the run_on_replies rule; the ticket is already high, so no raise.
    assert [f["name"] for f in stored["fired"]] == ["VIP"]
    assert stored["effects"]["priority"] is None
    assert counts(db) == before


def test_dry_run_input_errors(
    client: TestClient, db: Database, lead: Caller, mailbox: Mailbox
) -> None:
    message_id, _ = _stored_message(db, mailbox)
    cases = [
        ({"mailbox_id": mailbox.id}, "validation_error"),
        ({"mailbox_id": mailbox.id, "raw": "x", "message_id": message_id}, "validation_error"),
        ({"mailbox_id": 99_999, "fields": {"from": "a@b.test"}}, "unknown_mailbox"),
        ({"mailbox_id": mailbox.id, "message_id": 99_999}, "unknown_message"),
    ]
    for body, code in cases:
        answer = client.post(f"{URL}/dry-run", json=body, headers=lead.headers)
        assert answer.status_code == 422, body
        assert answer.json()["error"]["code"] == code
