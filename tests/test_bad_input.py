"""Bad requests are refused cleanly: a 4xx with the error envelope ``{"error": {"code",
"message"}}``, and nothing in the database changes — every row of every table, the ticket
counter and the event log included, is compared before and after."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.agents.models import ApiToken, Role
from app.db.registry import metadata
from app.db.session import Database
from app.mailboxes.models import Mailbox
from tests.conftest import Caller, MakeCaller

API = "/api/v1"
MISSING = 999_999


def snapshot(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in primary-key order."""
    with db.session() as s:
        return {
            table.name: [
                tuple(row) for row in s.execute(select(table).order_by(*table.primary_key.columns))
            ]
            for table in metadata.sorted_tables
        }


@dataclass
class World:
    """A populated installation the bad requests are thrown at."""

    admin: Caller
    lead: Caller
    agent: Caller
    ticket: dict[str, Any]  # an open ticket with a Gmail thread and a tag
    closed: dict[str, Any]  # a closed ticket
    customer_id: int
    revoked: str  # a token of the agent's, revoked
    inactive: str  # the token of a deactivated agent


@pytest.fixture
def world(
    client: TestClient,
    admin: Caller,
    lead: Caller,
    agent: Caller,
    make_caller: MakeCaller,
    mailbox: Mailbox,
) -> World:
    def create(subject: str, **extra: Any) -> dict[str, Any]:
        body = {"mailbox": mailbox.email, "customer_email": "bob@example.com", "subject": subject}
        response = client.post(f"{API}/tickets", json={**body, **extra}, headers=admin.headers)
        assert response.status_code == 201, response.text
        return response.json()

    ticket = create("Refund please", gmail_thread_id="thread-1", tags=["vip"])
    ticket = client.patch(
        f"{API}/tickets/{ticket['id']}",
        json={"version": ticket["version"], "status": "open"},
        headers=admin.headers,
    ).json()
    closed = create("Old")
    closed = client.patch(
        f"{API}/tickets/{closed['id']}",
        json={"version": closed["version"], "status": "closed"},
        headers=admin.headers,
    ).json()
    issued = client.post(
        f"{API}/agents/{agent.agent.id}/tokens", json={"name": "old"}, headers=agent.headers
    ).json()
    client.delete(f"{API}/agents/{agent.agent.id}/tokens/{issued['id']}", headers=agent.headers)
    leaver = make_caller(Role.AGENT, email="leaver@team.test")
    for caller in (admin, lead, agent, leaver):  # write each token's last_used_at now, not later
        assert client.get(f"{API}/agents/me", headers=caller.headers).status_code == 200
    deactivated = client.patch(
        f"{API}/agents/{leaver.agent.id}", json={"is_active": False}, headers=admin.headers
    )
    assert deactivated.status_code == 200
    return World(
        admin=admin,
        lead=lead,
        agent=agent,
        ticket=ticket,
        closed=closed,
        customer_id=ticket["customer"]["id"],
        revoked=issued["token"],
        inactive=leaver.token,
    )


Request = tuple[str, str, dict[str, Any]]  # method, path, keyword arguments for the client


@dataclass(frozen=True)
class Bad:
    name: str
    status: int
    code: str | None  # None: the status is what matters
    request: Callable[[World], Request]


_NO_BODY = object()


def _resolve(value: Any, w: World) -> Any:
    return value(w) if callable(value) else value


def call(
    method: str,
    path: str | Callable[[World], str],
    body: Any = _NO_BODY,
    *,
    by: Callable[[World], Caller] = lambda w: w.admin,
    **params: Any,
) -> Callable[[World], Request]:
    """A request built against the world: path and body may be functions of it."""

    def build(w: World) -> Request:
        kwargs: dict[str, Any] = {"headers": by(w).headers}
        if body is not _NO_BODY:
            kwargs["json"] = _resolve(body, w)
        if params:
            kwargs["params"] = params
        return method, f"{API}{_resolve(path, w)}", kwargs

    return build


def raw(method: str, path: str | Callable[[World], str], content: bytes) -> Any:
    def build(w: World) -> Request:
        headers = {**w.admin.headers, "content-type": "application/json"}
        return method, f"{API}{_resolve(path, w)}", {"content": content, "headers": headers}

    return build


def auth(value: str | Callable[[World], str] | None, method: str = "GET") -> Any:
    """A request whose Authorization header is ``value`` (absent if None); the PATCH variant is
    otherwise valid, so only the credentials can stop it."""

    def build(w: World) -> Request:
        headers = {} if value is None else {"Authorization": _resolve(value, w)}
        if method == "PATCH":
            body = {"version": v(w), "priority": "urgent"}
            return "PATCH", f"{API}{ticket(w)}", {"json": body, "headers": headers}
        return "GET", f"{API}/tickets", {"headers": headers}

    return build


def ticket(w: World) -> str:
    return f"/tickets/{w.ticket['id']}"


def notes(w: World) -> str:
    return f"/tickets/{w.ticket['id']}/notes"


def events(w: World) -> str:
    return f"/tickets/{w.ticket['id']}/events"


def closed(w: World) -> str:
    return f"/tickets/{w.closed['id']}"


def customer(w: World) -> str:
    return f"/customers/{w.customer_id}"


def agent_(w: World) -> str:
    return f"/agents/{w.agent.agent.id}"


def admin_tokens(w: World) -> str:
    return f"/agents/{w.admin.agent.id}/tokens"


def v(w: World) -> int:
    return int(w.ticket["version"])


def changing(**fields: Any) -> Callable[[World], dict[str, Any]]:
    """A PATCH body for the world's ticket at its current version."""
    return lambda w: {"version": v(w), **fields}


def by_agent(w: World) -> Caller:
    return w.agent


def by_lead(w: World) -> Caller:
    return w.lead


NEW = {"mailbox": "support@shop.test", "customer_email": "new@example.com", "subject": "Hi"}
VE = "validation_error"

# fmt: off
CASES = [
    # Unknown fields: extra="forbid" everywhere, even beside a valid change.
    Bad("patch-ticket-unknown-field", 422, VE,
        call("PATCH", ticket, changing(colour="red"))),
    Bad("patch-ticket-valid-change-plus-unknown-field", 422, VE,
        call("PATCH", ticket, changing(priority="high", assignee_id=1))),
    Bad("post-ticket-unknown-field", 422, VE, call("POST", "/tickets", {**NEW, "urgent": True})),
    Bad("post-note-unknown-field", 422, VE, call("POST", notes, {"body": "x", "public": True})),
    Bad("post-customer-unknown-field", 422, VE,
        call("POST", "/customers", {"email": "new@example.com", "vip": True})),
    Bad("patch-customer-unknown-field", 422, VE, call("PATCH", customer, {"nickname": "B"})),
    Bad("post-agent-unknown-field", 422, VE,
        call("POST", "/agents", {"email": "n@team.test", "name": "N", "password": "x"})),
    Bad("patch-agent-email-is-not-editable", 422, VE,
        call("PATCH", agent_, {"email": "x@team.test"})),
    Bad("post-mailbox-unknown-field", 422, VE,
        call("POST", "/mailboxes", {"email": "m@shop.test", "name": "M", "password": "x"})),
    Bad("post-token-unknown-field", 422, VE,
        call("POST", admin_tokens, {"name": "ci", "scopes": []})),
    # Wrong types and values.
    Bad("version-not-a-number", 422, VE,
        call("PATCH", ticket, {"version": "x", "priority": "high"})),
    Bad("version-missing", 422, VE, call("PATCH", ticket, {"priority": "high"})),
    Bad("priority-a-number", 422, VE, call("PATCH", ticket, changing(priority=5))),
    Bad("status-unknown", 422, VE,
        call("PATCH", ticket, changing(status="bogus"))),
    Bad("status-null", 422, VE, call("PATCH", ticket, changing(status=None))),
    Bad("tags-not-a-list", 422, VE, call("PATCH", ticket, changing(tags="vip"))),
    Bad("tags-null", 422, VE, call("PATCH", ticket, changing(tags=None))),
    Bad("tag-with-a-space", 422, VE,
        call("PATCH", ticket, changing(tags=["ok", "not ok"]))),
    Bad("too-many-tags", 422, VE,
        call("PATCH", ticket, changing(tags=[f"t{i}" for i in range(31)]))),
    Bad("body-a-list", 422, VE, call("PATCH", ticket, lambda w: [v(w)])),
    Bad("empty-subject", 422, VE, call("POST", "/tickets", {**NEW, "subject": ""})),
    Bad("empty-note", 422, VE, call("POST", notes, {"body": ""})),
    Bad("patch-ticket-malformed-json", 422, None, raw("PATCH", ticket, b'{"version": 1, "x": 2')),
    Bad("post-ticket-malformed-json", 422, None, raw("POST", "/tickets", b"{nope")),
    Bad("post-customer-empty-body", 422, None, raw("POST", "/customers", b"")),
    # Text PostgreSQL cannot store (U+0000) is refused up front, on every backend.
    Bad("nul-in-subject", 422, VE, call("POST", "/tickets", {**NEW, "subject": "a\x00b"})),
    Bad("nul-in-customer-name", 422, VE,
        call("POST", "/customers", {"email": "nul@example.com", "name": "\x00"})),
    Bad("nul-in-note", 422, VE, call("POST", notes, {"body": "x\x00"})),
    Bad("nul-in-signature", 422, VE, call("PATCH", agent_, {"signature": "\x00"}, by=by_agent)),
    Bad("nul-in-mailbox-name", 422, VE,
        call("POST", "/mailboxes", {"email": "nul@shop.test", "name": "\x00"})),
    Bad("nul-in-ticket-search", 422, VE, call("GET", "/tickets", q="a\x00")),
    Bad("nul-in-tag-filter", 422, VE, call("GET", "/tickets", tag="a\x00")),
    Bad("nul-in-customer-search", 422, VE, call("GET", "/customers", q="a\x00")),
    Bad("nul-in-segment-filter", 422, VE, call("GET", "/customers", segment="\x00")),
    # Ids and numbers that name nothing.
    Bad("get-unknown-ticket", 404, "ticket_not_found", call("GET", f"/tickets/{MISSING}")),
    Bad("patch-unknown-ticket", 404, "ticket_not_found",
        call("PATCH", f"/tickets/{MISSING}", {"version": 1, "priority": "high"})),
    Bad("note-on-unknown-ticket", 404, "ticket_not_found",
        call("POST", f"/tickets/{MISSING}/notes", {"body": "hello"})),
    Bad("notes-of-unknown-ticket", 404, "ticket_not_found",
        call("GET", f"/tickets/{MISSING}/notes")),
    Bad("events-of-unknown-ticket", 404, "ticket_not_found",
        call("GET", f"/tickets/{MISSING}/events")),
    Bad("unknown-ticket-number", 404, "ticket_not_found", call("GET", "/tickets", number=MISSING)),
    Bad("get-unknown-customer", 404, "customer_not_found", call("GET", f"/customers/{MISSING}")),
    Bad("patch-unknown-customer", 404, "customer_not_found",
        call("PATCH", f"/customers/{MISSING}", {"name": "X"})),
    Bad("get-unknown-agent", 404, "agent_not_found", call("GET", f"/agents/{MISSING}")),
    Bad("revoke-unknown-token", 404, "token_not_found",
        call("DELETE", lambda w: f"/agents/{w.admin.agent.id}/tokens/{MISSING}")),
    Bad("ticket-id-beyond-integer-range", 422, VE, call("GET", f"/tickets/{2**63}")),
    Bad("agent-id-beyond-integer-range", 422, VE, call("POST", f"/agents/{2**64}/tokens", {})),
    Bad("ticket-id-not-a-number", 422, VE, call("GET", "/tickets/abc")),
    Bad("mailbox-filter-id-beyond-range", 422, "unknown_mailbox",
        call("GET", "/tickets", mailbox=str(2**70))),
    Bad("mailbox-filter-unicode-digit", 422, None, call("GET", "/tickets", mailbox="²")),
    # Conflicts.
    Bad("stale-version", 409, "version_conflict",
        call("PATCH", ticket, lambda w: {"version": v(w) - 1, "priority": "high"})),
    Bad("illegal-transition", 409, "invalid_transition",
        call("PATCH", closed, lambda w: {"version": w.closed["version"], "status": "open"})),
    Bad("thread-taken", 409, "thread_taken",
        call("POST", "/tickets", {**NEW, "gmail_thread_id": "thread-1"})),
    Bad("agent-exists", 409, "agent_exists",
        call("POST", "/agents", lambda w: {"email": w.agent.agent.email.upper(), "name": "Twin"})),
    Bad("mailbox-exists", 409, "mailbox_exists",
        call("POST", "/mailboxes", {"email": "Support@Shop.test", "name": "Again"})),
    # Authentication.
    Bad("no-token", 401, "unauthorized", auth(None)),
    Bad("no-token-on-a-valid-patch", 401, "unauthorized", auth(None, "PATCH")),
    Bad("bearer-without-token", 401, "unauthorized", auth("Bearer")),
    Bad("bearer-blank-token", 401, "unauthorized", auth("Bearer   ")),
    Bad("basic-scheme", 401, "unauthorized", auth("Basic dXNlcjpwYXNz")),
    Bad("token-without-scheme", 401, "unauthorized", auth("ibx_abcdef")),
    Bad("wrong-token", 401, "invalid_token", auth("Bearer ibx_not-a-real-token")),
    Bad("wrong-token-on-a-valid-patch", 401, "invalid_token",
        auth("Bearer ibx_not-a-real-token", "PATCH")),
    Bad("revoked-token", 401, "invalid_token", auth(lambda w: f"Bearer {w.revoked}")),
    Bad("revoked-token-on-a-valid-patch", 401, "invalid_token",
        auth(lambda w: f"Bearer {w.revoked}", "PATCH")),
    Bad("deactivated-agent", 401, "agent_inactive", auth(lambda w: f"Bearer {w.inactive}")),
    # Rights.
    Bad("agent-creates-mailbox", 403, "forbidden",
        call("POST", "/mailboxes", {"email": "m@shop.test", "name": "M"}, by=by_agent)),
    Bad("agent-creates-agent", 403, "forbidden",
        call("POST", "/agents", {"email": "n@team.test", "name": "N"}, by=by_agent)),
    Bad("lead-creates-agent", 403, "forbidden",
        call("POST", "/agents", {"email": "n@team.test", "name": "N"}, by=by_lead)),
    Bad("agent-renames-colleague", 403, "forbidden",
        call("PATCH", lambda w: f"/agents/{w.lead.agent.id}", {"name": "X"}, by=by_agent)),
    Bad("agent-promotes-self", 403, "forbidden",
        call("PATCH", agent_, {"role": "admin"}, by=by_agent)),
    Bad("lead-deactivates-agent", 403, "forbidden",
        call("PATCH", agent_, {"is_active": False}, by=by_lead)),
    Bad("agent-issues-token-for-admin", 403, "forbidden",
        call("POST", admin_tokens, {"name": "mine now"}, by=by_agent)),
    Bad("agent-lists-admin-tokens", 403, "forbidden", call("GET", admin_tokens, by=by_agent)),
    Bad("agent-revokes-admin-token", 403, "forbidden",
        call("DELETE", lambda w: f"{admin_tokens(w)}/1", by=by_agent)),
    Bad("agent-assigns-admin", 403, "assign_forbidden",
        call("PATCH", ticket, lambda w: {"version": v(w), "assignee": w.admin.agent.email},
             by=by_agent)),
    # Unknown references and invalid values.
    Bad("unknown-assignee", 422, "unknown_agent",
        call("PATCH", ticket, changing(assignee="ghost@team.test"))),
    Bad("deactivated-assignee", 422, "unknown_agent",
        call("PATCH", ticket, changing(assignee="leaver@team.test"))),
    Bad("assignee-not-an-address", 422, VE,
        call("PATCH", ticket, changing(assignee="not an address"))),
    Bad("customer-invalid-email", 422, VE, call("POST", "/customers", {"email": "not-an-address"})),
    Bad("ticket-customer-invalid-email", 422, VE,
        call("POST", "/tickets", {**NEW, "customer_email": "bob@"})),
    Bad("ticket-unknown-mailbox", 422, "unknown_mailbox",
        call("POST", "/tickets", {**NEW, "mailbox": "nope@shop.test"})),
    Bad("ticket-unknown-mailbox-id", 422, "unknown_mailbox",
        call("POST", "/tickets", {**NEW, "mailbox": str(MISSING)})),
    Bad("mailbox-unknown-timezone", 422, "unknown_timezone",
        call("POST", "/mailboxes", {"email": "tz@shop.test", "name": "T", "timezone": "Mars/X"})),
    Bad("customer-unknown-timezone", 422, "unknown_timezone",
        call("POST", "/customers", {"email": "tz@example.com", "timezone": "Mars/Olympus_Mons"})),
    Bad("customer-patch-unknown-timezone", 422, "unknown_timezone",
        call("PATCH", customer, {"name": "Bob", "timezone": "Europe/Atlantis"})),
    Bad("agent-patch-unknown-timezone", 422, "unknown_timezone",
        call("PATCH", agent_, {"name": "Al", "timezone": "../etc/passwd"}, by=by_agent)),
    Bad("agent-create-unknown-timezone", 422, "unknown_timezone",
        call("POST", "/agents", {"email": "tz@team.test", "name": "T", "timezone": "Nowhere"})),
    Bad("customer-segment-with-spaces", 422, VE,
        call("POST", "/customers", {"email": "seg@example.com", "segment": "big fish"})),
    # Paging out of bounds, unknown sort keys and filter values.
    Bad("tickets-limit-0", 422, VE, call("GET", "/tickets", limit=0)),
    Bad("tickets-limit-1000", 422, VE, call("GET", "/tickets", limit=1000)),
    Bad("tickets-offset-negative", 422, VE, call("GET", "/tickets", offset=-1)),
    Bad("tickets-unknown-sort", 422, VE, call("GET", "/tickets", sort="subject")),
    Bad("tickets-unknown-status-filter", 422, VE, call("GET", "/tickets", status="done")),
    Bad("customers-limit-0", 422, VE, call("GET", "/customers", limit=0)),
    Bad("customers-limit-1000", 422, VE, call("GET", "/customers", limit=1000)),
    Bad("customers-offset-negative", 422, VE, call("GET", "/customers", offset=-1)),
    Bad("events-limit-0", 422, VE, call("GET", events, limit=0)),
    Bad("events-offset-negative", 422, VE, call("GET", events, offset=-1)),
    # Routing.
    Bad("unknown-route", 404, "not_found", call("GET", "/nothing-here")),
    Bad("unknown-sub-route", 404, "not_found", call("GET", lambda w: f"{ticket(w)}/x")),
    Bad("wrong-method-on-list", 405, "method_not_allowed", call("DELETE", "/tickets")),
    Bad("wrong-method-on-ticket", 405, "method_not_allowed",
        call("PUT", ticket, lambda w: {"version": v(w)})),
]
# fmt: on


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_request_is_refused_and_changes_nothing(
    client: TestClient, db: Database, world: World, case: Bad
) -> None:
    """The request answers the expected 4xx with the JSON error envelope, and every table holds
    exactly the rows it held before."""
    method, url, kwargs = case.request(world)
    before = snapshot(db)

    response = client.request(method, url, **kwargs)

    assert response.status_code == case.status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert isinstance(error["message"], str)
    assert error["message"]
    if case.code is not None:
        assert error["code"] == case.code, error
    else:
        assert re.fullmatch(r"[a-z_]+", error["code"])
    assert snapshot(db) == before


def test_snapshot_sees_a_change(client: TestClient, db: Database, world: World) -> None:
    """The comparison above is not blind: an accepted PATCH does change the snapshot."""
    before = snapshot(db)
    response = client.patch(
        f"{API}{ticket(world)}",
        json={"version": v(world), "priority": "low"},
        headers=world.admin.headers,
    )
    assert response.status_code == 200
    after = snapshot(db)
    assert after["tickets"] != before["tickets"]
    assert len(after["events"]) == len(before["events"]) + 1


def test_tokens_are_stored_only_as_sha256(
    client: TestClient, db: Database, admin: Caller, agent: Caller
) -> None:
    """An issued token is returned once; api_tokens keeps its SHA-256 hex digest and a short
    display prefix, never the token, and GET …/tokens never shows it."""
    issued = client.post(
        f"{API}/agents/{agent.agent.id}/tokens", json={"name": "laptop"}, headers=agent.headers
    )
    assert issued.status_code == 201
    token = issued.json()["token"]
    assert token.startswith("ibx_")
    assert (
        client.get(f"{API}/agents/me", headers={"Authorization": f"Bearer {token}"}).json()["id"]
        == agent.agent.id
    )

    plain_tokens = {token, agent.token, admin.token}
    with db.session() as s:
        rows = s.execute(select(ApiToken.__table__)).mappings().all()
    hashes = {row["token_hash"] for row in rows}
    assert {hashlib.sha256(t.encode()).hexdigest() for t in plain_tokens} <= hashes
    for row in rows:
        assert re.fullmatch(r"[0-9a-f]{64}", row["token_hash"])
        assert len(row["prefix"]) < len(token) // 2
        for value in row.values():
            assert not any(t in str(value) for t in plain_tokens), row

    for caller in (agent, admin):
        listing = client.get(f"{API}/agents/{agent.agent.id}/tokens", headers=caller.headers)
        assert listing.status_code == 200
        assert not any(t in listing.text for t in plain_tokens)
        assert all("token" not in item for item in listing.json())
        assert {item["name"] for item in listing.json()} == {"default", "laptop"}
