"""Triage rules compiled into plain Python predicates, evaluated against one message's facts.

``compile_rules`` checks each rule completely (fields, operators, value types, regular
expressions, action values) and turns every condition into a closure over its pre-processed value
(a lower-cased string, a frozenset, a compiled pattern, a ``PhraseSet``), so that evaluation is a
few attribute reads and comparisons per condition: fifty rules take tens of microseconds. No
database here: ids named by actions are checked by the service, and applying actions is
``app/rules/actions.py``'s.

Semantics (the rule JSON of the issue 7 contract):

- Rules run in ascending ``position``, ties by id; global rules (no mailbox) and the mailbox's own
  are one list. Disabled rules never fire. With ``reply=True`` (a customer's reply to an existing
  ticket) only rules with ``run_on_replies`` are looked at.
- ``match`` "all": every condition holds; "any": at least one. A rule without conditions matches
  every message (either way).
- A firing rule with ``stop_processing`` ends the evaluation: later rules are not looked at.
- Text comparisons ignore case (``str.casefold``). ``regex``/``not_regex`` use the ``regex``
  module, case-insensitive, with a 50 ms limit per search: a search that runs out of time counts
  as "no match" (so ``regex`` does not hold and ``not_regex`` does) and is logged as a warning
  naming the rule — never the text. ``words``/``not_words`` match phrases on word stems
  (``app/rules/words.py``): "payment failed" also finds "payments failing".
- ``from_domain`` "shop.test" matches the sender domain shop.test and its subdomains.
- ``to`` looks at every To and Cc address (the alias the customer wrote to); ``cc`` only at Cc.
- ``segment`` ``is_not`` holds when the sender has no segment.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Protocol

import regex
from pydantic import TypeAdapter, ValidationError

from app.db.base import MAX_INTEGER
from app.errors import ValidationFailed
from app.rules.facts import MessageFacts
from app.rules.words import PhraseSet
from app.tickets.models import Priority
from app.tickets.schemas import Tag

__all__ = [
    "ACTION_TYPES",
    "FIELD_OPS",
    "ID_ACTIONS",
    "MAX_PATTERN_CHARS",
    "REGEX_TIMEOUT_SECONDS",
    "Firing",
    "RuleSet",
    "compile_rule",
    "compile_rules",
]

log = logging.getLogger(__name__)

Predicate = Callable[[MessageFacts], bool]

# Which operators each field takes (the contract's table).
_ADDRESS_OPS = frozenset({"is", "in", "contains"})
_TEXT_OPS = frozenset({"contains", "not_contains", "regex", "not_regex", "words", "not_words"})
_BOOL_OPS = frozenset({"is"})
FIELD_OPS: dict[str, frozenset[str]] = {
    "from": frozenset({"is", "is_not", "in", "contains", "regex"}),
    "from_domain": frozenset({"is", "in"}),
    "to": _ADDRESS_OPS,
    "cc": _ADDRESS_OPS,
    "subject": _TEXT_OPS,
    "body": _TEXT_OPS,
    "text": _TEXT_OPS,
    "language": frozenset({"is", "in"}),
    "segment": frozenset({"is", "is_not", "in"}),
    "has_attachment": _BOOL_OPS,
    "business_hours": _BOOL_OPS,
    "automated": _BOOL_OPS,
}
_BOOL_FIELDS = frozenset({"has_attachment", "business_hours", "automated"})
_LIST_OPS = frozenset({"in", "words", "not_words"})

# Actions and whether they carry a value.
ACTION_TYPES: dict[str, bool] = {
    "set_priority": True,
    "add_tag": True,
    "set_team": True,
    "assign_agent": True,
    "assign_team": True,
    "set_sla_policy": True,
    "skip_acknowledgement": False,
    "close_as_spam": False,
}
ID_ACTIONS = frozenset({"set_team", "assign_agent", "assign_team", "set_sla_policy"})

# A search gets 50 ms: a catastrophic pattern (nested quantifiers) on a long body would otherwise
# hold the sync for minutes. Long patterns are refused on save: nobody writes a 1000-character
# triage rule by hand, and compiling one is itself work.
REGEX_TIMEOUT_SECONDS = 0.05
MAX_PATTERN_CHARS = 1000
MAX_VALUE_CHARS = 1000
MAX_LIST_ITEMS = 1000

_TAG = TypeAdapter(Tag)


class RuleLike(Protocol):
    """What ``compile_rules`` reads: a stored ``Rule`` or a candidate not saved yet (id None)."""

    @property
    def id(self) -> int | None: ...
    @property
    def name(self) -> str: ...
    @property
    def position(self) -> int: ...
    @property
    def enabled(self) -> bool: ...
    @property
    def match(self) -> str: ...
    @property
    def conditions(self) -> list[dict[str, Any]]: ...
    @property
    def actions(self) -> list[dict[str, Any]]: ...
    @property
    def run_on_replies(self) -> bool: ...
    @property
    def stop_processing(self) -> bool: ...


@dataclass(frozen=True, eq=False)
class Firing:
    """A rule that matched: its id, its name, its actions (normalised rule JSON)."""

    rule_id: int | None
    name: str
    actions: tuple[dict[str, Any], ...]

    @property
    def action_types(self) -> list[str]:
        return [action["type"] for action in self.actions]

    def as_dict(self) -> dict[str, Any]:
        return {"rule_id": self.rule_id, "name": self.name, "actions": list(self.actions)}


@dataclass(frozen=True, eq=False)
class CompiledRule:
    id: int | None
    name: str
    position: int
    enabled: bool
    match_all: bool
    predicates: tuple[Predicate, ...]
    run_on_replies: bool
    stop_processing: bool
    firing: Firing

    def matches(self, facts: MessageFacts) -> bool:
        if self.match_all or not self.predicates:
            return all(predicate(facts) for predicate in self.predicates)
        return any(predicate(facts) for predicate in self.predicates)


class RuleSet:
    """One mailbox's rules in evaluation order, ready to run."""

    def __init__(self, rules: Iterable[CompiledRule]) -> None:
        ordered = sorted(rules, key=lambda r: (r.position, r.id if r.id is not None else 0))
        self.rules: tuple[CompiledRule, ...] = tuple(ordered)
        self._active = tuple(r for r in ordered if r.enabled)
        self._on_replies = tuple(r for r in self._active if r.run_on_replies)

    def __len__(self) -> int:
        return len(self.rules)

    @property
    def has_active_rules(self) -> bool:
        return bool(self._active)

    @property
    def has_reply_rules(self) -> bool:
        return bool(self._on_replies)

    def evaluate(self, facts: MessageFacts, *, reply: bool = False) -> list[Firing]:
        """The rules that fire for ``facts``, in order (see the module docstring)."""
        fired: list[Firing] = []
        for rule in self._on_replies if reply else self._active:
            if rule.matches(facts):
                fired.append(rule.firing)
                if rule.stop_processing:
                    break
        return fired


def compile_rules(rules: Sequence[RuleLike], *, skip_invalid: bool = False) -> RuleSet:
    """Compile ``rules`` into a ``RuleSet``. A bad rule raises ``ValidationFailed`` (code
    ``invalid_rule``, details naming the rule and the condition or action index), or with
    ``skip_invalid`` is left out with a warning (the sync must not stop on one bad stored rule)."""
    compiled: list[CompiledRule] = []
    for rule in rules:
        try:
            compiled.append(compile_rule(rule))
        except ValidationFailed as exc:
            if not skip_invalid:
                raise
            log.warning("rule %s %r left out: %s", rule.id, rule.name, exc.message)
    return RuleSet(compiled)


def compile_rule(rule: RuleLike) -> CompiledRule:
    label = f"rule {rule.id} {rule.name!r}" if rule.id is not None else f"rule {rule.name!r}"
    if rule.match not in ("all", "any"):
        raise _invalid(rule, f'match must be "all" or "any", not {rule.match!r}')
    conditions = rule.conditions
    actions = rule.actions
    if not isinstance(conditions, list):
        raise _invalid(rule, "conditions must be a list")
    if not isinstance(actions, list):
        raise _invalid(rule, "actions must be a list")
    if not actions:
        raise _invalid(rule, "a rule needs at least one action")
    predicates = tuple(
        _compile_condition(rule, index, condition, label)
        for index, condition in enumerate(conditions)
    )
    normalised = tuple(_check_action(rule, index, action) for index, action in enumerate(actions))
    return CompiledRule(
        id=rule.id,
        name=rule.name,
        position=rule.position,
        enabled=bool(rule.enabled),
        match_all=rule.match == "all",
        predicates=predicates,
        run_on_replies=bool(rule.run_on_replies),
        stop_processing=bool(rule.stop_processing),
        firing=Firing(rule.id, rule.name, normalised),
    )


# -- conditions -----------------------------------------------------------------------------------


def _compile_condition(rule: RuleLike, index: int, condition: Any, label: str) -> Predicate:
    where = f"conditions[{index}]"
    if not isinstance(condition, dict):
        raise _invalid(rule, f"{where}: a condition is an object {{field, op, value}}", index)
    unknown = set(condition) - {"field", "op", "value"}
    if unknown:
        raise _invalid(rule, f"{where}: unknown key(s) {sorted(unknown)}", index)
    field, op = condition.get("field"), condition.get("op")
    if not isinstance(field, str) or field not in FIELD_OPS:
        raise _invalid(
            rule, f"{where}: unknown field {field!r} (one of {', '.join(FIELD_OPS)})", index
        )
    if not isinstance(op, str) or op not in FIELD_OPS[field]:
        allowed = ", ".join(sorted(FIELD_OPS[field]))
        raise _invalid(rule, f"{where}: field {field!r} takes op {allowed}, not {op!r}", index)
    where = f"{where} ({field} {op})"
    value = condition.get("value")
    if field in _BOOL_FIELDS:
        if not isinstance(value, bool):
            raise _invalid(rule, f"{where}: the value must be true or false", index)
        return _bool_predicate(field, value)
    if op in _LIST_OPS:
        items = _string_list(rule, index, where, value)
    else:
        items = [_string(rule, index, where, value)]

    if op in ("regex", "not_regex"):
        if len(items[0]) > MAX_PATTERN_CHARS:
            raise _invalid(
                rule, f"{where}: the pattern is longer than {MAX_PATTERN_CHARS} characters", index
            )
        try:
            pattern = regex.compile(items[0], regex.IGNORECASE)
        except (regex.error, OverflowError, RecursionError, ValueError, MemoryError) as exc:
            raise _invalid(rule, f"{where}: not a valid regular expression: {exc}", index) from exc
        return _regex_predicate(pattern, _TEXT_GETTERS.get(field, _FROM), op == "not_regex", label)
    if op in ("words", "not_words"):
        try:
            phrases = PhraseSet(items)
        except ValueError as exc:
            raise _invalid(rule, f"{where}: {exc}", index) from exc
        return _words_predicate(phrases, _STEM_GETTERS[field], op == "not_words")
    if field in ("subject", "body", "text"):
        needle = items[0].casefold()
        getter = _FOLDED_GETTERS[field]
        if op == "contains":
            return lambda facts: needle in getter(facts)
        return lambda facts: needle not in getter(facts)
    if field == "from_domain":
        domains = frozenset(_domain(item) for item in items)
        return lambda facts: not domains.isdisjoint(facts.from_domains)
    if field in ("from", "to", "cc", "language", "segment"):
        return _value_predicate(field, op, items)
    raise AssertionError(f"unhandled condition {field} {op}")  # FIELD_OPS and this must agree


_FROM = attrgetter("from_address")
_TEXT_GETTERS: dict[str, Callable[[MessageFacts], str]] = {
    "subject": attrgetter("subject"),
    "body": attrgetter("body"),
    "text": attrgetter("text"),
}
_FOLDED_GETTERS: dict[str, Callable[[MessageFacts], str]] = {
    "subject": attrgetter("subject_folded"),
    "body": attrgetter("body_folded"),
    "text": attrgetter("text_folded"),
}
_STEM_GETTERS: dict[str, Callable[[MessageFacts], tuple[str, ...]]] = {
    "subject": attrgetter("subject_stems"),
    "body": attrgetter("body_stems"),
    "text": attrgetter("text_stems"),
}


def _bool_predicate(field: str, expected: bool) -> Predicate:
    getter = attrgetter(field)
    return lambda facts: getter(facts) is expected


def _value_predicate(field: str, op: str, items: list[str]) -> Predicate:
    values = frozenset(item.strip().lower() for item in items)
    if field in ("to", "cc"):
        addresses = attrgetter("recipients" if field == "to" else "cc")
        if op == "contains":
            needle = items[0].strip().lower()
            return lambda facts: any(needle in address for address in addresses(facts))
        return lambda facts: not values.isdisjoint(addresses(facts))
    getter = attrgetter({"from": "from_address"}.get(field, field))
    if op == "contains":
        needle = items[0].strip().lower()
        return lambda facts: needle in getter(facts)
    if op == "is_not":
        return lambda facts: getter(facts) not in values
    # "is" and "in": one value or several.
    return lambda facts: getter(facts) in values


def _regex_predicate(
    pattern: regex.Pattern[str],
    getter: Callable[[MessageFacts], str],
    negate: bool,
    label: str,
) -> Predicate:
    def check(facts: MessageFacts) -> bool:
        try:
            found = pattern.search(getter(facts), timeout=REGEX_TIMEOUT_SECONDS) is not None
        except TimeoutError:
            # The text stays out of the log: it is a customer's mail.
            log.warning(
                "%s: regex search ran out of its %d ms and counts as no match",
                label,
                int(REGEX_TIMEOUT_SECONDS * 1000),
            )
            found = False
        return found is not negate

    return check


def _words_predicate(
    phrases: PhraseSet, getter: Callable[[MessageFacts], tuple[str, ...]], negate: bool
) -> Predicate:
    if negate:
        return lambda facts: phrases.first_match(getter(facts)) is None
    return lambda facts: phrases.first_match(getter(facts)) is not None


def _domain(value: str) -> str:
    # "@shop.test" and "shop.test." name the same domain.
    return value.strip().lower().lstrip("@").rstrip(".")


def _string(rule: RuleLike, index: int, where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _invalid(rule, f"{where}: the value must be a string", index)
    if not value.strip():
        raise _invalid(rule, f"{where}: the value must not be empty", index)
    if "\x00" in value:
        raise _invalid(rule, f"{where}: the value contains a NUL character", index)
    if len(value) > MAX_VALUE_CHARS:
        raise _invalid(
            rule, f"{where}: the value is longer than {MAX_VALUE_CHARS} characters", index
        )
    return value


def _string_list(rule: RuleLike, index: int, where: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise _invalid(rule, f"{where}: the value must be a non-empty list of strings", index)
    if len(value) > MAX_LIST_ITEMS:
        raise _invalid(rule, f"{where}: more than {MAX_LIST_ITEMS} values", index)
    return [_string(rule, index, where, item) for item in value]


# -- actions --------------------------------------------------------------------------------------


def _check_action(rule: RuleLike, index: int, action: Any) -> dict[str, Any]:
    """The action, checked, in its normalised form (what ``Firing.actions`` carries)."""
    where = f"actions[{index}]"
    if not isinstance(action, dict):
        raise _invalid(rule, f"{where}: an action is an object {{type, value}}", index, "action")
    kind = action.get("type")
    if not isinstance(kind, str) or kind not in ACTION_TYPES:
        raise _invalid(
            rule,
            f"{where}: unknown action type {kind!r} (one of {', '.join(ACTION_TYPES)})",
            index,
            "action",
        )
    where = f"{where} ({kind})"
    allowed = {"type", "value"} | ({"only_raise"} if kind == "set_priority" else set())
    unknown = set(action) - allowed
    if unknown:
        raise _invalid(rule, f"{where}: unknown key(s) {sorted(unknown)}", index, "action")
    value = action.get("value")
    if not ACTION_TYPES[kind]:
        if value is not None:
            raise _invalid(rule, f"{where}: this action takes no value", index, "action")
        return {"type": kind}
    if kind == "set_priority":
        if value not in {p.value for p in Priority}:
            choices = ", ".join(p.value for p in Priority)
            raise _invalid(rule, f"{where}: the value must be one of {choices}", index, "action")
        only_raise = action.get("only_raise", False)
        if not isinstance(only_raise, bool):
            raise _invalid(rule, f"{where}: only_raise must be true or false", index, "action")
        return {"type": kind, "value": value, "only_raise": only_raise}
    if kind == "add_tag":
        try:
            tag = _TAG.validate_python(value)
        except ValidationError as exc:
            message = exc.errors()[0].get("msg", "not a tag")
            raise _invalid(rule, f"{where}: {message}", index, "action") from exc
        return {"type": kind, "value": tag}
    # The id actions: whether the row exists is the service's check (it needs the database).
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_INTEGER:
        raise _invalid(rule, f"{where}: the value must be a positive integer id", index, "action")
    return {"type": kind, "value": value}


def _invalid(
    rule: RuleLike, message: str, index: int | None = None, kind: str = "condition"
) -> ValidationFailed:
    details: dict[str, Any] = {"rule": rule.name}
    if index is not None:
        details[kind] = index
    return ValidationFailed(f"rule {rule.name!r}: {message}", code="invalid_rule", details=details)
