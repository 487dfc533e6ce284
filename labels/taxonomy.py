"""Our Gmail labels: names, colours, and the labels a ticket's state calls for.

Everything lives under one root (default ``Support``) so that people see the helpdesk's labels
together in Gmail's sidebar and we never touch a label that is not ours. Pure: no Gmail, no DB.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.tickets.models import Priority, Status

DEFAULT_ROOT = "Support"

# Colours from the fixed palette Gmail accepts (Gmail API, users.labels, LabelColor).
_STATUS_COLOURS: dict[Status, tuple[str, str]] = {
    Status.NEW: ("#4a86e8", "#ffffff"),
    Status.OPEN: ("#16a766", "#ffffff"),
    Status.PENDING: ("#ffad47", "#000000"),
    Status.RESOLVED: ("#a479e2", "#ffffff"),
    Status.CLOSED: ("#999999", "#ffffff"),
}
_PRIORITY_COLOURS: dict[Priority, tuple[str, str]] = {
    Priority.URGENT: ("#cc3a21", "#ffffff"),
    Priority.HIGH: ("#fb4c2f", "#ffffff"),
}
_ASSIGNED_COLOURS = ("#c9daf8", "#000000")
_UNASSIGNED_COLOURS = ("#efefef", "#000000")
_AUTOMATED_COLOURS = ("#cccccc", "#000000")
_SLA_BREACHED_COLOURS = ("#cc3a21", "#ffffff")

# Only urgent and high get a label: a label on every normal ticket would be noise.
LABELLED_PRIORITIES = (Priority.URGENT, Priority.HIGH)


@dataclass(frozen=True)
class LabelSpec:
    name: str
    background: str
    text: str


@dataclass(frozen=True)
class TicketLabelState:
    """The part of a ticket that labels show."""

    status: Status
    priority: Priority
    assignee_name: str | None
    automated: bool = False
    # The ticket wears the "sla-breached" tag (app/sla/escalation.py, action add_label).
    sla_breached: bool = False


@dataclass(frozen=True)
class LabelChange:
    """What a person changed through labels in Gmail, as a ticket change (None: unchanged)."""

    status: Status | None = None
    priority: Priority | None = None
    assignee_name: str | None = None
    unassign: bool = False
    # The SLA-breached label put on (True) or taken off (False): the ticket's tag follows.
    sla_breached: bool | None = None

    @property
    def is_empty(self) -> bool:
        return (
            self.status is None
            and self.priority is None
            and self.assignee_name is None
            and not self.unassign
            and self.sla_breached is None
        )


class Taxonomy:
    def __init__(self, root: str = DEFAULT_ROOT) -> None:
        root = root.strip().strip("/")
        if not root:
            raise ValueError("the label root cannot be empty")
        self.root = root

    # -- names -------------------------------------------------------------------------------
    def status_label(self, status: Status) -> str:
        return f"{self.root}/{status.value.capitalize()}"

    def priority_label(self, priority: Priority) -> str:
        return f"{self.root}/Priority/{priority.value.capitalize()}"

    def assigned_label(self, agent_name: str) -> str:
        # "/" would nest a label in Gmail; an agent's name is one level.
        return f"{self.root}/Assigned/{agent_name.replace('/', '-').strip() or '?'}"

    @property
    def unassigned_label(self) -> str:
        return f"{self.root}/Unassigned"

    @property
    def automated_label(self) -> str:
        return f"{self.root}/Automated"

    @property
    def sla_breached_label(self) -> str:
        return f"{self.root}/SLA/Breached"

    @property
    def _assigned_prefix(self) -> str:
        return f"{self.root}/Assigned/"

    def is_ours(self, name: str) -> bool:
        return name.startswith(self.root + "/")

    # -- ticket → labels ---------------------------------------------------------------------
    def labels_for(self, state: TicketLabelState) -> frozenset[str]:
        names = {self.status_label(state.status)}
        if state.priority in LABELLED_PRIORITIES:
            names.add(self.priority_label(state.priority))
        if state.assignee_name:
            names.add(self.assigned_label(state.assignee_name))
        else:
            names.add(self.unassigned_label)
        if state.automated:
            names.add(self.automated_label)
        if state.sla_breached:
            names.add(self.sla_breached_label)
        return frozenset(names)

    def fixed_labels(self) -> frozenset[str]:
        """Labels that exist before any ticket wears them. A person can only pick a label that
        is already in Gmail's list, so moving a ticket to pending from Gmail needs Support/Pending
        to be there. Agents' labels come with their first assignment."""
        names = {self.status_label(s) for s in Status}
        names |= {self.priority_label(p) for p in LABELLED_PRIORITIES}
        return frozenset(
            {*names, self.unassigned_label, self.automated_label, self.sla_breached_label}
        )

    def spec(self, name: str) -> LabelSpec:
        for status, (bg, fg) in _STATUS_COLOURS.items():
            if name == self.status_label(status):
                return LabelSpec(name, bg, fg)
        for priority, (bg, fg) in _PRIORITY_COLOURS.items():
            if name == self.priority_label(priority):
                return LabelSpec(name, bg, fg)
        if name == self.unassigned_label:
            return LabelSpec(name, *_UNASSIGNED_COLOURS)
        if name == self.automated_label:
            return LabelSpec(name, *_AUTOMATED_COLOURS)
        if name == self.sla_breached_label:
            return LabelSpec(name, *_SLA_BREACHED_COLOURS)
        return LabelSpec(name, *_ASSIGNED_COLOURS)

    # -- labels → ticket ---------------------------------------------------------------------
    def interpret(self, *, applied: frozenset[str], current: frozenset[str]) -> LabelChange:
        """The change a person made: ``applied`` is what we last wrote, ``current`` what Gmail has.

        Only additions decide a new status, assignee or priority: removing a status label alone
        says nothing about which status is meant, so we put ours back instead. Removing the
        assignee's label unassigns; removing the priority label returns to normal.

        The SLA-breached label mirrors the ticket's ``sla-breached`` tag both ways: a person who
        takes it off has seen the breach and dismisses the flag (the tag goes, and the label is
        not pushed back at them); status, priority and assignee stay as they are. Putting it on
        by hand adds the tag. The escalation itself is not redone either way: it is recorded
        once per deadline (app/sla/escalation.py).
        """
        added = {n for n in current - applied if self.is_ours(n)}
        removed = {n for n in applied - current if self.is_ours(n)}
        status = next((s for s in reversed(list(Status)) if self.status_label(s) in added), None)
        priority = next((p for p in LABELLED_PRIORITIES if self.priority_label(p) in added), None)
        if priority is None and any(self.priority_label(p) in removed for p in LABELLED_PRIORITIES):
            priority = Priority.NORMAL
        assigned = sorted(
            n[len(self._assigned_prefix) :] for n in added if n.startswith(self._assigned_prefix)
        )
        assignee_name = assigned[0] if len(assigned) == 1 else None
        unassign = assignee_name is None and (
            self.unassigned_label in added
            or any(n.startswith(self._assigned_prefix) for n in removed)
        )
        sla_breached = (
            True
            if self.sla_breached_label in added
            else False
            if self.sla_breached_label in removed
            else None
        )
        return LabelChange(
            status=status,
            priority=priority,
            assignee_name=assignee_name,
            unassign=unassign,
            sla_breached=sla_breached,
        )
