"""The SLA REST API: calendars and policies (admins write, everyone reads), every refused input a
422 that changes nothing, the mailbox's calendar, due times and the `sla` state on tickets, and
`GET /tickets?sla=at_risk|breached`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from app.db.session import Database
from app.mailboxes.models import Mailbox
from app.tickets.models import Ticket
from tests.conftest import Caller

API = "/api/v1"
OFFICE = {
    "name": "Moscow office",
    "timezone": "Europe/Moscow",
    "weekly_hours": {
        day: [["09:00", "13:00"], ["14:00", "18:00"]] for day in ("mon", "tue", "wed", "thu", "fri")
    },
    "holiday_country": "RU",
    "custom_holidays": ["2026-12-30", "2026-12-29", "2026-12-30"],
}


_TODAY = datetime.now(UTC).date()
_NEXT_MONDAY = _TODAY + timedelta(days=7 - _TODAY.weekday())


def post(client: TestClient, caller: Caller, path: str, body: dict[str, Any]) -> Any:
    return client.post(f"{API}{path}", json=body, headers=caller.headers)


def listing(client: TestClient, caller: Caller, path: str) -> Any:
    response = client.get(f"{API}{path}", headers=caller.headers)
    assert response.status_code == 200, response.text
    return response.json()


def make_calendar(client: TestClient, admin: Caller, **changes: Any) -> dict[str, Any]:
    response = post(client, admin, "/calendars", OFFICE | changes)
    assert response.status_code == 201, response.text
    return response.json()


# -- calendars ---------------------------------------------------------------------------------


def test_calendar_crud(client: TestClient, admin: Caller, agent: Caller) -> None:
    created = make_calendar(client, admin)
    assert created["weekly_hours"]["mon"] == [["09:00", "13:00"], ["14:00", "18:00"]]
    assert created["custom_holidays"] == ["2026-12-29", "2026-12-30"]  # sorted, once each
    assert created["holiday_country"] == "RU"
    calendar_id = created["id"]

    assert listing(client, agent, "/calendars") == [created]
    assert listing(client, agent, f"/calendars/{calendar_id}") == created

    changed = client.patch(
        f"{API}/calendars/{calendar_id}",
        json={"weekly_hours": {"sat": [["10:00", "24:00"]]}, "holiday_country": None},
        headers=admin.headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["weekly_hours"] == {"sat": [["10:00", "24:00"]]}
    assert changed.json()["holiday_country"] is None
    assert changed.json()["name"] == "Moscow office"

    assert client.delete(f"{API}/calendars/{calendar_id}", headers=admin.headers).status_code == 204
    missing = client.get(f"{API}/calendars/{calendar_id}", headers=agent.headers)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "calendar_not_found"


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"timezone": "Mars/Olympus"}, "unknown_timezone"),
        ({"holiday_country": "XX"}, "unknown_holiday_country"),
        ({"holiday_subdivision": "ZZ"}, "unknown_holiday_subdivision"),
        ({"weekly_hours": {"mon": []}}, "calendar_never_open"),
        (
            {  # every Monday for 500 days a holiday: no business time ahead
                "weekly_hours": {"mon": [["09:00", "10:00"]]},
                "custom_holidays": [
                    (_NEXT_MONDAY + timedelta(weeks=n)).isoformat() for n in range(-1, 72)
                ],
            },
            "calendar_never_open",
        ),
        ({"weekly_hours": {"mon": [["9:00", "18:00"]]}}, "validation_error"),
        ({"weekly_hours": {"mon": [["18:00", "09:00"]]}}, "validation_error"),
        ({"weekly_hours": {"mon": [["09:00", "13:00"], ["12:00", "18:00"]]}}, "validation_error"),
        ({"weekly_hours": {"mon": [["24:00", "24:00"]]}}, "validation_error"),
        ({"weekly_hours": {"monday": [["09:00", "18:00"]]}}, "validation_error"),
        ({"custom_holidays": ["2026-02-30"]}, "validation_error"),
        ({"name": ""}, "validation_error"),
        ({"extra": 1}, "validation_error"),
    ],
)
def test_bad_calendars_are_422_and_change_nothing(
    client: TestClient, admin: Caller, changes: dict[str, Any], code: str
) -> None:
    existing = make_calendar(client, admin, name="kept")
    response = post(client, admin, "/calendars", OFFICE | {"name": "new"} | changes)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code
    patched = client.patch(f"{API}/calendars/{existing['id']}", json=changes, headers=admin.headers)
    assert patched.status_code == 422, patched.text
    assert listing(client, admin, "/calendars") == [existing]


def test_calendar_names_are_unique(client: TestClient, admin: Caller) -> None:
    first = make_calendar(client, admin)
    second = make_calendar(client, admin, name="Berlin", timezone="Europe/Berlin")
    again = post(client, admin, "/calendars", OFFICE)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "calendar_exists"
    renamed = client.patch(
        f"{API}/calendars/{second['id']}", json={"name": first["name"]}, headers=admin.headers
    )
    assert renamed.status_code == 409
    assert listing(client, admin, "/calendars") == [first, second]


def test_only_admins_write_calendars_and_policies(
    client: TestClient, admin: Caller, lead: Caller, agent: Caller
) -> None:
    calendar = make_calendar(client, admin)
    policy = post(
        client,
        admin,
        "/sla-policies",
        {"name": "p", "priority": "high", "first_response_minutes": 30, "resolution_minutes": 300},
    ).json()
    for caller in (lead, agent):
        assert post(client, caller, "/calendars", OFFICE | {"name": "x"}).status_code == 403
        assert (
            client.patch(
                f"{API}/calendars/{calendar['id']}", json={"name": "y"}, headers=caller.headers
            ).status_code
            == 403
        )
        assert (
            client.delete(f"{API}/calendars/{calendar['id']}", headers=caller.headers).status_code
            == 403
        )
        body = {
            "name": "q",
            "priority": "low",
            "first_response_minutes": 1,
            "resolution_minutes": 2,
        }
        assert post(client, caller, "/sla-policies", body).status_code == 403
        assert (
            client.patch(
                f"{API}/sla-policies/{policy['id']}", json={"name": "z"}, headers=caller.headers
            ).status_code
            == 403
        )
        assert (
            client.delete(f"{API}/sla-policies/{policy['id']}", headers=caller.headers).status_code
            == 403
        )
    assert listing(client, agent, "/calendars") == [calendar]
    assert listing(client, agent, "/sla-policies") == [policy]
    assert client.get(f"{API}/sla-policies").status_code == 401


# -- policies ----------------------------------------------------------------------------------


def test_policy_crud(client: TestClient, admin: Caller, agent: Caller, mailbox: Mailbox) -> None:
    calendar = make_calendar(client, admin)
    body = {
        "name": "VIP urgent",
        "priority": "urgent",
        "segment": "vip",
        "mailbox_id": mailbox.id,
        "calendar_id": calendar["id"],
        "first_response_minutes": 15,
        "resolution_minutes": 240,
    }
    response = post(client, admin, "/sla-policies", body)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["first_response_ceiling_minutes"] == 24 * 60  # the default ceiling
    assert listing(client, agent, f"/sla-policies/{created['id']}") == created

    changed = client.patch(
        f"{API}/sla-policies/{created['id']}",
        json={"first_response_ceiling_minutes": None, "segment": None, "resolution_minutes": 99},
        headers=admin.headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["first_response_ceiling_minutes"] is None
    assert changed.json()["segment"] is None
    assert changed.json()["resolution_minutes"] == 99

    no_ceiling = post(
        client,
        admin,
        "/sla-policies",
        {
            "name": "low",
            "priority": "low",
            "first_response_minutes": 1,
            "resolution_minutes": 2,
            "first_response_ceiling_minutes": None,
        },
    )
    assert no_ceiling.json()["first_response_ceiling_minutes"] is None

    # Deleting the calendar leaves the policy on its mailbox's calendar.
    client.delete(f"{API}/calendars/{calendar['id']}", headers=admin.headers)
    assert listing(client, agent, f"/sla-policies/{created['id']}")["calendar_id"] is None
    deleted = client.delete(f"{API}/sla-policies/{created['id']}", headers=admin.headers)
    assert deleted.status_code == 204
    assert (
        client.get(f"{API}/sla-policies/{created['id']}", headers=agent.headers).status_code == 404
    )


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"first_response_minutes": 0}, "validation_error"),
        ({"resolution_minutes": -5}, "validation_error"),
        ({"first_response_ceiling_minutes": 0}, "validation_error"),
        ({"first_response_minutes": 10**9}, "validation_error"),
        ({"priority": "whenever"}, "validation_error"),
        ({"segment": "VIP customers"}, "validation_error"),
        ({"mailbox_id": 999_999}, "unknown_mailbox"),
        ({"calendar_id": 999_999}, "unknown_calendar"),
    ],
)
def test_bad_policies_are_422_and_change_nothing(
    client: TestClient, admin: Caller, changes: dict[str, Any], code: str
) -> None:
    base = {
        "name": "p",
        "priority": "normal",
        "first_response_minutes": 60,
        "resolution_minutes": 600,
    }
    existing = post(client, admin, "/sla-policies", base).json()
    response = post(client, admin, "/sla-policies", base | {"priority": "high"} | changes)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code
    patched = client.patch(
        f"{API}/sla-policies/{existing['id']}", json=changes, headers=admin.headers
    )
    assert patched.status_code == 422, patched.text
    assert listing(client, admin, "/sla-policies") == [existing]


def test_a_second_policy_for_the_same_scope_is_409(client: TestClient, admin: Caller) -> None:
    base = {
        "name": "p",
        "priority": "normal",
        "segment": "vip",
        "first_response_minutes": 60,
        "resolution_minutes": 600,
    }
    first = post(client, admin, "/sla-policies", base).json()
    clash = post(client, admin, "/sla-policies", base | {"name": "again"})
    assert clash.status_code == 409
    assert clash.json()["error"]["code"] == "sla_policy_exists"
    assert clash.json()["error"]["details"] == {"policy_id": first["id"]}
    other = post(client, admin, "/sla-policies", base | {"segment": None}).json()
    moved = client.patch(
        f"{API}/sla-policies/{other['id']}", json={"segment": "vip"}, headers=admin.headers
    )
    assert moved.status_code == 409


# -- mailboxes and tickets -----------------------------------------------------------------------


def test_a_mailbox_gets_its_calendar_by_patch(
    client: TestClient, admin: Caller, agent: Caller, mailbox: Mailbox
) -> None:
    calendar = make_calendar(client, admin)
    url = f"{API}/mailboxes/{mailbox.id}"
    assert (
        client.patch(
            url, json={"business_calendar_id": calendar["id"]}, headers=agent.headers
        ).status_code
        == 403
    )
    unknown = client.patch(url, json={"business_calendar_id": 999_999}, headers=admin.headers)
    assert unknown.status_code == 422
    assert unknown.json()["error"]["code"] == "unknown_calendar"
    bad_zone = client.patch(
        url, json={"timezone": "Nowhere/Land", "name": "Renamed"}, headers=admin.headers
    )
    assert bad_zone.status_code == 422
    assert client.patch(url, json={"language": None}, headers=admin.headers).status_code == 422
    [before] = listing(client, admin, "/mailboxes")
    assert before["business_calendar_id"] is None
    assert before["name"] == "Shop Support"

    changed = client.patch(
        url,
        json={"business_calendar_id": calendar["id"], "language": "ru", "auto_ack_enabled": False},
        headers=admin.headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["business_calendar_id"] == calendar["id"]
    assert changed.json()["language"] == "ru"
    assert changed.json()["auto_ack_enabled"] is False
    cleared = client.patch(url, json={"business_calendar_id": None}, headers=admin.headers)
    assert cleared.json()["business_calendar_id"] is None
    assert cleared.json()["language"] == "ru"

    created = post(
        client,
        admin,
        "/mailboxes",
        {"email": "billing@shop.test", "name": "Billing", "business_calendar_id": calendar["id"]},
    )
    assert created.status_code == 201, created.text
    assert created.json()["business_calendar_id"] == calendar["id"]


def test_a_new_ticket_shows_due_times_and_its_sla_state(
    client: TestClient, admin: Caller, agent: Caller, mailbox: Mailbox
) -> None:
    """Urgent on an always-open mailbox: 60/480 minutes from creation, state ok; pending stores
    the pause and open clears it."""
    response = post(
        client,
        agent,
        "/tickets",
        {
            "mailbox": str(mailbox.id),
            "customer_email": "c@example.com",
            "subject": "Down!",
            "priority": "urgent",
        },
    )
    assert response.status_code == 201, response.text
    ticket = response.json()
    created = datetime.fromisoformat(ticket["created_at"])
    assert datetime.fromisoformat(ticket["first_response_due_at"]) == created + timedelta(hours=1)
    assert datetime.fromisoformat(ticket["resolution_due_at"]) == created + timedelta(hours=8)
    assert datetime.fromisoformat(ticket["first_response_at_risk_at"]) == created + timedelta(
        minutes=45
    )
    assert ticket["sla"] == "ok"
    assert ticket["sla_policy_id"] is None

    pending = client.patch(
        f"{API}/tickets/{ticket['id']}",
        json={"version": ticket["version"], "status": "pending"},
        headers=agent.headers,
    ).json()
    assert pending["sla_paused_at"] is not None
    reopened = client.patch(
        f"{API}/tickets/{ticket['id']}",
        json={"version": pending["version"], "status": "open"},
        headers=agent.headers,
    ).json()
    assert reopened["sla_paused_at"] is None
    assert reopened["sla_paused_minutes"] == 0  # seconds, not minutes, went by

    resolved = client.patch(
        f"{API}/tickets/{ticket['id']}",
        json={"version": reopened["version"], "status": "resolved"},
        headers=agent.headers,
    ).json()
    assert resolved["sla"] == "met"


def test_the_ticket_list_filters_by_sla_state(
    client: TestClient, db: Database, agent: Caller, mailbox: Mailbox
) -> None:
    """Due times moved into the past by hand: `sla=breached` and `sla=at_risk` list exactly
    those tickets, each item's `sla` says so, and a resolved breached ticket is in neither."""
    ids = []
    for n in range(4):
        body = {"mailbox": mailbox.email, "customer_email": f"c{n}@example.com", "subject": "s"}
        ids.append(post(client, agent, "/tickets", body).json()["id"])
    fine, at_risk, breached, done = ids
    now = datetime.now(UTC)
    with db.unit_of_work() as s:
        s.execute(
            update(Ticket)
            .where(Ticket.id.in_([at_risk, breached, done]))
            .values(first_response_at_risk_at=now - timedelta(minutes=10))
        )
        s.execute(
            update(Ticket)
            .where(Ticket.id.in_([breached, done]))
            .values(first_response_due_at=now - timedelta(minutes=1))
        )
        s.execute(
            update(Ticket).where(Ticket.id == done).values(status="resolved", resolved_at=now)
        )

    def listed(state: str) -> list[int]:
        page = listing(client, agent, f"/tickets?sla={state}&sort=number")
        assert {item["sla"] for item in page["items"]} <= {state}
        return [item["id"] for item in page["items"]]

    assert listed("breached") == [breached]
    assert listed("at_risk") == [at_risk]
    states = {item["id"]: item["sla"] for item in listing(client, agent, "/tickets")["items"]}
    assert states == {fine: "ok", at_risk: "at_risk", breached: "breached", done: "met"}
    bad = client.get(f"{API}/tickets?sla=late", headers=agent.headers)
    assert bad.status_code == 422
