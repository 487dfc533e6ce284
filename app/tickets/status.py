"""The ticket status machine (DESIGN §3).

new → open → pending → resolved → closed. Customers reopen pending and resolved tickets by
replying; a closed ticket is final (a new message opens a new, linked ticket).
"""

from __future__ import annotations

from app.errors import InvalidTransition
from app.tickets.models import Status

ALLOWED_TRANSITIONS: dict[Status, tuple[Status, ...]] = {
    Status.NEW: (Status.OPEN, Status.PENDING, Status.RESOLVED, Status.CLOSED),
    Status.OPEN: (Status.PENDING, Status.RESOLVED, Status.CLOSED),
    Status.PENDING: (Status.OPEN, Status.RESOLVED, Status.CLOSED),
    Status.RESOLVED: (Status.OPEN, Status.CLOSED),
    Status.CLOSED: (),
}


def allowed_from(status: Status) -> list[str]:
    return [s.value for s in ALLOWED_TRANSITIONS[status]]


def check_transition(current: Status, target: Status) -> None:
    if target not in ALLOWED_TRANSITIONS[current]:
        allowed = allowed_from(current)
        listed = ", ".join(allowed) if allowed else "none: a closed ticket is final"
        raise InvalidTransition(
            f"a ticket cannot go from {current.value} to {target.value}; allowed: {listed}",
            details={"from": current.value, "to": target.value, "allowed": allowed},
        )
