"""The default rule set: it loads, every rule is valid, seeding is idempotent, and the seeded rules
raise urgent mail through the same compiled rule set the sync uses."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import NotFound
from app.mailboxes.models import Mailbox
from app.rules import service as rules_service
from app.rules.defaults import load_default_rules, seed_default_rules, validate_rule
from app.rules.engine import compile_rules
from app.rules.evaluation import raises_to_urgent
from app.rules.facts import MessageFacts
from app.rules.models import Rule
from app.rules.schemas import RuleUpdate


def names(session: Session, mailbox_id: int | None) -> list[str]:
    scope = Rule.mailbox_id.is_(None) if mailbox_id is None else Rule.mailbox_id == mailbox_id
    return list(session.scalars(select(Rule.name).where(scope).order_by(Rule.position, Rule.id)))


def test_default_rules_load_as_fresh_copies() -> None:
    rules = load_default_rules()
    assert len(rules) >= 5
    assert len({rule["name"] for rule in rules}) == len(rules), "names are the seed's identity"
    rules[0]["name"] = "changed"
    rules[0]["conditions"].clear()
    again = load_default_rules()
    assert again[0]["name"] != "changed"
    assert again[0]["conditions"]


def test_every_default_rule_is_valid_and_well_formed() -> None:
    rules = load_default_rules()
    for raw in rules:
        data = validate_rule(raw)
        assert "mailbox_id" not in raw, "defaults are global; the seed picks the scope"
        assert data.actions, raw["name"]
    urgent = [r for r in rules if r["name"].startswith("Urgent:")]
    assert len(urgent) >= 4
    for raw in urgent:
        # Never lowers a priority an agent set, and a reply can still raise the ticket.
        assert raw["actions"] == [{"type": "set_priority", "value": "urgent", "only_raise": True}]
        assert raw["run_on_replies"] is True
        assert raw["stop_processing"] is False
        ops = [c["op"] for c in raw["conditions"]]
        # A positive signal (phrases on stems, or a pattern such as an HTTP 5xx status) ...
        assert {"words", "regex"} & set(ops[:-1]), raw["name"]
        assert ops[-1] == "not_words", "every urgency rule carries the no-rush cues"
    [vip] = [
        r for r in rules if r["conditions"] == [{"field": "segment", "op": "is", "value": "vip"}]
    ]
    assert {"type": "set_priority", "value": "high", "only_raise": True} in vip["actions"]
    assert {"type": "add_tag", "value": "vip"} in vip["actions"]


def test_seed_is_idempotent_by_name_per_scope(session: Session, mailbox: Mailbox) -> None:
    total = len(load_default_rules())
    assert seed_default_rules(session) == total
    assert names(session, None) == [r["name"] for r in load_default_rules()]
    assert seed_default_rules(session) == 0
    assert len(names(session, None)) == total

    # A mailbox's own rules are another scope.
    assert seed_default_rules(session, mailbox_id=mailbox.id) == total
    assert seed_default_rules(session, mailbox_id=mailbox.id) == 0
    assert len(names(session, mailbox.id)) == total

    # An edited default is kept as the lead left it; a deleted one comes back.
    first, second = session.scalars(
        select(Rule).where(Rule.mailbox_id.is_(None)).order_by(Rule.position).limit(2)
    )
    rules_service.update_rule(session, rule_id=first.id, update=RuleUpdate(enabled=False))
    rules_service.delete_rule(session, rule_id=second.id)
    assert seed_default_rules(session) == 1
    session.refresh(first)
    assert first.enabled is False
    assert second.name in names(session, None)


def test_seed_for_an_unknown_mailbox_adds_nothing(session: Session) -> None:
    with pytest.raises(NotFound):
        seed_default_rules(session, mailbox_id=987_654)
    assert session.scalars(select(Rule.id)).first() is None


def facts(subject: str, body: str = "", *, segment: str | None = None) -> MessageFacts:
    return MessageFacts.build(
        from_address="customer@example.test", subject=subject, body=body, segment=segment
    )


def test_seeded_rules_raise_urgent_mail_through_the_mailbox_rule_set(
    session: Session, mailbox: Mailbox
) -> None:
    seed_default_rules(session)
    rule_set = rules_service.rule_set_for_mailbox(session, mailbox_id=mailbox.id)

    def urgent(message: MessageFacts, *, reply: bool = False) -> list[str]:
        return [f.name for f in rule_set.evaluate(message, reply=reply) if raises_to_urgent(f)]

    assert urgent(facts("Сайт лежит", "Магазин не открывается с утра, теряем заказы"))
    assert urgent(facts("Re: заказ", "Оплата не проходит ни у одного покупателя"))
    assert urgent(facts("Checkout", "All our payments are failing since 9am"))
    assert urgent(facts("Help", "The store's been down for an hour"), reply=True)
    assert urgent(facts("Charged twice", "You charged my card twice for one order"))
    # The hard negatives: the words without the urgency.
    assert not urgent(facts("Вопрос", "Работает ли доставка в выходные?"))
    assert not urgent(facts("Пожелание", "Это не срочно, но добавьте тёмную тему"))
    assert not urgent(facts("Invoice", "Not urgent, whenever you have time: resend the invoice"))
    assert not urgent(facts("Question", "How does the down payment work?"))
    assert not urgent(facts("Срочно: сайт лежит", "Уже всё заработало, спасибо!"))


def test_vip_segment_gets_high_priority_and_a_tag(session: Session, mailbox: Mailbox) -> None:
    seed_default_rules(session)
    rule_set = rules_service.rule_set_for_mailbox(session, mailbox_id=mailbox.id)
    vip = rule_set.evaluate(facts("Смена тарифа", "Как перейти на годовой тариф?", segment="vip"))
    actions = [action for firing in vip for action in firing.actions]
    assert {"type": "set_priority", "value": "high", "only_raise": True} in actions
    assert {"type": "add_tag", "value": "vip"} in actions
    assert not rule_set.evaluate(facts("Смена тарифа", "Как перейти?", segment="regular"))


def test_defaults_compile_without_a_database() -> None:
    from app.rules.defaults import default_rule_objects

    rule_set = compile_rules(default_rule_objects())
    assert len(rule_set) == len(load_default_rules())
    fired = rule_set.evaluate(facts("URGENT", "Production outage, all requests fail"))
    assert any(raises_to_urgent(f) for f in fired)
