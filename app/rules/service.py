"""Triage rules: storage (checked on save), the compiled rule set of a mailbox, applying it to the
tickets a sync chunk opened or a customer's reply touched, and the dry run.

**The cache.** A mailbox's rules are compiled once per process and kept; every lookup first asks
the database one aggregate (count, highest id, latest ``updated_at`` of the rules that apply to
the mailbox): a rule created, edited or deleted by any process changes that answer, and the next
lookup compiles again. So an edit through the API is seen by the sync worker's next chunk.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, inspect, or_, select
from sqlalchemy.orm import Session, selectinload

from app.agents.models import Agent, Team
from app.customers.models import Customer
from app.db.base import utcnow
from app.errors import NotFound, ValidationFailed
from app.mailboxes.models import Mailbox
from app.messages.models import Message
from app.rules.actions import RuleOutcome, apply_firings
from app.rules.engine import ID_ACTIONS, Firing, RuleSet, compile_rule, compile_rules
from app.rules.facts import MessageFacts
from app.rules.models import Rule
from app.rules.schemas import DryRunFields, DryRunRequest, RuleCreate, RuleUpdate
from app.sla.calendar import is_business_time
from app.sla.models import SlaPolicy
from app.sla.service import calendar_for_mailbox
from app.tickets.models import PRIORITY_RANK, Priority, Ticket
from templates_replies.greeting import base_language

__all__ = [
    "apply_rules_to_new_tickets",
    "apply_rules_to_replies",
    "apply_rules_to_reply",
    "create_rule",
    "delete_rule",
    "dry_run",
    "get_rule",
    "list_rules",
    "rule_set_for_mailbox",
    "simulate",
    "update_rule",
]

_ORDER = (Rule.position, Rule.id)


# -- storage --------------------------------------------------------------------------------------


def list_rules(session: Session, *, mailbox_id: int | None = None) -> list[Rule]:
    """All rules; with ``mailbox_id``, the rules evaluated for that mailbox (its own and the
    global ones) in evaluation order."""
    stmt = select(Rule)
    if mailbox_id is not None:
        if session.get(Mailbox, mailbox_id) is None:
            raise NotFound(f"mailbox {mailbox_id} not found", code="mailbox_not_found")
        stmt = stmt.where(_applies_to(mailbox_id))
    return list(session.execute(stmt.order_by(*_ORDER)).scalars())


def get_rule(session: Session, rule_id: int) -> Rule:
    rule = session.get(Rule, rule_id)
    if rule is None:
        raise NotFound(f"rule {rule_id} not found", code="rule_not_found")
    return rule


def create_rule(session: Session, *, data: RuleCreate) -> Rule:
    """Check and store a rule: a rule that does not compile or names an unknown mailbox, team,
    agent or SLA policy is refused (422) and nothing is written."""
    fields = data.model_dump(mode="json")
    rule = Rule(**_checked(session, fields))
    session.add(rule)
    session.flush()
    return rule


def update_rule(session: Session, *, rule_id: int, update: RuleUpdate) -> Rule:
    rule = get_rule(session, rule_id)
    fields = {name: getattr(rule, name) for name in _RULE_FIELDS}
    fields.update(update.model_dump(mode="json", exclude_unset=True))
    for name, value in _checked(session, fields).items():
        setattr(rule, name, value)
    # Always an UPDATE, so ``updated_at`` moves and every process's cache key with it.
    rule.updated_at = utcnow()
    session.flush()
    return rule


def delete_rule(session: Session, *, rule_id: int) -> None:
    session.delete(get_rule(session, rule_id))
    session.flush()


_RULE_FIELDS = (
    "name",
    "mailbox_id",
    "position",
    "enabled",
    "match",
    "conditions",
    "actions",
    "run_on_replies",
    "stop_processing",
)


@dataclass
class _Candidate:
    """A rule as ``compile_rule`` reads it, before it has an id."""

    name: str
    position: int
    enabled: bool
    match: str
    conditions: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    run_on_replies: bool
    stop_processing: bool
    id: int | None = None


def _checked(session: Session, fields: dict[str, Any]) -> dict[str, Any]:
    """The rule's columns, checked: it compiles, and the ids it names exist. Conditions are
    stored without nulls; actions in their normalised form."""
    conditions = [{k: v for k, v in c.items() if v is not None} for c in fields["conditions"]]
    actions = [{k: v for k, v in a.items() if v is not None} for a in fields["actions"]]
    candidate = _Candidate(
        name=fields["name"],
        position=fields["position"],
        enabled=fields["enabled"],
        match=fields["match"],
        conditions=conditions,
        actions=actions,
        run_on_replies=fields["run_on_replies"],
        stop_processing=fields["stop_processing"],
    )
    compiled = compile_rule(candidate)
    mailbox_id = fields["mailbox_id"]
    if mailbox_id is not None and session.get(Mailbox, mailbox_id) is None:
        raise ValidationFailed(
            f"rule {candidate.name!r}: no mailbox {mailbox_id}",
            code="unknown_mailbox",
            details={"rule": candidate.name, "mailbox_id": mailbox_id},
        )
    for index, action in enumerate(compiled.firing.actions):
        if action["type"] in ID_ACTIONS:
            _check_reference(session, candidate.name, index, action)
    return {
        **{name: fields[name] for name in _RULE_FIELDS},
        "conditions": conditions,
        "actions": list(compiled.firing.actions),
    }


_REFERENCES: dict[str, tuple[type[Team] | type[Agent] | type[SlaPolicy], str, str]] = {
    "set_team": (Team, "team", "unknown_team"),
    "assign_team": (Team, "team", "unknown_team"),
    "assign_agent": (Agent, "agent", "unknown_agent"),
    "set_sla_policy": (SlaPolicy, "SLA policy", "unknown_sla_policy"),
}


def _check_reference(session: Session, name: str, index: int, action: dict[str, Any]) -> None:
    model, what, code = _REFERENCES[action["type"]]
    row = session.get(model, action["value"])
    problem = None
    if row is None:
        problem = f"no {what} {action['value']}"
    elif isinstance(row, Agent) and not row.is_active:
        problem = f"agent {action['value']} is deactivated"
    if problem is not None:
        raise ValidationFailed(
            f"rule {name!r}: actions[{index}] ({action['type']}): {problem}",
            code=code,
            details={"rule": name, "action": index},
        )


def _applies_to(mailbox_id: int) -> Any:
    return or_(Rule.mailbox_id == mailbox_id, Rule.mailbox_id.is_(None))


# -- the compiled rule set ------------------------------------------------------------------------


_cache: dict[tuple[str, int], tuple[tuple[Any, ...], RuleSet]] = {}
_cache_lock = threading.Lock()


def rule_set_for_mailbox(session: Session, *, mailbox_id: int) -> RuleSet:
    """The mailbox's compiled rules (global ones included), from the process cache when the
    rules have not changed since (one aggregate query), else loaded and compiled. A stored rule
    that no longer compiles is left out with a warning rather than stopping the sync."""
    fingerprint = tuple(
        session.execute(
            select(func.count(Rule.id), func.max(Rule.id), func.max(Rule.updated_at)).where(
                _applies_to(mailbox_id)
            )
        ).one()
    )
    key = (session.get_bind().engine.url.render_as_string(hide_password=True), mailbox_id)
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    if fingerprint[0] == 0:
        rule_set = RuleSet(())
    else:
        rows = session.execute(select(Rule).where(_applies_to(mailbox_id)).order_by(*_ORDER))
        rule_set = compile_rules(list(rows.scalars()), skip_invalid=True)
    with _cache_lock:
        _cache[key] = (fingerprint, rule_set)
    return rule_set


# -- applying -------------------------------------------------------------------------------------


def apply_rules_to_new_tickets(
    session: Session,
    *,
    rule_set: RuleSet,
    arrivals: Sequence[tuple[Ticket, MessageFacts]],
    now: datetime | None = None,
) -> dict[int, RuleOutcome]:
    """Evaluate the rules on each new ticket's first message and apply what fires. Returns the
    outcome of each ticket a rule fired for, by ticket id."""
    outcomes: dict[int, RuleOutcome] = {}
    if not rule_set.has_active_rules:
        return outcomes
    now = now or utcnow()
    for ticket, facts in arrivals:
        firings = rule_set.evaluate(facts)
        if firings:
            outcomes[ticket.id] = apply_firings(session, ticket=ticket, firings=firings, now=now)
    return outcomes


def apply_rules_to_replies(
    session: Session,
    *,
    rule_set: RuleSet,
    replies: Sequence[tuple[Ticket, MessageFacts]],
    now: datetime | None = None,
) -> dict[int, RuleOutcome]:
    """Evaluate the ``run_on_replies`` rules on customers' replies to existing tickets and apply
    what fires (a ticket with several replies in the chunk: each is evaluated)."""
    if not rule_set.has_reply_rules:
        return {}
    fired: list[tuple[Ticket, list[Firing]]] = []
    for ticket, facts in replies:
        firings = rule_set.evaluate(facts, reply=True)
        if firings:
            fired.append((ticket, firings))
    if not fired:
        return {}
    _load_for_actions(session, [ticket for ticket, _ in fired])
    now = now or utcnow()
    outcomes: dict[int, RuleOutcome] = {}
    for ticket, firings in fired:
        outcome = apply_firings(session, ticket=ticket, firings=firings, now=now, only_changes=True)
        previous = outcomes.get(ticket.id)
        if previous is not None:
            outcome.fired = previous.fired + outcome.fired
        outcomes[ticket.id] = outcome
    return outcomes


def apply_rules_to_reply(
    session: Session,
    *,
    rule_set: RuleSet,
    ticket: Ticket,
    facts: MessageFacts,
    now: datetime | None = None,
) -> RuleOutcome:
    outcomes = apply_rules_to_replies(
        session, rule_set=rule_set, replies=[(ticket, facts)], now=now
    )
    return outcomes.get(ticket.id) or RuleOutcome(ticket_id=ticket.id)


def _load_for_actions(session: Session, tickets: Sequence[Ticket]) -> None:
    """Load the tags and threads the actions change, for the tickets that lack them, in one
    query (they are in the session already: only the missing collections are filled in)."""
    missing = [t.id for t in tickets if {"tag_rows", "threads"} & set(inspect(t).unloaded)]
    if missing:
        stmt = (
            select(Ticket)
            .where(Ticket.id.in_(missing))
            .options(selectinload(Ticket.tag_rows), selectinload(Ticket.threads))
        )
        session.execute(stmt).scalars().all()


# -- dry run --------------------------------------------------------------------------------------


def dry_run(session: Session, *, request: DryRunRequest) -> dict[str, Any]:
    """Which rules would fire for a message and what they would change, without changing
    anything: ``{"facts", "fired", "effects"}``."""
    mailbox = session.get(Mailbox, request.mailbox_id)
    if mailbox is None:
        raise ValidationFailed(f"no mailbox {request.mailbox_id}", code="unknown_mailbox")
    ticket: Ticket | None = None
    if request.raw is not None:
        facts = _facts_of_raw(session, mailbox, request.raw)
    elif request.message_id is not None:
        facts, ticket = _facts_of_message(session, mailbox, request.message_id)
    elif request.fields is not None:
        facts = _facts_of_fields(session, mailbox, request.fields)
    else:  # DryRunRequest insists on one source
        raise ValidationFailed("give exactly one of raw, message_id or fields")
    rule_set = rule_set_for_mailbox(session, mailbox_id=mailbox.id)
    firings = rule_set.evaluate(facts, reply=request.reply)
    return {
        "facts": facts.as_dict(),
        "fired": [firing.as_dict() for firing in firings],
        "effects": simulate(firings, ticket=ticket),
    }


def simulate(firings: Sequence[Firing], *, ticket: Ticket | None = None) -> dict[str, Any]:
    """What ``apply_firings`` would change, worked out on paper: from the ticket's state, or a
    new ticket's (normal priority, no tags, no team)."""
    priority = Priority(ticket.priority) if ticket is not None else Priority.NORMAL
    tags = set(ticket.tags) if ticket is not None and _loaded(ticket, "tag_rows") else set()
    effects: dict[str, Any] = {
        "priority": None,
        "tags_added": [],
        "team_id": None,
        "assignee_id": None,
        "assign_team_id": None,
        "sla_policy_id": None,
        "skip_acknowledgement": False,
        "close_as_spam": False,
    }
    added: list[str] = []
    for action in (action for firing in firings for action in firing.actions):
        kind, value = action["type"], action.get("value")
        if kind == "set_priority":
            new = Priority(value)
            if new != priority and not (
                action.get("only_raise") and PRIORITY_RANK[new] <= PRIORITY_RANK[priority]
            ):
                priority = new
                effects["priority"] = new.value
        elif kind in ("add_tag", "close_as_spam"):
            tag = value if kind == "add_tag" else "spam"
            if tag not in tags:
                tags.add(tag)
                added.append(tag)
            if kind == "close_as_spam":
                effects["close_as_spam"] = True
                effects["skip_acknowledgement"] = True
        elif kind == "set_team":
            effects["team_id"] = value
        elif kind == "assign_team":
            effects["team_id"] = effects["assign_team_id"] = value
        elif kind == "assign_agent":
            effects["assignee_id"] = value
        elif kind == "set_sla_policy":
            effects["sla_policy_id"] = value
        elif kind == "skip_acknowledgement":
            effects["skip_acknowledgement"] = True
    effects["tags_added"] = added
    return effects


def _loaded(ticket: Ticket, name: str) -> bool:
    return name not in inspect(ticket).unloaded


def _segment_of(session: Session, address: str) -> str | None:
    """The sender's stored segment; an unknown sender would be created as "regular"."""
    segment = session.execute(
        select(Customer.segment).where(Customer.email == address.strip().lower())
    ).scalar_one_or_none()
    return segment or "regular"


def _business_hours(session: Session, mailbox: Mailbox, at: datetime | None) -> bool:
    calendar = calendar_for_mailbox(session, mailbox_id=mailbox.id)
    if at is not None and at.tzinfo is None:
        at = at.replace(tzinfo=UTC)  # a time given without a zone is taken as UTC
    return is_business_time(calendar, at or utcnow())


def _facts_of_raw(session: Session, mailbox: Mailbox, raw: str) -> MessageFacts:
    # The sync's own parser and verdict, so the dry run sees the message as the sync would.
    from gmail_sync.automated import automated_verdict
    from gmail_sync.parse import parse_message

    parsed = parse_message(raw.encode("utf-8", "replace"))
    verdict = automated_verdict(parsed, own_addresses={mailbox.email}, label_ids=("INBOX",))
    return MessageFacts.from_parsed(
        parsed,
        segment=_segment_of(session, parsed.from_address or ""),
        business_hours=_business_hours(session, mailbox, parsed.date),
        automated=verdict.automated,
        default_language=base_language(mailbox.language),
    )


def _facts_of_message(
    session: Session, mailbox: Mailbox, message_id: int
) -> tuple[MessageFacts, Ticket | None]:
    message = session.get(Message, message_id)
    if message is None or message.mailbox_id != mailbox.id:
        raise ValidationFailed(
            f"no message {message_id} in mailbox {mailbox.id}", code="unknown_message"
        )
    facts = MessageFacts.build(
        from_address=message.from_address,
        to=message.to_addresses or [],
        cc=message.cc_addresses or [],
        subject=message.subject or "",
        body=message.text_body or "",
        segment=_segment_of(session, message.from_address),
        has_attachment=bool(message.attachments),
        business_hours=_business_hours(session, mailbox, message.date or message.created_at),
        automated=message.is_automated,
        default_language=base_language(mailbox.language),
    )
    ticket = None
    if message.ticket_id is not None:
        ticket = session.execute(
            select(Ticket)
            .where(Ticket.id == message.ticket_id)
            .options(selectinload(Ticket.tag_rows))
        ).scalar_one_or_none()
    return facts, ticket


def _facts_of_fields(session: Session, mailbox: Mailbox, fields: DryRunFields) -> MessageFacts:
    business_hours = fields.business_hours
    if business_hours is None:
        business_hours = _business_hours(session, mailbox, fields.received_at)
    return MessageFacts.build(
        from_address=fields.from_address,
        to=fields.to,
        cc=fields.cc,
        subject=fields.subject,
        body=fields.body,
        language=fields.language,
        segment=fields.segment or _segment_of(session, fields.from_address),
        has_attachment=fields.has_attachment,
        business_hours=business_hours,
        automated=fields.automated,
        default_language=base_language(mailbox.language),
    )
