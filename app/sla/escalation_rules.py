"""Escalation rules: what an SLA escalation does, per stage, per mailbox or for all of them.

**Which rule applies** to a mailbox at a stage: its own enabled rule, else the enabled global
rule (``mailbox_id`` null), else the built-in defaults — at risk: ``notify_lead``; breached:
``notify_lead``, ``raise_priority``, ``add_label``. A disabled rule counts as absent (the next in
line applies); an enabled rule with no actions silences the stage. There is at most one rule per
(mailbox or global, stage): a second is refused (409), so "which one wins" never depends on ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.errors import AlreadyExists, NotFound, ValidationFailed
from app.mailboxes.models import Mailbox
from app.sla.models import EscalationRule
from app.sla.schemas import EscalationRuleCreate, EscalationRuleUpdate

Stage = Literal["at_risk", "breached"]
STAGES: tuple[Stage, ...] = ("at_risk", "breached")
ACTION_TYPES = ("notify_lead", "raise_priority", "reassign", "add_label")

DEFAULT_ACTIONS: dict[Stage, tuple[str, ...]] = {
    "at_risk": ("notify_lead",),
    "breached": ("notify_lead", "raise_priority", "add_label"),
}


@dataclass(frozen=True)
class Effective:
    """The actions of one stage for one mailbox, and where they come from."""

    stage: Stage
    actions: tuple[str, ...]
    source: Literal["mailbox", "global", "default"]
    rule_id: int | None


def effective_rules(session: Session, *, mailbox_id: int | None) -> dict[Stage, Effective]:
    """Stage → what applies to the mailbox (``None``: a mailbox without rules of its own)."""
    scope = EscalationRule.mailbox_id.is_(None)
    if mailbox_id is not None:
        scope = or_(scope, EscalationRule.mailbox_id == mailbox_id)
    rows = session.execute(
        select(EscalationRule)
        .where(EscalationRule.enabled.is_(True), scope)
        .order_by(EscalationRule.id)
    ).scalars()
    own: dict[str, EscalationRule] = {}
    shared: dict[str, EscalationRule] = {}
    for rule in rows:
        (own if rule.mailbox_id is not None else shared).setdefault(rule.stage, rule)
    result: dict[Stage, Effective] = {}
    for stage in STAGES:
        if stage in own:
            rule = own[stage]
            result[stage] = Effective(stage, _types(rule.actions), "mailbox", rule.id)
        elif stage in shared:
            rule = shared[stage]
            result[stage] = Effective(stage, _types(rule.actions), "global", rule.id)
        else:
            result[stage] = Effective(stage, DEFAULT_ACTIONS[stage], "default", None)
    return result


def _types(actions: Sequence[dict[str, object]] | None) -> tuple[str, ...]:
    """The known action types of a stored list, each once. A type written outside the API that
    we do not know is skipped rather than failing every escalation of the mailbox."""
    found: list[str] = []
    for action in actions or ():
        kind = action.get("type") if isinstance(action, dict) else None
        if kind in ACTION_TYPES and kind not in found:
            found.append(str(kind))
    return tuple(found)


# -- CRUD (REST) ----------------------------------------------------------------------------------


def list_rules(session: Session, *, mailbox_id: int | None = None) -> list[EscalationRule]:
    """All rules; with ``mailbox_id``, those that can apply to it (its own and the global ones)."""
    stmt = select(EscalationRule).order_by(EscalationRule.id)
    if mailbox_id is not None:
        stmt = stmt.where(
            or_(EscalationRule.mailbox_id == mailbox_id, EscalationRule.mailbox_id.is_(None))
        )
    return list(session.execute(stmt).scalars())


def get_rule(session: Session, rule_id: int) -> EscalationRule:
    rule = session.get(EscalationRule, rule_id)
    if rule is None:
        raise NotFound(f"escalation rule {rule_id} not found", code="escalation_rule_not_found")
    return rule


def create_rule(session: Session, *, data: EscalationRuleCreate) -> EscalationRule:
    fields = {
        "mailbox_id": data.mailbox_id,
        "stage": data.stage,
        "actions": [a.model_dump() for a in data.actions],
        "enabled": data.enabled,
    }
    _check(session, fields, rule_id=None)
    rule = EscalationRule(**fields)
    session.add(rule)
    session.flush()
    return rule


def update_rule(session: Session, *, rule_id: int, update: EscalationRuleUpdate) -> EscalationRule:
    rule = get_rule(session, rule_id)
    fields: dict[str, object] = {
        "mailbox_id": rule.mailbox_id,
        "stage": rule.stage,
        "actions": rule.actions,
        "enabled": rule.enabled,
    }
    changes = update.model_dump(exclude_unset=True)
    if update.actions is not None:
        changes["actions"] = [a.model_dump() for a in update.actions]
    fields.update(changes)
    _check(session, fields, rule_id=rule.id)
    for name, value in fields.items():
        setattr(rule, name, value)
    session.flush()
    return rule


def delete_rule(session: Session, *, rule_id: int) -> None:
    """Delete; the global rule or the defaults apply again. Escalations already done stay."""
    session.delete(get_rule(session, rule_id))
    session.flush()


def _check(session: Session, fields: dict[str, object], *, rule_id: int | None) -> None:
    mailbox_id = fields["mailbox_id"]
    if mailbox_id is not None and session.get(Mailbox, mailbox_id) is None:
        raise ValidationFailed(f"unknown mailbox {mailbox_id}", code="unknown_mailbox")
    stmt = select(EscalationRule.id).where(
        EscalationRule.stage == fields["stage"],
        EscalationRule.mailbox_id.is_(None)
        if mailbox_id is None
        else EscalationRule.mailbox_id == mailbox_id,
    )
    if rule_id is not None:
        stmt = stmt.where(EscalationRule.id != rule_id)
    clash = session.execute(stmt.limit(1)).scalar_one_or_none()
    if clash is not None:
        where = "all mailboxes" if mailbox_id is None else f"mailbox {mailbox_id}"
        raise AlreadyExists(
            f"escalation rule {clash} already covers stage {fields['stage']} for {where}; "
            "change that one",
            code="escalation_rule_exists",
            details={"rule_id": clash},
        )
