"""The default triage rules shipped as seed data: urgency signals and the VIP segment.

``seed_data/default_rules.json`` holds ordinary rules in the rule JSON of the REST API, so once
seeded (``inboxdesk rules seed``) they are edited, disabled or deleted like any rule a lead wrote.

What they do:

- Eleven "Urgent: …" rules (positions 10-55) raise a ticket to ``urgent`` (``only_raise``: a
  ticket an agent already set higher is never lowered) on loss and outage signals, in Russian and
  English: the customer asks for urgency ("срочно", "asap"); the site or service is down ("сайт
  лежит", "outage", "ошибка 502"); something the business runs on stopped working (a failure word
  *and* a business word: "перестали выгружаться заказы", "checkout is broken", while a promo code
  that "не работает" stays normal); a failure that hits everyone (a scale word and a failure
  word: "никто не может оплатить", "every customer gets an error"); payments fail; a charge
  taken more than once (a charge word and a repeat word: "списали деньги дважды"); money,
  customers or access are being lost ("теряем", "горит", "locked out"); an HTTP 5xx status; paid
  but no order; duplicated orders; a security breach ("взломали", unauthorised changes). They
  also run on customer replies: "now it is down completely" raises a ticket that started as a
  question.
- Phrases are matched on word stems (``app/rules/words.py``), so "не проходят платежи" and "payments
  are failing" match the phrases as written in the file; a phrase preceded by a negator ("не
  срочно", "not urgent", "не горит") does not count.
- Negation of the whole message: every urgency rule has a ``not_words`` condition listing what a
  customer writes when it can wait or is over ("не срочно", "not urgent", "no rush", "когда будет
  время", "is it urgent", "всё заработало"): the customer's own word on urgency wins, so "не
  срочно, но промокод не работает" is not raised although it names a symptom.
- "VIP customer: high priority" (position 100): sender segment ``vip`` → priority ``high``
  (``only_raise``, so an urgent VIP stays urgent) and the tag ``vip``.

How well they do: ``inboxdesk rules evaluate`` (``app/rules/evaluation.py``) runs them through the
real engine on tests/data/urgency_labelled.jsonl (or ``--file``) and prints precision and recall.
On mail nobody tuned them on they do worse than on the labelled set: see the README (Triage).
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from importlib import resources
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import NotFound, ValidationFailed
from app.mailboxes.models import Mailbox
from app.rules.engine import compile_rule
from app.rules.models import Rule
from app.rules.schemas import RuleCreate

__all__ = [
    "DEFAULT_RULES_RESOURCE",
    "default_rule_objects",
    "load_default_rules",
    "rule_objects",
    "rules_from_document",
    "seed_default_rules",
    "validate_rule",
]

DEFAULT_RULES_RESOURCE = "seed_data/default_rules.json"


@lru_cache(maxsize=1)
def _load() -> tuple[dict[str, Any], ...]:
    source = resources.files("app.rules").joinpath(DEFAULT_RULES_RESOURCE)
    return tuple(rules_from_document(json.loads(source.read_text(encoding="utf-8"))))


def rules_from_document(document: Any) -> list[dict[str, Any]]:
    """The rules of a rules document: a JSON list of rules, or an object with a ``rules`` list
    (the shape of the seed file, which has room for other keys)."""
    rules = document.get("rules") if isinstance(document, dict) else document
    if not isinstance(rules, list) or not all(isinstance(rule, dict) for rule in rules):
        raise ValidationFailed(
            "a rules document is a list of rules or an object with a rules list",
            code="invalid_rules_document",
        )
    return rules


def load_default_rules() -> list[dict[str, Any]]:
    """The default rules as fresh dicts in the rule JSON (name, position, enabled, match,
    conditions, actions, run_on_replies, stop_processing; no mailbox: they apply to all).

    Deep copies, so a caller setting ``mailbox_id`` on one cannot change what the next gets."""
    return copy.deepcopy(list(_load()))


def validate_rule(raw: dict[str, Any]) -> RuleCreate:
    """``raw`` checked as the REST API checks a new rule: the schema, then the engine's compile
    (operators per field, regular expressions, priorities, tags). Raises ``ValidationFailed``."""
    from pydantic import ValidationError

    try:
        data = RuleCreate.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error.get("loc", ()))
        name = raw.get("name", "?")
        raise ValidationFailed(
            f"rule {name!r}: {where}: {error.get('msg', 'invalid')}",
            code="invalid_rule",
            details={"rule": name},
        ) from exc
    compile_rule(_candidate(data))
    return data


def _candidate(data: RuleCreate) -> Rule:
    # A transient Rule (never added to a session) is what compile_rule reads.
    return Rule(
        id=None,
        mailbox_id=data.mailbox_id,
        name=data.name,
        position=data.position,
        enabled=data.enabled,
        match=data.match,
        conditions=[c.model_dump() for c in data.conditions],
        actions=[a.model_dump(exclude_none=True) for a in data.actions],
        run_on_replies=data.run_on_replies,
        stop_processing=data.stop_processing,
    )


def seed_default_rules(session: Session, *, mailbox_id: int | None = None) -> int:
    """Add the default rules missing from ``mailbox_id``'s rules (None: the global rules that
    apply to every mailbox); return how many were added.

    Idempotent by name within that scope: a default rule a lead edited (same name) is left as it
    is; one a lead renamed or deleted comes back on the next seed — to drop a default for good,
    disable it. Every rule is validated before any is stored (so a broken seed file adds nothing),
    then stored through ``app.rules.service.create_rule``, the API's path. Flushes; the caller
    commits."""
    from app.rules.service import create_rule

    if mailbox_id is not None and session.get(Mailbox, mailbox_id) is None:
        raise NotFound(f"mailbox {mailbox_id} not found", code="mailbox_not_found")
    candidates = [validate_rule({**raw, "mailbox_id": mailbox_id}) for raw in load_default_rules()]
    scope = Rule.mailbox_id.is_(None) if mailbox_id is None else Rule.mailbox_id == mailbox_id
    existing = set(session.scalars(select(Rule.name).where(scope)))
    added = 0
    for data in candidates:
        if data.name in existing:
            continue
        create_rule(session, data=data)
        existing.add(data.name)
        added += 1
    return added


def rule_objects(raw_rules: list[dict[str, Any]]) -> list[Rule]:
    """Rules in the rule JSON as transient ``Rule`` objects (never added to a session), each
    validated: what ``compile_rules`` takes, to evaluate rules without a database."""
    return [_candidate(validate_rule(raw)) for raw in raw_rules]


def default_rule_objects() -> list[Rule]:
    """The default rules as transient, validated ``Rule`` objects."""
    return rule_objects(load_default_rules())
