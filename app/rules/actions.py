"""What a fired rule does to a ticket: the same changes an agent's edit makes, with the same events,
signed by the rule (actor kind "rule", actor id the rule's id).

Each firing leaves a ``rule_fired`` event (the rule's name and its action types), then one event
per change, under the field an agent's change would use: ``priority``, ``tags``, ``team``,
``assignee``, ``status``, ``sla_policy``. An action that changes nothing (the priority already
set, ``only_raise`` on a higher priority, a tag already there) leaves no change event. An id that
vanished since the rule was saved (a deleted team, a deactivated agent) skips that action with a
warning: the rule's other actions still apply.

The SLA: a priority change recomputes the due times from the ticket's creation, as an agent's
change does (app/sla/service.py); ``set_sla_policy`` holds the ticket to that policy's targets
whatever its priority — until an agent changes the priority, which picks the policy anew. The
recomputation runs once per ticket, after all its firings.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.agents.models import Agent, Team
from app.assignment.service import assign_ticket
from app.db.base import utcnow
from app.rules.engine import Firing
from app.sla.models import SlaPolicy
from app.sla.service import apply_sla
from app.tickets.events import Actor, record_event
from app.tickets.models import PRIORITY_RANK, ActorKind, Priority, Status, Ticket
from app.tickets.service import LABELLED_FIELDS, add_tag, mark_labels_dirty, set_status

__all__ = ["FIRED_EVENT", "SPAM_TAG", "RuleOutcome", "apply_firings"]

log = logging.getLogger(__name__)

FIRED_EVENT = "rule_fired"
SPAM_TAG = "spam"
_RUNNING = (Status.NEW, Status.OPEN, Status.PENDING)


@dataclass
class RuleOutcome:
    """What the rules did to one ticket (the sync reads it to skip the acknowledgement and to
    decide on the default team)."""

    ticket_id: int
    fired: list[Firing] = field(default_factory=list)
    # The first rule that asked to skip the acknowledgement / closed the ticket as spam.
    skip_ack_rule_id: int | None = None
    spam_rule_id: int | None = None
    # An assign_agent or assign_team action ran (even if the team found nobody available).
    assigned: bool = False
    changed: list[str] = field(default_factory=list)

    @property
    def skips_acknowledgement(self) -> bool:
        return self.skip_ack_rule_id is not None or self.spam_rule_id is not None


def apply_firings(
    session: Session,
    *,
    ticket: Ticket,
    firings: Sequence[Firing],
    now: datetime | None = None,
    only_changes: bool = False,
) -> RuleOutcome:
    """Apply the firings' actions to ``ticket``, in order, and record the events.

    ``only_changes``: a firing whose actions changed nothing leaves no ``rule_fired`` event (the
    customers' replies: every reply of an urgent conversation would otherwise log one).

    ``ticket.tag_rows`` and ``ticket.threads`` must be loaded (the sync's tickets have them)."""
    outcome = RuleOutcome(ticket_id=ticket.id, fired=list(firings))
    if not firings:
        return outcome
    now = now or utcnow()
    applier = _Applier(session, ticket, outcome, now)
    for firing in firings:
        actor = Actor(kind=ActorKind.RULE, id=firing.rule_id)
        fired = record_event(
            session,
            ticket_id=ticket.id,
            actor=actor,
            field=FIRED_EVENT,
            new={"rule": firing.name, "actions": firing.action_types},
        )
        before = len(outcome.changed)
        for action in firing.actions:
            applier.apply(action, actor, firing)
        if only_changes and len(outcome.changed) == before:
            # A reply that changed nothing (say, an urgency rule on a ticket already urgent, or
            # the customer quoting their first message): no line in the audit log for it.
            outcome.fired.remove(firing)
            if fired in session.new:
                session.expunge(fired)
            else:
                session.delete(fired)
    applier.finish()
    return outcome


class _Applier:
    def __init__(self, session: Session, ticket: Ticket, outcome: RuleOutcome, now: datetime):
        self.session = session
        self.ticket = ticket
        self.outcome = outcome
        self.now = now
        self.recompute_sla = False
        self.forced_policy: SlaPolicy | None = None

    def apply(self, action: dict[str, Any], actor: Actor, firing: Firing) -> None:
        kind, value = action["type"], action.get("value")
        method = getattr(self, f"_{kind}")
        method(value, action, actor, firing)

    def change(self, actor: Actor, name: str, old: Any, new: Any) -> None:
        record_event(
            self.session, ticket_id=self.ticket.id, actor=actor, field=name, old=old, new=new
        )
        self.outcome.changed.append(name)

    def finish(self) -> None:
        ticket = self.ticket
        if self.recompute_sla and ticket.status in _RUNNING:
            apply_sla(self.session, ticket=ticket, policy=self.forced_policy)
        if not self.outcome.changed:
            return
        if LABELLED_FIELDS.intersection(self.outcome.changed):
            mark_labels_dirty(ticket)
        ticket.updated_at = utcnow()

    # -- the actions (``_`` + the action type) ----------------------------------------------
    def _set_priority(self, value: str, action: dict[str, Any], actor: Actor, _f: Firing) -> None:
        ticket, new = self.ticket, Priority(value)
        old = Priority(ticket.priority)
        if new == old or (action.get("only_raise") and PRIORITY_RANK[new] <= PRIORITY_RANK[old]):
            return
        ticket.priority = new
        self.recompute_sla = True
        self.change(actor, "priority", old.value, new.value)

    def _add_tag(self, value: str, _a: dict[str, Any], actor: Actor, _f: Firing) -> None:
        self._tag(value, actor)

    def _tag(self, tag: str, actor: Actor) -> None:
        if add_tag(self.session, ticket=self.ticket, tag=tag, actor=actor):
            self.outcome.changed.append("tags")

    def _set_team(self, value: int, _a: dict[str, Any], actor: Actor, firing: Firing) -> None:
        if self.session.get(Team, value) is None:
            _vanished(firing, "team", value)
            return
        if self.ticket.team_id != value:
            self.change(actor, "team", self.ticket.team_id, value)
            self.ticket.team_id = value

    def _assign_agent(self, value: int, _a: dict[str, Any], actor: Actor, firing: Firing) -> None:
        ticket = self.ticket
        if ticket.status not in _RUNNING:
            return  # closed as spam by an earlier action: nobody's work
        agent = self.session.get(Agent, value)
        if agent is None or not agent.is_active:
            _vanished(firing, "agent", value)
            return
        self.outcome.assigned = True
        ticket.awaiting_assignment = False
        if ticket.assignee_id == agent.id:
            return
        old = self.session.get(Agent, ticket.assignee_id) if ticket.assignee_id else None
        ticket.assignee_id = agent.id
        self.change(actor, "assignee", old.email if old else None, agent.email)

    def _assign_team(self, value: int, _a: dict[str, Any], actor: Actor, firing: Firing) -> None:
        ticket = self.ticket
        if ticket.status not in _RUNNING:
            return
        if self.session.get(Team, value) is None:
            _vanished(firing, "team", value)
            return
        self.outcome.assigned = True
        # The team's strategy picks the member (or the ticket waits): its events are its own.
        assignee = ticket.assignee_id
        assign_ticket(self.session, ticket=ticket, actor=actor, team_id=value, now=self.now)
        if ticket.assignee_id != assignee:
            self.outcome.changed.append("assignee")

    def _set_sla_policy(self, value: int, _a: dict[str, Any], actor: Actor, firing: Firing) -> None:
        policy = self.session.get(SlaPolicy, value)
        if policy is None:
            _vanished(firing, "SLA policy", value)
            return
        self.forced_policy = policy
        self.recompute_sla = True
        if self.ticket.sla_policy_id != policy.id:
            self.change(actor, "sla_policy", self.ticket.sla_policy_id, policy.id)

    def _skip_acknowledgement(self, _v: None, _a: dict[str, Any], _ac: Actor, f: Firing) -> None:
        if self.outcome.skip_ack_rule_id is None:
            self.outcome.skip_ack_rule_id = f.rule_id

    def _close_as_spam(self, _v: None, _a: dict[str, Any], actor: Actor, firing: Firing) -> None:
        ticket = self.ticket
        if self.outcome.spam_rule_id is None:
            self.outcome.spam_rule_id = firing.rule_id
        if ticket.status != Status.CLOSED:
            old = ticket.status
            set_status(self.session, ticket, Status.CLOSED)
            self.change(actor, "status", old.value, Status.CLOSED.value)
        ticket.awaiting_assignment = False
        self._tag(SPAM_TAG, actor)


def _vanished(firing: Firing, what: str, value: int) -> None:
    log.warning(
        "rule %s %r: %s %s no longer exists; action skipped",
        firing.rule_id,
        firing.name,
        what,
        value,
    )
