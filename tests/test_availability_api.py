"""Shifts, time off, the away switch and availability through the REST API: rights, validation
(bad input changes nothing), and waiting tickets assigned in the request that frees an agent."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.agents.models import AgentShift, Team
from app.assignment.service import Strategy, assign_ticket
from app.db.session import Database
from app.mailboxes.models import Mailbox
from app.tickets import service as tickets
from app.tickets.events import Actor
from app.tickets.models import Event, Ticket
from tests.conftest import Caller

API = "/api/v1"
WEEK = [
    {"weekday": 0, "start": "09:00", "end": "13:00"},
    {"weekday": 0, "start": "14:00", "end": "18:00"},
    {"weekday": 4, "start": "22:00", "end": "24:00"},
    {"weekday": 5, "start": "00:00", "end": "06:00"},
]


def _stored_shifts(db: Database, agent_id: int) -> list[tuple[int, int, int]]:
    with db.session() as s:
        rows = s.execute(select(AgentShift).where(AgentShift.agent_id == agent_id)).scalars()
        return sorted((r.weekday, r.start_minute, r.end_minute) for r in rows)


def test_an_agent_sets_and_reads_their_week(
    client: TestClient, db: Database, agent: Caller
) -> None:
    url = f"{API}/agents/{agent.agent.id}/shifts"
    assert client.get(url, headers=agent.headers).json() == []
    response = client.put(url, json=list(reversed(WEEK)), headers=agent.headers)
    assert response.status_code == 200, response.text
    assert response.json() == WEEK  # in week order
    assert client.get(url, headers=agent.headers).json() == WEEK
    assert _stored_shifts(db, agent.agent.id) == [
        (0, 540, 780),
        (0, 840, 1080),
        (4, 1320, 1440),
        (5, 0, 360),
    ]
    # The whole week is replaced; an empty week means on shift at all hours.
    assert client.put(url, json=[], headers=agent.headers).json() == []
    assert _stored_shifts(db, agent.agent.id) == []


@pytest.mark.parametrize(
    ("shifts", "code"),
    [
        ([{"weekday": 0, "start": "09:00", "end": "12:00"},
          {"weekday": 0, "start": "11:00", "end": "18:00"}], "overlapping_shifts"),
        ([{"weekday": 2, "start": "09:00", "end": "18:00"},
          {"weekday": 2, "start": "09:00", "end": "18:00"}], "overlapping_shifts"),
        ([{"weekday": 0, "start": "18:00", "end": "09:00"}], "validation_error"),
        ([{"weekday": 0, "start": "09:00", "end": "09:00"}], "validation_error"),
        ([{"weekday": 0, "start": "09:00", "end": "24:30"}], "validation_error"),
        ([{"weekday": 0, "start": "24:00", "end": "24:00"}], "validation_error"),
        ([{"weekday": 0, "start": "9:00", "end": "18:00"}], "validation_error"),
        ([{"weekday": 0, "start": "09:60", "end": "18:00"}], "validation_error"),
        ([{"weekday": 7, "start": "09:00", "end": "18:00"}], "validation_error"),
        ([{"weekday": -1, "start": "09:00", "end": "18:00"}], "validation_error"),
        ([{"weekday": 0, "start": "09:00"}], "validation_error"),
        ([{"weekday": 0, "start": "09:00", "end": "18:00", "tz": "UTC"}], "validation_error"),
        ({"weekday": 0, "start": "09:00", "end": "18:00"}, "validation_error"),
        ([{"weekday": 0, "start": "09:00", "end": "18:00"}] * 400, "validation_error"),
    ],
)  # fmt: skip
def test_a_bad_week_is_refused_and_changes_nothing(
    client: TestClient, db: Database, agent: Caller, shifts: Any, code: str
) -> None:
    url = f"{API}/agents/{agent.agent.id}/shifts"
    assert client.put(url, json=WEEK, headers=agent.headers).status_code == 200
    before = _stored_shifts(db, agent.agent.id)
    response = client.put(url, json=shifts, headers=agent.headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code
    assert _stored_shifts(db, agent.agent.id) == before


def test_shifts_and_time_off_are_one_s_own_or_a_lead_s_business(
    client: TestClient, db: Database, agent: Caller, lead: Caller, admin: Caller, make_caller: Any
) -> None:
    colleague = make_caller(name="Colleague")
    url = f"{API}/agents/{colleague.agent.id}"
    day = {"starts_on": "2030-01-01", "ends_on": "2030-01-02"}
    for method, path, body in [
        ("PUT", "/shifts", WEEK),
        ("POST", "/time-off", day),
    ]:
        refused = client.request(method, url + path, json=body, headers=agent.headers)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "schedule_forbidden"
        for boss in (lead, admin):
            allowed = client.request(method, url + path, json=body, headers=boss.headers)
            assert allowed.status_code in (200, 201), allowed.text
    # Anyone reads a colleague's rota (to know who is in).
    assert client.get(url + "/shifts", headers=agent.headers).json() == WEEK
    assert len(client.get(url + "/time-off", headers=agent.headers).json()) == 2
    time_off_id = client.get(url + "/time-off", headers=agent.headers).json()[0]["id"]
    refused = client.delete(f"{url}/time-off/{time_off_id}", headers=agent.headers)
    assert refused.status_code == 403
    assert len(client.get(url + "/time-off", headers=agent.headers).json()) == 2


def test_time_off_is_added_listed_and_removed(client: TestClient, agent: Caller) -> None:
    url = f"{API}/agents/{agent.agent.id}/time-off"
    later = client.post(
        url, json={"starts_on": "2030-08-01", "ends_on": "2030-08-14"}, headers=agent.headers
    )
    sooner = client.post(
        url,
        json={"starts_on": "2030-05-09", "ends_on": "2030-05-09", "reason": "dentist"},
        headers=agent.headers,
    )
    assert (later.status_code, sooner.status_code) == (201, 201)
    assert sooner.json()["reason"] == "dentist"
    listing = client.get(url, headers=agent.headers).json()
    assert [(t["starts_on"], t["ends_on"]) for t in listing] == [
        ("2030-05-09", "2030-05-09"),
        ("2030-08-01", "2030-08-14"),
    ]
    assert client.delete(f"{url}/{later.json()['id']}", headers=agent.headers).status_code == 204
    assert [t["id"] for t in client.get(url, headers=agent.headers).json()] == [sooner.json()["id"]]
    gone = client.delete(f"{url}/{later.json()['id']}", headers=agent.headers)
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "time_off_not_found"


def test_time_off_of_another_agent_is_not_found_under_one_s_own_path(
    client: TestClient, agent: Caller, lead: Caller
) -> None:
    row = client.post(
        f"{API}/agents/{lead.agent.id}/time-off",
        json={"starts_on": "2030-05-09", "ends_on": "2030-05-10"},
        headers=lead.headers,
    ).json()
    response = client.delete(
        f"{API}/agents/{agent.agent.id}/time-off/{row['id']}", headers=agent.headers
    )
    assert response.status_code == 404
    assert (
        len(client.get(f"{API}/agents/{lead.agent.id}/time-off", headers=lead.headers).json()) == 1
    )


@pytest.mark.parametrize(
    "body",
    [
        {"starts_on": "2030-05-10", "ends_on": "2030-05-09"},
        {"starts_on": "2030-05-10"},
        {"starts_on": "2030-02-30", "ends_on": "2030-03-01"},
        {"starts_on": "yesterday", "ends_on": "2030-03-01"},
        {"starts_on": "9999-12-31", "ends_on": "9999-12-31"},
        {"starts_on": "2030-05-09", "ends_on": "2030-05-09", "reason": "x" * 201},
        {"starts_on": "2030-05-09", "ends_on": "2030-05-09", "reason": "a\u0000b"},
    ],
)
def test_bad_time_off_is_refused_and_changes_nothing(
    client: TestClient, agent: Caller, body: dict[str, Any]
) -> None:
    url = f"{API}/agents/{agent.agent.id}/time-off"
    response = client.post(url, json=body, headers=agent.headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
    assert client.get(url, headers=agent.headers).json() == []


def test_the_away_switch_rights(
    client: TestClient, agent: Caller, lead: Caller, make_caller: Any
) -> None:
    colleague = make_caller(name="Colleague")

    def away(caller: Caller, target: Caller, value: bool) -> int:
        url = f"{API}/agents/{target.agent.id}"
        return client.patch(url, json={"away": value}, headers=caller.headers).status_code

    assert away(agent, agent, True) == 200
    assert client.get(f"{API}/agents/me", headers=agent.headers).json()["away"] is True
    assert away(agent, colleague, True) == 403
    assert (
        client.get(f"{API}/agents/{colleague.agent.id}", headers=agent.headers).json()["away"]
        is False
    )
    assert away(lead, colleague, True) == 200
    assert away(lead, agent, False) == 200
    assert client.get(f"{API}/agents/me", headers=agent.headers).json()["away"] is False
    # A lead's right over others is the away switch (and skills), not their profile.
    renamed = client.patch(
        f"{API}/agents/{agent.agent.id}", json={"name": "X", "away": True}, headers=lead.headers
    )
    assert renamed.status_code == 403
    assert client.get(f"{API}/agents/me", headers=agent.headers).json()["away"] is False


def test_leads_set_skills(client: TestClient, agent: Caller, lead: Caller) -> None:
    url = f"{API}/agents/{agent.agent.id}"
    refused = client.patch(url, json={"skills": ["billing"]}, headers=agent.headers)
    assert refused.status_code == 403
    response = client.patch(
        url, json={"skills": ["Billing", "refunds", "billing"]}, headers=lead.headers
    )
    assert response.status_code == 200
    assert response.json()["skills"] == ["billing", "refunds"]
    for bad in (["two words"], [""], ["x" * 65], "billing"):
        assert client.patch(url, json={"skills": bad}, headers=lead.headers).status_code == 422
    assert client.get(url, headers=agent.headers).json()["skills"] == ["billing", "refunds"]


def test_availability_tells_why_and_until_when(client: TestClient, agent: Caller) -> None:
    url = f"{API}/agents/{agent.agent.id}/availability"
    assert client.get(url, headers=agent.headers).json() == {
        "available": True,
        "reason": None,
        "until": None,
    }
    client.patch(f"{API}/agents/{agent.agent.id}", json={"away": True}, headers=agent.headers)
    assert client.get(url, headers=agent.headers).json() == {
        "available": False,
        "reason": "away",
        "until": None,
    }
    client.patch(f"{API}/agents/{agent.agent.id}", json={"away": False}, headers=agent.headers)
    today = datetime.now(UTC).date()
    client.post(
        f"{API}/agents/{agent.agent.id}/time-off",
        json={
            "starts_on": str(today - timedelta(days=1)),
            "ends_on": str(today + timedelta(days=1)),
        },
        headers=agent.headers,
    )
    state = client.get(url, headers=agent.headers).json()
    assert (state["available"], state["reason"]) == (False, "time_off")
    back = datetime.combine(today + timedelta(days=2), datetime.min.time(), tzinfo=UTC)
    assert datetime.fromisoformat(state["until"]) == back


def test_unknown_agent_is_404(client: TestClient, lead: Caller) -> None:
    for method, path, body in [
        ("GET", "/shifts", None),
        ("PUT", "/shifts", []),
        ("GET", "/time-off", None),
        ("POST", "/time-off", {"starts_on": "2030-01-01", "ends_on": "2030-01-01"}),
        ("GET", "/availability", None),
    ]:
        response = client.request(
            method, f"{API}/agents/424242{path}", json=body, headers=lead.headers
        )
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["code"] == "agent_not_found"


# -- freeing an agent assigns the waiting tickets in the same request ---------------------------


def _team_of(db: Database, caller: Caller) -> int:
    with db.unit_of_work() as s:
        team = Team(name="Support", assignment_strategy=Strategy.ROUND_ROBIN.value)
        team.members = [s.get(type(caller.agent), caller.agent.id)]  # type: ignore[list-item]
        s.add(team)
        s.flush()
        return team.id


def _waiting_ticket(db: Database, mailbox: Mailbox, team_id: int) -> int:
    with db.unit_of_work() as s:
        ticket = tickets.create_ticket(
            s,
            mailbox=mailbox,
            subject="Help",
            customer_email="bob@example.com",
            actor=Actor.system(),
        )
        assert assign_ticket(s, ticket=ticket, actor=Actor.system(), team_id=team_id) is None
        return ticket.id


def _assigned_to(db: Database, ticket_id: int) -> int | None:
    with db.session() as s:
        ticket = s.get(Ticket, ticket_id)
        assert ticket is not None
        assert ticket.awaiting_assignment is (ticket.assignee_id is None)
        return ticket.assignee_id


def test_switching_away_off_assigns_the_waiting_tickets(
    client: TestClient, db: Database, agent: Caller, lead: Caller, mailbox: Mailbox
) -> None:
    team_id = _team_of(db, agent)
    url = f"{API}/agents/{agent.agent.id}"
    client.patch(url, json={"away": True}, headers=agent.headers)
    first, second = _waiting_ticket(db, mailbox, team_id), _waiting_ticket(db, mailbox, team_id)
    assert _assigned_to(db, first) is None
    assert client.patch(url, json={"away": False}, headers=lead.headers).status_code == 200
    assert _assigned_to(db, first) == agent.agent.id
    assert _assigned_to(db, second) == agent.agent.id
    with db.session() as s:
        [event] = s.execute(
            select(Event).where(Event.ticket_id == first, Event.field == "assignee")
        ).scalars()
        assert (event.actor_kind, event.new_value) == ("system", agent.agent.email)


def test_a_new_rota_assigns_the_waiting_tickets(
    client: TestClient, db: Database, agent: Caller, mailbox: Mailbox
) -> None:
    team_id = _team_of(db, agent)
    url = f"{API}/agents/{agent.agent.id}/shifts"
    # Only a day three days away: off shift now (the agent's zone is UTC).
    elsewhere = (datetime.now(UTC).weekday() + 3) % 7
    client.put(
        url, json=[{"weekday": elsewhere, "start": "00:00", "end": "24:00"}], headers=agent.headers
    )
    ticket_id = _waiting_ticket(db, mailbox, team_id)
    assert _assigned_to(db, ticket_id) is None
    whole_week = [{"weekday": d, "start": "00:00", "end": "24:00"} for d in range(7)]
    assert client.put(url, json=whole_week, headers=agent.headers).status_code == 200
    assert _assigned_to(db, ticket_id) == agent.agent.id


def test_cancelled_time_off_assigns_the_waiting_tickets(
    client: TestClient, db: Database, agent: Caller, mailbox: Mailbox
) -> None:
    team_id = _team_of(db, agent)
    today = date.today()
    row = client.post(
        f"{API}/agents/{agent.agent.id}/time-off",
        json={
            "starts_on": str(today - timedelta(days=2)),
            "ends_on": str(today + timedelta(days=2)),
        },
        headers=agent.headers,
    ).json()
    ticket_id = _waiting_ticket(db, mailbox, team_id)
    assert _assigned_to(db, ticket_id) is None
    response = client.delete(
        f"{API}/agents/{agent.agent.id}/time-off/{row['id']}", headers=agent.headers
    )
    assert response.status_code == 204
    assert _assigned_to(db, ticket_id) == agent.agent.id


def test_a_manual_assignment_ends_the_wait(
    client: TestClient, db: Database, agent: Caller, lead: Caller, mailbox: Mailbox
) -> None:
    team_id = _team_of(db, agent)
    client.patch(f"{API}/agents/{agent.agent.id}", json={"away": True}, headers=agent.headers)
    ticket_id = _waiting_ticket(db, mailbox, team_id)
    version = client.get(f"{API}/tickets/{ticket_id}", headers=lead.headers).json()["version"]
    response = client.patch(
        f"{API}/tickets/{ticket_id}",
        json={"version": version, "assignee": lead.agent.email},
        headers=lead.headers,
    )
    assert response.status_code == 200, response.text
    assert _assigned_to(db, ticket_id) == lead.agent.id
