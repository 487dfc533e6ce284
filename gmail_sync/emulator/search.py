"""The subset of Gmail's search operators (support.google.com/mail/answer/7190) the emulator knows.

Terms are ANDed; ``OR`` between two terms and ``{a b}`` make alternatives; ``-term`` negates.
Operators: ``in:`` / ``is:`` / ``label:`` / ``category:``, ``from:`` ``to:`` ``cc:``
``subject:``, ``rfc822msgid:``, ``newer_than:`` / ``older_than:`` (d, m, y), ``after:`` /
``before:`` (YYYY/MM/DD or epoch seconds; dates are midnight Pacific time as Gmail documents),
``has:attachment``, ``filename:``, ``larger:`` / ``smaller:``. Anything else is free text, matched
against subject, addresses and body text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from gmail_sync.emulator.errors import invalid_argument
from gmail_sync.emulator.mime import MessageFacts

_PACIFIC = ZoneInfo("America/Los_Angeles")
_TOKEN = re.compile(r'(-?)(?:([A-Za-z_0-9]+):)?("[^"]*"|\{[^}]*\}|\([^)]*\)|[^\s]+)')
_AGE = re.compile(r"^(\d+)([dmy])$")
_SIZE = re.compile(r"^(\d+)([km]?)$", re.IGNORECASE)
_DAY_MS = 86_400_000
_AGE_MS = {"d": _DAY_MS, "m": 30 * _DAY_MS, "y": 365 * _DAY_MS}

_IN_LABELS = {
    "inbox": "INBOX",
    "sent": "SENT",
    "trash": "TRASH",
    "spam": "SPAM",
    "drafts": "DRAFT",
    "draft": "DRAFT",
    "starred": "STARRED",
    "important": "IMPORTANT",
    "unread": "UNREAD",
}
_CATEGORIES = {
    "primary": "CATEGORY_PERSONAL",
    "social": "CATEGORY_SOCIAL",
    "promotions": "CATEGORY_PROMOTIONS",
    "updates": "CATEGORY_UPDATES",
    "forums": "CATEGORY_FORUMS",
}


@dataclass(frozen=True)
class Term:
    key: str | None
    value: str
    negated: bool = False


@dataclass(frozen=True)
class SearchTarget:
    """What a term is matched against."""

    label_ids: frozenset[str]
    label_names: frozenset[str]  # normalised names of the message's labels
    internal_date: int
    size: int
    facts: MessageFacts


Query = list[list[Term]]  # AND of ORs


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def label_query_name(name: str) -> str:
    # Gmail writes "Support/New" as label:support-new (spaces and slashes become dashes).
    return re.sub(r"[\s/]+", "-", name.strip()).casefold()


def parse_query(q: str | None) -> Query:
    clauses: Query = []
    join_next = False
    for match in _TOKEN.finditer(q or ""):
        neg, key, value = match.group(1), match.group(2), match.group(3)
        if not key and not neg and value == "OR":
            join_next = bool(clauses)
            continue
        if not key and not neg and value == "AND":
            continue
        if not key and value.startswith("{") and value.endswith("}"):
            term_group = [
                Term(t.key, t.value, t.negated != bool(neg))
                for clause in parse_query(value[1:-1])
                for t in clause
            ]
        elif not key and value.startswith("(") and value.endswith(")"):
            # A parenthesised group: its terms all hold (an AND inside one clause is not
            # expressible here; flatten it into the outer AND).
            for clause in parse_query(value[1:-1]):
                clauses.append(clause)
            join_next = False
            continue
        else:
            term_group = [Term(key.lower() if key else None, _unquote(value), bool(neg))]
        if join_next and clauses:
            clauses[-1].extend(term_group)
        else:
            clauses.append(list(term_group))
        join_next = False
    return clauses


def mentions_spam_or_trash(query: Query) -> bool:
    """Gmail leaves SPAM and TRASH out of searches unless the query names them."""
    for clause in query:
        for term in clause:
            if term.key == "in" and term.value.lower() in {"trash", "spam", "anywhere"}:
                return True
            if term.key == "label" and term.value.lower() in {"trash", "spam"}:
                return True
    return False


@lru_cache(maxsize=256)
def _date_ms(value: str) -> int:
    if value.isdigit():
        return int(value) * 1000
    for fmt in ("%Y/%m/%d", "%Y-%m-%d", "%m/%d/%Y"):
        try:
            day = datetime.strptime(value, fmt)
        except ValueError:
            continue
        return int(day.replace(tzinfo=_PACIFIC).timestamp() * 1000)
    raise invalid_argument(f"Invalid search query date: {value}", location="q")


@lru_cache(maxsize=256)
def _size(value: str) -> int:
    match = _SIZE.match(value)
    if not match:
        raise invalid_argument(f"Invalid search query size: {value}", location="q")
    factor = {"": 1, "k": 1024, "m": 1024 * 1024}[match.group(2).lower()]
    return int(match.group(1)) * factor


def _matches_term(term: Term, t: SearchTarget, now_ms: int) -> bool:
    key, value = term.key, term.value
    low = value.casefold()
    f = t.facts
    if key in ("in", "is"):
        if low == "anywhere":
            return True
        if low == "read":
            return "UNREAD" not in t.label_ids
        label = _IN_LABELS.get(low)
        return label in t.label_ids if label else label_query_name(value) in t.label_names
    if key == "label":
        return label_query_name(value) in t.label_names or value in t.label_ids
    if key == "category":
        return _CATEGORIES.get(low, "") in t.label_ids
    if key == "from":
        return low in f.from_text
    if key == "to":
        return low in f.to_text or low in f.cc_text
    if key == "cc":
        return low in f.cc_text
    if key == "subject":
        return low in f.subject.casefold()
    if key == "rfc822msgid":
        wanted = value.strip().strip("<>").casefold()
        return f.message_id is not None and f.message_id.casefold() == wanted
    if key in ("newer_than", "older_than"):
        match = _AGE.match(low)
        if not match:
            raise invalid_argument(f"Invalid search query age: {value}", location="q")
        limit = now_ms - int(match.group(1)) * _AGE_MS[match.group(2)]
        return t.internal_date > limit if key == "newer_than" else t.internal_date < limit
    if key in ("after", "newer"):
        return t.internal_date >= _date_ms(value)
    if key in ("before", "older"):
        return t.internal_date < _date_ms(value)
    if key == "has":
        if low == "attachment":
            return bool(f.attachment_names)
        if low == "userlabels":
            return any(label.startswith("Label_") for label in t.label_ids)
        if low == "nouserlabels":
            return not any(label.startswith("Label_") for label in t.label_ids)
        return False
    if key == "filename":
        return any(low in name.casefold() for name in f.attachment_names)
    if key == "larger":
        return t.size > _size(value)
    if key == "smaller":
        return t.size < _size(value)
    text = f"{key}:{value}" if key else value
    needle = text.casefold()
    return (
        needle in f.subject.casefold()
        or needle in f.from_text
        or needle in f.to_text
        or needle in f.cc_text
        or needle in f.body_text
    )


def compile_query(query: Query, now_ms: int) -> Callable[[SearchTarget], bool]:
    # Validate dates and sizes once, before any message is looked at.
    for clause in query:
        for term in clause:
            if term.key in ("after", "before", "newer", "older"):
                _date_ms(term.value)
            if term.key in ("larger", "smaller"):
                _size(term.value)

    def match(target: SearchTarget) -> bool:
        return all(
            any(_matches_term(term, target, now_ms) != term.negated for term in clause)
            for clause in query
        )

    return match
