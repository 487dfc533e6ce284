"""The sidebar's actions, replayed from the cards the endpoints built (so the parameters are the
ones Gmail would send back), through the real endpoints with verified tokens.

Proves: rights are re-checked on every action (leads assign anyone, agents only themselves, the
status machine holds); a stale version changes nothing and answers the fresh card naming who
changed the ticket; ids are checked (another thread's ticket, unknown or malformed ids, missing
version: nothing changed); notes, ticket creation from a thread, template insertion (rendered for
the ticket, use recorded, MUTABLE_HTML for HTML), search and paging; every answer is a valid
render action whose cards parse as google.apps.card.v1.Card.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from app.addon import actions
from app.agents.models import Role
from app.db.session import Database
from app.mailboxes.models import Mailbox
from app.tickets import service as tickets
from app.tickets.events import Actor
from app.tickets.models import ActorKind, Event, Note, Priority, Status, Ticket, TicketThread
from app.tickets.schemas import TicketUpdate
from templates_replies.models import ReplyTemplate, TemplateUse, Visibility
from templates_replies.schemas import TemplateCreate
from templates_replies.service import create_template
from tests.addon_cards_support import (
    Desk,
    action_named,
    assert_valid_answer,
    find_widget,
    notification,
    params,
    section,
    text_of,
    the_card,
)
from tests.addon_fixtures import (  # noqa: F401
    AddonClient,
    action_event,
    addon_client_fixture,
    certs_server_fixture,
    compose_event,
    contextual_event,
    google_keys_fixture,
    homepage_event,
)
from tests.conftest import Caller, MakeCaller

THREAD = "18c5b1b2c3d4e5f6"
OTHER_THREAD = "18c5b1b2c3d4e5f7"


@pytest.fixture
def desk(db: Database, mailbox: Mailbox) -> Desk:
    return Desk(db, mailbox)


def post(client: AddonClient, path: str, event: dict[str, Any], who: Caller | str) -> Any:
    email = who if isinstance(who, str) else who.agent.email
    response = client.post(path, event, agent_email=email)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert_valid_answer(answer)
    return answer


def card_for(client: AddonClient, who: Caller, thread: str = THREAD) -> dict[str, Any]:
    return the_card(post(client, "/addon/contextual", contextual_event(thread_id=thread), who))


def replay(
    client: AddonClient,
    who: Caller | str,
    action: dict[str, Any],
    form: dict[str, str | list[str]] | None = None,
    *,
    thread: str | None = THREAD,
    **overrides: str,
) -> Any:
    """Send ``action`` back as Gmail would: its parameters (``overrides`` replace some), the
    form's values, the open message's thread."""
    name = action["function"].rsplit("/", 1)[-1]
    sent = {**params(action), **overrides}
    event = action_event(parameters=sent, form_inputs=form, thread_id=thread)
    return post(client, f"/addon/action/{name}", event, who)


def updated_card(answer: dict[str, Any]) -> dict[str, Any]:
    navigation = answer["renderActions"]["action"]["navigations"][0]
    assert set(navigation) == {"updateCard"}
    return navigation["updateCard"]


def event_count(db: Database, ticket_id: int) -> int:
    with db.unit_of_work() as s:
        return s.execute(
            select(func.count()).select_from(Event).where(Event.ticket_id == ticket_id)
        ).scalar_one()


def selected_assignee(card: dict[str, Any]) -> str:
    dropdown = find_widget(card, "selectionInput", name="assignee")
    return next(item["text"] for item in dropdown["items"] if item["selected"])


# -- assignment -------------------------------------------------------------------------------


def test_lead_assigns_anyone_from_the_dropdown(
    addon_client: AddonClient, lead: Caller, agent: Caller, desk: Desk
) -> None:
    """The dropdown's onChangeAction with the chosen agent: assigned, the ticket opened (a
    person touched it), the fresh card shows the new version and assignee."""
    ticket = desk.ticket(thread=THREAD)
    card = card_for(addon_client, lead)
    answer = replay(
        addon_client, lead, action_named(card, "assign"), {"assignee": str(agent.agent.id)}
    )
    assert notification(answer) == f"#{ticket.number} assigned to Alex Agent"
    fresh = desk.fresh(ticket.id)
    assert fresh.assignee_id == agent.agent.id
    assert fresh.status == Status.OPEN
    card = updated_card(answer)
    assert selected_assignee(card) == "Alex Agent"
    assert params(action_named(card, "assign"))["version"] == str(fresh.version)
    assert card["header"]["title"] == f"#{ticket.number} · Open · Normal"


def test_agent_takes_a_free_ticket_and_gives_it_back(
    addon_client: AddonClient, agent: Caller, desk: Desk
) -> None:
    ticket = desk.ticket(thread=THREAD)
    card = card_for(addon_client, agent)
    answer = replay(
        addon_client, agent, action_named(card, "assign"), {"assignee": str(agent.agent.id)}
    )
    assert notification(answer) == f"#{ticket.number} assigned to you"
    assert desk.fresh(ticket.id).assignee_id == agent.agent.id
    answer = replay(
        addon_client, agent, action_named(updated_card(answer), "assign"), {"assignee": "none"}
    )
    assert notification(answer) == f"#{ticket.number} unassigned"
    assert desk.fresh(ticket.id).assignee_id is None


def test_agent_assigning_someone_else_is_refused_and_nothing_changes(
    addon_client: AddonClient, agent: Caller, make_caller: MakeCaller, desk: Desk, db: Database
) -> None:
    """The agent's card never offers it, but a crafted value is refused by the ticket service:
    same assignee, status, version and event log; the answer resets the dropdown."""
    other = make_caller(Role.AGENT, name="Olga Other")
    ticket = desk.ticket(thread=THREAD)
    events = event_count(db, ticket.id)
    card = card_for(addon_client, agent)
    answer = replay(
        addon_client, agent, action_named(card, "assign"), {"assignee": str(other.agent.id)}
    )
    assert notification(answer).startswith("Not changed: agents assign tickets to themselves only")
    fresh = desk.fresh(ticket.id)
    assert (fresh.assignee_id, fresh.status, fresh.version) == (None, Status.NEW, ticket.version)
    assert event_count(db, ticket.id) == events
    assert selected_assignee(updated_card(answer)) == "Unassigned"


def test_assigning_an_unknown_or_deactivated_agent_is_refused(
    addon_client: AddonClient, lead: Caller, desk: Desk
) -> None:
    ticket = desk.ticket(thread=THREAD)
    assign = action_named(card_for(addon_client, lead), "assign")
    for value in ("999999", "x1", ""):
        answer = replay(addon_client, lead, assign, {"assignee": value})
        assert "nothing was changed" in notification(answer) or "Not changed" in notification(
            answer
        )
    assert desk.fresh(ticket.id).version == ticket.version


# -- status, priority, tags -------------------------------------------------------------------


def test_status_buttons_change_status_within_the_machine(
    addon_client: AddonClient, agent: Caller, desk: Desk, db: Database
) -> None:
    """Open → Pending works; a closed ticket cannot be reopened even by a crafted action."""
    ticket = desk.ticket(thread=THREAD, status=Status.OPEN)
    card = card_for(addon_client, agent)
    answer = replay(addon_client, agent, action_named(card, "set_status", status="pending"))
    assert notification(answer) == f"#{ticket.number} is pending"
    assert desk.fresh(ticket.id).status == Status.PENDING

    closed = desk.ticket(thread=OTHER_THREAD, status=Status.CLOSED)
    events = event_count(db, closed.id)
    card = card_for(addon_client, agent, thread=OTHER_THREAD)
    crafted = action_named(card, "add_note")  # the card has no status button to take
    answer = replay(
        addon_client,
        agent,
        {**crafted, "function": crafted["function"].replace("add_note", "set_status")},
        thread=OTHER_THREAD,
        status="open",
    )
    assert notification(answer).startswith(
        "Not changed: a ticket cannot go from closed to open; allowed: none"
    )
    assert desk.fresh(closed.id).status == Status.CLOSED
    assert event_count(db, closed.id) == events
    answer = replay(
        addon_client,
        agent,
        crafted | {"function": crafted["function"].replace("add_note", "set_status")},
        thread=OTHER_THREAD,
        status="reopened",
    )
    assert notification(answer) == "Unknown status 'reopened': nothing was changed."


def test_priority_and_tags(addon_client: AddonClient, agent: Caller, desk: Desk) -> None:
    """Priority from its dropdown; tags from the comma-separated box, normalized; an invalid tag
    changes nothing."""
    ticket = desk.ticket(thread=THREAD, status=Status.OPEN)
    card = card_for(addon_client, agent)
    answer = replay(addon_client, agent, action_named(card, "set_priority"), {"priority": "urgent"})
    assert notification(answer) == f"#{ticket.number} priority: urgent"
    card = updated_card(answer)
    answer = replay(
        addon_client, agent, action_named(card, "set_tags"), {"tags": "Billing, vip  refund"}
    )
    assert notification(answer) == f"#{ticket.number} tags: billing, refund, vip"
    fresh = desk.fresh(ticket.id)
    assert (fresh.priority, fresh.tags) == (Priority.URGENT, ["billing", "refund", "vip"])
    card = updated_card(answer)
    assert find_widget(card, "textInput", name="tags")["value"] == "billing, refund, vip"
    answer = replay(addon_client, agent, action_named(card, "set_tags"), {"tags": "ok, !!bad"})
    assert notification(answer).startswith("Not changed: tags.1: a tag is 1–64 letters")
    assert desk.fresh(ticket.id).tags == ["billing", "refund", "vip"]
    answer = replay(addon_client, agent, action_named(card, "set_priority"), {"priority": "meh"})
    assert notification(answer) == "Unknown priority 'meh': nothing was changed."


# -- stale versions ---------------------------------------------------------------------------


def test_stale_version_reloads_and_names_who_changed_it(
    addon_client: AddonClient, agent: Caller, make_caller: MakeCaller, desk: Desk, db: Database
) -> None:
    """Anna changes the ticket after the card was built: the card's change is refused, the
    answer says "changed by Anna — reloaded" and carries the fresh card."""
    ticket = desk.ticket(thread=THREAD, status=Status.OPEN)
    anna = make_caller(Role.LEAD, name="Anna Able")
    card = card_for(addon_client, agent)
    with db.unit_of_work() as s:
        tickets.update_ticket(
            s,
            ticket_id=ticket.id,
            update=TicketUpdate(version=ticket.version, priority=Priority.HIGH),
            actor=Actor.for_agent(anna.agent),
        )
    now = desk.fresh(ticket.id)
    answer = replay(addon_client, agent, action_named(card, "set_status", status="resolved"))
    assert notification(answer) == f"#{ticket.number} was changed by Anna Able — reloaded"
    fresh = updated_card(answer)
    assert fresh["header"]["title"] == f"#{ticket.number} · Open · High"
    assert params(action_named(fresh, "set_status", status="resolved"))["version"] == str(
        now.version
    )
    after = desk.fresh(ticket.id)
    assert (after.status, after.version) == (Status.OPEN, now.version)
    # The fresh card's own action now goes through.
    answer = replay(addon_client, agent, action_named(fresh, "set_status", status="resolved"))
    assert notification(answer) == f"#{ticket.number} is resolved"


def test_stale_note_is_kept_and_reported(
    addon_client: AddonClient, agent: Caller, desk: Desk, db: Database
) -> None:
    """A note conflicts with nothing: it is added even from a stale card, and the answer says
    the ticket changed meanwhile (here by the customer)."""
    ticket = desk.ticket(thread=THREAD, status=Status.PENDING)
    card = card_for(addon_client, agent)
    with db.unit_of_work() as s:
        t = tickets.get_ticket(s, ticket.id)
        tickets.record_customer_message(
            s,
            ticket=t,
            actor=Actor(kind=ActorKind.CUSTOMER, id=t.customer_id),
        )
    answer = replay(addon_client, agent, action_named(card, "add_note"), {"note": "Called them"})
    assert notification(answer) == (
        f"Note added. #{ticket.number} was changed by the customer — reloaded"
    )
    assert "Called them" in text_of(updated_card(answer))


# -- ids that do not add up -------------------------------------------------------------------


def test_ids_that_do_not_match_change_nothing(
    addon_client: AddonClient, lead: Caller, desk: Desk, db: Database
) -> None:
    """Another thread's ticket, an unknown id, a malformed or out-of-range id, a missing or
    malformed version: a notification, no card change, no event."""
    mine = desk.ticket(thread=THREAD)
    other = desk.ticket(thread=OTHER_THREAD, customer="zed@customer.test")
    action = action_named(card_for(addon_client, lead), "set_status", status="pending")
    before = {t.id: (desk.fresh(t.id).version, event_count(db, t.id)) for t in (mine, other)}
    cases = {
        (
            ("ticket_id", str(other.id)),
        ): f"Ticket #{other.number} is not the ticket of this conversation",
        (("ticket_id", "987654"),): "That ticket does not exist",
        (("ticket_id", "1 OR 1=1"),): "Invalid ticket_id",
        (("ticket_id", "99999999999"),): "Invalid ticket_id",
        (("ticket_id", "-1"),): "Invalid ticket_id",
        (("version", ""),): "This card is missing its version",
        (("version", "two"),): "Invalid version",
        (("thread_id", "../../etc"),): "Invalid thread id",
    }
    for overrides, expected in cases.items():
        answer = replay(addon_client, lead, action, **dict(overrides))
        assert notification(answer).startswith(expected), (overrides, notification(answer))
        assert "navigations" not in answer["renderActions"]["action"]
    after = {t.id: (desk.fresh(t.id).version, event_count(db, t.id)) for t in (mine, other)}
    assert after == before
    assert desk.fresh(mine.id).status == Status.NEW


def test_unknown_action_is_404_and_unverified_calls_are_401(
    addon_client: AddonClient, agent: Caller, desk: Desk
) -> None:
    ticket = desk.ticket(thread=THREAD)
    response = addon_client.post(
        "/addon/action/drop_tables", action_event(), agent_email=agent.agent.email
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_action"
    event = action_event(
        parameters={"ticket_id": str(ticket.id), "version": str(ticket.version), "status": "closed"}
    )
    response = addon_client.client.post("/addon/action/set_status", json=event)
    assert response.status_code == 401
    assert desk.fresh(ticket.id).status == Status.NEW


def test_a_caller_who_is_no_agent_gets_the_ask_an_admin_card(
    addon_client: AddonClient, agent: Caller, desk: Desk
) -> None:
    ticket = desk.ticket(thread=THREAD)
    action = action_named(card_for(addon_client, agent), "set_status", status="closed")
    answer = replay(addon_client, "stranger@elsewhere.test", action)
    assert updated_card(answer)["header"]["subtitle"] == "Not an agent"
    assert desk.fresh(ticket.id).status == Status.NEW


def test_an_unexpected_failure_rolls_back_and_answers_a_notification(
    addon_client: AddonClient,
    agent: Caller,
    desk: Desk,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fault inside an action (here injected after it wrote a note) is no 500: the user gets a
    notification and nothing the action wrote stays."""
    ticket = desk.ticket(thread=THREAD)

    def broken(ctx: actions.Context) -> dict[str, Any]:
        tickets.add_note(
            ctx.session, ticket_id=ticket.id, body="half", actor=Actor.for_agent(ctx.agent)
        )
        raise RuntimeError("boom")

    monkeypatch.setitem(actions.ACTIONS, "refresh", broken)
    answer = post(addon_client, "/addon/action/refresh", action_event(), agent)
    assert notification(answer) == "Inboxdesk could not answer this time; try again in a moment."
    with db.unit_of_work() as s:
        assert s.execute(select(func.count()).select_from(Note)).scalar_one() == 0


# -- notes ------------------------------------------------------------------------------------


def test_notes_are_added_listed_and_paged(
    addon_client: AddonClient, agent: Caller, desk: Desk, db: Database
) -> None:
    """A note shows on the card at once; the card lists the latest five with "more…", which
    opens every note a page at a time; an empty note is refused."""
    ticket = desk.ticket(thread=THREAD, status=Status.OPEN)
    card = card_for(addon_client, agent)
    answer = replay(
        addon_client, agent, action_named(card, "add_note"), {"note": "Line 1\n<b>x</b>"}
    )
    assert notification(answer) == "Note added"
    notes = section(updated_card(answer), "Internal notes (1)")["widgets"]
    assert notes[0]["decoratedText"]["text"] == "Line 1<br>&lt;b&gt;x&lt;/b&gt;"
    assert notes[0]["decoratedText"]["topLabel"].startswith("Alex Agent · ")
    answer = replay(addon_client, agent, action_named(card, "add_note"), {"note": "   "})
    assert notification(answer) == "Write the note first (at most 20,000 characters)."

    with db.unit_of_work() as s:
        for index in range(44):
            tickets.add_note(s, ticket_id=ticket.id, body=f"note {index}", actor=Actor.system())
    card = card_for(addon_client, agent)
    listed = section(card, "Internal notes (45)")["widgets"]
    assert [w["decoratedText"]["text"] for w in listed[:5]] == [
        f"note {i}" for i in (43, 42, 41, 40, 39)
    ]
    page = replay(addon_client, agent, action_named(card, "notes"))
    pushed = page["renderActions"]["action"]["navigations"][0]["pushCard"]
    assert len(pushed["sections"][0]["widgets"]) == 41
    more = action_named(pushed, "notes", offset="40")
    last = updated_card(replay(addon_client, agent, more))
    assert [w["decoratedText"]["text"] for w in last["sections"][0]["widgets"]] == [
        "note 3",
        "note 2",
        "note 1",
        "note 0",
        "Line 1<br>&lt;b&gt;x&lt;/b&gt;",
    ]


# -- a thread becomes a ticket ----------------------------------------------------------------


def test_create_ticket_from_a_thread(
    addon_client: AddonClient, agent: Caller, desk: Desk, db: Database
) -> None:
    """The "Not a ticket" card's form opens a ticket bound to the thread; a bad address creates
    nothing; a second try finds the ticket."""
    card = card_for(addon_client, agent)
    create = action_named(card, "create_ticket")
    answer = replay(
        addon_client, agent, create, {"customer_email": "not an address", "subject": "Hi"}
    )
    assert notification(answer).startswith("Not created: invalid e-mail address")
    with db.unit_of_work() as s:
        assert s.execute(select(func.count()).select_from(Ticket)).scalar_one() == 0

    form = {"customer_email": "Dave@Shop.test", "customer_name": "Dave Dent", "subject": "Refund"}
    answer = replay(addon_client, agent, create, form)
    with db.unit_of_work() as s:
        ticket = s.execute(select(Ticket)).scalar_one()
        thread = s.execute(select(TicketThread)).scalar_one()
        number, subject = ticket.number, ticket.subject
        assert (thread.ticket_id, thread.gmail_thread_id) == (ticket.id, THREAD)
    assert notification(answer) == f"Ticket #{number} created"
    assert subject == "Refund"
    assert updated_card(answer)["header"]["title"] == f"#{number} · New · Normal"
    assert card_for(addon_client, agent)["header"]["title"].startswith(f"#{number} ")
    answer = replay(addon_client, agent, create, form)
    assert notification(answer) == f"This conversation is already #{number}"


def test_create_ticket_asks_for_the_mailbox_when_there_are_several(
    addon_client: AddonClient, agent: Caller, desk: Desk, db: Database
) -> None:
    from app.mailboxes import service as mailboxes

    with db.unit_of_work() as s:
        second = mailboxes.create_mailbox(s, email="billing@shop.test", name="Billing").id
    card = card_for(addon_client, agent)
    dropdown = find_widget(card, "selectionInput", name="mailbox")
    assert [i["text"] for i in dropdown["items"]] == ["billing@shop.test", "support@shop.test"]
    create = action_named(card, "create_ticket")
    assert "mailbox_id" not in params(create)
    answer = replay(addon_client, agent, create, {"customer_email": "e@x.test", "subject": "S"})
    assert notification(answer) == "Choose the mailbox: nothing was created."
    replay(
        addon_client,
        agent,
        create,
        {"customer_email": "e@x.test", "subject": "S", "mailbox": str(second)},
    )
    with db.unit_of_work() as s:
        assert s.execute(select(Ticket.mailbox_id)).scalar_one() == second


# -- templates --------------------------------------------------------------------------------


def test_insert_renders_for_the_ticket_and_records_the_use(
    addon_client: AddonClient, lead: Caller, agent: Caller, desk: Desk, db: Database
) -> None:
    """Text templates insert as TEXT, HTML ones as MUTABLE_HTML, both filled in for the
    ticket's customer; each insertion is a recorded use (count and history)."""
    ticket = desk.ticket(thread=THREAD, subject="Parcel late")
    text_id = desk.template(lead.agent, name="Late", body="Hello {{ customer.first_name }}, sorry.")
    html_id = desk.template(
        lead.agent,
        name="Late HTML",
        body="<p>Hello <b>{{ customer.first_name }}</b></p>",
        is_html=True,
    )
    compose = the_card(post(addon_client, "/addon/compose", compose_event(thread_id=THREAD), agent))
    answer = replay(
        addon_client, agent, action_named(compose, "insert_template", template_id=str(text_id))
    )
    body = answer["renderActions"]["hostAppAction"]["gmailAction"]["updateDraftActionMarkup"]
    assert body == {
        "updateBody": {
            "insertContents": [{"content": "Hello Carol, sorry.", "contentType": "TEXT"}],
            "type": "IN_PLACE_INSERT",
        }
    }
    answer = replay(
        addon_client, agent, action_named(compose, "insert_template", template_id=str(html_id))
    )
    inserted = answer["renderActions"]["hostAppAction"]["gmailAction"]["updateDraftActionMarkup"]
    assert inserted["updateBody"]["insertContents"] == [
        {"content": "<p>Hello <b>Carol</b></p>", "contentType": "MUTABLE_HTML"}
    ]
    with db.unit_of_work() as s:
        uses = s.execute(
            select(TemplateUse.template_id, TemplateUse.ticket_id, TemplateUse.agent_id)
        ).all()
        assert sorted(uses) == sorted(
            [(text_id, ticket.id, agent.agent.id), (html_id, ticket.id, agent.agent.id)]
        )
        assert s.get(ReplyTemplate, text_id).usage_count == 1


def test_insert_without_a_ticket_and_of_an_invisible_template(
    addon_client: AddonClient, lead: Caller, agent: Caller, desk: Desk, db: Database
) -> None:
    """A new message: customer fields stay empty, no use is recorded. Someone else's personal
    template cannot be inserted (as if it did not exist)."""
    text_id = desk.template(lead.agent, name="Hi", body="Hi {{ customer.first_name }}!")
    compose = the_card(post(addon_client, "/addon/compose", compose_event(), agent))
    answer = replay(addon_client, agent, action_named(compose, "insert_template"), thread=None)
    content = answer["renderActions"]["hostAppAction"]["gmailAction"]["updateDraftActionMarkup"]
    assert content["updateBody"]["insertContents"][0]["content"] == "Hi !"
    with db.unit_of_work() as s:
        assert s.execute(select(func.count()).select_from(TemplateUse)).scalar_one() == 0
        personal, _ = create_template(
            s,
            data=TemplateCreate(name="Mine", body="secret", visibility=Visibility.PERSONAL),
            agent=lead.agent,
        )
        personal_id = personal.id
    insert = action_named(compose, "insert_template", template_id=str(text_id))
    answer = replay(addon_client, agent, insert, thread=None, template_id=str(personal_id))
    assert notification(answer) == f"Not inserted: template {personal_id} not found"


def test_template_search_and_paging(
    addon_client: AddonClient, lead: Caller, agent: Caller, desk: Desk
) -> None:
    """Search reads the box; "more…" pages the search it was built for, 20 at a time."""
    for index in range(25):
        desk.template(lead.agent, name=f"Answer {index:02d}", body=f"Text number {index}.")
    desk.template(lead.agent, name="Password reset", body="Use the reset link.")
    compose = the_card(post(addon_client, "/addon/compose", compose_event(), agent))
    listed = section(compose, "Templates (26)")["widgets"]
    assert len(listed) == 21
    answer = replay(
        addon_client, agent, action_named(compose, "search_templates"), {"q": "RESET"}, thread=None
    )
    results = section(updated_card(answer), "Results for “RESET” (1)")["widgets"]
    assert [w["decoratedText"]["text"] for w in results] == ["Password reset"]
    answer = replay(
        addon_client, agent, action_named(compose, "search_templates"), {"q": "answer"}, thread=None
    )
    first = updated_card(answer)
    more = action_named(first, "search_templates", offset="20")
    assert params(more)["q"] == "answer"
    # The box was edited meanwhile: "more…" still pages "answer".
    second = updated_card(replay(addon_client, agent, more, {"q": "zzz"}, thread=None))
    assert [w["decoratedText"]["text"] for w in section(second, "Results")["widgets"]] == [
        "Answer 20",
        "Answer 21",
        "Answer 22",
        "Answer 23",
        "Answer 24",
    ]


# -- navigation -------------------------------------------------------------------------------


def test_queue_pages_and_ticket_without_thread_opens_in_the_sidebar(
    addon_client: AddonClient, agent: Caller, desk: Desk
) -> None:
    """A homepage "more…" pushes the whole queue 40 rows at a time; a ticket without a Gmail
    thread opens its card in the sidebar; "Queues" pushes the homepage; refresh reloads."""
    for index in range(44):
        desk.ticket(thread=f"18c5b1b2c3d5{index:04x}", subject=f"Q{index}")
    loose = desk.ticket(thread=None, subject="Phoned in")
    home = the_card(post(addon_client, "/addon/homepage", homepage_event(), agent))
    more = action_named(home, "queue", queue="unassigned")
    page = replay(addon_client, agent, more, thread=None)
    pushed = page["renderActions"]["action"]["navigations"][0]["pushCard"]
    assert pushed["header"] == {"title": "Unassigned", "subtitle": "1–40 of 45"}
    page2 = updated_card(
        replay(addon_client, agent, action_named(pushed, "queue", offset="40"), thread=None)
    )
    assert page2["header"]["subtitle"] == "41–45 of 45"
    rows = [w["decoratedText"] for w in page2["sections"][0]["widgets"]]
    opener = next(r for r in rows if r["text"] == "Phoned in")["onClick"]["action"]
    opened = replay(addon_client, agent, opener, thread=None)
    card = opened["renderActions"]["action"]["navigations"][0]["pushCard"]
    assert card["header"]["title"] == f"#{loose.number} · New · Normal"
    assert "thread_id" not in params(action_named(card, "add_note"))
    back = replay(addon_client, agent, action_named(card, "open_home"), thread=None)
    assert (
        back["renderActions"]["action"]["navigations"][0]["pushCard"]["header"]["title"]
        == "Inboxdesk"
    )
    refreshed = updated_card(
        replay(addon_client, agent, action_named(card, "refresh"), thread=None)
    )
    assert refreshed["header"]["title"] == card["header"]["title"]
    answer = replay(addon_client, agent, more, thread=None, queue="team:abc")
    assert notification(answer) == "Unknown queue 'team:abc'."
