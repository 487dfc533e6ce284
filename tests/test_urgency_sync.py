"""The seeded default rules in the real sync, against the Gmail emulator: urgent mail becomes an
urgent ticket (a ``rule_fired`` event naming the default rule), the hard negatives stay normal, a
VIP's question becomes high and tagged, and a customer's "now it is down" reply raises a ticket
that started calm."""

from __future__ import annotations

from sqlalchemy import select

from app.customers.models import Customer
from app.db.session import Database
from app.rules.defaults import seed_default_rules
from app.tickets.models import ActorKind, Event, Priority, TicketTag
from gmail_sync.client import GmailClient
from tests.ack_fixtures import (  # noqa: F401
    ack_box_fixture,
    ack_gmail_fixture,
    customer_mail,
    import_inbox,
    sync,
    ticket_of_thread,
)
from tests.emulator_fixtures import (  # noqa: F401
    Emulator,
    emulator_fixture,
    emulator_server_fixture,
)


def fired_rules(db: Database, ticket_id: int) -> list[str]:
    with db.session() as s:
        stmt = select(Event).where(Event.ticket_id == ticket_id, Event.field == "rule_fired")
        rows = list(s.scalars(stmt.order_by(Event.id)))
    assert all(e.actor_kind == ActorKind.RULE and e.actor_id is not None for e in rows)
    return [e.new_value["rule"] for e in rows]


def test_default_rules_triage_the_inbox(
    db: Database, ack_box: int, ack_gmail: GmailClient, emulator: Emulator
) -> None:
    with db.unit_of_work() as s:
        assert seed_default_rules(s) > 0
        s.add(Customer(email="boss@bigclient.test", segment="vip"))
    mails = {
        "payment": customer_mail(
            "Оплата", message_id="u1@c.test", body="С утра не проходят платежи картой у всех!"
        ),
        "down": customer_mail(
            "Store",
            message_id="u2@c.test",
            sender="bob@c.test",
            body="Our store's been down an hour",
        ),
        "calm_ru": customer_mail(
            "Вопрос", message_id="u3@c.test", body="Работает ли доставка в выходные? Не срочно."
        ),
        "calm_en": customer_mail(
            "Down payment",
            message_id="u4@c.test",
            sender="eve@c.test",
            body="How does the down payment work? Not urgent, whenever you have time.",
        ),
        "vip": customer_mail(
            "Plan",
            message_id="u5@c.test",
            sender="boss@bigclient.test",
            body="Can we move to the annual plan?",
        ),
    }
    threads = {name: import_inbox(emulator, raw)["threadId"] for name, raw in mails.items()}
    assert sync(db, ack_box, ack_gmail).tickets_created == len(mails)
    by = {name: ticket_of_thread(db, thread) for name, thread in threads.items()}

    assert by["payment"].priority == Priority.URGENT
    assert "Urgent: payments fail or are charged twice" in fired_rules(db, by["payment"].id)
    assert by["down"].priority == Priority.URGENT
    assert fired_rules(db, by["down"].id) == ["Urgent: outage, the site or service is down"]
    for calm in ("calm_ru", "calm_en"):
        assert by[calm].priority == Priority.NORMAL, calm
        assert fired_rules(db, by[calm].id) == []
    assert by["vip"].priority == Priority.HIGH
    assert fired_rules(db, by["vip"].id) == ["VIP customer: high priority"]
    with db.session() as s:
        tags = s.scalars(select(TicketTag.tag).where(TicketTag.ticket_id == by["vip"].id))
        assert list(tags) == ["vip"]

    # The calm Russian customer writes again: the site is down now. Urgency rules run on replies.
    import_inbox(
        emulator,
        customer_mail(
            "Re: Вопрос",
            message_id="u6@c.test",
            body="А теперь у вас сайт вообще не открывается, ошибка 502.",
            in_reply_to="u3@c.test",
            references=("u3@c.test",),
        ),
        thread_id=threads["calm_ru"],
    )
    sync(db, ack_box, ack_gmail)
    ticket = ticket_of_thread(db, threads["calm_ru"])
    assert ticket.priority == Priority.URGENT
    # "ошибка 502" and "не открывается": the HTTP 5xx rule and the failure rules fire.
    assert "Urgent: server errors (HTTP 5xx)" in fired_rules(db, ticket.id)
