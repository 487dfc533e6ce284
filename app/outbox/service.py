"""The outbox: mail Inboxdesk sends (acknowledgements, …), each row written with the ticket."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.outbox.models import OutboxMessage, OutboxStatus


def bare_message_id(message_id: str) -> str:
    """A Message-ID without its angle brackets: how the sync stores the ids it parses."""
    return message_id.strip().removeprefix("<").removesuffix(">")


# Outbox kinds of mail to our own staff, not the customer (SLA escalation notices,
# app/sla/escalation.py): a reply to one is a colleague's, never the customer's message.
STAFF_NOTICE_PREFIX = "esc:"


@dataclass(frozen=True)
class OutboxIds:
    """What our outbox says about Message-IDs: the tickets of mail sent to customers, and the
    ids of notices sent to staff."""

    tickets: dict[str, int]
    staff_notices: frozenset[str]


def tickets_of_outbox_ids(
    session: Session, *, mailbox_id: int, rfc822_ids: Collection[str]
) -> OutboxIds:
    """Message-ID → ticket id for those of these ids that are our outbox's mail to customers: a
    reply to our acknowledgement finds its ticket even before the sent copy is synced back.

    The outbox keeps ids as sent, "<…>"; parsed mail gives them bare: both forms are asked for,
    and the answer is keyed by the form the caller gave."""
    if not rfc822_ids:
        return OutboxIds({}, frozenset())
    asked = {f"<{bare_message_id(i)}>": i for i in rfc822_ids}
    stmt = select(
        OutboxMessage.rfc822_message_id, OutboxMessage.ticket_id, OutboxMessage.kind
    ).where(
        OutboxMessage.mailbox_id == mailbox_id,
        OutboxMessage.rfc822_message_id.in_(list(asked)),
    )
    tickets: dict[str, int] = {}
    notices: set[str] = set()
    for rfc822_id, ticket_id, kind in session.execute(stmt):
        if kind.startswith(STAFF_NOTICE_PREFIX):
            notices.add(asked[rfc822_id])
        else:
            tickets[asked[rfc822_id]] = ticket_id
    return OutboxIds(tickets, frozenset(notices))


def enqueue(
    session: Session,
    *,
    ticket_id: int,
    mailbox_id: int,
    kind: str,
    to_address: str,
    subject: str,
    body: str,
    is_html: bool,
    gmail_thread_id: str | None,
    in_reply_to: str | None,
    references: str | None,
    rfc822_message_id: str,
    now: datetime | None = None,
) -> OutboxMessage | None:
    """Add one fully rendered mail to send; ``None`` when the ticket has one of this kind already
    (the (ticket, kind) unique key makes "exactly once" a database fact, not a hope).

    Flushed, so that the rate limits of the same transaction count it."""
    exists = session.execute(
        select(OutboxMessage.id).where(
            OutboxMessage.ticket_id == ticket_id, OutboxMessage.kind == kind
        )
    ).first()
    if exists is not None:
        return None
    row = OutboxMessage(
        ticket_id=ticket_id,
        mailbox_id=mailbox_id,
        kind=kind,
        status=OutboxStatus.PENDING,
        rfc822_message_id=rfc822_message_id,
        to_address=to_address,
        subject=subject,
        body=body,
        is_html=is_html,
        gmail_thread_id=gmail_thread_id,
        in_reply_to=in_reply_to,
        references=references,
        attempts=0,
    )
    if now is not None:
        row.created_at = now
    session.add(row)
    session.flush()
    return row


def pending(
    session: Session, *, mailbox_id: int, now: datetime, limit: int = 50
) -> list[OutboxMessage]:
    """The mailbox's rows waiting to be sent and due (no backoff in the future), oldest first."""
    stmt = (
        select(OutboxMessage)
        .where(
            OutboxMessage.status == OutboxStatus.PENDING,
            OutboxMessage.mailbox_id == mailbox_id,
            or_(OutboxMessage.next_attempt_at.is_(None), OutboxMessage.next_attempt_at <= now),
        )
        .order_by(OutboxMessage.id)
        .limit(limit)
    )
    return list(session.execute(stmt).scalars())
