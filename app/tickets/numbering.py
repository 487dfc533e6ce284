"""Ticket numbers: unique, monotonic, and without gaps.

The counter row is incremented with ``UPDATE … RETURNING`` in the creating transaction. The row
lock serialises concurrent creators on PostgreSQL (SQLite serialises all writers anyway), and a
rolled-back creation rolls the increment back with it, so customers never see a skipped number.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from app.tickets.models import TicketCounter

COUNTER_NAME = "ticket"


def allocate_ticket_number(session: Session) -> int:
    return allocate_ticket_numbers(session, 1)[0]


def allocate_ticket_numbers(session: Session, count: int) -> range:
    """``count`` consecutive numbers in one statement (the sync opens a chunk's tickets at once)."""
    if count < 1:
        return range(0)
    stmt = (
        update(TicketCounter)
        .where(TicketCounter.name == COUNTER_NAME)
        .values(value=TicketCounter.value + count)
        .returning(TicketCounter.value)
    )
    last = session.execute(stmt).scalar_one_or_none()
    if last is None:
        raise RuntimeError("the ticket counter row is missing: run `inboxdesk db upgrade`")
    return range(int(last) - count + 1, int(last) + 1)
