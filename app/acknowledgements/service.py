"""Acknowledge the tickets a sync chunk opened: limits checked, text composed, outbox row queued.

Called by the sync (gmail_sync/ingest.py) in the transaction that opens the tickets: the ticket
and its outbox row commit together or not at all, and the outbox's unique (ticket, kind) key
makes a second acknowledgement of a ticket impossible. Sending is the sender's (gmail_sync/
sender.py). An acknowledgement the limits hold back is not lost silently: the ticket gets an
``acknowledgement_skipped`` event naming the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.acknowledgements.compose import (
    ACK_KIND,
    AckTemplates,
    CustomerMessage,
    compose_ack,
    load_signing_key,
)
from app.acknowledgements.limits import AckBudget
from app.db.base import utcnow
from app.mailboxes.models import Mailbox
from app.outbox import service as outbox
from app.outbox.models import OutboxMessage
from app.sla.calendar import is_business_time
from app.sla.service import calendar_for_mailbox
from app.tickets.events import Actor, record_event
from app.tickets.models import Ticket

__all__ = ["SKIPPED_EVENT", "AckOutcome", "AckRequest", "acknowledge_new_tickets"]

SKIPPED_EVENT = "acknowledgement_skipped"
# Mail older than this when the sync first sees it is not acknowledged ("too_old"): connecting a
# mailbox reads up to 30 days back, and nobody wants a "we received your request" a week late.
# A day still covers a sync worker that was down overnight.
MAX_AGE = timedelta(hours=24)
SKIP_TOO_OLD = "too_old"


@dataclass(frozen=True)
class AckRequest:
    """A ticket just opened by a customer's message (inbound, not automated, in INBOX)."""

    ticket: Ticket
    message: CustomerMessage
    # When Gmail received the message (internalDate); None: unknown, treated as new.
    received_at: datetime | None = None


@dataclass(frozen=True)
class AckOutcome:
    ticket_id: int
    row: OutboxMessage | None = None
    skipped: str | None = None  # a limits.SKIP_* reason


def acknowledge_new_tickets(
    session: Session,
    *,
    mailbox: Mailbox,
    requests: Sequence[AckRequest],
    actor: Actor,
    now: datetime | None = None,
) -> list[AckOutcome]:
    """Queue an acknowledgement for each request, in order, within the mailbox's limits.

    Nothing when the mailbox has acknowledgements off (``auto_ack_enabled``): an admin's choice,
    not an event on every ticket. A few queries for the whole batch: the signing key, the
    templates, the calendar, the limits' history; then per ticket the template context and the
    outbox insert."""
    if not requests or not mailbox.auto_ack_enabled:
        return []
    now = now or utcnow()
    load_signing_key(session)
    budget = AckBudget.load(
        session,
        mailbox=mailbox,
        addresses={r.message.from_address for r in requests},
        now=now,
    )
    templates: AckTemplates | None = None
    out_of_hours: bool | None = None
    outcomes: list[AckOutcome] = []
    for request in requests:
        ticket, message = request.ticket, request.message
        too_old = request.received_at is not None and now - request.received_at > MAX_AGE
        reason = (
            SKIP_TOO_OLD if too_old else budget.check(message.from_address, message.subject, now)
        )
        if reason is not None:
            record_event(session, ticket_id=ticket.id, actor=actor, field=SKIPPED_EVENT, new=reason)
            outcomes.append(AckOutcome(ticket.id, skipped=reason))
            continue
        if templates is None:
            templates = AckTemplates.load(session, mailbox=mailbox)
            calendar = calendar_for_mailbox(session, mailbox_id=mailbox.id)
            out_of_hours = not is_business_time(calendar, now)
        ack = compose_ack(
            session,
            ticket=ticket,
            mailbox=mailbox,
            message=message,
            templates=templates,
            out_of_hours=bool(out_of_hours),
            now=now,
        )
        row = outbox.enqueue(
            session,
            ticket_id=ticket.id,
            mailbox_id=mailbox.id,
            kind=ACK_KIND,
            to_address=ack.to_address,
            subject=ack.subject,
            body=ack.body,
            is_html=ack.is_html,
            gmail_thread_id=ack.gmail_thread_id,
            in_reply_to=ack.in_reply_to,
            references=ack.references,
            rfc822_message_id=ack.rfc822_message_id,
            now=now,
        )
        if row is not None:
            budget.record(message.from_address, message.subject, now)
        outcomes.append(AckOutcome(ticket.id, row=row))
    return outcomes
