"""Teams through the REST API: rights, validation (bad input changes nothing), and the waiting
tickets a team change lets go out."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.agents.models import Agent, Team
from app.assignment.service import Strategy, assign_ticket
from app.db.session import Database
from app.mailboxes.models import Mailbox
from app.tickets import service as tickets
from app.tickets.events import Actor
from app.tickets.models import Ticket
from tests.conftest import Caller

API = "/api/v1"


def _teams(db: Database) -> list[tuple[str, str, int | None, list[int]]]:
    """What is stored, to check that a refused request changed nothing."""
    with db.session() as s:
        from sqlalchemy.orm import selectinload

        rows = s.execute(select(Team).options(selectinload(Team.members)).order_by(Team.id))
        return [
            (t.name, t.assignment_strategy, t.agent_cap, sorted(m.id for m in t.members))
            for t in rows.scalars()
        ]


def _create(client: TestClient, caller: Caller, **fields: Any) -> dict[str, Any]:
    body = {"name": "Billing", **fields}
    response = client.post(f"{API}/teams", json=body, headers=caller.headers)
    assert response.status_code == 201, response.text
    return response.json()


def test_leads_manage_teams_and_agents_read_them(
    client: TestClient, lead: Caller, agent: Caller, mailbox: Mailbox
) -> None:
    team = _create(
        client,
        lead,
        mailbox_id=mailbox.id,
        assignment_strategy="least_loaded",
        agent_cap=5,
        members=[agent.agent.id, lead.agent.id, agent.agent.id],
    )
    assert team["members"] == sorted([agent.agent.id, lead.agent.id])
    assert (team["mailbox_id"], team["assignment_strategy"], team["agent_cap"]) == (
        mailbox.id,
        "least_loaded",
        5,
    )
    assert team["last_assigned_agent_id"] is None

    listing = client.get(f"{API}/teams", headers=agent.headers)
    assert [t["id"] for t in listing.json()] == [team["id"]]
    url = f"{API}/teams/{team['id']}"
    assert client.get(url, headers=agent.headers).json() == team

    changed = client.patch(
        url,
        json={"agent_cap": None, "assignment_strategy": "skills", "members": [agent.agent.id]},
        headers=lead.headers,
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["agent_cap"], body["assignment_strategy"], body["members"]) == (
        None,
        "skills",
        [agent.agent.id],
    )
    # Fields not sent stay.
    assert body["name"] == "Billing"
    assert body["mailbox_id"] == mailbox.id

    assert client.delete(url, headers=lead.headers).status_code == 204
    assert client.get(url, headers=agent.headers).status_code == 404


def test_an_admin_may_manage_teams_too(client: TestClient, admin: Caller) -> None:
    team = _create(client, admin, name="Night shift")
    assert team["assignment_strategy"] == "manual"
    assert team["members"] == []


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/teams", {"name": "Mine"}),
        ("PATCH", "/teams/{id}", {"agent_cap": 1}),
        ("DELETE", "/teams/{id}", None),
    ],
)
def test_agents_cannot_change_teams(
    client: TestClient,
    db: Database,
    lead: Caller,
    agent: Caller,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    team = _create(client, lead, members=[lead.agent.id])
    before = _teams(db)
    response = client.request(
        method, API + path.format(id=team["id"]), json=body, headers=agent.headers
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "teams_forbidden"
    assert _teams(db) == before


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"assignment_strategy": "random"}, "validation_error"),
        ({"agent_cap": 0}, "validation_error"),
        ({"agent_cap": -3}, "validation_error"),
        ({"members": [999999]}, "unknown_agent"),
        ({"members": [0]}, "validation_error"),
        ({"mailbox_id": 999999}, "unknown_mailbox"),
        ({"name": ""}, "validation_error"),
        ({"name": "x\u0000y"}, "validation_error"),
        ({"colour": "red"}, "validation_error"),
    ],
)
def test_bad_team_input_is_refused_and_changes_nothing(
    client: TestClient, db: Database, lead: Caller, body: dict[str, Any], code: str
) -> None:
    team = _create(client, lead, members=[lead.agent.id], agent_cap=3)
    before = _teams(db)
    created = client.post(f"{API}/teams", json={"name": "Other", **body}, headers=lead.headers)
    changed = client.patch(f"{API}/teams/{team['id']}", json=body, headers=lead.headers)
    for response in (created, changed):
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == code
    assert _teams(db) == before


def test_team_names_are_unique(client: TestClient, db: Database, lead: Caller) -> None:
    _create(client, lead, name="Billing")
    other = _create(client, lead, name="Tech")
    before = _teams(db)
    again = client.post(f"{API}/teams", json={"name": "Billing"}, headers=lead.headers)
    renamed = client.patch(
        f"{API}/teams/{other['id']}", json={"name": "Billing"}, headers=lead.headers
    )
    for response in (again, renamed):
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "team_exists"
    assert _teams(db) == before


def test_unknown_team_is_404(client: TestClient, lead: Caller) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        response = client.request(method, f"{API}/teams/424242", json={}, headers=lead.headers)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "team_not_found"


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
        assert ticket.awaiting_assignment
        return ticket.id


def _assignee(db: Database, ticket_id: int) -> tuple[int | None, bool]:
    with db.session() as s:
        ticket = s.get(Ticket, ticket_id)
        assert ticket is not None
        return ticket.assignee_id, ticket.awaiting_assignment


def test_a_new_member_takes_the_waiting_tickets_at_once(
    client: TestClient, db: Database, lead: Caller, agent: Caller, mailbox: Mailbox
) -> None:
    team = _create(client, lead, assignment_strategy="round_robin")  # nobody in it yet
    ticket_id = _waiting_ticket(db, mailbox, team["id"])
    response = client.patch(
        f"{API}/teams/{team['id']}", json={"members": [agent.agent.id]}, headers=lead.headers
    )
    assert response.status_code == 200
    assert _assignee(db, ticket_id) == (agent.agent.id, False)
    assert response.json()["last_assigned_agent_id"] == agent.agent.id


def test_deleting_a_team_ends_its_tickets_wait(
    client: TestClient, db: Database, lead: Caller, mailbox: Mailbox
) -> None:
    team = _create(client, lead, assignment_strategy=Strategy.ROUND_ROBIN.value)
    ticket_id = _waiting_ticket(db, mailbox, team["id"])
    assert client.delete(f"{API}/teams/{team['id']}", headers=lead.headers).status_code == 204
    with db.session() as s:
        ticket = s.get(Ticket, ticket_id)
        assert ticket is not None
        assert ticket.team_id is None
        assert not ticket.awaiting_assignment
        assert s.get(Agent, lead.agent.id) is not None  # members are not deleted with it
