"""The reply-template API: CRUD and search, rights, refused saves, rendering, uses, suggestions and
the library file — each proven through HTTP on the real app and database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from app.agents.models import Role
from app.db import migrations
from app.db.session import Database, create_db_engine
from app.mailboxes.models import Mailbox
from app.messages.models import Direction, Message
from app.tickets import service as tickets
from app.tickets.events import Actor
from templates_replies import library, service, suggestions
from templates_replies.models import ReplyTemplate, TemplateUse
from templates_replies.sandbox import MAX_TEMPLATE_CHARS
from tests.conftest import Caller, MakeCaller
from tests.scratch_db import scratch_database_url

API = "/api/v1"
GREETINGS_EN = {"Good morning", "Good afternoon", "Good evening"}


# --- helpers ---------------------------------------------------------------------------------


def create(client: TestClient, caller: Caller, **fields: Any) -> httpx.Response:
    body = {"name": "Thanks", "body": "Thank you for writing to us.", **fields}
    return client.post(f"{API}/templates", json=body, headers=caller.headers)


def make_template(client: TestClient, caller: Caller, **fields: Any) -> dict[str, Any]:
    response = create(client, caller, **fields)
    assert response.status_code == 201, response.text
    return response.json()["template"]


def get(client: TestClient, caller: Caller, template_id: int) -> httpx.Response:
    return client.get(f"{API}/templates/{template_id}", headers=caller.headers)


def patch(client: TestClient, caller: Caller, template_id: int, **changes: Any) -> httpx.Response:
    return client.patch(f"{API}/templates/{template_id}", json=changes, headers=caller.headers)


def listed(client: TestClient, caller: Caller, **params: Any) -> list[str]:
    response = client.get(
        f"{API}/templates", params={"limit": 200, **params}, headers=caller.headers
    )
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["total"] == len(page["items"])
    return [item["name"] for item in page["items"]]


def template_rows(db: Database) -> list[tuple[Any, ...]]:
    """Every template row as it is stored: what a refused request must leave alone."""
    with db.unit_of_work() as s:
        return [
            tuple(row)
            for row in s.execute(
                select(
                    ReplyTemplate.id,
                    ReplyTemplate.name,
                    ReplyTemplate.body,
                    ReplyTemplate.subject,
                    ReplyTemplate.version,
                    ReplyTemplate.visibility,
                    ReplyTemplate.shortcut,
                ).order_by(ReplyTemplate.id)
            )
        ]


def use_count(db: Database) -> int:
    with db.unit_of_work() as s:
        return s.execute(select(func.count(TemplateUse.id))).scalar_one()


def make_ticket(
    db: Database,
    mailbox: Mailbox,
    *,
    subject: str = "Question",
    customer: str = "bob@example.com",
    customer_name: str | None = "Bob Stone",
) -> tuple[int, int]:
    """A ticket opened by the service; (id, number)."""
    with db.unit_of_work() as s:
        ticket = tickets.create_ticket(
            s,
            mailbox=mailbox,
            customer_email=customer,
            customer_name=customer_name,
            subject=subject,
            actor=Actor.system(),
        )
        return ticket.id, ticket.number


def add_message(
    db: Database,
    mailbox: Mailbox,
    ticket_id: int,
    text: str,
    *,
    at: datetime,
    direction: Direction = Direction.INBOUND,
) -> None:
    with db.unit_of_work() as s:
        count = s.execute(select(func.count(Message.id))).scalar_one()
        s.add(
            Message(
                mailbox_id=mailbox.id,
                ticket_id=ticket_id,
                gmail_message_id=f"m{count + 1}",
                gmail_thread_id="t1",
                direction=direction,
                from_address="bob@example.com",
                subject="Question",
                date=at,
                text_body=text,
            )
        )


def seed_defaults(db: Database) -> None:
    with db.unit_of_work() as s:
        created, _ = library.seed_default_templates(s)
        assert created > 10


# --- CRUD and search -------------------------------------------------------------------------


def test_create_read_update_delete(client: TestClient, lead: Caller) -> None:
    """A lead creates a shared template (201, author recorded), reads it, changes it with its
    version (the version moves), and deletes it (204, then 404)."""
    response = create(
        client,
        lead,
        name="  Refund done  ",
        subject="Re: {{ ticket.subject }}",
        body="{{ greeting }}! Your refund is on its way.",
        language="en",
        folder="Billing",
        tags=["Refund", "billing", "refund"],
        shortcut="refund-done",
    )
    assert response.status_code == 201, response.text
    saved = response.json()
    assert saved["warnings"] == []
    template = saved["template"]
    assert template["name"] == "Refund done"
    assert template["tags"] == ["billing", "refund"]
    assert (template["visibility"], template["owner_id"]) == ("shared", None)
    assert (template["author_id"], template["version"], template["usage_count"]) == (
        lead.agent.id,
        1,
        0,
    )
    assert get(client, lead, template["id"]).json() == template

    changed = patch(client, lead, template["id"], version=1, body="Refunded.", folder=None)
    assert changed.status_code == 200, changed.text
    after = changed.json()["template"]
    assert (after["body"], after["folder"], after["version"]) == ("Refunded.", None, 2)
    assert after["subject"] == template["subject"], "absent fields are kept"

    deleted = client.delete(f"{API}/templates/{template['id']}", headers=lead.headers)
    assert deleted.status_code == 204
    missing = get(client, lead, template["id"])
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "template_not_found"


def test_patch_refuses_null_for_required_fields_and_unknown_fields(
    client: TestClient, lead: Caller, db: Database
) -> None:
    """body: null and a field the API does not know are 422, and change nothing."""
    template = make_template(client, lead)
    before = template_rows(db)
    assert patch(client, lead, template["id"], version=1, body=None).status_code == 422
    assert patch(client, lead, template["id"], version=1, colour="red").status_code == 422
    assert patch(client, lead, template["id"], body="no version").status_code == 422
    assert template_rows(db) == before


def test_spelling_problems_are_warnings_not_errors(client: TestClient, lead: Caller) -> None:
    """A misspelt word is saved anyway and reported; variables and names are not checked."""
    response = create(
        client,
        lead,
        subject="Your requst",
        body="Dear {{ customer.first_name }}, we have recieved your message. Regards, Natasha",
    )
    assert response.status_code == 201, response.text
    warnings = response.json()["warnings"]
    assert len(warnings) == 1
    assert warnings[0]["code"] == "spelling"
    assert {"recieved", "requst"} <= set(warnings[0]["words"])
    assert "natasha" not in {w.lower() for w in warnings[0]["words"]}

    fixed = patch(
        client,
        lead,
        response.json()["template"]["id"],
        version=1,
        subject="Your request",
        body="We have received your message.",
    )
    assert fixed.status_code == 200
    assert fixed.json()["warnings"] == []


def test_search_by_text_tag_language_folder_and_visibility(
    client: TestClient, lead: Caller
) -> None:
    """q finds text in the name or body whatever its case, Cyrillic included, with % and _
    literal; tag, language, folder and visibility narrow the list."""
    make_template(
        client, lead, name="Delivery delay", body="Your parcel is late.", tags=["Shipping"]
    )
    make_template(
        client,
        lead,
        name="Задержка",
        body="Доставка задерживается на 2 дня.",
        language="ru",
        folder="Доставка",
        tags=["доставка"],
    )
    make_template(client, lead, name="Discount", body="You get 10% off, code SAVE_10.")
    make_template(client, lead, name="Private note", body="My parcel notes", visibility="personal")

    assert listed(client, lead, q="PARCEL") == ["Delivery delay", "Private note"]
    assert listed(client, lead, q="ДОСТАВКА") == ["Задержка"]
    assert listed(client, lead, q="delay") == ["Delivery delay"]
    assert listed(client, lead, q="10%") == ["Discount"]
    assert listed(client, lead, q="0% o") == ["Discount"]
    assert listed(client, lead, q="%") == ["Discount"]
    assert listed(client, lead, q="save_1") == ["Discount"]
    assert listed(client, lead, q="sav_") == [], "_ is no wildcard"
    assert listed(client, lead, tag="shipping") == ["Delivery delay"]
    assert listed(client, lead, tag="SHIPPING") == ["Delivery delay"]
    assert listed(client, lead, tag="ship") == [], "a tag matches whole, not a prefix"
    assert listed(client, lead, tag="Доставка") == ["Задержка"]
    assert listed(client, lead, language="ru") == ["Задержка"]
    assert listed(client, lead, folder="Доставка") == ["Задержка"]
    assert listed(client, lead, visibility="personal") == ["Private note"]
    assert listed(client, lead, visibility="shared", q="parcel") == ["Delivery delay"]


def test_list_orders_by_usage_then_name_and_pages(
    client: TestClient, lead: Caller, db: Database, mailbox: Mailbox
) -> None:
    """The most used templates come first, then by name; limit/offset page through them."""
    ids = {
        name: make_template(client, lead, name=name)["id"] for name in ("Bravo", "Alpha", "Echo")
    }
    ticket_id, _ = make_ticket(db, mailbox)
    for name, times in (("Echo", 2), ("Bravo", 1)):
        for _ in range(times):
            used = client.post(
                f"{API}/templates/{ids[name]}/uses",
                json={"ticket_id": ticket_id},
                headers=lead.headers,
            )
            assert used.status_code == 201, used.text
    assert listed(client, lead) == ["Echo", "Bravo", "Alpha"]
    page = client.get(f"{API}/templates", params={"limit": 1, "offset": 1}, headers=lead.headers)
    assert page.json()["total"] == 3
    assert [t["name"] for t in page.json()["items"]] == ["Bravo"]


# --- rights ----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.AGENT, Role.LEAD, Role.ADMIN])
def test_shared_templates_are_read_by_all_and_written_by_leads_and_admins(
    role: Role, client: TestClient, make_caller: MakeCaller, lead: Caller, db: Database
) -> None:
    """Agents read shared templates and get 403 for any write; leads and admins write them."""
    caller = make_caller(role)
    may_write = role in (Role.LEAD, Role.ADMIN)
    existing = make_template(client, lead, name="Shared", body="Hello")

    assert get(client, caller, existing["id"]).status_code == 200
    assert listed(client, caller) == ["Shared"]

    before = template_rows(db)
    created = create(client, caller, name="New shared", visibility="shared")
    changed = patch(client, caller, existing["id"], version=1, body="Changed")
    if not may_write:
        for response in (created, changed):
            assert response.status_code == 403, response.text
            assert response.json()["error"]["code"] == "template_forbidden"
        deleted = client.delete(f"{API}/templates/{existing['id']}", headers=caller.headers)
        assert deleted.status_code == 403
        assert template_rows(db) == before
        return
    assert created.status_code == 201, created.text
    assert changed.status_code == 200, changed.text
    deleted = client.delete(f"{API}/templates/{existing['id']}", headers=caller.headers)
    assert deleted.status_code == 204


@pytest.mark.parametrize("role", [Role.AGENT, Role.LEAD, Role.ADMIN])
def test_personal_templates_are_their_owners_alone(
    role: Role, client: TestClient, make_caller: MakeCaller, db: Database, mailbox: Mailbox
) -> None:
    """Anyone keeps personal templates; to everyone else — admins included — they do not exist:
    404 on every route, absent from lists, exports and suggestions."""
    owner = make_caller(role)
    ticket_id, _ = make_ticket(db, mailbox)
    add_message(db, mailbox, ticket_id, "Where is my parcel?", at=datetime.now(UTC))
    mine = make_template(
        client,
        owner,
        name="My parcel answer",
        body="Your parcel is on its way.",
        visibility="personal",
    )
    assert mine["owner_id"] == owner.agent.id

    assert get(client, owner, mine["id"]).status_code == 200
    assert listed(client, owner) == ["My parcel answer"]
    suggested = client.get(
        f"{API}/tickets/{ticket_id}/template-suggestions", headers=owner.headers
    ).json()["items"]
    assert [s["template"]["id"] for s in suggested] == [mine["id"]]

    for stranger in (make_caller(role), make_caller(Role.ADMIN)):
        tid = mine["id"]
        responses = [
            get(client, stranger, tid),
            patch(client, stranger, tid, version=1, body="Stolen"),
            client.delete(f"{API}/templates/{tid}", headers=stranger.headers),
            client.post(f"{API}/templates/{tid}/render", json={}, headers=stranger.headers),
            client.post(
                f"{API}/templates/{tid}/uses",
                json={"ticket_id": ticket_id},
                headers=stranger.headers,
            ),
        ]
        for response in responses:
            assert response.status_code == 404, response.text
            assert response.json()["error"]["code"] == "template_not_found"
        assert listed(client, stranger) == []
        exported = client.get(f"{API}/templates/export", headers=stranger.headers).json()
        assert exported["templates"] == []
        suggested = client.get(
            f"{API}/tickets/{ticket_id}/template-suggestions", headers=stranger.headers
        ).json()["items"]
        assert suggested == []

    changed = patch(client, owner, mine["id"], version=1, body="Updated")
    assert changed.status_code == 200, changed.text
    assert client.delete(f"{API}/templates/{mine['id']}", headers=owner.headers).status_code == 204


def test_sharing_a_personal_template_needs_a_lead(
    client: TestClient, agent: Caller, lead: Caller
) -> None:
    """An agent cannot turn their template into a shared one (403); a lead can, and a shared
    template a lead makes personal becomes the lead's."""
    mine = make_template(client, agent, visibility="personal")
    refused = patch(client, agent, mine["id"], version=1, visibility="shared")
    assert refused.status_code == 403
    assert get(client, agent, mine["id"]).json()["visibility"] == "personal"

    leads = make_template(client, lead, name="Lead's", visibility="personal")
    shared = patch(client, lead, leads["id"], version=1, visibility="shared").json()["template"]
    assert (shared["visibility"], shared["owner_id"]) == ("shared", None)
    assert get(client, agent, leads["id"]).status_code == 200

    back = patch(client, lead, leads["id"], version=2, visibility="personal").json()["template"]
    assert (back["visibility"], back["owner_id"]) == ("personal", lead.agent.id)
    assert get(client, agent, leads["id"]).status_code == 404


# --- refused saves ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"body": "Hello {{ customer.name }\nline two"}, "syntax"),
        ({"body": "Hi\n\n{% if ticket.number %}open"}, "syntax"),
        ({"body": "Hello {{ customer.nickname }}"}, "unknown_variable"),
        ({"subject": "Re: {{ order.id }}", "body": "Hello"}, "unknown_variable"),
        ({"body": "x" * (MAX_TEMPLATE_CHARS + 1)}, "too_large"),
        ({"body": "{{ customer.__class__.__mro__[1].__subclasses__() }}"}, None),
        ({"body": "{{ cycler.__init__.__globals__.os }}"}, None),
        ({"body": "{{ self._TemplateReference__context }}"}, None),
    ],
)
def test_invalid_templates_are_refused_and_nothing_is_saved(
    fields: dict[str, Any], problem: str | None, client: TestClient, lead: Caller, db: Database
) -> None:
    """Syntax errors (with their line), unknown variables (known ones listed), oversized sources
    and sandbox escapes are a 422 template_invalid on create, update and preview; no row moves."""
    existing = make_template(client, lead, name="Existing")
    before = template_rows(db)

    responses = [
        create(client, lead, **fields),
        patch(client, lead, existing["id"], version=1, **fields),
        client.post(
            f"{API}/templates/preview", json={"body": "Hi", **fields}, headers=lead.headers
        ),
    ]
    for response in responses:
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "template_invalid", error
        details = error["details"]
        if problem is not None:
            assert details["problem"] == problem, details
        else:
            assert details["problem"] in ("unsafe", "unknown_variable"), details
        if problem == "syntax":
            assert isinstance(details["line"], int), details
            assert details["line"] >= 1, details
        if problem == "unknown_variable":
            assert "customer.first_name" in details["known_variables"]
    assert template_rows(db) == before


def test_syntax_error_reports_its_line(client: TestClient, lead: Caller) -> None:
    """The line of a syntax error is the line of the template where it is."""
    response = create(client, lead, body="Hello,\n\nthanks.\n{{ ticket.number + }}\nBye")
    assert response.status_code == 422
    details = response.json()["error"]["details"]
    assert (details["problem"], details["line"], details["field"]) == ("syntax", 4, "body")


def test_stale_version_is_a_conflict(client: TestClient, lead: Caller, admin: Caller) -> None:
    """Two editors start from version 1: the second save is 409 version_conflict with the
    current version, and the first one's text stays."""
    template = make_template(client, lead)
    first = patch(client, lead, template["id"], version=1, body="First edit")
    assert first.status_code == 200
    second = patch(client, admin, template["id"], version=1, body="Second edit")
    assert second.status_code == 409
    error = second.json()["error"]
    assert (error["code"], error["details"]) == ("version_conflict", {"current_version": 2})
    assert get(client, lead, template["id"]).json()["body"] == "First edit"


def test_shared_shortcut_is_unique_per_language(
    client: TestClient, lead: Caller, agent: Caller, db: Database
) -> None:
    """A shared shortcut names one template per language (409 shortcut_taken otherwise); the
    same shortcut in another language, or in a personal template, is fine."""
    first = make_template(client, lead, name="Ack", shortcut="ack", language="en")
    before = template_rows(db)
    taken = create(client, lead, name="Ack 2", shortcut="ack", language="en")
    assert taken.status_code == 409
    assert taken.json()["error"]["code"] == "shortcut_taken"
    assert template_rows(db) == before

    make_template(client, lead, name="Ack ru", shortcut="ack", language="ru")
    make_template(client, agent, name="My ack", shortcut="ack", visibility="personal")
    other = make_template(client, lead, name="Other", shortcut="other", language="en")
    moved = patch(client, lead, other["id"], version=1, shortcut="ack")
    assert moved.status_code == 409
    assert patch(client, lead, first["id"], version=1, name="Ack!").status_code == 200


@pytest.mark.parametrize(
    "fields",
    [
        {"name": ""},
        {"name": "   "},
        {"name": "n" * 201},
        {"language": "EN"},
        {"language": "e"},
        {"shortcut": "Has Space"},
        {"tags": ["ok", "a|b"]},
        {"tags": [f"t{n}" for n in range(21)]},
        {"tags": ["x" * 65]},
        {"visibility": "team"},
        {"body": ""},
    ],
)
def test_bad_fields_are_422(
    fields: dict[str, Any], client: TestClient, lead: Caller, db: Database
) -> None:
    """Field limits: name 1–200, language a lower-case code, shortcut [a-z0-9-], at most 20 tags
    of 64 characters without '|'."""
    response = create(client, lead, **fields)
    assert response.status_code == 422, response.text
    assert template_rows(db) == []


# --- rendering -------------------------------------------------------------------------------


def test_render_for_a_real_ticket(
    client: TestClient, lead: Caller, db: Database, mailbox: Mailbox
) -> None:
    """A saved template renders with the ticket's customer, number and subject and the calling
    agent; the greeting is one of the English ones."""
    ticket_id, number = make_ticket(db, mailbox, subject="Broken invoice")
    template = make_template(
        client,
        lead,
        subject="Re: {{ ticket.subject }} [#{{ ticket.number }}]",
        body="{{ greeting }}, {{ customer.first_name }}!\nAbout {{ ticket.subject }}: done.\n"
        "{{ agent.first_name }}, {{ mailbox.name }}",
    )
    response = client.post(
        f"{API}/templates/{template['id']}/render",
        json={"ticket_id": ticket_id},
        headers=lead.headers,
    )
    assert response.status_code == 200, response.text
    rendered = response.json()
    assert rendered["subject"] == f"Re: Broken invoice [#{number}]"
    first_line, second, third = rendered["body"].split("\n")
    greeting, name = first_line.rstrip("!").split(", ")
    assert greeting in GREETINGS_EN
    assert name == "Bob"
    assert second == "About Broken invoice: done."
    assert third == "Lee, Shop Support"
    assert rendered["warnings"] == []
    assert rendered["is_html"] is False

    sample = client.post(f"{API}/templates/{template['id']}/render", json={}, headers=lead.headers)
    assert sample.status_code == 200, "without a ticket: sample values"
    unknown = client.post(
        f"{API}/templates/{template['id']}/render",
        json={"ticket_id": 999_999},
        headers=lead.headers,
    )
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "ticket_not_found"


def test_preview_of_an_unsaved_template(
    client: TestClient, agent: Caller, db: Database, mailbox: Mailbox
) -> None:
    """Any agent previews an unsaved template for a ticket; HTML bodies escape the values."""
    ticket_id, _ = make_ticket(db, mailbox, subject="<b>urgent</b> & more")
    response = client.post(
        f"{API}/templates/preview",
        json={
            "body": "<p>{{ ticket.subject }}</p>",
            "is_html": True,
            "language": "ru",
            "ticket_id": ticket_id,
        },
        headers=agent.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["body"] == "<p>&lt;b&gt;urgent&lt;/b&gt; &amp; more</p>"
    assert template_rows(db) == [], "a preview saves nothing"


def test_render_time_failure_is_a_warning_not_a_500(
    client: TestClient, lead: Caller, db: Database, mailbox: Mailbox
) -> None:
    """A template that fails while rendering (a customer without a name, a division by zero, an
    output over the limit) answers 200 with the value left empty and a warning."""
    ticket_id, _ = make_ticket(
        db, mailbox, subject="s" * 300, customer="anon@example.com", customer_name=None
    )
    bodies = (
        "Hi {{ customer.name }}!",
        "Hi {{ ticket.number // 0 }}!",
        "Hi {{ ticket.subject * 400 }}!",
    )
    for body in bodies:
        template = make_template(client, lead, name=body, body=body)
        response = client.post(
            f"{API}/templates/{template['id']}/render",
            json={"ticket_id": ticket_id},
            headers=lead.headers,
        )
        assert response.status_code == 200, response.text
        rendered = response.json()
        assert rendered["warnings"], rendered
        assert rendered["body"] == "Hi !", rendered


# --- uses and suggestions --------------------------------------------------------------------


def test_use_is_recorded_with_the_customers_latest_message(
    client: TestClient, agent: Caller, lead: Caller, db: Database, mailbox: Mailbox
) -> None:
    """A use counts, dates the template's last use without changing its version, and keeps (at
    most 2000 characters of) the customer's latest inbound message."""
    template = make_template(client, lead)
    ticket_id, _ = make_ticket(db, mailbox)
    now = datetime.now(UTC)
    add_message(db, mailbox, ticket_id, "An older question", at=now - timedelta(hours=2))
    add_message(db, mailbox, ticket_id, "Latest: " + "x" * 3000, at=now - timedelta(hours=1))
    add_message(db, mailbox, ticket_id, "Our answer", at=now, direction=Direction.OUTBOUND)

    response = client.post(
        f"{API}/templates/{template['id']}/uses",
        json={"ticket_id": ticket_id},
        headers=agent.headers,
    )
    assert response.status_code == 201, response.text
    use = response.json()
    assert (use["template_id"], use["ticket_id"], use["agent_id"]) == (
        template["id"],
        ticket_id,
        agent.agent.id,
    )
    assert use["message_excerpt"].startswith("Latest: ")
    assert len(use["message_excerpt"]) == 2000

    after = get(client, lead, template["id"]).json()
    assert after["usage_count"] == 1
    assert after["last_used_at"] is not None
    assert (after["version"], after["updated_at"]) == (1, template["updated_at"])
    assert patch(client, lead, template["id"], version=1, name="Still v1").status_code == 200

    unknown = client.post(
        f"{API}/templates/{template['id']}/uses",
        json={"ticket_id": 999_999},
        headers=agent.headers,
    )
    assert unknown.status_code == 404
    assert use_count(db) == 1


def test_use_of_a_ticket_without_messages_keeps_the_subject(
    client: TestClient, lead: Caller, db: Database, mailbox: Mailbox
) -> None:
    """A ticket opened through the API has no message: the subject stands for it."""
    template = make_template(client, lead)
    ticket_id, _ = make_ticket(db, mailbox, subject="Cannot export to CSV")
    response = client.post(
        f"{API}/templates/{template['id']}/uses",
        json={"ticket_id": ticket_id},
        headers=lead.headers,
    )
    assert response.json()["message_excerpt"] == "Cannot export to CSV"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "Hello, I forgot my password and cannot log in. The reset link never arrives.",
            "Password reset",
        ),
        (
            "Здравствуйте! Забыл пароль и не могу войти в аккаунт, ссылка для сброса не приходит.",
            "Сброс пароля",
        ),
        ("Please refund my last payment, I was charged twice.", "Refund"),
    ],
)
def test_suggestions_rank_the_matching_default_template_first(
    message: str,
    expected: str,
    client: TestClient,
    agent: Caller,
    db: Database,
    mailbox: Mailbox,
) -> None:
    """For a customer message that clearly asks one thing, the default template for it comes
    first; scores are in [0, 1], best first, at most ``limit`` items."""
    seed_defaults(db)
    ticket_id, _ = make_ticket(db, mailbox)
    add_message(db, mailbox, ticket_id, message, at=datetime.now(UTC))

    response = client.get(
        f"{API}/tickets/{ticket_id}/template-suggestions",
        params={"limit": 3},
        headers=agent.headers,
    )
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert 1 <= len(items) <= 3
    assert items[0]["template"]["name"] == expected
    scores = [item["score"] for item in items]
    assert scores == sorted(scores, reverse=True)
    assert all(0 <= item[key] <= 1 for item in items for key in ("score", "text_score"))


def test_suggestions_learn_from_uses_and_reuse_their_index(
    client: TestClient, lead: Caller, db: Database, mailbox: Mailbox
) -> None:
    """A template used for messages like this one climbs once the use is recorded (the cached
    index is rebuilt), while asking again without any change reuses the cached index."""
    chargeback = make_template(
        client, lead, name="Chargeback", body="We have opened a dispute with the bank."
    )
    make_template(client, lead, name="Statement", body="Your statement shows the charge twice.")
    earlier, _ = make_ticket(db, mailbox)
    add_message(
        db, mailbox, earlier, "My card statement shows a weird charge", at=datetime.now(UTC)
    )
    current, _ = make_ticket(db, mailbox)
    add_message(db, mailbox, current, "Weird charge on my card statement", at=datetime.now(UTC))

    def top() -> list[dict[str, Any]]:
        response = client.get(f"{API}/tickets/{current}/template-suggestions", headers=lead.headers)
        assert response.status_code == 200, response.text
        return response.json()["items"]

    before = top()
    assert [item["template"]["name"] for item in before] == ["Statement"]
    cached = dict(suggestions._index_cache._entries)
    text_indexes = dict(suggestions._text_cache._entries)
    assert top() == before
    assert dict(suggestions._index_cache._entries) == cached, "unchanged templates: same index"

    for _ in range(3):
        used = client.post(
            f"{API}/templates/{chargeback['id']}/uses",
            json={"ticket_id": earlier},
            headers=lead.headers,
        )
        assert used.status_code == 201
    after = {item["template"]["name"]: item for item in top()}
    # The uses rebuilt the usage part only: the templates' text index is the one built before.
    assert dict(suggestions._text_cache._entries) == text_indexes
    assert after["Chargeback"]["text_score"] == 0
    assert after["Chargeback"]["usage_score"] == 1
    assert after["Statement"]["score"] > after["Chargeback"]["score"] > 0


def test_suggestions_prefer_the_messages_language_on_a_tie(
    client: TestClient, lead: Caller, db: Database, mailbox: Mailbox
) -> None:
    """Two templates with the same text in different languages: the one in the message's
    language comes first, whichever was created first."""
    make_template(client, lead, name="SEPA", body="SEPA IBAN BIC", language="en")
    make_template(client, lead, name="SEPA", body="SEPA IBAN BIC", language="ru")
    for message, language in (
        ("Вопрос про SEPA IBAN BIC, подскажите пожалуйста", "ru"),
        ("My SEPA IBAN BIC", "en"),
    ):
        ticket_id, _ = make_ticket(db, mailbox)
        add_message(db, mailbox, ticket_id, message, at=datetime.now(UTC))
        items = client.get(
            f"{API}/tickets/{ticket_id}/template-suggestions", headers=lead.headers
        ).json()["items"]
        assert items[0]["score"] == items[1]["score"]
        assert items[0]["template"]["language"] == language


def test_suggestions_for_an_unknown_ticket_and_bad_limit(client: TestClient, agent: Caller) -> None:
    response = client.get(f"{API}/tickets/999999/template-suggestions", headers=agent.headers)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "ticket_not_found"
    for limit in (0, 21):
        bad = client.get(
            f"{API}/tickets/1/template-suggestions",
            params={"limit": limit},
            headers=agent.headers,
        )
        assert bad.status_code == 422


# --- import / export -------------------------------------------------------------------------


def _library(client: TestClient, caller: Caller) -> dict[str, Any]:
    response = client.get(f"{API}/templates/export", headers=caller.headers)
    assert response.status_code == 200, response.text
    return response.json()


def _import(client: TestClient, caller: Caller, document: dict[str, Any]) -> httpx.Response:
    return client.post(f"{API}/templates/import", json=document, headers=caller.headers)


def test_export_wipe_import_gives_the_same_library(client: TestClient, lead: Caller) -> None:
    """Export → delete everything → import → export again: the same document, personal
    templates coming back as the importer's own."""
    make_template(
        client,
        lead,
        name="Ack",
        subject="Re: {{ ticket.subject }}",
        body="{{ greeting }}!",
        tags=["auto", "ack"],
        folder="General",
        shortcut="ack",
    )
    make_template(
        client,
        lead,
        name="Подтверждение",
        body="<p>{{ greeting }}!</p>",
        is_html=True,
        language="ru",
        shortcut="ack",
    )
    make_template(client, lead, name="Notes to self", body="Check logs", visibility="personal")
    exported = _library(client, lead)
    assert exported["format"] == "inboxdesk-templates"
    assert exported["version"] == 1
    assert len(exported["templates"]) == 3
    assert {"id", "version", "owner_id"}.isdisjoint(exported["templates"][0])

    for item in client.get(f"{API}/templates", headers=lead.headers).json()["items"]:
        assert (
            client.delete(f"{API}/templates/{item['id']}", headers=lead.headers).status_code == 204
        )
    assert _library(client, lead)["templates"] == []

    imported = _import(client, lead, exported)
    assert imported.status_code == 200, imported.text
    assert imported.json() == {"created": 3, "updated": 0, "unchanged": 0, "warnings": []}
    assert _library(client, lead) == exported
    mine = listed(client, lead, visibility="personal")
    assert mine == ["Notes to self"]


def test_import_updates_templates_of_the_same_name_and_language(
    client: TestClient, lead: Caller
) -> None:
    """A template matching an existing one by name, language and visibility updates it (its
    version moves); an identical one is left alone; a new name is created."""
    kept = make_template(client, lead, name="Kept", body="Same")
    changed = make_template(client, lead, name="Changed", body="Old text")
    document = _library(client, lead)
    document["templates"][0]["body"] = "New text"
    assert document["templates"][0]["name"] == "Changed"
    document["templates"].append({"name": "Fresh", "body": "Brand new", "language": "en"})

    result = _import(client, lead, document)
    assert result.status_code == 200, result.text
    assert result.json() == {"created": 1, "updated": 1, "unchanged": 1, "warnings": []}
    assert get(client, lead, changed["id"]).json()["body"] == "New text"
    assert get(client, lead, changed["id"]).json()["version"] == 2
    assert get(client, lead, kept["id"]).json()["version"] == 1


def test_import_with_one_bad_template_saves_nothing(
    client: TestClient, lead: Caller, db: Database
) -> None:
    """One invalid template — a schema error or a template the sandbox refuses — and the whole
    import is refused with its index; neither the good new ones nor the updates are saved."""
    make_template(client, lead, name="Existing", body="Old")
    before = template_rows(db)
    good = [
        {"name": "Existing", "body": "New"},
        {"name": "New one", "body": "Hello"},
    ]
    bad_cases = [
        ({"name": "Broken", "body": "{% if %}"}, "template_invalid"),
        ({"name": "Unknown", "body": "{{ customer.shoe_size }}"}, "template_invalid"),
        ({"name": "No body"}, "template_import_invalid"),
        ({"name": "Extra", "body": "Hi", "colour": "red"}, "template_import_invalid"),
        ({"name": "Existing", "body": "Twice"}, "template_import_invalid"),
        ("not an object", "template_import_invalid"),
    ]
    bad: Any
    for bad, code in bad_cases:
        document = {"format": "inboxdesk-templates", "version": 1, "templates": [*good, bad]}
        response = _import(client, lead, document)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == code, error
        assert error["details"]["index"] == 2, error
        assert template_rows(db) == before

    wrong_format = _import(client, lead, {"format": "other", "version": 1, "templates": good})
    assert wrong_format.status_code == 422
    assert template_rows(db) == before


def test_import_rights_and_shortcut_clash(
    client: TestClient, agent: Caller, lead: Caller, db: Database
) -> None:
    """An agent may import personal templates only (a shared one → 403 with its index, nothing
    saved); a shortcut already taken by another shared template → 409 with its index."""
    make_template(client, lead, name="Ack", shortcut="ack")
    before = template_rows(db)
    mixed = {
        "format": "inboxdesk-templates",
        "version": 1,
        "templates": [
            {"name": "Mine", "body": "Hi", "visibility": "personal"},
            {"name": "Team", "body": "Hi"},
        ],
    }
    refused = _import(client, agent, mixed)
    assert refused.status_code == 403
    assert refused.json()["error"]["details"]["index"] == 1
    assert template_rows(db) == before

    clash = {
        "format": "inboxdesk-templates",
        "version": 1,
        "templates": [{"name": "Another ack", "body": "Hi", "shortcut": "ack"}],
    }
    response = _import(client, lead, clash)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "shortcut_taken"
    assert response.json()["error"]["details"]["index"] == 0
    assert template_rows(db) == before

    personal_only = {**mixed, "templates": mixed["templates"][:1]}
    assert _import(client, agent, personal_only).json()["created"] == 1
    assert listed(client, agent, visibility="personal") == ["Mine"]


def test_seeding_the_defaults_is_idempotent(db: Database) -> None:
    """The second seed creates nothing; every default is a valid shared template."""
    with db.unit_of_work() as s:
        created, kept = library.seed_default_templates(s)
    with db.unit_of_work() as s:
        again = library.seed_default_templates(s)
        shortcuts = {
            tuple(row) for row in s.execute(select(ReplyTemplate.shortcut, ReplyTemplate.language))
        }
    assert created >= 15
    assert kept == 0
    assert again == (0, created)
    assert {("ack", "ru"), ("ack", "en"), ("ack-ooh", "ru"), ("ack-ooh", "en")} <= shortcuts


def test_migration_fills_the_search_columns_of_existing_templates(
    database_url: str, tmp_path: Path
) -> None:
    """Upgrading a 0002 database: its templates are found by text and tag at once, and its
    mailboxes get the UTC zone."""
    with scratch_database_url(database_url, tmp_path) as url:
        engine = create_db_engine(url)
        try:
            with engine.connect() as conn:
                migrations.upgrade(conn, revision="0002")
                now = datetime.now(UTC)
                conn.execute(
                    text(
                        "INSERT INTO reply_templates (name, body, is_html, language, tags,"
                        " visibility, usage_count, version, created_at, updated_at) VALUES"
                        " ('Доставка', 'Посылка ЗАДЕРЖИВАЕТСЯ', false, 'ru', '[\"Shipping\"]',"
                        " 'shared', 0, 1, :now, :now)"
                    ),
                    {"now": now},
                )
                conn.execute(
                    text(
                        "INSERT INTO mailboxes (email, name, auth_kind, state, language,"
                        " auto_ack_enabled, full_sync_days, label_ids, created_at, updated_at)"
                        " VALUES ('old@shop.test', 'Old', 'none', 'active', 'en', true, 30, '{}',"
                        " :now, :now)"
                    ),
                    {"now": now},
                )
                conn.commit()
                migrations.upgrade(conn)
                conn.commit()
                row = conn.execute(text("SELECT search_text, tag_index FROM reply_templates")).one()
                zone = conn.execute(text("SELECT timezone FROM mailboxes")).scalar_one()
        finally:
            engine.dispose()
    assert tuple(row) == ("доставка\nпосылка задерживается", "|shipping|")
    assert zone == "UTC"


def test_the_database_itself_refuses_a_second_shared_shortcut(db: Database) -> None:
    """The partial unique index settles a race the service's check cannot see: a second shared
    template with the same shortcut and language is refused by the database, in a way the
    service recognises as shortcut_taken; personal templates are not constrained."""
    with db.unit_of_work() as s:
        s.add(ReplyTemplate(name="A", body="a", language="en", shortcut="ack"))
        s.add(
            ReplyTemplate(name="P", body="p", language="en", shortcut="ack", visibility="personal")
        )
    with db.unit_of_work() as s:
        s.add(ReplyTemplate(name="B", body="b", language="en", shortcut="ack"))
        with pytest.raises(IntegrityError) as caught:
            s.flush()
        s.rollback()
    assert service.is_shortcut_clash(caught.value)
