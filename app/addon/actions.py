"""What the sidebar does: the three triggers (homepage, contextual, compose) and the card
actions, each a function of the verified caller that answers a render action (cards.py).

**Safety of actions.** A card's action comes back with the parameters the card was built with
(``ticket_id``, the ``version`` it showed, the ``thread_id`` it was built for) and the form's
values. None of them is trusted:

* ids must be integers in range, else a notification and nothing changes;
* the ticket must exist, and when the card was built for a Gmail thread, that thread must be one
  of the ticket's (a ticket id that does not match its thread is refused, nothing changes);
* rights are the ticket service's (app/tickets/service.py update_ticket: agents take unassigned
  tickets or give back their own, leads assign anyone; the status machine); every agent sees
  every ticket (no mailbox membership yet, views.py);
* a change made to a version other than the one shown is refused with the fresh card and
  "changed by <the last actor> — reloaded" (the service's optimistic lock does the comparing).

A refused change is rolled back to a savepoint taken before it: the ticket service may have
changed the ticket object before it refused (a status, then a forbidden assignee), and nothing
of that may reach the request's commit.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.addon import cards, presence, views
from app.addon.models import PresenceKind
from app.agents.models import Agent
from app.db.base import MAX_INTEGER, utcnow
from app.errors import AppError, NotFound, VersionConflict
from app.mailboxes.models import Mailbox
from app.tickets import service as tickets
from app.tickets.events import Actor
from app.tickets.models import Priority, Status, Ticket
from app.tickets.schemas import NoteCreate, TicketCreate, TicketUpdate
from templates_replies import service as templates

if TYPE_CHECKING:
    from app.addon.auth import AddonCaller

log = logging.getLogger(__name__)

Answer = dict[str, Any]


class Refused(Exception):
    """An action that cannot be done as asked: the answer is a notification, nothing changed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownAction(NotFound):
    code = "unknown_action"


@dataclass(frozen=True)
class Context:
    session: Session
    agent: Agent
    caller: AddonCaller
    base_url: str

    def parameter(self, name: str) -> str | None:
        value = self.caller.event.parameter(name)
        return value.strip() if value is not None else None

    def form(self, name: str) -> str | None:
        return self.caller.event.form_value(name)

    @property
    def zone(self) -> str:
        return views.viewer_zone(self.agent, self.caller.event.time_zone)


# -- parameters -------------------------------------------------------------------------------


def _optional_int(ctx: Context, name: str, *, minimum: int = 1) -> int | None:
    raw = ctx.parameter(name)
    if raw is None or raw == "":
        return None
    if not re.fullmatch(r"\d{1,10}", raw) or not minimum <= int(raw) <= MAX_INTEGER:
        raise Refused(f"Invalid {name} {raw[:20]!r}: nothing was changed.")
    return int(raw)


def _required_int(ctx: Context, name: str) -> int:
    value = _optional_int(ctx, name)
    if value is None:
        raise Refused(f"This card is missing its {name}: reload it (nothing was changed).")
    return value


def _offset(ctx: Context) -> int:
    value = _optional_int(ctx, "offset", minimum=0)
    return min(value or 0, 1_000_000)


def _card_thread(ctx: Context) -> str | None:
    """The Gmail thread the card was built for (its ``thread_id`` parameter)."""
    raw = ctx.parameter("thread_id")
    if not raw:
        return None
    thread = views.gmail_api_id(raw)
    if thread is None:
        raise Refused("Invalid thread id: nothing was changed.")
    return thread


def _ticket(ctx: Context) -> tuple[Ticket, str | None]:
    """The ticket the action names, checked against the thread its card was built for."""
    ticket_id = _required_int(ctx, "ticket_id")
    thread = _card_thread(ctx)
    try:
        ticket = tickets.get_ticket(ctx.session, ticket_id)
    except NotFound:
        raise Refused("That ticket does not exist (any more): nothing was changed.") from None
    if thread is not None and not views.ticket_has_thread(
        ctx.session, ticket_id=ticket.id, thread_id=thread
    ):
        raise Refused(
            f"Ticket #{ticket.number} is not the ticket of this conversation: nothing was changed."
        )
    return ticket, thread


def _version(ctx: Context) -> int:
    return _required_int(ctx, "version")


# -- cards of the moment ----------------------------------------------------------------------


def ticket_card(ctx: Context, ticket_id: int, thread_id: str | None) -> cards.Card:
    """The ticket's card as it is now (and the caller counted as viewing it)."""
    ticket = tickets.get_ticket(ctx.session, ticket_id)
    presence.touch(
        ctx.session, agent_id=ctx.agent.id, ticket_id=ticket.id, kind=PresenceKind.VIEWING
    )
    view = views.load_ticket(
        ctx.session, ctx.agent, ticket, thread_id=thread_id, time_zone=ctx.zone
    )
    return cards.ticket_card(view, ctx.base_url)


def _stale_answer(
    ctx: Context, ticket_id: int, thread_id: str | None, *, who: str | None = None, note: str = ""
) -> Answer:
    ticket = tickets.get_ticket(ctx.session, ticket_id)
    who = who or views.last_actor_name(ctx.session, ticket.id, viewer_id=ctx.agent.id)
    return cards.render(
        ticket_card(ctx, ticket.id, thread_id),
        notification=f"{note}#{ticket.number} was changed by {who} — reloaded",
    )


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in error.get("loc", ()))
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{field}: {message}" if field else message


def _change(
    ctx: Context,
    build: Callable[[int], TicketUpdate],
    done: Callable[[Ticket], str],
) -> Answer:
    """Apply ``build(version)`` to the action's ticket as the caller; answer the fresh card."""
    ticket, thread = _ticket(ctx)
    version = _version(ctx)
    ticket_id = ticket.id
    try:
        update = build(version)
    except ValidationError as exc:
        return cards.render(
            ticket_card(ctx, ticket_id, thread),
            notification=f"Not changed: {_first_error(exc)}",
        )
    try:
        with ctx.session.begin_nested():
            changed = tickets.update_ticket(
                ctx.session, ticket_id=ticket_id, update=update, actor=Actor.for_agent(ctx.agent)
            )
            message = done(changed)
    except VersionConflict:
        return _stale_answer(ctx, ticket_id, thread)
    except AppError as exc:
        return cards.render(
            ticket_card(ctx, ticket_id, thread), notification=f"Not changed: {exc.message}"
        )
    return cards.render(ticket_card(ctx, ticket_id, thread), notification=message)


# -- ticket actions ---------------------------------------------------------------------------


def assign(ctx: Context) -> Answer:
    """The assignee dropdown changed: ``formInputs.assignee`` is an agent id or "none"."""
    choice = ctx.form("assignee")
    if choice is None:
        raise Refused("No assignee chosen: nothing was changed.")
    target: Agent | None = None
    if choice != cards.NOBODY:
        if not re.fullmatch(r"\d{1,10}", choice) or int(choice) > MAX_INTEGER:
            raise Refused("Invalid assignee: nothing was changed.")
        target = ctx.session.get(Agent, int(choice))
        if target is None or not target.is_active:
            raise Refused("That agent does not exist or is deactivated: nothing was changed.")
    email = target.email if target is not None else None
    name = (
        "you"
        if target is not None and target.id == ctx.agent.id
        else (target.name if target is not None else None)
    )
    return _change(
        ctx,
        lambda version: TicketUpdate(version=version, assignee=email),
        lambda t: f"#{t.number} assigned to {name}" if name else f"#{t.number} unassigned",
    )


def set_status(ctx: Context) -> Answer:
    raw = ctx.parameter("status") or ""
    try:
        status = Status(raw)
    except ValueError:
        raise Refused(f"Unknown status {raw[:20]!r}: nothing was changed.") from None
    return _change(
        ctx,
        lambda version: TicketUpdate(version=version, status=status),
        lambda t: f"#{t.number} is {cards.STATUS_LABEL[t.status].lower()}",
    )


def set_priority(ctx: Context) -> Answer:
    raw = ctx.form("priority") or ""
    try:
        priority = Priority(raw)
    except ValueError:
        raise Refused(f"Unknown priority {raw[:20]!r}: nothing was changed.") from None
    return _change(
        ctx,
        lambda version: TicketUpdate(version=version, priority=priority),
        lambda t: f"#{t.number} priority: {cards.PRIORITY_LABEL[t.priority].lower()}",
    )


def set_tags(ctx: Context) -> Answer:
    raw = ctx.form("tags") or ""
    tags = [tag for tag in re.split(r"[,\s]+", raw) if tag]
    return _change(
        ctx,
        lambda version: TicketUpdate(version=version, tags=tags),
        lambda t: f"#{t.number} tags: {', '.join(t.tags) or 'none'}",
    )


def add_note(ctx: Context) -> Answer:
    """A note never conflicts with a change, so a stale card still gets its note in; the answer
    then says the ticket changed meanwhile and shows it fresh."""
    ticket, thread = _ticket(ctx)
    version = _version(ctx)
    ticket_id = ticket.id
    # Who changed it, asked before our own note becomes the latest change.
    who = (
        views.last_actor_name(ctx.session, ticket_id, viewer_id=ctx.agent.id)
        if version != ticket.version
        else None
    )
    try:
        body = NoteCreate(body=(ctx.form("note") or "").strip()).body
    except ValidationError:
        raise Refused("Write the note first (at most 20,000 characters).") from None
    with ctx.session.begin_nested():
        tickets.add_note(
            ctx.session, ticket_id=ticket_id, body=body, actor=Actor.for_agent(ctx.agent)
        )
    if who is not None:
        return _stale_answer(ctx, ticket_id, thread, who=who, note="Note added. ")
    return cards.render(ticket_card(ctx, ticket_id, thread), notification="Note added")


def create_ticket(ctx: Context) -> Answer:
    """Open a ticket for the conversation of a "Not a ticket" card."""
    thread = _card_thread(ctx) or views.gmail_api_id(ctx.caller.event.thread_id)
    if thread is None:
        raise Refused("No conversation is open: nothing was created.")
    existing = views.find_ticket_by_thread(ctx.session, thread)
    if existing is not None:
        card = ticket_card(ctx, existing, thread)
        number = tickets.get_ticket(ctx.session, existing).number
        return cards.render(card, notification=f"This conversation is already #{number}")
    mailbox_id = _optional_int(ctx, "mailbox_id")
    if mailbox_id is None:
        raw = ctx.form("mailbox") or ""
        if not re.fullmatch(r"\d{1,10}", raw) or int(raw) > MAX_INTEGER:
            raise Refused("Choose the mailbox: nothing was created.")
        mailbox_id = int(raw)
    mailbox = ctx.session.get(Mailbox, mailbox_id)
    if mailbox is None:
        raise Refused("That mailbox does not exist: nothing was created.")
    try:
        data = TicketCreate(
            mailbox=str(mailbox.id),
            customer_email=(ctx.form("customer_email") or "").strip(),
            customer_name=(ctx.form("customer_name") or "").strip() or None,
            subject=(ctx.form("subject") or "").strip() or "(no subject)",
            gmail_thread_id=thread,
        )
    except ValidationError as exc:
        raise Refused(f"Not created: {_first_error(exc)}") from None
    try:
        with ctx.session.begin_nested():
            ticket = tickets.create_ticket(
                ctx.session,
                mailbox=mailbox,
                subject=data.subject,
                actor=Actor.for_agent(ctx.agent),
                customer_email=data.customer_email,
                customer_name=data.customer_name,
                gmail_thread_id=thread,
            )
    except AppError as exc:
        raise Refused(f"Not created: {exc.message}") from None
    return cards.render(
        ticket_card(ctx, ticket.id, thread), notification=f"Ticket #{ticket.number} created"
    )


# -- templates --------------------------------------------------------------------------------


def _optional_ticket(ctx: Context) -> tuple[Ticket | None, str | None]:
    if ctx.parameter("ticket_id"):
        return _ticket(ctx)
    return None, _card_thread(ctx)


def insert_template(ctx: Context) -> Answer:
    """Render the template for the card's ticket (empty customer fields without one) and insert
    it at the cursor of the draft; the use is recorded for the suggestions.

    Gmail applies a draft update where a draft is open: the compose card's Insert, or the ticket
    card's suggested replies while a reply is being written (in the reading view Gmail has no
    draft to put it in)."""
    template_id = _required_int(ctx, "template_id")
    ticket, _ = _optional_ticket(ctx)
    try:
        with ctx.session.begin_nested():
            rendered = templates.render_saved(
                ctx.session,
                template_id=template_id,
                ticket_id=ticket.id if ticket else None,
                agent=ctx.agent,
            )
            if ticket is not None:
                templates.record_use(
                    ctx.session, template_id=template_id, ticket_id=ticket.id, agent=ctx.agent
                )
                presence.touch(
                    ctx.session,
                    agent_id=ctx.agent.id,
                    ticket_id=ticket.id,
                    kind=PresenceKind.DRAFTING,
                )
    except AppError as exc:
        raise Refused(f"Not inserted: {exc.message}") from None
    return cards.insert_into_draft(rendered.body, is_html=rendered.is_html)


def search_templates(ctx: Context) -> Answer:
    ticket, thread = _optional_ticket(ctx)
    # "more…" pages the search it was built for; the Search button reads the box.
    paging = ctx.parameter("offset") is not None
    query = (ctx.parameter("q") if paging else ctx.form("q")) or ""
    view = views.load_compose(
        ctx.session, ctx.agent, ticket, thread_id=thread, query=query, offset=_offset(ctx)
    )
    return cards.render(cards.compose_card(view, ctx.base_url))


# -- navigation -------------------------------------------------------------------------------


def refresh(ctx: Context) -> Answer:
    if ctx.parameter("view") == "ticket":
        ticket, thread = _ticket(ctx)
        return cards.render(ticket_card(ctx, ticket.id, thread))
    return cards.render(
        cards.homepage_card(
            views.load_home(ctx.session, ctx.agent, time_zone=ctx.zone), ctx.base_url
        )
    )


def open_home(ctx: Context) -> Answer:
    home = cards.homepage_card(
        views.load_home(ctx.session, ctx.agent, time_zone=ctx.zone), ctx.base_url
    )
    return cards.render(home, push=True)


def open_ticket(ctx: Context) -> Answer:
    ticket, thread = _ticket(ctx)
    thread = thread or (ticket.gmail_thread_ids[0] if ticket.threads else None)
    return cards.render(ticket_card(ctx, ticket.id, thread), push=True)


def queue(ctx: Context) -> Answer:
    key = (ctx.parameter("queue") or "")[:40]
    spec = views.queue_spec(ctx.session, ctx.agent, key, now=utcnow())
    if spec is None:
        raise Refused(f"Unknown queue {key!r}.")
    offset = _offset(ctx)
    page = views.load_queue(ctx.session, ctx.agent, spec, limit=views.PAGE_ROWS, offset=offset)
    # The first page opens on top of the card it came from; "more…" turns the page in place.
    return cards.render(cards.queue_card(page, ctx.base_url, offset=offset), push=offset == 0)


def notes(ctx: Context) -> Answer:
    ticket, thread = _ticket(ctx)
    offset = _offset(ctx)
    view = views.load_notes(
        ctx.session, ctx.agent, ticket, thread_id=thread, offset=offset, time_zone=ctx.zone
    )
    return cards.render(cards.notes_card(view, ctx.base_url), push=offset == 0)


ACTIONS: dict[str, Callable[[Context], Answer]] = {
    "assign": assign,
    "set_status": set_status,
    "set_priority": set_priority,
    "set_tags": set_tags,
    "add_note": add_note,
    "create_ticket": create_ticket,
    "insert_template": insert_template,
    "search_templates": search_templates,
    "refresh": refresh,
    "open_home": open_home,
    "open_ticket": open_ticket,
    "queue": queue,
    "notes": notes,
}


# -- entry points (routes.py) -----------------------------------------------------------------


def run_action(session: Session, caller: AddonCaller, name: str, *, base_url: str) -> Answer:
    handler = ACTIONS.get(name)
    if handler is None:
        raise UnknownAction(f"no add-on action {name[:40]!r}")
    if caller.agent is None:
        return cards.render(cards.not_agent_card(caller.email))
    ctx = Context(session, caller.agent, caller, base_url)
    try:
        return handler(ctx)
    except Refused as refusal:
        return cards.render(notification=refusal.message)


def homepage(session: Session, caller: AddonCaller, *, base_url: str) -> Answer:
    if caller.agent is None:
        return cards.push_card(cards.not_agent_card(caller.email))
    zone = views.viewer_zone(caller.agent, caller.event.time_zone)
    view = views.load_home(session, caller.agent, time_zone=zone)
    return cards.push_card(cards.homepage_card(view, base_url))


def contextual(session: Session, caller: AddonCaller, *, base_url: str) -> Answer:
    """The open message's thread: its ticket's card, or the "Create ticket" form."""
    if caller.agent is None:
        return cards.push_card(cards.not_agent_card(caller.email))
    event = caller.event
    thread = views.gmail_api_id(event.thread_id)
    if thread is None:
        return homepage(session, caller, base_url=base_url)
    ctx = Context(session, caller.agent, caller, base_url)
    ticket_id = views.find_ticket_by_thread(session, thread)
    if ticket_id is None:
        view = views.load_thread(
            session, thread_id=thread, message_id=views.gmail_api_id(event.message_id)
        )
        return cards.push_card(cards.not_ticket_card(view, base_url))
    return cards.push_card(ticket_card(ctx, ticket_id, thread))


def compose(session: Session, caller: AddonCaller, *, base_url: str) -> Answer:
    """The compose window: templates for the reply (suggestions for its ticket first)."""
    if caller.agent is None:
        return cards.push_card(cards.not_agent_card(caller.email))
    thread = views.gmail_api_id(caller.event.thread_id)
    ticket = None
    if thread is not None:
        ticket_id = views.find_ticket_by_thread(session, thread)
        if ticket_id is not None:
            ticket = tickets.get_ticket(session, ticket_id)
            presence.touch(
                session, agent_id=caller.agent.id, ticket_id=ticket.id, kind=PresenceKind.DRAFTING
            )
    view = views.load_compose(session, caller.agent, ticket, thread_id=thread)
    return cards.push_card(cards.compose_card(view, base_url))
