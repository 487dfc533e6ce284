"""The sidebar's cards, through the real endpoints with verified Google tokens: every card each
trigger can answer (homepage for agents and leads, empty and full; the ticket card in every
status; a thread without a ticket; a caller who is not an agent; compose with and without a
ticket) parses as google.apps.card.v1.Card with unknown fields rejected, and says what it must.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.protobuf.json_format import ParseError
from sqlalchemy import update

from app.addon import cards, views
from app.addon.models import AddonPresence
from app.agents.models import Agent, Role, Team
from app.customers.models import Customer
from app.db.session import Database
from app.mailboxes.models import Mailbox
from app.messages.models import Direction, Message
from app.sla import service as sla
from app.sla.calendar import business_minutes_between
from app.sla.schemas import CalendarCreate
from app.tickets.models import Priority, Status, Ticket
from app.tickets.status import ALLOWED_TRANSITIONS
from tests.addon_cards_support import (
    Desk,
    action_named,
    actions_of,
    assert_valid_card,
    find_widget,
    params,
    section,
    text_of,
    the_card,
    widgets,
)
from tests.addon_fixtures import (  # noqa: F401
    AddonClient,
    addon_client_fixture,
    certs_server_fixture,
    compose_event,
    contextual_event,
    google_keys_fixture,
    homepage_event,
)
from tests.conftest import Caller, MakeCaller

THREAD = "18c4a1b2c3d4e5f6"
OTHER_THREAD = "18c4a1b2c3d4e5f7"


@pytest.fixture
def desk(db: Database, mailbox: Mailbox) -> Desk:
    return Desk(db, mailbox)


def post(client: AddonClient, path: str, event: dict[str, Any], who: Caller) -> dict[str, Any]:
    response = client.post(path, event, agent_email=who.agent.email)
    assert response.status_code == 200, response.text
    return response.json()


def home(client: AddonClient, who: Caller) -> dict[str, Any]:
    answer = post(client, "/addon/homepage", homepage_event(), who)
    assert set(answer) == {"action"}
    assert "pushCard" in answer["action"]["navigations"][0]
    return the_card(answer)


def contextual(client: AddonClient, who: Caller, thread: str = THREAD) -> dict[str, Any]:
    return the_card(post(client, "/addon/contextual", contextual_event(thread_id=thread), who))


# -- homepage ---------------------------------------------------------------------------------


def test_homepage_of_an_agent_with_nothing_to_do(addon_client: AddonClient, agent: Caller) -> None:
    """Each queue says it is empty; an agent gets no team queues or workload."""
    card = home(addon_client, agent)
    assert card["header"]["title"] == "Inboxdesk"
    headers = [s.get("header") for s in card["sections"]]
    assert headers == [
        "My open tickets (0)",
        "Unassigned (0)",
        "SLA breached (0)",
        "SLA at risk (0)",
    ]
    assert "No open tickets assigned to you." in text_of(card)
    assert action_named(card["fixedFooter"], "refresh", view="home")


def test_homepage_rows_show_the_ticket_and_open_its_gmail_thread(
    addon_client: AddonClient, agent: Caller, desk: Desk
) -> None:
    """Mine by SLA due: number, status, priority, subject, customer and due; a click opens
    https://mail.google.com/mail/u/0/#all/<thread>."""
    later = desk.ticket(
        thread=THREAD,
        subject="Later one",
        assignee=agent.agent,
        status=Status.OPEN,
        priority=Priority.LOW,
    )
    sooner = desk.ticket(
        thread=OTHER_THREAD,
        subject="Urgent <one> & co",
        assignee=agent.agent,
        status=Status.OPEN,
        priority=Priority.URGENT,
        name="Zoë <Z>",
    )
    card = home(addon_client, agent)
    mine = section(card, "My open tickets")
    assert mine["header"] == "My open tickets (2)"
    first, second = (w["decoratedText"] for w in mine["widgets"])
    # The urgent ticket's first response is due first, so it leads though it is newer.
    assert first["topLabel"] == f"#{sooner.number} · Open · Urgent"
    assert first["text"] == "Urgent &lt;one&gt; &amp; co"
    assert first["bottomLabel"].startswith("Zoë ‹Z› · first response due in ")
    assert first["onClick"] == {
        "openLink": {"url": f"https://mail.google.com/mail/u/0/#all/{OTHER_THREAD}"}
    }
    assert second["topLabel"] == f"#{later.number} · Open · Low"


def test_long_queues_end_in_more_and_sla_queues_show_breached_and_at_risk(
    addon_client: AddonClient, agent: Caller, make_caller: MakeCaller, desk: Desk
) -> None:
    """Unassigned shows 5 rows and "more…" (the whole queue); a ticket past its due time is
    listed as breached in red, one past its at-risk time as at risk; an agent's SLA queues hold
    theirs and unassigned ones only, a lead's everything."""
    for index in range(7):
        desk.ticket(thread=f"18c4a1b2c3d4f{index:03x}", subject=f"Waiting {index}")
    other = make_caller(Role.AGENT, name="Olga Other")
    now = datetime.now(UTC)
    mine = desk.ticket(thread=THREAD, assignee=agent.agent, subject="Mine late")
    desk.set_due(
        mine.id,
        first_response_due_at=now - timedelta(minutes=30),
        first_response_at_risk_at=now - timedelta(hours=2),
    )
    risky = desk.ticket(thread=OTHER_THREAD, assignee=agent.agent, subject="Mine risky")
    desk.set_due(risky.id, first_response_at_risk_at=now - timedelta(minutes=5))
    theirs = desk.ticket(thread="18c4a1b2c3d4e000", assignee=other.agent, subject="Theirs late")
    desk.set_due(
        theirs.id,
        first_response_due_at=now - timedelta(minutes=30),
        first_response_at_risk_at=now - timedelta(hours=2),
    )

    card = home(addon_client, agent)
    unassigned = section(card, "Unassigned")
    assert unassigned["header"] == "Unassigned (7)"
    assert len(unassigned["widgets"]) == 6
    more = unassigned["widgets"][-1]["buttonList"]["buttons"][0]
    assert more["text"] == "more…"
    assert params(more["onClick"]["action"]) == {"queue": "unassigned", "offset": "0"}
    breached = section(card, "SLA breached")
    assert breached["header"] == "SLA breached (1)"
    assert (
        breached["widgets"][0]["decoratedText"]["text"] == '<font color="#d93025">Mine late</font>'
    )
    assert "overdue by 30m" in breached["widgets"][0]["decoratedText"]["bottomLabel"]
    at_risk = section(card, "SLA at risk")
    assert at_risk["header"] == "SLA at risk (1)"
    assert "Mine risky" in at_risk["widgets"][0]["decoratedText"]["text"]

    lead = make_caller(Role.LEAD, name="Lee Lead")
    assert section(home(addon_client, lead), "SLA breached")["header"] == "SLA breached (2)"


def test_homepage_of_a_lead_has_team_queues_and_workload(
    addon_client: AddonClient, lead: Caller, agent: Caller, desk: Desk, db: Database
) -> None:
    """Leads see each team's open tickets and how many running tickets each agent holds."""
    with db.unit_of_work() as s:
        team = Team(name="Billing")
        s.add(team)
        s.flush()
        team_id = team.id
    ticket = desk.ticket(thread=THREAD, assignee=agent.agent, status=Status.OPEN)
    with db.unit_of_work() as s:
        s.execute(update(Ticket).where(Ticket.id == ticket.id).values(team_id=team_id))
    card = home(addon_client, lead)
    billing = section(card, "Team Billing")
    assert billing["header"] == "Team Billing (1)"
    assert billing["widgets"][0]["decoratedText"]["topLabel"].startswith(f"#{ticket.number}")
    workload = section(card, "Workload")["widgets"][0]["textParagraph"]["text"]
    assert "Alex Agent: <b>1</b> open" in workload
    assert "Lee Lead: <b>0</b> open" in workload
    assert [s.get("header") for s in home(addon_client, agent)["sections"]][-1] == "SLA at risk (0)"


# -- the ticket card --------------------------------------------------------------------------

_BUTTON = {
    Status.OPEN: "Open",
    Status.PENDING: "Pending",
    Status.RESOLVED: "Resolve",
    Status.CLOSED: "Close",
}


@pytest.mark.parametrize("status", list(Status))
def test_ticket_card_in_every_status(
    addon_client: AddonClient, agent: Caller, desk: Desk, status: Status
) -> None:
    """Header "#N · Status · Priority"; the status buttons are exactly the machine's moves
    (none for a closed ticket); every action carries ticket id, shown version and thread."""
    ticket = desk.ticket(
        thread=THREAD, status=None if status == Status.NEW else status, priority=Priority.HIGH
    )
    card = contextual(addon_client, agent)
    assert card["header"]["title"] == f"#{ticket.number} · {status.value.title()} · High"
    assert card["header"]["subtitle"] == "Where is my order?"
    status_widgets = section(card, "Status")["widgets"]
    allowed = ALLOWED_TRANSITIONS[status]
    if allowed:
        buttons = status_widgets[0]["buttonList"]["buttons"]
        labels = [b["text"] for b in buttons]
        expected = [_BUTTON[s] for s in allowed]
        if status in (Status.PENDING, Status.RESOLVED):
            expected = ["Reopen" if label == "Open" else label for label in expected]
        assert labels == expected
        assert [params(b["onClick"]["action"])["status"] for b in buttons] == [
            s.value for s in allowed
        ]
    else:
        assert "Closed tickets are final" in status_widgets[0]["textParagraph"]["text"]
    for action in _ticket_actions(card):
        assert params(action)["ticket_id"] == str(ticket.id)
        assert params(action)["version"] == str(ticket.version)
        assert params(action)["thread_id"] == THREAD


def _ticket_actions(card: dict[str, Any]) -> list[dict[str, Any]]:
    names = ("assign", "set_status", "set_priority", "set_tags", "add_note")
    return [a for a in actions_of(card) if a["function"].rsplit("/", 1)[-1] in names]


def test_ticket_card_found_by_gmail_permanent_thread_id(
    addon_client: AddonClient, agent: Caller, desk: Desk
) -> None:
    """Gmail may name the thread "thread-f:<decimal>": the same thread as the API's hex id."""
    ticket = desk.ticket(thread=THREAD)
    card = contextual(addon_client, agent, thread=f"thread-f:{int(THREAD, 16)}")
    assert card["header"]["title"].startswith(f"#{ticket.number} ")
    assert params(action_named(card, "add_note"))["thread_id"] == THREAD


def test_assignee_dropdown_offers_leads_everyone_and_agents_themselves(
    addon_client: AddonClient,
    lead: Caller,
    agent: Caller,
    make_caller: MakeCaller,
    desk: Desk,
    db: Database,
) -> None:
    """Leads: every active agent (a deactivated one is not offered). Agents: Unassigned and
    Me while the ticket is free or theirs; someone else's ticket shows its assignee, read-only."""
    gone = make_caller(Role.AGENT, name="Gone Agent")
    with db.unit_of_work() as s:
        s.get(Agent, gone.agent.id).is_active = False
    desk.ticket(thread=THREAD)
    dropdown = find_widget(contextual(addon_client, lead), "selectionInput", name="assignee")
    assert dropdown["type"] == "DROPDOWN"
    assert [i["text"] for i in dropdown["items"]] == ["Unassigned", "Alex Agent", "Me"]
    assert dropdown["items"][0]["value"] == cards.NOBODY
    assert dropdown["items"][0]["selected"] is True

    dropdown = find_widget(contextual(addon_client, agent), "selectionInput", name="assignee")
    assert [(i["text"], i["value"]) for i in dropdown["items"]] == [
        ("Unassigned", "none"),
        ("Me", str(agent.agent.id)),
    ]

    other = make_caller(Role.AGENT, name="Olga Other")
    desk.ticket(thread=OTHER_THREAD, assignee=other.agent)
    card = contextual(addon_client, agent, thread=OTHER_THREAD)
    line = find_widget(card, "decoratedText", topLabel="Assignee")
    assert line["text"] == "Olga Other"
    with pytest.raises(AssertionError):
        find_widget(card, "selectionInput", name="assignee")


def test_ticket_card_customer_block_and_earlier_tickets(
    addon_client: AddonClient, agent: Caller, desk: Desk, db: Database
) -> None:
    """Name, e-mail and segment; the customer's other tickets with links, "more…" past five."""
    for index in range(6):
        desk.ticket(
            thread=f"18c4a1b2c3d4a{index:03x}",
            subject=f"Old question {index}",
            status=Status.CLOSED,
        )
    desk.ticket(thread=THREAD)
    with db.unit_of_work() as s:
        s.execute(update(Customer).values(segment="vip"))
    card = contextual(addon_client, agent)
    block = section(card, "Customer")["widgets"]
    assert block[0]["decoratedText"]["text"] == "Carol Customer"
    assert block[0]["decoratedText"]["bottomLabel"] == "carol@customer.test · vip"
    earlier = [w["decoratedText"] for w in block[2:] if "decoratedText" in w]
    assert [e["text"] for e in earlier] == [f"Old question {i}" for i in (5, 4, 3, 2, 1)]
    assert earlier[0]["onClick"]["openLink"]["url"].endswith("#all/18c4a1b2c3d4a005")
    more = block[-1]["buttonList"]["buttons"][0]
    assert params(more["onClick"]["action"])["queue"].startswith("customer:")


def test_thread_without_ticket_offers_create_ticket_prefilled(
    addon_client: AddonClient, agent: Caller, desk: Desk, db: Database
) -> None:
    """The form is filled from the open message when the sync stored it."""
    with db.unit_of_work() as s:
        s.add(
            Message(
                mailbox_id=desk.mailbox.id,
                ticket_id=None,
                gmail_message_id="18c4aa0000000001",
                gmail_thread_id=THREAD,
                direction=Direction.INBOUND,
                from_address="dave@shop.test",
                from_name="Dave Dent",
                subject="Refund",
            )
        )
    answer = post(
        addon_client,
        "/addon/contextual",
        contextual_event(thread_id=THREAD, message_id="18c4aa0000000001"),
        agent,
    )
    card = the_card(answer)
    assert card["header"]["title"] == "Not a ticket"
    assert find_widget(card, "textInput", name="customer_email")["value"] == "dave@shop.test"
    assert find_widget(card, "textInput", name="customer_name")["value"] == "Dave Dent"
    assert find_widget(card, "textInput", name="subject")["value"] == "Refund"
    create = action_named(card, "create_ticket")
    assert params(create) == {
        "thread_id": THREAD,
        "message_id": "18c4aa0000000001",
        "mailbox_id": str(desk.mailbox.id),
    }


def test_not_an_agent_is_told_to_ask_an_admin(
    addon_client: AddonClient, agent: Caller, desk: Desk, db: Database
) -> None:
    """A verified Google user who is no agent, or a deactivated one, gets the "ask an admin"
    card from every trigger."""
    desk.ticket(thread=THREAD)
    for path, event in (
        ("/addon/homepage", homepage_event()),
        ("/addon/contextual", contextual_event(thread_id=THREAD)),
        ("/addon/compose", compose_event(thread_id=THREAD)),
    ):
        response = addon_client.post(path, event, agent_email="stranger@elsewhere.test")
        assert response.status_code == 200
        card = the_card(response.json())
        assert card["header"]["subtitle"] == "Not an agent"
        assert "<b>stranger@elsewhere.test</b> is not an Inboxdesk agent" in text_of(card)
    with db.unit_of_work() as s:
        s.get(Agent, agent.agent.id).is_active = False
    card = contextual(addon_client, agent)
    assert card["header"]["subtitle"] == "Not an agent"


def test_also_here_names_others_viewing_or_drafting_in_the_last_five_minutes(
    addon_client: AddonClient, agent: Caller, make_caller: MakeCaller, desk: Desk, db: Database
) -> None:
    """Opening the ticket counts as viewing, composing a reply as drafting; older than five
    minutes is forgotten; one's own presence is never listed."""
    desk.ticket(thread=THREAD)
    anna = make_caller(Role.AGENT, name="Anna Able")
    boris = make_caller(Role.AGENT, name="Boris Busy")
    assert "Also here" not in text_of(contextual(addon_client, agent))
    contextual(addon_client, anna)
    post(addon_client, "/addon/compose", compose_event(thread_id=THREAD), boris)
    line = widgets(contextual(addon_client, agent))[0]["textParagraph"]["text"]
    assert line == (
        '<font color="#b06000"><b>Also here:</b> Boris Busy (drafting a reply), '
        "Anna Able (viewing)</font>"
    )
    with db.unit_of_work() as s:
        s.execute(
            update(AddonPresence)
            .where(AddonPresence.agent_id == boris.agent.id)
            .values(seen_at=datetime.now(UTC) - timedelta(minutes=6))
        )
    line = widgets(contextual(addon_client, agent))[0]["textParagraph"]["text"]
    assert "Boris" not in line
    assert "Anna Able (viewing)" in line


def test_sla_countdown_counts_business_time(
    addon_client: AddonClient, agent: Caller, desk: Desk, db: Database
) -> None:
    """With a Mon–Fri 9–17 calendar, three calendar days ahead are far fewer business hours:
    the card counts the business minutes, not the wall clock."""
    with db.unit_of_work() as s:
        hours = {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}
        calendar = sla.create_calendar(
            s, data=CalendarCreate(name="Office", timezone="UTC", weekly_hours=hours)
        )
        s.get(Mailbox, desk.mailbox.id).business_calendar_id = calendar.id
        calendar_id = calendar.id
    ticket = desk.ticket(thread=THREAD)
    due = datetime.now(UTC) + timedelta(days=3)
    desk.set_due(ticket.id, first_response_due_at=due, first_response_at_risk_at=due)
    with db.unit_of_work() as s:
        office = sla.calendar_by_id(s, calendar_id)
    expected = business_minutes_between(office, datetime.now(UTC), due)
    card = contextual(addon_client, agent)
    line = find_widget(card, "decoratedText", topLabel="SLA first response")["text"]
    shown = line.removeprefix("<b>").split(" left")[0]
    assert shown in {cards.duration(expected), cards.duration(expected - 1)}
    assert expected < 3 * 24 * 60 - 60
    assert line.endswith("(business time)")


def test_latest_customer_mail_is_reduced_to_the_card_html_subset(
    addon_client: AddonClient, agent: Caller, desk: Desk, db: Database
) -> None:
    """A hostile message shows as text: no script, image, event handler or javascript: link
    survives; bold, links to https and font colours do."""
    ticket = desk.ticket(thread=THREAD)
    hostile = (
        "<script>alert(1)</script>Hi <b>there</b><img src=x onerror=alert(2)>"
        '<a href="javascript:alert(3)">click</a> <a href="https://shop.test/o/1" '
        'onclick="steal()">order</a> <font color="red" onmouseover="x()">red</font>'
        '<font color="red;background:url(//evil)">odd</font>'
        "<iframe src=//evil.test></iframe><style>*{display:none}</style>\nline two"
    )
    with db.unit_of_work() as s:
        s.add(
            Message(
                mailbox_id=desk.mailbox.id,
                ticket_id=ticket.id,
                gmail_message_id="18c4aa0000000002",
                gmail_thread_id=THREAD,
                direction=Direction.INBOUND,
                from_address="carol@customer.test",
                text_body=hostile,
                date=datetime.now(UTC),
            )
        )
    card = contextual(addon_client, agent)
    shown = section(card, "Latest message")["widgets"][0]["textParagraph"]["text"]
    assert shown == (
        'Hi <b>there</b><a>click</a> <a href="https://shop.test/o/1">order</a> '
        '<font color="red">red</font><font>odd</font><br>line two'
    )


def test_mail_html_keeps_only_the_subset() -> None:
    """The sanitizer alone: tags outside b/i/u/s/font/a/br go (their text stays), block ends
    become line breaks, entities stay escaped, and long mail is cut without a broken tag."""
    assert cards.mail_html("<p>one</p><div>two &lt;3</div><u>u</u><s>s</s><i>i</i>") == (
        "one<br>two &lt;3<br><u>u</u><s>s</s><i>i</i>"
    )
    assert cards.mail_html("a < b > c") == "a &lt; b &gt; c"
    cut = cards.mail_html("<b>" + "x" * 50 + "</b>", limit=20)
    assert cut.startswith("<b>")
    assert cut.endswith("…</b>")


# -- compose ----------------------------------------------------------------------------------


def test_compose_for_a_reply_suggests_the_tickets_templates_first(
    addon_client: AddonClient, lead: Caller, agent: Caller, desk: Desk
) -> None:
    """Suggestions for the reply's ticket, then every visible template with Insert buttons
    that carry the template and the ticket."""
    ticket = desk.ticket(thread=THREAD, subject="My parcel is late, where is the delivery?")
    delivery = desk.template(
        lead.agent,
        name="Delivery delay",
        body="Hello {{ customer.first_name }}, your delivery is late.",
    )
    desk.template(lead.agent, name="Password reset", body="Click the reset link.")
    answer = post(addon_client, "/addon/compose", compose_event(thread_id=THREAD), agent)
    card = the_card(answer)
    assert card["header"] == {
        "title": "Reply templates",
        "subtitle": f"#{ticket.number} · My parcel is late, where is the delivery?",
    }
    suggested = section(card, "Suggested for")["widgets"]
    assert suggested[0]["decoratedText"]["text"] == "Delivery delay"
    insert = suggested[0]["decoratedText"]["button"]["onClick"]["action"]
    assert params(insert) == {
        "template_id": str(delivery),
        "ticket_id": str(ticket.id),
        "thread_id": THREAD,
    }
    listed = section(card, "Templates (2)")["widgets"]
    assert {w["decoratedText"]["text"] for w in listed} == {"Delivery delay", "Password reset"}
    # The excerpt is what the customer will read, not the template's source.
    excerpts = {w["decoratedText"]["text"]: w["decoratedText"]["bottomLabel"] for w in listed}
    assert excerpts["Delivery delay"] == "Hello , your delivery is late."
    assert find_widget(card, "textInput", name="q")["label"] == "Search templates"


def test_compose_without_a_ticket_lists_templates_only(
    addon_client: AddonClient, lead: Caller, agent: Caller, desk: Desk
) -> None:
    """A new message (no thread) or a thread that is no ticket: no suggestions, Insert carries
    no ticket."""
    desk.template(lead.agent, name="Hello", body="Hello there.")
    for event in (compose_event(), compose_event(thread_id=OTHER_THREAD)):
        card = the_card(post(addon_client, "/addon/compose", event, agent))
        assert card["header"]["subtitle"] == "No ticket: customer fields stay empty"
        assert [s.get("header") for s in card["sections"]][1:] == ["Templates (1)"]
        assert "ticket_id" not in params(action_named(card, "insert_template"))


# -- the 100-widget limit ---------------------------------------------------------------------


def _rows(count: int) -> list[views.TicketRow]:
    return [
        views.TicketRow(
            id=i + 1,
            number=1001 + i,
            subject=f"Subject {i}",
            customer="c@x.test",
            status=Status.OPEN,
            priority=Priority.NORMAL,
            sla="ok",
            due=None,
            thread_id=f"{i + 1:016x}",
        )
        for i in range(count)
    ]


def test_a_list_longer_than_the_card_pages_on_with_more() -> None:
    """150 rows on a queue card: 99 rows and a "more…" that continues at row 100 — exactly
    Google's 100 widgets, nothing silently dropped."""
    queue = views.Queue("unassigned", "Unassigned", _rows(150), 150)
    card = cards.queue_card(queue, "https://desk.example.test", offset=0)
    assert_valid_card(card)
    listed = card["sections"][0]["widgets"]
    assert len(listed) == 100
    assert listed[98]["decoratedText"]["topLabel"].startswith("#1099 ")
    more = listed[99]["buttonList"]["buttons"][0]
    assert more["text"] == "more…"
    assert params(more["onClick"]["action"]) == {"queue": "unassigned", "offset": "99"}
    assert card["header"]["subtitle"] == "1–99 of 150"


def test_limit_widgets_cuts_any_card_to_one_hundred() -> None:
    """The guard under every builder: 3 sections of 60 widgets become 99 widgets and a notice,
    whole sections after the cut dropped (as Google would drop them, but visibly)."""
    card = {"sections": [{"header": f"S{n}", "widgets": [{"divider": {}}] * 60} for n in range(3)]}
    cut = cards.limit_widgets(card)
    assert_valid_card(cut)
    assert [len(s["widgets"]) for s in cut["sections"]] == [60, 40]
    assert cut["sections"][-1]["widgets"][-1]["textParagraph"]["text"].startswith("<i>more…")
    assert cards.limit_widgets({"sections": [{"widgets": [{"divider": {}}]}]})["sections"][0][
        "widgets"
    ] == [{"divider": {}}]


def test_every_builder_answers_valid_cards_for_odd_input() -> None:
    """Builders alone, with text that needs escaping and empty lists: valid cards."""
    base = "https://desk.example.test"
    assert_valid_card(cards.not_agent_card("x<y>@z.test"))
    assert_valid_card(cards.error_card("broken <b>"))
    assert_valid_card(cards.not_ticket_card(views.ThreadView(None, None, [], "", "", ""), base))
    assert_valid_card(
        cards.homepage_card(views.HomeView("A & B", True, [], [views.Load("Z<", 3)], "UTC"), base)
    )
    teams = [views.Queue(f"team:{n}", f"Team {n}", _rows(3), 9) for n in range(12)]
    card = cards.homepage_card(views.HomeView("Lee", True, teams, [], "UTC"), base)
    assert_valid_card(card)
    assert section(card, "More teams")["widgets"][0]["buttonList"]["buttons"][0]["text"] == (
        "Team 6 (9)"
    )


def test_the_card_check_has_teeth() -> None:
    """assert_valid_card refuses a misspelt field, a wrong enum and a card over 100 widgets."""
    with pytest.raises(ParseError):
        assert_valid_card({"header": {"titel": "x"}})
    with pytest.raises(ParseError):
        assert_valid_card({"sections": [{"widgets": [{"selectionInput": {"type": "COMBO"}}]}]})
    with pytest.raises(AssertionError):
        assert_valid_card({"sections": [{"widgets": [{"divider": {}}] * 101}]})


def test_long_queues_are_counted_up_to_a_cap(
    addon_client: AddonClient, agent: Caller, desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counting stops at the cap (999 in production, 3 here): the header says "3+" and the
    list still offers "more…"."""
    monkeypatch.setattr(views, "COUNT_CAP", 3)
    for index in range(5):
        desk.ticket(thread=f"18c4a1b2c3d4c{index:03x}", subject=f"Waiting {index}")
    unassigned = section(home(addon_client, agent), "Unassigned")
    assert unassigned["header"] == "Unassigned (3+)"
    assert unassigned["widgets"][-1]["buttonList"]["buttons"][0]["text"] == "more…"
