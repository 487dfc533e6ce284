"""The outbox: mail Inboxdesk sends (acknowledgements, …), each row written with the ticket."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.outbox.models import OutboxMessage


def tickets_of_outbox_ids(
    session: Session, *, mailbox_id: int, rfc822_ids: Collection[str]
) -> dict[str, int]:
    """Message-ID → ticket id for those of these ids that are our outbox's: a reply to our
    acknowledgement finds its ticket even before the sent copy is synced back."""
    if not rfc822_ids:
        return {}
    stmt = select(OutboxMessage.rfc822_message_id, OutboxMessage.ticket_id).where(
        OutboxMessage.mailbox_id == mailbox_id,
        OutboxMessage.rfc822_message_id.in_(list(rfc822_ids)),
    )
    return {rfc822_id: ticket_id for rfc822_id, ticket_id in session.execute(stmt)}
