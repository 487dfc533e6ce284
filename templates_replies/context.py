"""The values a reply template sees, built from a ticket and the agent answering it.

Only plain values (text, numbers, dicts of them) reach the sandbox, never model objects: a template
cannot walk from ``ticket`` to the session, the mailbox's credentials or anything else.
Times are shown where the customer is and in the template's language.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime, format_time
from sqlalchemy import ColumnElement, ScalarSelect, bindparam, func, select
from sqlalchemy.orm import Session

from app.agents.models import Agent
from app.config import get_settings
from app.customers.models import Customer
from app.db.base import utcnow
from app.mailboxes.models import Mailbox
from app.messages.models import Direction, Message
from app.tickets.models import Ticket
from templates_replies.greeting import base_language, greeting

# CLDR patterns (babel) for the languages we write templates in. Russian has no genitive weekday
# in CLDR ("до понедельника"), so texts should frame the date: "ответим до 11:00 (понедельник,
# 23 ноября)" rather than inflect it.
_DUE_PATTERNS = {
    "ru": "HH:mm, EEEE, d MMMM",  # 11:00, понедельник, 23 ноября
    "en": "EEEE, MMMM d, h:mm a",  # Monday, November 23, 11:00 AM
}

_STATUS_WORDS = {
    "ru": {
        "new": "новый",
        "open": "открыт",
        "pending": "в ожидании",
        "resolved": "решён",
        "closed": "закрыт",
    },
    "en": {
        "new": "new",
        "open": "open",
        "pending": "pending",
        "resolved": "resolved",
        "closed": "closed",
    },
}
_PRIORITY_WORDS = {
    "ru": {"low": "низкий", "normal": "обычный", "high": "высокий", "urgent": "срочный"},
    "en": {"low": "low", "normal": "normal", "high": "high", "urgent": "urgent"},
}

# A Date header offset beyond a day is malformed (RFC 5322 §3.3 allows ±9959, datetime does not).
_MAX_OFFSET_MINUTES = 24 * 60 - 1


def format_due(instant: datetime, zone: tzinfo, language: str) -> str:
    """A moment as the customer reads it: "11:00, понедельник, 23 ноября" / "Monday, November 23,
    11:00 AM". Other languages babel knows get its full CLDR date; unknown ones English.
    A naive ``instant`` is taken as UTC."""
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    lang = base_language(language)
    pattern = _DUE_PATTERNS.get(lang)
    if pattern is not None:
        return format_datetime(instant, pattern, tzinfo=zone, locale=lang)
    try:
        locale = Locale.parse(lang)
    except (ValueError, TypeError, UnknownLocaleError):
        return format_datetime(instant, _DUE_PATTERNS["en"], tzinfo=zone, locale="en")
    # CLDR has no "weekday and day without year" form in every language: the full date it is.
    local = instant.astimezone(zone)
    return (
        f"{format_date(local, 'full', locale=locale)}, {format_time(local, 'short', locale=locale)}"
    )


def customer_zone(
    session: Session, *, customer: Customer | None, mailbox: Mailbox | None
) -> tzinfo:
    """Where the customer is: their record's zone, else the UTC offset of their latest message's
    Date header, else the mailbox's zone, else UTC."""
    if customer is not None:
        zone = _zone(customer.timezone)
        if zone is not None:
            return zone
        offset = _latest_inbound_offset(session, customer)
        if offset is not None:
            return timezone(timedelta(minutes=offset))
    if mailbox is not None:
        zone = _zone(getattr(mailbox, "timezone", None))
        if zone is not None:
            return zone
    return UTC


def _zone(name: str | None) -> tzinfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None  # checked where it entered; a zone retired from tzdata since falls through


# session.info key: customer id → the offset ``latest_inbound_offset`` found (None: none), for
# callers that read it together with other rows (templates_replies.service.render_saved).
KNOWN_OFFSETS = "inboxdesk.customer_offsets"


def latest_inbound_offset(
    customer_id: int | ColumnElement[int], customer_email: str | ColumnElement[str]
) -> ScalarSelect[int | None]:
    """The offset of the customer's newest message that carried one, as a scalar subquery.

    Looked up through the customer's tickets (both indexed), not by sender address across all
    messages (not indexed). Only mail the customer wrote counts: a colleague in copy may be
    elsewhere, and our own replies carry our offset.
    """
    return (
        select(Message.utc_offset_minutes)
        .join(Ticket, Ticket.id == Message.ticket_id)
        .where(
            Ticket.customer_id == customer_id,
            Message.direction == Direction.INBOUND,
            func.lower(Message.from_address) == func.lower(customer_email),
            Message.utc_offset_minutes.is_not(None),
            Message.utc_offset_minutes.between(-_MAX_OFFSET_MINUTES, _MAX_OFFSET_MINUTES),
        )
        .order_by(Message.date.is_(None), Message.date.desc(), Message.id.desc())
        .limit(1)
        .scalar_subquery()
    )


# Built once (building a statement costs more than running it on its index).
_LATEST_OFFSET = select(
    latest_inbound_offset(bindparam("customer_id"), bindparam("customer_email"))
)


def _latest_inbound_offset(session: Session, customer: Customer) -> int | None:
    known: dict[int, int | None] = session.info.get(KNOWN_OFFSETS, {})
    if customer.id in known:
        return known[customer.id]
    return session.execute(
        _LATEST_OFFSET, {"customer_id": customer.id, "customer_email": customer.email}
    ).scalar()


def first_name(name: str | None) -> str:
    """The first word of a name. "Иванов Иван" gives "Иванов": the order of a Russian name cannot
    be told from the text, so templates should prefer the full name where it matters."""
    words = (name or "").split()
    return words[0].strip(",;") if words else ""


def _words(table: dict[str, dict[str, str]], language: str, value: str) -> str:
    return table.get(base_language(language), table["en"]).get(value, value)


def _due(ticket: Ticket) -> datetime | None:
    # Until the first answer, "when will they answer" is the first-response deadline; after it,
    # only the resolution deadline still means something to the customer.
    if ticket.first_response_at is None and ticket.first_response_due_at is not None:
        return ticket.first_response_due_at
    return ticket.resolution_due_at


def build_context(
    session: Session,
    *,
    ticket: Ticket | None,
    agent: Agent | None,
    language: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The template variables (``sandbox.known_variables()``) for a reply on ``ticket``.

    Without a ticket (a preview of a template) the customer and ticket values are empty and times
    are shown in the agent's zone.
    """
    now = now or utcnow()
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    customer: Customer | None = None
    mailbox: Mailbox | None = None
    if ticket is not None:
        # By id, not the relationships: they raise unless loaded, and the identity map makes
        # these free when get_ticket loaded them.
        customer = session.get(Customer, ticket.customer_id)
        mailbox = session.get(Mailbox, ticket.mailbox_id)
        zone = customer_zone(session, customer=customer, mailbox=mailbox)
    else:
        zone = _zone(agent.timezone if agent is not None else None) or UTC

    customer_name = (customer.name or "") if customer is not None else ""
    agent_name = agent.name if agent is not None else ""
    due = _due(ticket) if ticket is not None else None
    return {
        "customer": {
            "name": customer_name,
            "first_name": first_name(customer_name),
            "email": customer.email if customer is not None else "",
            "segment": customer.segment if customer is not None else "",
        },
        "ticket": {
            "number": ticket.number if ticket is not None else "",
            "subject": ticket.subject if ticket is not None else "",
            "status": _words(_STATUS_WORDS, language, ticket.status.value) if ticket else "",
            "priority": _words(_PRIORITY_WORDS, language, ticket.priority.value) if ticket else "",
            "due": format_due(due, zone, language) if due is not None else "",
        },
        "agent": {
            "name": agent_name,
            "first_name": first_name(agent_name),
            "signature": (agent.signature or "") if agent is not None else "",
        },
        "mailbox": {
            "name": mailbox.name if mailbox is not None else "",
            "address": mailbox.email if mailbox is not None else "",
        },
        "company": {
            "name": get_settings().company_name or (mailbox.name if mailbox is not None else ""),
        },
        "greeting": greeting(now.astimezone(zone), language),
        "now": format_due(now, zone, language),
    }
