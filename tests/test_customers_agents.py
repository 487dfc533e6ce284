"""Customers (case-insensitive upsert, search, edits) and agents (listing, self, API tokens)
through the REST API."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.customers.models import Customer
from app.db.session import Database
from tests.conftest import Caller, MakeCaller

API = "/api/v1"


def upsert(client: TestClient, caller: Caller, **body: Any) -> Any:
    return client.post(f"{API}/customers", json=body, headers=caller.headers)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- customers -------------------------------------------------------------------------------


def test_upsert_matches_addresses_case_insensitively(
    client: TestClient, agent: Caller, db: Database
) -> None:
    """Three casings of one address: 201 the first time, 200 after, always the same single row,
    stored lower-cased."""
    responses = [
        upsert(client, agent, email=email)
        for email in ("Dana@Example.com", "dana@example.com", "DANA@EXAMPLE.COM")
    ]
    assert [r.status_code for r in responses] == [201, 200, 200], [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert responses[0].json()["email"] == "dana@example.com"
    with db.session() as s:
        count = s.execute(
            select(func.count()).where(func.lower(Customer.email) == "dana@example.com")
        ).scalar_one()
    assert count == 1


def test_upsert_fills_the_name_in_later_but_never_blanks_it(
    client: TestClient, agent: Caller
) -> None:
    """A sighting without a name leaves it empty; a later one with a name fills it; sightings
    without a name (absent, null or empty) keep it; a different name replaces it."""
    first = upsert(client, agent, email="eve@example.com").json()
    assert first["name"] is None
    assert upsert(client, agent, email="EVE@example.com", name="Eve").json()["name"] == "Eve"
    assert upsert(client, agent, email="eve@example.com").json()["name"] == "Eve"
    assert upsert(client, agent, email="eve@example.com", name=None).json()["name"] == "Eve"
    assert upsert(client, agent, email="eve@example.com", name="").json()["name"] == "Eve"
    renamed = upsert(client, agent, email="eve@example.com", name="Eve Smith").json()
    assert renamed["name"] == "Eve Smith"
    fetched = client.get(f"{API}/customers/{first['id']}", headers=agent.headers).json()
    assert fetched["name"] == "Eve Smith"


def test_upsert_keeps_segment_and_timezone_unless_given(client: TestClient, agent: Caller) -> None:
    """Segment and time zone behave like the name: set when given, kept when not."""
    created = upsert(client, agent, email="f@example.com", segment="vip", timezone="Europe/Paris")
    assert (created.json()["segment"], created.json()["timezone"]) == ("vip", "Europe/Paris")
    again = upsert(client, agent, email="f@example.com").json()
    assert (again["segment"], again["timezone"]) == ("vip", "Europe/Paris")
    assert upsert(client, agent, email="g@example.com").json()["segment"] == "regular"


def test_customer_list_searches_address_and_name_and_filters_segment(
    client: TestClient, agent: Caller
) -> None:
    """q matches part of the address or of the name, in any case, with `_` and `%` taken
    literally; segment narrows; total counts the matches."""
    upsert(client, agent, email="ann@acme.test", name="Ann Archer", segment="vip")
    upsert(client, agent, email="bo_b@acme.test", name="Bob", segment="regular")
    upsert(client, agent, email="carl@other.test", name="Carl ACME", segment="vip")
    upsert(client, agent, email="boxb@other.test", name="100% Dan")

    def emails(**params: Any) -> list[str]:
        body = client.get(f"{API}/customers", params=params, headers=agent.headers).json()
        assert body["total"] == len(body["items"])
        return [c["email"] for c in body["items"]]

    assert emails(q="ACME") == ["ann@acme.test", "bo_b@acme.test", "carl@other.test"]
    assert emails(q="archer") == ["ann@acme.test"]
    assert emails(q="o_b") == ["bo_b@acme.test"]  # as a wildcard, also boxb@
    assert emails(q="%") == ["boxb@other.test"]
    assert emails(segment="vip") == ["ann@acme.test", "carl@other.test"]
    assert emails(q="acme", segment="vip") == ["ann@acme.test", "carl@other.test"]
    assert emails(q="nobody") == []


def test_customer_list_pages(client: TestClient, agent: Caller) -> None:
    """limit/offset page through customers in id order; total stays the full count."""
    for n in range(5):
        upsert(client, agent, email=f"p{n}@example.com")
    page = client.get(
        f"{API}/customers", params={"limit": 2, "offset": 2}, headers=agent.headers
    ).json()
    assert [c["email"] for c in page["items"]] == ["p2@example.com", "p3@example.com"]
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 2)


def test_customer_patch_changes_only_what_is_sent(client: TestClient, agent: Caller) -> None:
    """PATCH sets name, segment and time zone; fields left out keep their values."""
    created = upsert(client, agent, email="h@example.com", name="H").json()
    url = f"{API}/customers/{created['id']}"
    changed = client.patch(url, json={"segment": "enterprise"}, headers=agent.headers)
    assert changed.status_code == 200
    assert (changed.json()["name"], changed.json()["segment"]) == ("H", "enterprise")
    changed = client.patch(
        url, json={"timezone": "Asia/Tokyo", "name": "Hana"}, headers=agent.headers
    )
    body = client.get(url, headers=agent.headers).json()
    assert (body["name"], body["segment"], body["timezone"]) == ("Hana", "enterprise", "Asia/Tokyo")
    assert body["email"] == "h@example.com"


# --- agents ----------------------------------------------------------------------------------


def test_agents_list_me_and_get(
    client: TestClient, admin: Caller, lead: Caller, agent: Caller
) -> None:
    """Any agent lists everyone (id order), reads itself at /me and anyone by id."""
    listing = client.get(f"{API}/agents", headers=agent.headers)
    assert listing.status_code == 200
    assert [a["id"] for a in listing.json()] == [admin.agent.id, lead.agent.id, agent.agent.id]
    assert [a["role"] for a in listing.json()] == ["admin", "lead", "agent"]
    me = client.get(f"{API}/agents/me", headers=lead.headers).json()
    assert (me["id"], me["email"], me["name"]) == (lead.agent.id, lead.agent.email, "Lee Lead")
    other = client.get(f"{API}/agents/{admin.agent.id}", headers=agent.headers).json()
    assert other == next(a for a in listing.json() if a["id"] == admin.agent.id)


def test_admin_creates_an_agent_who_can_then_be_given_a_token(
    client: TestClient, admin: Caller
) -> None:
    """POST /agents (address lower-cased), then a token for the new agent works at /me."""
    created = client.post(
        f"{API}/agents",
        json={"email": "Nina@Team.test", "name": "Nina", "role": "lead", "timezone": "Europe/Rome"},
        headers=admin.headers,
    )
    assert created.status_code == 201
    nina = created.json()
    assert (nina["email"], nina["role"], nina["timezone"], nina["is_active"]) == (
        "nina@team.test",
        "lead",
        "Europe/Rome",
        True,
    )
    issued = client.post(f"{API}/agents/{nina['id']}/tokens", json={}, headers=admin.headers)
    assert issued.status_code == 201
    assert issued.json()["name"] == "default"
    me = client.get(f"{API}/agents/me", headers=bearer(issued.json()["token"])).json()
    assert me["id"] == nina["id"]


def test_agent_edits_own_profile(client: TestClient, agent: Caller) -> None:
    """Self-service: name, time zone and signature."""
    changed = client.patch(
        f"{API}/agents/{agent.agent.id}",
        json={"name": "Alex A.", "timezone": "America/New_York", "signature": "— Alex"},
        headers=agent.headers,
    )
    assert changed.status_code == 200
    me = client.get(f"{API}/agents/me", headers=agent.headers).json()
    assert (me["name"], me["timezone"], me["signature"]) == (
        "Alex A.",
        "America/New_York",
        "— Alex",
    )


def test_deactivated_agent_is_locked_out_and_back_in_when_reactivated(
    client: TestClient, admin: Caller, agent: Caller
) -> None:
    """An admin deactivates an agent: its token answers 401; reactivated, the same token works."""
    url = f"{API}/agents/{agent.agent.id}"
    assert client.patch(url, json={"is_active": False}, headers=admin.headers).status_code == 200
    locked = client.get(f"{API}/agents/me", headers=agent.headers)
    assert locked.status_code == 401
    assert locked.json()["error"]["code"] == "agent_inactive"
    assert client.patch(url, json={"is_active": True}, headers=admin.headers).status_code == 200
    assert client.get(f"{API}/agents/me", headers=agent.headers).status_code == 200


# --- tokens ----------------------------------------------------------------------------------


def test_token_issue_list_revoke(client: TestClient, agent: Caller) -> None:
    """An agent issues itself a token (shown once), sees it listed without the secret, revokes
    it (204): the revoked token answers 401 while the other keeps working."""
    tokens_url = f"{API}/agents/{agent.agent.id}/tokens"
    issued = client.post(tokens_url, json={"name": "laptop"}, headers=agent.headers)
    assert issued.status_code == 201
    token = issued.json()["token"]
    assert issued.json()["prefix"] == token[: len(issued.json()["prefix"])]
    assert client.get(f"{API}/agents/me", headers=bearer(token)).json()["id"] == agent.agent.id

    listing = client.get(tokens_url, headers=agent.headers).json()
    assert [(t["name"], t["revoked_at"]) for t in listing] == [("default", None), ("laptop", None)]
    assert all("token" not in t for t in listing)
    assert listing[1]["last_used_at"] is not None  # it was just used

    revoked = client.delete(f"{tokens_url}/{issued.json()['id']}", headers=agent.headers)
    assert revoked.status_code == 204
    assert revoked.content == b""
    refused = client.get(f"{API}/agents/me", headers=bearer(token))
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_token"
    assert client.get(f"{API}/agents/me", headers=agent.headers).status_code == 200
    listing = client.get(tokens_url, headers=agent.headers).json()
    assert [t["revoked_at"] is not None for t in listing] == [False, True]


def test_revoking_twice_is_harmless_and_keeps_the_first_time(
    client: TestClient, agent: Caller
) -> None:
    """A second DELETE of a revoked token is 204 and does not move revoked_at."""
    tokens_url = f"{API}/agents/{agent.agent.id}/tokens"
    token_id = client.post(tokens_url, json={"name": "x"}, headers=agent.headers).json()["id"]
    assert client.delete(f"{tokens_url}/{token_id}", headers=agent.headers).status_code == 204
    first = client.get(tokens_url, headers=agent.headers).json()[1]["revoked_at"]
    assert client.delete(f"{tokens_url}/{token_id}", headers=agent.headers).status_code == 204
    assert client.get(tokens_url, headers=agent.headers).json()[1]["revoked_at"] == first


def test_admin_manages_other_agents_tokens_but_agents_do_not(
    client: TestClient, admin: Caller, agent: Caller, make_caller: MakeCaller
) -> None:
    """An admin lists, issues and revokes another agent's tokens; a token of one agent cannot be
    revoked through another agent's URL (404)."""
    colleague = make_caller(name="Colleague")
    url = f"{API}/agents/{agent.agent.id}/tokens"
    assert len(client.get(url, headers=admin.headers).json()) == 1
    issued = client.post(url, json={"name": "by-admin"}, headers=admin.headers).json()
    assert client.get(f"{API}/agents/me", headers=bearer(issued["token"])).json()["id"] == (
        agent.agent.id
    )
    wrong_owner = client.delete(
        f"{API}/agents/{colleague.agent.id}/tokens/{issued['id']}", headers=admin.headers
    )
    assert wrong_owner.status_code == 404
    assert wrong_owner.json()["error"]["code"] == "token_not_found"
    assert client.get(f"{API}/agents/me", headers=bearer(issued["token"])).status_code == 200
    assert client.delete(f"{url}/{issued['id']}", headers=admin.headers).status_code == 204
    assert client.get(f"{API}/agents/me", headers=bearer(issued["token"])).status_code == 401
    # The agent's own token is untouched, and it still cannot look at a colleague's tokens.
    forbidden = client.get(f"{API}/agents/{colleague.agent.id}/tokens", headers=agent.headers)
    assert forbidden.status_code == 403


def test_revoking_ones_own_last_token_locks_oneself_out(client: TestClient, agent: Caller) -> None:
    """Revoking the token one is using takes effect on the very next request."""
    tokens_url = f"{API}/agents/{agent.agent.id}/tokens"
    [only] = client.get(tokens_url, headers=agent.headers).json()
    assert client.delete(f"{tokens_url}/{only['id']}", headers=agent.headers).status_code == 204
    assert client.get(tokens_url, headers=agent.headers).status_code == 401
