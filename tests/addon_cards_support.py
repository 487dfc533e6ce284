"""Shared checks and set-ups of the add-on card and action tests.

``assert_valid_card`` holds a card to ``google.apps.card.v1.Card`` (package google-apps-card:
``ParseDict`` with unknown fields rejected) and to Google's 100-widget limit;
``assert_valid_answer`` does it for every card of a render action and checks the envelope's keys
(the shapes cited in app/addon/cards.py), so a misspelt key fails as loudly as a bad card.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from google.apps.card_v1.types import Card
from google.protobuf.json_format import ParseDict
from sqlalchemy import update

from app.addon.cards import MAX_WIDGETS, count_widgets
from app.agents.models import Agent
from app.db.session import Database
from app.mailboxes.models import Mailbox
from app.tickets import service as tickets
from app.tickets.events import Actor
from app.tickets.models import Priority, Status, Ticket
from app.tickets.schemas import TicketUpdate
from templates_replies import service as templates
from templates_replies.schemas import TemplateCreate

CardJson = dict[str, Any]


def assert_valid_card(card: Mapping[str, Any]) -> None:
    """``card`` parses as google.apps.card.v1.Card (no unknown field anywhere) and has at most
    100 widgets."""
    ParseDict(dict(card), Card.pb()(), ignore_unknown_fields=False)
    assert count_widgets(card) <= MAX_WIDGETS


def _only(mapping: Mapping[str, Any], allowed: set[str], where: str) -> None:
    extra = set(mapping) - allowed
    assert not extra, f"unexpected keys {extra} in {where}"


def _action_cards(action: Mapping[str, Any]) -> Iterator[CardJson]:
    _only(action, {"navigations", "notification", "link"}, "action")
    if "notification" in action:
        _only(action["notification"], {"text"}, "notification")
        assert action["notification"]["text"]
    for navigation in action.get("navigations", []):
        _only(navigation, {"pushCard", "updateCard"}, "navigation")
        assert len(navigation) == 1
        yield from navigation.values()


def answer_cards(answer: Mapping[str, Any]) -> list[CardJson]:
    """Every card of a render action, its envelope checked on the way."""
    _only(answer, {"action", "renderActions"}, "answer")
    assert len(answer) == 1
    if "action" in answer:
        return list(_action_cards(answer["action"]))
    render = answer["renderActions"]
    _only(render, {"action", "hostAppAction"}, "renderActions")
    if "hostAppAction" in render:
        body = render["hostAppAction"]["gmailAction"]["updateDraftActionMarkup"]["updateBody"]
        assert body["type"] == "IN_PLACE_INSERT"
        for content in body["insertContents"]:
            _only(content, {"content", "contentType"}, "insertContents")
            assert content["contentType"] in ("TEXT", "MUTABLE_HTML")
    return list(_action_cards(render.get("action", {})))


def assert_valid_answer(answer: Mapping[str, Any]) -> list[CardJson]:
    found = answer_cards(answer)
    for card in found:
        assert_valid_card(card)
    return found


def the_card(answer: Mapping[str, Any]) -> CardJson:
    found = assert_valid_answer(answer)
    assert len(found) == 1, found
    return found[0]


def notification(answer: Mapping[str, Any]) -> str | None:
    action = answer.get("action") or answer.get("renderActions", {}).get("action", {})
    note = action.get("notification")
    return note["text"] if note else None


def widgets(card: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [w for section in card.get("sections", []) for w in section.get("widgets", [])]


def section(card: Mapping[str, Any], header_start: str) -> dict[str, Any]:
    for candidate in card.get("sections", []):
        if candidate.get("header", "").startswith(header_start):
            return candidate
    raise AssertionError(
        f"no section {header_start!r} in {[s.get('header') for s in card['sections']]}"
    )


def find_widget(card: Mapping[str, Any], kind: str, **match: Any) -> dict[str, Any]:
    for widget in widgets(card):
        body = widget.get(kind)
        if body is not None and all(body.get(k) == v for k, v in match.items()):
            return body
    raise AssertionError(f"no {kind} {match} in the card")


def actions_of(card: Any) -> list[dict[str, Any]]:
    """Every action object anywhere in the card (onClick, onChangeAction, buttons, footer)."""
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("action", "onChangeAction") and isinstance(value, dict):
                    found.append(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(card)
    return found


def params(action: Mapping[str, Any]) -> dict[str, str]:
    return {p["key"]: p["value"] for p in action.get("parameters", [])}


def action_named(card: Any, name: str, **match: str) -> dict[str, Any]:
    for candidate in actions_of(card):
        if candidate["function"].endswith(f"/addon/action/{name}") and all(
            params(candidate).get(k) == v for k, v in match.items()
        ):
            return candidate
    raise AssertionError(f"no action {name} {match} in the card")


def text_of(card: Any) -> str:
    """All the card's strings, for "does it say …" checks."""
    parts: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, str):
            parts.append(node)

    walk(card)
    return "\n".join(parts)


@dataclass
class Desk:
    """Tickets and templates made through the services, committed in the test's database."""

    db: Database
    mailbox: Mailbox

    def ticket(
        self,
        *,
        thread: str | None,
        customer: str = "carol@customer.test",
        name: str | None = "Carol Customer",
        subject: str = "Where is my order?",
        status: Status | None = None,
        priority: Priority = Priority.NORMAL,
        assignee: Agent | None = None,
        tags: list[str] | None = None,
    ) -> Ticket:
        with self.db.unit_of_work() as s:
            ticket = tickets.create_ticket(
                s,
                mailbox=s.get(Mailbox, self.mailbox.id),
                subject=subject,
                actor=Actor.system(),
                customer_email=customer,
                customer_name=name,
                priority=priority,
                gmail_thread_id=thread,
                tags=tags,
            )
            if assignee is not None:
                ticket = tickets.update_ticket(
                    s,
                    ticket_id=ticket.id,
                    update=TicketUpdate(version=ticket.version, assignee=assignee.email),
                    actor=Actor.system(),
                )
            if status is not None and status != ticket.status:
                path = {
                    Status.OPEN: [Status.OPEN],
                    Status.PENDING: [Status.PENDING],
                    Status.RESOLVED: [Status.RESOLVED],
                    Status.CLOSED: [Status.CLOSED],
                }[status]
                for step in path:
                    ticket = tickets.update_ticket(
                        s,
                        ticket_id=ticket.id,
                        update=TicketUpdate(version=ticket.version, status=step),
                        actor=Actor.system(),
                    )
            return tickets.get_ticket(s, ticket.id)

    def fresh(self, ticket_id: int) -> Ticket:
        with self.db.unit_of_work() as s:
            return tickets.get_ticket(s, ticket_id)

    def template(
        self, author: Agent, *, name: str, body: str, is_html: bool = False, language: str = "en"
    ) -> int:
        with self.db.unit_of_work() as s:
            template, _ = templates.create_template(
                s,
                data=TemplateCreate(name=name, body=body, is_html=is_html, language=language),
                agent=s.get(Agent, author.id),
            )
            return template.id

    def set_due(self, ticket_id: int, **values: Any) -> None:
        """Move SLA instants (e.g. into the past: a breached ticket)."""
        with self.db.unit_of_work() as s:
            s.execute(update(Ticket).where(Ticket.id == ticket_id).values(**values))
