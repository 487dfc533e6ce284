"""The escalation-rules REST API: leads and admins write, agents read; bad input is a 422 (or a
409 for a second rule of one scope) and changes nothing; ``effective`` shows what applies."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.db.session import Database
from app.mailboxes.models import Mailbox
from app.sla.models import EscalationRule
from tests.conftest import Caller

URL = "/api/v1/escalation-rules"


def _rows(db: Database) -> list[tuple[Any, ...]]:
    with db.session() as s:
        rules = s.scalars(select(EscalationRule).order_by(EscalationRule.id))
        return [(r.id, r.mailbox_id, r.stage, r.actions, r.enabled) for r in rules]


def _create(client: TestClient, caller: Caller, **body: Any) -> dict[str, Any]:
    response = client.post(URL, json=body, headers=caller.headers)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_leads_and_admins_write_agents_read(
    client: TestClient, lead: Caller, admin: Caller, agent: Caller, mailbox: Mailbox
) -> None:
    made = _create(
        client,
        lead,
        mailbox_id=mailbox.id,
        stage="breached",
        actions=[{"type": "notify_lead"}, {"type": "reassign"}, {"type": "notify_lead"}],
    )
    # Each action once, in the order given.
    assert made["actions"] == [{"type": "notify_lead"}, {"type": "reassign"}]
    assert (made["mailbox_id"], made["stage"], made["enabled"]) == (mailbox.id, "breached", True)
    by_admin = _create(client, admin, stage="at_risk", actions=[])
    assert by_admin["mailbox_id"] is None

    listed = client.get(URL, headers=agent.headers)
    assert listed.status_code == 200
    assert [r["id"] for r in listed.json()] == [made["id"], by_admin["id"]]
    one = client.get(f"{URL}/{made['id']}", headers=agent.headers)
    assert one.json() == made

    rule = f"{URL}/{made['id']}"
    for response in (
        client.post(URL, json={"stage": "at_risk", "actions": []}, headers=agent.headers),
        client.patch(rule, json={"enabled": False}, headers=agent.headers),
        client.delete(rule, headers=agent.headers),
    ):
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "escalation_rules_forbidden"
    assert client.get(URL).status_code == 401

    patched = client.patch(
        rule, json={"enabled": False, "actions": [{"type": "add_label"}]}, headers=lead.headers
    )
    assert patched.status_code == 200
    assert (patched.json()["enabled"], patched.json()["actions"]) == (
        False,
        [{"type": "add_label"}],
    )
    assert client.patch(rule, json={"mailbox_id": None}, headers=lead.headers).status_code == 200
    assert client.delete(rule, headers=admin.headers).status_code == 204
    assert client.get(rule, headers=agent.headers).status_code == 404
    assert client.delete(rule, headers=admin.headers).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"stage": "late", "actions": []},
        {"stage": "breached", "actions": [{"type": "call_the_ceo"}]},
        {"stage": "breached", "actions": [{"type": "notify_lead", "to": "x@y.test"}]},
        {"stage": "breached", "actions": "notify_lead"},
        {"stage": "breached"},
        {"actions": []},
        {"stage": "breached", "actions": [], "mailbox_id": 0},
        {"stage": "breached", "actions": [], "mailbox_id": 2**40},
        {"stage": "breached", "actions": [], "mailbox_id": 999_999},
        {"stage": "breached", "actions": [], "colour": "red"},
        {"stage": "breached", "actions": [{"type": "add_label"}] * 9},
    ],
)
def test_bad_rules_are_422_and_change_nothing(
    client: TestClient, lead: Caller, db: Database, body: dict[str, Any]
) -> None:
    before = _rows(db)
    response = client.post(URL, json=body, headers=lead.headers)
    assert response.status_code == 422, response.text
    assert "error" in response.json()
    assert _rows(db) == before


@pytest.mark.parametrize(
    "body",
    [
        {"stage": "late"},
        {"stage": None},
        {"actions": None},
        {"enabled": None},
        {"actions": [{"type": "call_the_ceo"}]},
        {"mailbox_id": 999_999},
        {"version": 1},
    ],
)
def test_bad_changes_are_422_and_change_nothing(
    client: TestClient, lead: Caller, db: Database, mailbox: Mailbox, body: dict[str, Any]
) -> None:
    made = _create(client, lead, mailbox_id=mailbox.id, stage="breached", actions=[])
    before = _rows(db)
    response = client.patch(f"{URL}/{made['id']}", json=body, headers=lead.headers)
    assert response.status_code == 422, response.text
    assert _rows(db) == before


def test_one_rule_per_scope_and_stage(
    client: TestClient, lead: Caller, db: Database, mailbox: Mailbox
) -> None:
    own = _create(client, lead, mailbox_id=mailbox.id, stage="breached", actions=[])
    shared = _create(client, lead, stage="breached", actions=[])
    at_risk = _create(client, lead, mailbox_id=mailbox.id, stage="at_risk", actions=[])
    before = _rows(db)
    again = client.post(
        URL, json={"mailbox_id": mailbox.id, "stage": "breached", "actions": []},
        headers=lead.headers,
    )  # fmt: skip
    assert again.status_code == 409
    assert again.json()["error"]["details"] == {"rule_id": own["id"]}
    assert client.post(
        URL, json={"stage": "breached", "actions": []}, headers=lead.headers
    ).status_code == 409  # fmt: skip
    moved = client.patch(f"{URL}/{at_risk['id']}", json={"stage": "breached"}, headers=lead.headers)
    assert moved.status_code == 409
    made_global = client.patch(
        f"{URL}/{own['id']}", json={"mailbox_id": None}, headers=lead.headers
    )
    assert made_global.json()["error"]["details"] == {"rule_id": shared["id"]}
    assert _rows(db) == before


def test_effective_shows_mailbox_then_global_then_defaults(
    client: TestClient, lead: Caller, agent: Caller, db: Database, mailbox: Mailbox
) -> None:
    def effective(mailbox_id: int | None = None) -> dict[str, Any]:
        query = "" if mailbox_id is None else f"?mailbox={mailbox_id}"
        response = client.get(f"{URL}/effective{query}", headers=agent.headers)
        assert response.status_code == 200, response.text
        return {s["stage"]: s for s in response.json()["stages"]}

    defaults = effective(mailbox.id)
    assert defaults == {
        "at_risk": {
            "stage": "at_risk",
            "actions": [{"type": "notify_lead"}],
            "source": "default",
            "rule_id": None,
        },
        "breached": {
            "stage": "breached",
            "actions": [{"type": "notify_lead"}, {"type": "raise_priority"}, {"type": "add_label"}],
            "source": "default",
            "rule_id": None,
        },
    }
    shared = _create(client, lead, stage="breached", actions=[{"type": "reassign"}])
    own = _create(client, lead, mailbox_id=mailbox.id, stage="breached", actions=[])
    assert effective(mailbox.id)["breached"]["source"] == "mailbox"
    assert effective(mailbox.id)["breached"]["actions"] == []
    assert effective()["breached"]["rule_id"] == shared["id"]
    client.patch(f"{URL}/{own['id']}", json={"enabled": False}, headers=lead.headers)
    now = effective(mailbox.id)["breached"]
    assert (now["source"], now["rule_id"]) == ("global", shared["id"])
    assert effective(mailbox.id)["at_risk"]["source"] == "default"

    # With ?mailbox, the list shows what can apply to it; an unknown mailbox is a 404.
    with db.unit_of_work() as s:
        other = Mailbox(email="billing@shop.test", name="Billing")
        s.add(other)
        s.flush()
        other_id = other.id
    _create(client, lead, mailbox_id=other_id, stage="at_risk", actions=[])
    listed = client.get(f"{URL}?mailbox={mailbox.id}", headers=agent.headers).json()
    assert [r["id"] for r in listed] == [shared["id"], own["id"]]
    missing = client.get(f"{URL}/effective?mailbox=999999", headers=agent.headers)
    assert missing.status_code == 404
    assert client.get(f"{URL}/effective?mailbox=0", headers=agent.headers).status_code == 422
