"""Messages of tickets: stored once per Gmail message id, found by their RFC 5322 Message-ID."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.messages.models import Direction, Message


def known_gmail_ids(session: Session, *, mailbox_id: int, gmail_ids: Collection[str]) -> set[str]:
    """Which of these Gmail message ids are stored already (one query for a whole batch)."""
    if not gmail_ids:
        return set()
    stmt = select(Message.gmail_message_id).where(
        Message.mailbox_id == mailbox_id, Message.gmail_message_id.in_(list(gmail_ids))
    )
    return set(session.execute(stmt).scalars())


def ticket_of_our_message(
    session: Session, *, mailbox_id: int, rfc822_ids: Sequence[str]
) -> int | None:
    """The ticket of the newest message WE sent (agent reply or automatic) among these ids.

    Only our own messages count: a customer quoting someone else's Message-ID must not join a
    ticket that is not theirs.
    """
    if not rfc822_ids:
        return None
    stmt = (
        select(Message.ticket_id)
        .where(
            Message.mailbox_id == mailbox_id,
            Message.rfc822_message_id.in_(list(rfc822_ids)),
            Message.direction.in_([Direction.OUTBOUND, Direction.AUTO]),
            Message.ticket_id.is_not(None),
        )
        .order_by(Message.id.desc())
        .limit(1)
    )
    return session.execute(stmt).scalar_one_or_none()


def our_messages_by_rfc822(
    session: Session, *, mailbox_id: int, rfc822_ids: Collection[str]
) -> dict[str, tuple[int, int]]:
    """Message-ID → (row id, ticket id) for those of these ids that WE sent (agent replies,
    automatic mail): ``ticket_of_our_message`` for a whole sync chunk in one query."""
    if not rfc822_ids:
        return {}
    stmt = select(Message.rfc822_message_id, Message.id, Message.ticket_id).where(
        Message.mailbox_id == mailbox_id,
        Message.rfc822_message_id.in_(list(rfc822_ids)),
        Message.direction.in_([Direction.OUTBOUND, Direction.AUTO]),
        Message.ticket_id.is_not(None),
    )
    found: dict[str, tuple[int, int]] = {}
    for rfc822_id, row_id, ticket_id in session.execute(stmt):
        if rfc822_id not in found or row_id > found[rfc822_id][0]:
            found[rfc822_id] = (row_id, ticket_id)
    return found
