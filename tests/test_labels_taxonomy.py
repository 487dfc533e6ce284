"""The label taxonomy: which labels a ticket state calls for, and what a person's edit means."""

from __future__ import annotations

import pytest

from app.tickets.models import Priority, Status
from labels.taxonomy import LabelChange, Taxonomy, TicketLabelState

T = Taxonomy()


def test_labels_for_a_new_unassigned_normal_ticket() -> None:
    state = TicketLabelState(status=Status.NEW, priority=Priority.NORMAL, assignee_name=None)
    assert T.labels_for(state) == {"Support/New", "Support/Unassigned"}


def test_labels_for_an_assigned_urgent_automated_ticket() -> None:
    state = TicketLabelState(
        status=Status.PENDING, priority=Priority.URGENT, assignee_name="Ann/B", automated=True
    )
    assert T.labels_for(state) == {
        "Support/Pending",
        "Support/Priority/Urgent",
        "Support/Assigned/Ann-B",  # a "/" would nest the label in Gmail
        "Support/Automated",
    }


def test_custom_root_and_ownership() -> None:
    t = Taxonomy("Helpdesk/")
    assert t.status_label(Status.OPEN) == "Helpdesk/Open"
    assert t.is_ours("Helpdesk/Open")
    assert not t.is_ours("Support/Open")
    assert not t.is_ours("Helpdesk")
    with pytest.raises(ValueError, match="empty"):
        Taxonomy(" / ")


def test_colours_come_from_gmails_palette() -> None:
    # A subset of the palette Gmail accepts (users.labels LabelColor); others answer 400.
    palette = {
        "#000000", "#ffffff", "#4a86e8", "#16a766", "#ffad47", "#a479e2", "#999999",
        "#cc3a21", "#fb4c2f", "#c9daf8", "#efefef", "#cccccc",
    }  # fmt: skip
    state = TicketLabelState(Status.OPEN, Priority.HIGH, "Ann", automated=True)
    names = [*T.labels_for(state), T.status_label(Status.CLOSED), T.unassigned_label]
    for name in names:
        spec = T.spec(name)
        assert spec.background in palette, name
        assert spec.text in palette, name


@pytest.mark.parametrize(
    ("applied", "current", "expected"),
    [
        # our own write echoed back: nothing
        ({"Support/Open"}, {"Support/Open"}, LabelChange()),
        # a person moved the ticket to Pending
        ({"Support/Open"}, {"Support/Pending"}, LabelChange(status=Status.PENDING)),
        # added Pending without removing Open: the added one decides
        ({"Support/Open"}, {"Support/Open", "Support/Pending"}, LabelChange(status=Status.PENDING)),
        # removing the status label alone says nothing: we put ours back
        ({"Support/Open"}, set(), LabelChange()),
        (set(), {"Support/Priority/Urgent"}, LabelChange(priority=Priority.URGENT)),
        ({"Support/Priority/High"}, set(), LabelChange(priority=Priority.NORMAL)),
        (
            {"Support/Unassigned"},
            {"Support/Assigned/Ann"},
            LabelChange(assignee_name="Ann"),
        ),
        ({"Support/Assigned/Ann"}, set(), LabelChange(unassign=True)),
        ({"Support/Assigned/Ann"}, {"Support/Unassigned"}, LabelChange(unassign=True)),
        # two assignees at once is ambiguous: no assignment
        (set(), {"Support/Assigned/Ann", "Support/Assigned/Bob"}, LabelChange()),
        # labels that are not ours are never interpreted
        (set(), {"Billing/Open", "INBOX"}, LabelChange()),
    ],
)
def test_interpret_a_persons_edit(
    applied: set[str], current: set[str], expected: LabelChange
) -> None:
    assert T.interpret(applied=frozenset(applied), current=frozenset(current)) == expected
