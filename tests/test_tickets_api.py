"""The ticket API: list filters, sorting and pagination, the status machine, the event log,
assignment rights, notes and tags — each proven through HTTP on the real app and database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, update

from app.agents.models import Agent, Role
from app.db.session import Database
from app.mailboxes import service as mailboxes
from app.mailboxes.models import Mailbox
from app.tickets import service as tickets
from app.tickets.events import Actor
from app.tickets.models import Priority, Status, Ticket
from tests.conftest import Caller, MakeCaller

API = "/api/v1"

# The status machine as the product defines it (DESIGN §3), written out independently of the code.
ALLOWED: dict[str, list[str]] = {
    "new": ["open", "pending", "resolved", "closed"],
    "open": ["pending", "resolved", "closed"],
    "pending": ["open", "resolved", "closed"],
    "resolved": ["open", "closed"],
    "closed": [],
}


def make_ticket(
    db: Database,
    mailbox: Mailbox,
    *,
    subject: str = "Help",
    customer: str = "bob@example.com",
    priority: Priority = Priority.NORMAL,
    tags: list[str] | None = None,
    status: Status | None = None,
    assignee: Agent | None = None,
    thread: str | None = None,
) -> int:
    """A ticket created by the service, then put straight into the wanted state; its id."""
    with db.unit_of_work() as s:
        ticket = tickets.create_ticket(
            s,
            mailbox=mailbox,
            customer_email=customer,
            subject=subject,
            priority=priority,
            tags=tags,
            gmail_thread_id=thread,
            actor=Actor.system(),
        )
        if status is not None:
            ticket.status = status
        if assignee is not None:
            ticket.assignee_id = assignee.id
        return ticket.id


def listed(client: TestClient, caller: Caller, **params: Any) -> list[int]:
    """Ids of the tickets the list answers for these query parameters (200 expected)."""
    response = client.get(f"{API}/tickets", params={"limit": 200, **params}, headers=caller.headers)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def get(client: TestClient, caller: Caller, ticket_id: int) -> dict[str, Any]:
    response = client.get(f"{API}/tickets/{ticket_id}", headers=caller.headers)
    assert response.status_code == 200, response.text
    return response.json()


def patch(client: TestClient, caller: Caller, ticket_id: int, **changes: Any) -> Any:
    """PATCH with the ticket's current version unless the caller passes one."""
    if "version" not in changes:
        changes["version"] = get(client, caller, ticket_id)["version"]
    return client.patch(f"{API}/tickets/{ticket_id}", json=changes, headers=caller.headers)


def events(client: TestClient, caller: Caller, ticket_id: int) -> list[dict[str, Any]]:
    response = client.get(f"{API}/tickets/{ticket_id}/events", headers=caller.headers)
    assert response.status_code == 200, response.text
    return response.json()


# --- filters ---------------------------------------------------------------------------------


def test_status_filter_takes_several_values(
    client: TestClient, admin: Caller, db: Database, mailbox: Mailbox
) -> None:
    """status=open&status=pending lists exactly the open and pending tickets."""
    ids = {status: make_ticket(db, mailbox, status=status) for status in Status}
    assert set(listed(client, admin, status=["open", "pending"])) == {
        ids[Status.OPEN],
        ids[Status.PENDING],
    }
    assert listed(client, admin, status="closed") == [ids[Status.CLOSED]]
    assert set(listed(client, admin)) == set(ids.values())


def test_assignee_filter_me_none_and_address(
    client: TestClient, agent: Caller, lead: Caller, db: Database, mailbox: Mailbox
) -> None:
    """assignee=me is the caller's queue, none the unassigned, an address (any case) that agent's;
    an unknown address matches nothing rather than failing."""
    mine = make_ticket(db, mailbox, assignee=agent.agent)
    leads = make_ticket(db, mailbox, assignee=lead.agent)
    nobodys = make_ticket(db, mailbox)
    assert listed(client, agent, assignee="me") == [mine]
    assert listed(client, lead, assignee="me") == [leads]
    assert listed(client, agent, assignee="none") == [nobodys]
    assert listed(client, agent, assignee=lead.agent.email.upper()) == [leads]
    assert listed(client, agent, assignee="ghost@team.test") == []


def test_priority_filter(client: TestClient, admin: Caller, db: Database, mailbox: Mailbox) -> None:
    """priority takes one or several values."""
    ids = {p: make_ticket(db, mailbox, priority=p) for p in Priority}
    assert listed(client, admin, priority="urgent") == [ids[Priority.URGENT]]
    assert set(listed(client, admin, priority=["high", "low"])) == {
        ids[Priority.HIGH],
        ids[Priority.LOW],
    }


def test_mailbox_filter_by_id_and_by_address(
    client: TestClient, admin: Caller, db: Database, mailbox: Mailbox
) -> None:
    """mailbox= accepts the id or the address (case-insensitive); an unknown one is a 422."""
    with db.unit_of_work() as s:
        billing = mailboxes.create_mailbox(s, email="billing@shop.test", name="Billing")
    support_ticket = make_ticket(db, mailbox)
    billing_ticket = make_ticket(db, billing)
    assert listed(client, admin, mailbox=str(mailbox.id)) == [support_ticket]
    assert listed(client, admin, mailbox=str(billing.id)) == [billing_ticket]
    assert listed(client, admin, mailbox="BILLING@Shop.test") == [billing_ticket]
    unknown = client.get(
        f"{API}/tickets", params={"mailbox": "nope@shop.test"}, headers=admin.headers
    )
    assert unknown.status_code == 422
    assert unknown.json()["error"]["code"] == "unknown_mailbox"


def test_tag_filter(client: TestClient, admin: Caller, db: Database, mailbox: Mailbox) -> None:
    """tag= lists the tickets carrying that tag, whatever the case it is typed in."""
    vip = make_ticket(db, mailbox, tags=["billing", "vip"])
    billing = make_ticket(db, mailbox, tags=["billing"])
    make_ticket(db, mailbox)
    assert listed(client, admin, tag="vip") == [vip]
    assert listed(client, admin, tag="VIP") == [vip]
    assert set(listed(client, admin, tag="billing")) == {vip, billing}
    assert listed(client, admin, tag="nothing") == []


def test_customer_filter_ignores_case(
    client: TestClient, admin: Caller, db: Database, mailbox: Mailbox
) -> None:
    """customer= finds the customer's tickets whatever the case of the address given."""
    bobs = {make_ticket(db, mailbox, customer="bob@example.com") for _ in range(2)}
    make_ticket(db, mailbox, customer="carol@example.com")
    assert set(listed(client, admin, customer="BOB@Example.COM")) == bobs


def test_q_searches_subjects_case_insensitively_with_literal_wildcards(
    client: TestClient, admin: Caller, db: Database, mailbox: Mailbox
) -> None:
    """q= matches subject text in any case; `%`, `_` and `\\` are characters, not wildcards."""
    ids = {
        subject: make_ticket(db, mailbox, subject=subject)
        for subject in [
            "Refund REQUEST",
            "100% refund",
            "1000 refund",
            "my_file broke",
            "myXfile broke",
            "back\\slash",
            "Shipping",
        ]
    }
    assert set(listed(client, admin, q="refund")) == {
        ids["Refund REQUEST"],
        ids["100% refund"],
        ids["1000 refund"],
    }
    assert listed(client, admin, q="request") == [ids["Refund REQUEST"]]
    assert listed(client, admin, q="SHIPPING") == [ids["Shipping"]]
    assert listed(client, admin, q="%") == [ids["100% refund"]]
    assert listed(client, admin, q="0% r") == [ids["100% refund"]]  # as a wildcard: also 1000
    assert listed(client, admin, q="_") == [ids["my_file broke"]]  # as a wildcard: everything
    assert listed(client, admin, q="my_file") == [ids["my_file broke"]]
    assert listed(client, admin, q="\\") == [ids["back\\slash"]]


def test_number_filter_finds_one_ticket_or_404(
    client: TestClient, admin: Caller, db: Database, mailbox: Mailbox
) -> None:
    """number=N answers exactly that ticket; a number nobody has is 404 ticket_not_found."""
    ids = [make_ticket(db, mailbox) for _ in range(3)]
    wanted = get(client, admin, ids[1])
    assert listed(client, admin, number=wanted["number"]) == [ids[1]]
    missing = client.get(f"{API}/tickets", params={"number": 999_999}, headers=admin.headers)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "ticket_not_found"


def test_filters_combine_with_and(
    client: TestClient, agent: Caller, db: Database, mailbox: Mailbox
) -> None:
    """Several filters narrow together: my open urgent tickets only."""
    hit = make_ticket(
        db, mailbox, status=Status.OPEN, priority=Priority.URGENT, assignee=agent.agent
    )
    make_ticket(db, mailbox, status=Status.OPEN, priority=Priority.URGENT)
    make_ticket(db, mailbox, status=Status.PENDING, priority=Priority.URGENT, assignee=agent.agent)
    make_ticket(db, mailbox, status=Status.OPEN, priority=Priority.LOW, assignee=agent.agent)
    assert listed(client, agent, status="open", priority="urgent", assignee="me") == [hit]


# --- sorting and pagination ------------------------------------------------------------------

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
RANK = {"low": 0, "normal": 1, "high": 2, "urgent": 3}
# One row per ticket, with ties in every column (and missing deadlines) to prove the tiebreak.
ROWS: list[dict[str, Any]] = [
    {"created": 2, "updated": 5, "priority": "high", "first_due": 3, "resolution_due": None},
    {"created": 1, "updated": 5, "priority": "low", "first_due": None, "resolution_due": 7},
    {"created": 2, "updated": 1, "priority": "urgent", "first_due": 3, "resolution_due": 7},
    {"created": 3, "updated": 2, "priority": "high", "first_due": 1, "resolution_due": None},
    {"created": 1, "updated": 9, "priority": "normal", "first_due": None, "resolution_due": 2},
    {"created": 2, "updated": 2, "priority": "low", "first_due": 8, "resolution_due": 7},
]
SORT_FIELDS = {
    "number": "number",
    "created_at": "created",
    "updated_at": "updated",
    "priority": "priority",
    "first_response_due_at": "first_due",
    "resolution_due_at": "resolution_due",
}


def _hours(n: int | None) -> datetime | None:
    return None if n is None else T0 + timedelta(hours=n)


@pytest.fixture
def sortable(db: Database, mailbox: Mailbox) -> list[dict[str, Any]]:
    """Six tickets whose sortable columns hold the values of ROWS; each row gains id and number."""
    rows = []
    for n, row in enumerate(ROWS):
        ticket_id = make_ticket(
            db, mailbox, subject=f"sortable {n}", priority=Priority(row["priority"])
        )
        with db.unit_of_work() as s:
            s.execute(
                update(Ticket)
                .where(Ticket.id == ticket_id)
                .values(
                    created_at=_hours(row["created"]),
                    updated_at=_hours(row["updated"]),
                    first_response_due_at=_hours(row["first_due"]),
                    resolution_due_at=_hours(row["resolution_due"]),
                )
            )
            number = s.get(Ticket, ticket_id).number  # type: ignore[union-attr]
        rows.append({**row, "id": ticket_id, "number": number})
    return rows


@pytest.mark.parametrize("key", list(SORT_FIELDS))
@pytest.mark.parametrize("descending", [False, True], ids=["asc", "desc"])
def test_sort_orders_ties_by_id_and_puts_missing_deadlines_last(
    client: TestClient, admin: Caller, sortable: list[dict[str, Any]], key: str, descending: bool
) -> None:
    """Every sort key, both ways: ties keep id order (in the sort's direction), and tickets
    without a deadline come last whichever way deadlines are sorted."""
    field = SORT_FIELDS[key]

    def value(row: dict[str, Any]) -> Any:
        return RANK[row[field]] if field == "priority" else row[field]

    present = [r for r in sortable if value(r) is not None]
    missing = [r for r in sortable if value(r) is None]
    expected = sorted(present, key=lambda r: (value(r), r["id"]), reverse=descending)
    expected += sorted(missing, key=lambda r: r["id"], reverse=descending)
    sort = f"-{key}" if descending else key
    assert listed(client, admin, sort=sort) == [r["id"] for r in expected]


def test_default_sort_is_newest_number_first(
    client: TestClient, admin: Caller, sortable: list[dict[str, Any]]
) -> None:
    """Without sort=, the newest ticket (highest number) comes first."""
    assert listed(client, admin) == [r["id"] for r in sorted(sortable, key=lambda r: -r["number"])]


def test_pages_cover_the_list_without_overlap(
    client: TestClient, admin: Caller, db: Database, mailbox: Mailbox
) -> None:
    """limit/offset pages: each reports the total, they tile the full list in order, and a page
    past the end is empty."""
    ids = [make_ticket(db, mailbox) for _ in range(7)]
    everything = listed(client, admin, sort="number")
    assert everything == ids
    pages = []
    for offset in (0, 3, 6, 9):
        response = client.get(
            f"{API}/tickets",
            params={"sort": "number", "limit": 3, "offset": offset},
            headers=admin.headers,
        )
        body = response.json()
        assert (body["total"], body["limit"], body["offset"]) == (7, 3, offset)
        pages.append([item["id"] for item in body["items"]])
    assert [len(p) for p in pages] == [3, 3, 1, 0]
    assert [i for page in pages for i in page] == everything


def test_page_total_counts_the_filtered_set(
    client: TestClient, admin: Caller, db: Database, mailbox: Mailbox
) -> None:
    """total is the size of the filtered list, not of the page or of all tickets."""
    for _ in range(4):
        make_ticket(db, mailbox, status=Status.OPEN)
    make_ticket(db, mailbox, status=Status.CLOSED)
    body = client.get(
        f"{API}/tickets", params={"status": "open", "limit": 2}, headers=admin.headers
    ).json()
    assert (len(body["items"]), body["total"]) == (2, 4)


@contextmanager
def counting_statements(db: Database) -> Iterator[list[str]]:
    """Every SQL statement sent while the block runs. Under the test fixture each request's
    session is a SAVEPOINT (BEGIN/COMMIT in production): that bookkeeping is left out."""
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "SAVEPOINT" not in statement.upper():
            statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", count)


def test_ticket_list_queries_do_not_grow_with_the_page(
    client: TestClient, admin: Caller, make_caller: MakeCaller, db: Database, mailbox: Mailbox
) -> None:
    """No N+1: a page of 50 tickets — each with its own customer, an assignee, tags and a Gmail
    thread — takes as many SQL statements as a page of 5, and no more than 6."""
    assignees = [make_caller(Role.AGENT).agent for _ in range(5)]
    for n in range(50):
        make_ticket(
            db,
            mailbox,
            customer=f"c{n}@example.com",
            tags=["vip", f"t{n % 7}"],
            assignee=assignees[n % 5],
            thread=f"thread-{n}",
        )
    listed(client, admin, limit=1)  # the token's last_used_at is written once; not measured

    counts = {}
    for limit in (5, 50):
        with counting_statements(db) as statements:
            body = client.get(
                f"{API}/tickets", params={"limit": limit}, headers=admin.headers
            ).json()
        assert len(body["items"]) == limit
        assert all(
            item["assignee"] and item["tags"] and item["gmail_thread_ids"] for item in body["items"]
        )
        counts[limit] = len(statements)
    assert counts[5] == counts[50], counts
    assert 3 <= counts[50] <= 6, counts  # at least: the token, the count, the page


# --- the status machine ----------------------------------------------------------------------

PAIRS = [(a, b) for a in ALLOWED for b in ALLOWED]


@pytest.mark.parametrize(("start", "target"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_status_machine(
    client: TestClient, agent: Caller, db: Database, mailbox: Mailbox, start: str, target: str
) -> None:
    """All 25 (from, to) pairs through PATCH. Allowed: 200, status and timestamps follow.
    Forbidden: 409 invalid_transition listing the allowed targets, ticket untouched. Same status:
    a no-op (200, nothing changes)."""
    ticket_id = make_ticket(db, mailbox)
    if start != "new":
        assert patch(client, agent, ticket_id, status=start).status_code == 200
    before = get(client, agent, ticket_id)
    events_before = len(events(client, agent, ticket_id))

    response = patch(client, agent, ticket_id, status=target)
    after = get(client, agent, ticket_id)

    if target in ALLOWED[start]:
        assert response.status_code == 200, response.text
        assert response.json() == after
        assert after["status"] == target
        assert after["version"] == before["version"] + 1
        if target == "resolved":
            assert after["resolved_at"] is not None
            assert after["closed_at"] is None
        elif target == "closed":
            assert after["closed_at"] is not None
            # Closing keeps the time it was resolved, or resolves it now.
            assert after["resolved_at"] == (before["resolved_at"] or after["resolved_at"])
            assert after["resolved_at"] is not None
        else:
            assert after["resolved_at"] is None
            assert after["closed_at"] is None
        assert len(events(client, agent, ticket_id)) == events_before + 1
    elif target == start:
        assert response.status_code == 200, response.text
        assert after == before
        assert len(events(client, agent, ticket_id)) == events_before
    else:
        assert response.status_code == 409, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_transition"
        assert error["details"]["allowed"] == ALLOWED[start]
        assert after == before
        assert len(events(client, agent, ticket_id)) == events_before


def test_resolved_at_is_cleared_on_reopening(
    client: TestClient, agent: Caller, db: Database, mailbox: Mailbox
) -> None:
    """resolved → open forgets resolved_at; resolving again sets a new one."""
    ticket_id = make_ticket(db, mailbox)
    first = patch(client, agent, ticket_id, status="resolved").json()["resolved_at"]
    assert patch(client, agent, ticket_id, status="open").json()["resolved_at"] is None
    again = patch(client, agent, ticket_id, status="resolved").json()["resolved_at"]
    assert again is not None
    assert again >= first


# --- events ----------------------------------------------------------------------------------


def test_every_change_leaves_an_event(
    client: TestClient, agent: Caller, db: Database, mailbox: Mailbox
) -> None:
    """Status, priority, assignee, tags and notes each leave an event naming the agent, the
    field, and the old and new values, in order after the creation event."""
    ticket_id = make_ticket(db, mailbox, status=Status.OPEN, tags=["a"])
    assert patch(client, agent, ticket_id, status="pending").status_code == 200
    assert patch(client, agent, ticket_id, priority="urgent").status_code == 200
    assert patch(client, agent, ticket_id, assignee="me").status_code == 200
    assert patch(client, agent, ticket_id, tags=["b", "a"]).status_code == 200
    note = client.post(
        f"{API}/tickets/{ticket_id}/notes", json={"body": "called them"}, headers=agent.headers
    ).json()
    assert patch(client, agent, ticket_id, assignee=None).status_code == 200

    log = events(client, agent, ticket_id)
    assert log[0]["field"] == "created"
    assert log[0]["actor_kind"] == "system"
    changes = [
        (e["actor_kind"], e["actor_id"], e["field"], e["old_value"], e["new_value"])
        for e in log[1:]
    ]
    me = agent.agent.id
    assert changes == [
        ("agent", me, "status", "open", "pending"),
        ("agent", me, "priority", "normal", "urgent"),
        ("agent", me, "assignee", None, agent.agent.email),
        ("agent", me, "tags", ["a"], ["a", "b"]),
        ("agent", me, "note", None, {"note_id": note["id"]}),
        ("agent", me, "assignee", agent.agent.email, None),
    ]
    assert [e["id"] for e in log] == sorted(e["id"] for e in log)
    assert all(e["ticket_id"] == ticket_id and e["at"] for e in log)


def test_creation_through_the_api_records_the_creator(
    client: TestClient, agent: Caller, mailbox: Mailbox
) -> None:
    """POST /tickets leaves a "created" event by the calling agent with the ticket's number."""
    created = client.post(
        f"{API}/tickets",
        json={"mailbox": mailbox.email, "customer_email": "x@example.com", "subject": "Hi"},
        headers=agent.headers,
    ).json()
    [first] = events(client, agent, created["id"])
    assert (first["actor_kind"], first["actor_id"], first["field"], first["new_value"]) == (
        "agent",
        agent.agent.id,
        "created",
        created["number"],
    )


def test_touching_a_new_ticket_opens_it(
    client: TestClient, agent: Caller, db: Database, mailbox: Mailbox
) -> None:
    """An agent's first change to a new ticket that does not set a status moves it to open, with
    its own event after the change."""
    ticket_id = make_ticket(db, mailbox)
    response = patch(client, agent, ticket_id, priority="high")
    assert response.json()["status"] == "open"
    fields = [
        (e["field"], e["old_value"], e["new_value"]) for e in events(client, agent, ticket_id)
    ]
    assert fields[1:] == [("priority", "normal", "high"), ("status", "new", "open")]


def test_an_explicit_status_on_a_new_ticket_is_not_doubled_by_auto_open(
    client: TestClient, agent: Caller, db: Database, mailbox: Mailbox
) -> None:
    """new → pending by an agent is one status event, not new→pending plus new→open."""
    ticket_id = make_ticket(db, mailbox)
    assert patch(client, agent, ticket_id, status="pending", priority="low").json()["status"] == (
        "pending"
    )
    status_events = [e for e in events(client, agent, ticket_id) if e["field"] == "status"]
    assert [(e["old_value"], e["new_value"]) for e in status_events] == [("new", "pending")]


def test_a_patch_that_changes_nothing_leaves_no_trace(
    client: TestClient, agent: Caller, db: Database, mailbox: Mailbox
) -> None:
    """Re-sending the current values: 200, same version, no event, and a new ticket stays new."""
    ticket_id = make_ticket(db, mailbox, tags=["x"])
    before = get(client, agent, ticket_id)
    response = patch(client, agent, ticket_id, priority="normal", tags=["X"], status="new")
    assert response.status_code == 200
    assert get(client, agent, ticket_id) == before
    assert len(events(client, agent, ticket_id)) == 1


# --- assignment rights -----------------------------------------------------------------------


def _assignee(client: TestClient, caller: Caller, ticket_id: int) -> str | None:
    assignee = get(client, caller, ticket_id)["assignee"]
    return assignee["email"] if assignee else None


def test_agent_takes_an_unassigned_ticket_and_gives_it_back(
    client: TestClient, agent: Caller, db: Database, mailbox: Mailbox
) -> None:
    """An agent assigns itself ("me" or its own address) and unassigns itself."""
    ticket_id = make_ticket(db, mailbox)
    assert patch(client, agent, ticket_id, assignee="me").status_code == 200
    assert _assignee(client, agent, ticket_id) == agent.agent.email
    assert patch(client, agent, ticket_id, assignee=None).status_code == 200
    assert _assignee(client, agent, ticket_id) is None
    assert patch(client, agent, ticket_id, assignee=agent.agent.email.upper()).status_code == 200
    assert _assignee(client, agent, ticket_id) == agent.agent.email


def _assert_forbidden_and_unchanged(
    client: TestClient, caller: Caller, ticket_id: int, **change: Any
) -> None:
    before = get(client, caller, ticket_id)
    response = patch(client, caller, ticket_id, **change)
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "assign_forbidden"
    assert get(client, caller, ticket_id) == before


def test_agent_cannot_assign_another_agent(
    client: TestClient, agent: Caller, make_caller: MakeCaller, db: Database, mailbox: Mailbox
) -> None:
    """Giving an unassigned ticket to a colleague is a lead's job: 403, ticket unchanged."""
    colleague = make_caller(Role.AGENT)
    ticket_id = make_ticket(db, mailbox)
    _assert_forbidden_and_unchanged(client, agent, ticket_id, assignee=colleague.agent.email)


def test_agent_cannot_take_a_ticket_assigned_to_someone_else(
    client: TestClient, agent: Caller, lead: Caller, db: Database, mailbox: Mailbox
) -> None:
    """Taking, or unassigning, a ticket someone else holds: 403, ticket unchanged."""
    ticket_id = make_ticket(db, mailbox, assignee=lead.agent)
    _assert_forbidden_and_unchanged(client, agent, ticket_id, assignee="me")
    _assert_forbidden_and_unchanged(client, agent, ticket_id, assignee=None)


@pytest.mark.parametrize("role", [Role.LEAD, Role.ADMIN])
def test_leads_and_admins_assign_anyone(
    client: TestClient,
    make_caller: MakeCaller,
    agent: Caller,
    db: Database,
    mailbox: Mailbox,
    role: Role,
) -> None:
    """A lead or an admin assigns a colleague, reassigns a held ticket and unassigns it."""
    boss = make_caller(role)
    other = make_caller(Role.AGENT)
    ticket_id = make_ticket(db, mailbox)
    assert patch(client, boss, ticket_id, assignee=agent.agent.email).status_code == 200
    assert _assignee(client, boss, ticket_id) == agent.agent.email
    assert patch(client, boss, ticket_id, assignee=other.agent.email).status_code == 200
    assert _assignee(client, boss, ticket_id) == other.agent.email
    assert patch(client, boss, ticket_id, assignee=None).status_code == 200
    assert _assignee(client, boss, ticket_id) is None


def test_only_admins_create_agents(
    client: TestClient, agent: Caller, lead: Caller, admin: Caller
) -> None:
    """POST /agents: 403 for an agent and a lead (nobody created), 201 for an admin."""
    body = {"email": "new@team.test", "name": "New", "role": "agent"}
    for caller in (agent, lead):
        response = client.post(f"{API}/agents", json=body, headers=caller.headers)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"
    emails = {a["email"] for a in client.get(f"{API}/agents", headers=admin.headers).json()}
    assert "new@team.test" not in emails
    created = client.post(f"{API}/agents", json=body, headers=admin.headers)
    assert created.status_code == 201
    assert created.json()["email"] == "new@team.test"


def test_agent_edits_own_name_but_not_own_role(client: TestClient, agent: Caller) -> None:
    """Self-service covers the name; a role change (even self-promotion) is 403 and changes
    nothing."""
    url = f"{API}/agents/{agent.agent.id}"
    renamed = client.patch(url, json={"name": "Alexandra"}, headers=agent.headers)
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "Alexandra"
    promoted = client.patch(url, json={"role": "admin", "name": "Boss"}, headers=agent.headers)
    assert promoted.status_code == 403
    me = client.get(f"{API}/agents/me", headers=agent.headers).json()
    assert (me["role"], me["name"]) == ("agent", "Alexandra")


def test_last_admin_cannot_be_demoted(
    client: TestClient, admin: Caller, make_caller: MakeCaller
) -> None:
    """The only admin cannot demote or deactivate itself (409 last_admin); with a second admin
    it can step down."""
    url = f"{API}/agents/{admin.agent.id}"
    for change in ({"role": "lead"}, {"is_active": False}):
        response = client.patch(url, json=change, headers=admin.headers)
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "last_admin"
    assert client.get(url, headers=admin.headers).json()["role"] == "admin"
    make_caller(Role.ADMIN)
    stepped_down = client.patch(url, json={"role": "lead"}, headers=admin.headers)
    assert stepped_down.status_code == 200
    assert stepped_down.json()["role"] == "lead"


# --- notes and tags --------------------------------------------------------------------------


def test_notes_are_added_and_listed_in_order(
    client: TestClient, agent: Caller, lead: Caller, db: Database, mailbox: Mailbox
) -> None:
    """POST notes answers 201 with the author; GET lists all of the ticket's notes, oldest first,
    and no other ticket's."""
    ticket_id = make_ticket(db, mailbox)
    other_id = make_ticket(db, mailbox)
    url = f"{API}/tickets/{ticket_id}/notes"
    first = client.post(url, json={"body": "first"}, headers=agent.headers)
    assert first.status_code == 201
    assert first.json()["author"]["email"] == agent.agent.email
    client.post(url, json={"body": "second"}, headers=lead.headers)
    client.post(f"{API}/tickets/{other_id}/notes", json={"body": "elsewhere"}, headers=lead.headers)
    notes = client.get(url, headers=agent.headers).json()
    assert [(n["body"], n["author"]["email"]) for n in notes] == [
        ("first", agent.agent.email),
        ("second", lead.agent.email),
    ]
    assert all(n["ticket_id"] == ticket_id for n in notes)


def test_tags_are_normalised(
    client: TestClient, agent: Caller, db: Database, mailbox: Mailbox
) -> None:
    """Tags are trimmed, lower-cased, de-duplicated and sorted, on update and on creation."""
    ticket_id = make_ticket(db, mailbox, status=Status.OPEN)
    response = patch(client, agent, ticket_id, tags=[" VIP ", "vip", "Billing", "b-2/x:y"])
    assert response.json()["tags"] == ["b-2/x:y", "billing", "vip"]
    created = client.post(
        f"{API}/tickets",
        json={
            "mailbox": mailbox.email,
            "customer_email": "t@example.com",
            "subject": "Tags",
            "tags": ["Zeta", "alpha", "ZETA"],
        },
        headers=agent.headers,
    )
    assert created.json()["tags"] == ["alpha", "zeta"]


def test_a_tag_only_change_bumps_the_version(
    client: TestClient, agent: Caller, db: Database, mailbox: Mailbox
) -> None:
    """Changing only tags moves version (so a concurrent editor gets 409); the old version is
    then stale."""
    ticket_id = make_ticket(db, mailbox, status=Status.OPEN, tags=["a"])
    before = get(client, agent, ticket_id)
    after = patch(client, agent, ticket_id, tags=["a", "b"]).json()
    assert after["version"] == before["version"] + 1
    assert after["status"] == "open"
    stale = patch(client, agent, ticket_id, version=before["version"], tags=["c"])
    assert stale.status_code == 409
    assert stale.json()["error"]["code"] == "version_conflict"
    assert stale.json()["error"]["details"]["current_version"] == after["version"]
    assert get(client, agent, ticket_id)["tags"] == ["a", "b"]


def test_tags_can_be_cleared(
    client: TestClient, agent: Caller, db: Database, mailbox: Mailbox
) -> None:
    """tags=[] removes every tag (and the ticket drops out of the tag filter)."""
    ticket_id = make_ticket(db, mailbox, status=Status.OPEN, tags=["a", "b"])
    assert patch(client, agent, ticket_id, tags=[]).json()["tags"] == []
    assert listed(client, agent, tag="a") == []
