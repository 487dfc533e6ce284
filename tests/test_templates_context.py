"""Template variables from real tickets: the customer's zone, dates in their language, fallbacks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.orm import Session

from app.agents.models import Agent
from app.agents.service import create_agent
from app.config import reset_settings
from app.customers.service import upsert_customer
from app.mailboxes.models import Mailbox
from app.messages.models import Direction, Message
from app.tickets.events import Actor
from app.tickets.models import Priority, Ticket
from app.tickets.service import create_ticket
from templates_replies.context import build_context, customer_zone, first_name, format_due
from templates_replies.sandbox import known_variables, render_template

# Sunday 22 November 2026, 20:00 UTC: 23:00 in Moscow, already Monday 08:00 in Kamchatka.
NOW = datetime(2026, 11, 22, 20, 0, tzinfo=UTC)
# Monday 23 November 2026, 08:00 UTC: 11:00 in Moscow, 20:00 in Kamchatka.
DUE = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def make_ticket(
    session: Session,
    mailbox: Mailbox,
    *,
    email: str = "ivan@client.test",
    name: str | None = "Иван Петров",
    timezone: str | None = None,
) -> Ticket:
    customer, _ = upsert_customer(session, email=email, name=name, timezone=timezone)
    return create_ticket(
        session,
        mailbox=session.get(Mailbox, mailbox.id),  # type: ignore[arg-type]
        subject="Не проходит оплата",
        actor=Actor.system(),
        customer=customer,
        priority=Priority.HIGH,
    )


def make_agent(session: Session, *, timezone: str = "UTC") -> Agent:
    agent = create_agent(
        session,
        email=f"anna-{uuid.uuid4().hex[:6]}@team.test",
        name="Анна Смирнова",
        timezone=timezone,
    )
    agent.signature = "—\nАнна, поддержка Shop"
    session.flush()
    return agent


def add_message(
    session: Session,
    ticket: Ticket,
    *,
    from_address: str,
    at: datetime | None,
    offset: int | None,
    direction: Direction = Direction.INBOUND,
) -> None:
    session.add(
        Message(
            mailbox_id=ticket.mailbox_id,
            ticket_id=ticket.id,
            gmail_message_id=uuid.uuid4().hex[:16],
            gmail_thread_id=f"thread-{ticket.id}",
            direction=direction,
            from_address=from_address,
            date=at,
            utc_offset_minutes=offset,
        )
    )
    session.flush()


def flat_keys(context: dict[str, Any]) -> list[str]:
    keys = []
    for key, value in context.items():
        if isinstance(value, dict):
            keys.extend(f"{key}.{attribute}" for attribute in value)
        else:
            keys.append(key)
    return sorted(keys)


def test_russian_context_for_a_moscow_customer(session: Session, mailbox: Mailbox) -> None:
    """Every variable, in Russian, with times in the customer's own zone."""
    ticket = make_ticket(session, mailbox, timezone="Europe/Moscow")
    ticket.first_response_due_at = DUE
    session.flush()
    agent = make_agent(session)
    context = build_context(session, ticket=ticket, agent=agent, language="ru", now=NOW)
    assert context == {
        "customer": {
            "name": "Иван Петров",
            "first_name": "Иван",
            "email": "ivan@client.test",
            "segment": "regular",
        },
        "ticket": {
            "number": ticket.number,
            "subject": "Не проходит оплата",
            "status": "новый",
            "priority": "высокий",
            "due": "11:00, понедельник, 23 ноября",
        },
        "agent": {
            "name": "Анна Смирнова",
            "first_name": "Анна",
            "signature": "—\nАнна, поддержка Shop",
        },
        "mailbox": {"name": "Shop Support", "address": "support@shop.test"},
        "company": {"name": "Shop Support"},
        "greeting": "Добрый вечер",
        "now": "23:00, воскресенье, 22 ноября",
    }
    assert flat_keys(context) == known_variables()


def test_same_instant_in_kamchatka_is_morning_of_the_next_day(
    session: Session, mailbox: Mailbox
) -> None:
    """Russia spans 11 zones: the Kamchatka customer gets their own morning and dates."""
    ticket = make_ticket(session, mailbox, timezone="Asia/Kamchatka")
    ticket.first_response_due_at = DUE
    session.flush()
    context = build_context(session, ticket=ticket, agent=None, language="ru", now=NOW)
    assert context["greeting"] == "Доброе утро"
    assert context["now"] == "08:00, понедельник, 23 ноября"
    assert context["ticket"]["due"] == "20:00, понедельник, 23 ноября"


def test_english_context(session: Session, mailbox: Mailbox) -> None:
    """The template's language picks the words and the date format."""
    ticket = make_ticket(session, mailbox, timezone="Europe/Moscow")
    ticket.first_response_due_at = DUE
    session.flush()
    context = build_context(session, ticket=ticket, agent=None, language="en", now=NOW)
    assert context["greeting"] == "Good evening"
    assert context["ticket"]["due"] == "Monday, November 23, 11:00 AM"
    assert context["now"] == "Sunday, November 22, 11:00 PM"
    assert (context["ticket"]["status"], context["ticket"]["priority"]) == ("new", "high")
    assert context["agent"] == {"name": "", "first_name": "", "signature": ""}


def test_zone_from_the_customers_latest_inbound_message(session: Session, mailbox: Mailbox) -> None:
    """Without a zone on record, the offset of the customer's newest Date header counts: not our
    replies, not a colleague in copy, not a message without an offset; across their tickets."""
    older_ticket = make_ticket(session, mailbox)
    ticket = make_ticket(session, mailbox)
    other = make_ticket(session, mailbox, email="olga@client.test", name="Ольга")
    day = timedelta(days=1)
    add_message(session, ticket, from_address="ivan@client.test", at=NOW - 3 * day, offset=180)
    add_message(session, older_ticket, from_address="IVAN@Client.test", at=NOW - day, offset=720)
    add_message(
        session,
        ticket,
        from_address="support@shop.test",
        at=NOW - day / 2,
        offset=0,
        direction=Direction.OUTBOUND,
    )
    add_message(session, ticket, from_address="boss@client.test", at=NOW - day / 4, offset=-300)
    add_message(session, ticket, from_address="ivan@client.test", at=NOW - day / 8, offset=None)
    add_message(session, other, from_address="olga@client.test", at=NOW, offset=60)

    customer = ticket.customer
    zone = customer_zone(session, customer=customer, mailbox=ticket.mailbox)
    assert zone.utcoffset(NOW) == timedelta(hours=12)
    context = build_context(session, ticket=ticket, agent=None, language="ru", now=NOW)
    assert context["greeting"] == "Доброе утро"
    assert context["now"] == "08:00, понедельник, 23 ноября"


def test_customer_record_zone_beats_message_offsets(session: Session, mailbox: Mailbox) -> None:
    """A zone the customer (or an agent) set wins over what mail headers suggest."""
    ticket = make_ticket(session, mailbox, timezone="Europe/Moscow")
    add_message(session, ticket, from_address="ivan@client.test", at=NOW, offset=720)
    zone = customer_zone(session, customer=ticket.customer, mailbox=ticket.mailbox)
    assert zone.utcoffset(NOW) == timedelta(hours=3)


def test_mailbox_zone_then_utc(session: Session, mailbox: Mailbox) -> None:
    """Nothing known about the customer: the mailbox's zone, and without a mailbox UTC."""
    ticket = make_ticket(session, mailbox)
    box = session.get(Mailbox, mailbox.id)
    assert box is not None
    assert customer_zone(session, customer=ticket.customer, mailbox=box).utcoffset(NOW) == (
        timedelta(0)
    )
    box.timezone = "Asia/Vladivostok"
    session.flush()
    zone = customer_zone(session, customer=ticket.customer, mailbox=box)
    assert zone.utcoffset(NOW) == timedelta(hours=10)
    context = build_context(session, ticket=ticket, agent=None, language="ru", now=NOW)
    assert context["now"] == "06:00, понедельник, 23 ноября"
    assert customer_zone(session, customer=None, mailbox=None) is UTC


def test_due_is_the_resolution_deadline_once_answered(session: Session, mailbox: Mailbox) -> None:
    """Before the first answer "due" is the first-response deadline, after it the resolution's;
    no deadline gives an empty value."""
    ticket = make_ticket(session, mailbox, timezone="Europe/Moscow")
    ticket.first_response_due_at = ticket.resolution_due_at = None  # the SLA set them
    session.flush()
    context = build_context(session, ticket=ticket, agent=None, language="ru", now=NOW)
    assert context["ticket"]["due"] == ""
    ticket.first_response_due_at = DUE
    ticket.resolution_due_at = DUE + timedelta(days=2, hours=1)
    session.flush()
    context = build_context(session, ticket=ticket, agent=None, language="ru", now=NOW)
    assert context["ticket"]["due"] == "11:00, понедельник, 23 ноября"
    ticket.first_response_at = NOW
    session.flush()
    context = build_context(session, ticket=ticket, agent=None, language="ru", now=NOW)
    assert context["ticket"]["due"] == "12:00, среда, 25 ноября"


def test_without_a_ticket_values_are_empty_and_times_are_the_agents(session: Session) -> None:
    """A preview without a ticket: customer/ticket/mailbox empty, greeting in the agent's zone."""
    agent = make_agent(session, timezone="Asia/Kamchatka")
    context = build_context(session, ticket=None, agent=agent, language="ru", now=NOW)
    assert context["customer"] == {"name": "", "first_name": "", "email": "", "segment": ""}
    assert context["ticket"] == {
        "number": "",
        "subject": "",
        "status": "",
        "priority": "",
        "due": "",
    }
    assert context["mailbox"] == {"name": "", "address": ""}
    assert context["agent"]["first_name"] == "Анна"
    assert context["greeting"] == "Доброе утро"
    assert flat_keys(context) == known_variables()


@pytest.fixture
def company_name(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("INBOXDESK_COMPANY_NAME", "Acme Inc.")
    reset_settings()
    yield "Acme Inc."
    monkeypatch.delenv("INBOXDESK_COMPANY_NAME")
    reset_settings()


def test_company_name_setting_beats_the_mailbox_name(
    session: Session, mailbox: Mailbox, company_name: str
) -> None:
    """INBOXDESK_COMPANY_NAME, when set, is `company.name`."""
    ticket = make_ticket(session, mailbox)
    context = build_context(session, ticket=ticket, agent=None, language="en", now=NOW)
    assert context["company"] == {"name": company_name}


def test_a_customer_without_a_name_renders_with_a_fallback(
    session: Session, mailbox: Mailbox
) -> None:
    """The whole path: a nameless customer gives a warning, or the template's own default."""
    ticket = make_ticket(session, mailbox, name=None, timezone="Europe/Moscow")
    context = build_context(session, ticket=ticket, agent=None, language="ru", now=NOW)
    result = render_template(
        body="{{ greeting }}, {{ customer.first_name|default('клиент') }}! {{ customer.name }}",
        subject="Обращение #{{ ticket.number }}",
        is_html=False,
        context=context,
    )
    assert result.body == "Добрый вечер, клиент! "
    assert result.subject == f"Обращение #{ticket.number}"
    assert result.warnings == ["customer.name is empty"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [("Иван Петров", "Иван"), ("  Ann  ", "Ann"), ("Petrov, Ivan", "Petrov"), ("", ""), (None, "")],
)
def test_first_name(name: str | None, expected: str) -> None:
    assert first_name(name) == expected


def test_format_due_languages() -> None:
    """ru/en by pattern, other babel languages by their CLDR date, unknown ones in English;
    a naive instant is UTC."""
    moscow = ZoneInfo("Europe/Moscow")
    assert format_due(DUE, moscow, "ru") == "11:00, понедельник, 23 ноября"
    assert format_due(DUE, moscow, "en-US") == "Monday, November 23, 11:00 AM"
    assert format_due(DUE, moscow, "de") == "Montag, 23. November 2026, 11:00"
    assert format_due(DUE, moscow, "zz") == "Monday, November 23, 11:00 AM"
    assert format_due(DUE.replace(tzinfo=None), moscow, "ru") == "11:00, понедельник, 23 ноября"
