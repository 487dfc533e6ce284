"""One Gmail message into the helpdesk: stored once, attached to exactly one ticket.

Everything a message does (its row, a new ticket, a reopened one, the first response) happens in
the caller's transaction, keyed on Gmail's message id: a message processed twice — after a crash,
a history 404 and full resync, or by two workers — finds its row and does nothing the second time.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.customers.service import upsert_customer
from app.mailboxes.models import Mailbox
from app.messages.models import Direction, Message
from app.messages.service import known_gmail_ids, ticket_of_our_message
from app.outbox.models import OutboxMessage
from app.tickets import service as tickets
from app.tickets.events import Actor
from app.tickets.models import ActorKind, Status, Ticket
from gmail_sync.automated import Verdict, automated_verdict
from gmail_sync.parse import ParsedMessage, parse_message

log = logging.getLogger(__name__)

AUTOMATED_TAG = "automated"
# "[#1042]" in a subject: our acknowledgements put it there (the acknowledgement issue).
_TICKET_NUMBER = re.compile(r"\[#(\d{1,12})\]")
# Labels Gmail gives mail that is not a conversation with a customer.
IGNORED_LABELS = frozenset({"DRAFT", "SPAM", "TRASH"})


@dataclass(frozen=True)
class IngestResult:
    gmail_id: str
    ticket_id: int | None
    created_ticket: bool
    duplicate: bool = False
    ignored: bool = False


def _text(value: str | None, limit: int) -> str | None:
    """PostgreSQL text refuses NUL, and our columns have lengths: real mail respects neither."""
    if value is None:
        return None
    return value.replace("\x00", "")[:limit]


def _decode_raw(raw: str) -> bytes:
    # Gmail's `raw` is base64url and may come without padding (users.messages, format=raw).
    return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))


class Ingestor:
    """Ingests the messages of one mailbox within one sync pass."""

    def __init__(self, mailbox: Mailbox, *, own_addresses: Collection[str] = ()) -> None:
        self.mailbox_id = mailbox.id
        self.address = mailbox.email
        self.own_addresses = frozenset({mailbox.email, *(a.lower() for a in own_addresses)})
        self.sync_actor = Actor(kind=ActorKind.SYNC, id=mailbox.id)

    def ingest(self, session: Session, gmail_message: dict[str, Any]) -> IngestResult:
        gmail_id = gmail_message["id"]
        thread_id = gmail_message["threadId"]
        label_ids = list(gmail_message.get("labelIds", []))
        if known_gmail_ids(session, mailbox_id=self.mailbox_id, gmail_ids=[gmail_id]):
            return IngestResult(gmail_id, None, False, duplicate=True)
        if IGNORED_LABELS.intersection(label_ids):
            return IngestResult(gmail_id, None, False, ignored=True)

        parsed = parse_message(_decode_raw(gmail_message.get("raw", "")))
        ours = self._is_our_message_id(session, parsed.message_id)
        verdict = automated_verdict(
            parsed,
            own_addresses=self.own_addresses,
            own_message_ids=[parsed.message_id] if ours and parsed.message_id else (),
            label_ids=label_ids,
        )
        if ours:
            direction = Direction.AUTO
        elif "SENT" in label_ids or parsed.from_address in self.own_addresses:
            direction = Direction.OUTBOUND
        else:
            direction = Direction.INBOUND

        ticket = self._find_ticket(session, parsed, thread_id, direction)
        created = False
        if direction is Direction.INBOUND and (ticket is None or ticket.status == Status.CLOSED):
            if ticket is not None or "INBOX" in label_ids:
                ticket = self._open_ticket(session, parsed, thread_id, verdict, previous=ticket)
                created = True
        elif ticket is not None:
            tickets.attach_thread(session, ticket=ticket, gmail_thread_id=thread_id)

        message = self._store(session, gmail_message, parsed, verdict, direction, ticket)
        if ticket is not None and not created:
            if direction is Direction.INBOUND and not verdict.automated:
                actor = Actor(kind=ActorKind.CUSTOMER, id=ticket.customer_id)
                tickets.record_customer_message(session, ticket=ticket, actor=actor)
            elif direction is Direction.OUTBOUND:
                at = message.date or datetime.now(UTC)
                tickets.record_agent_reply(session, ticket=ticket, at=at, actor=self.sync_actor)
        return IngestResult(gmail_id, ticket.id if ticket else None, created)

    # -- finding the ticket ------------------------------------------------------------------
    def _find_ticket(
        self, session: Session, parsed: ParsedMessage, thread_id: str, direction: Direction
    ) -> Ticket | None:
        ticket = tickets.find_ticket_by_thread(
            session, mailbox_id=self.mailbox_id, gmail_thread_id=thread_id
        )
        if ticket is not None:
            return ticket
        # Gmail starts a new thread when the subject changed or the client dropped headers;
        # a reference to a message we sent still ties the reply to its ticket (RFC 5322 §3.6.4).
        referenced = [*parsed.in_reply_to, *parsed.references, *parsed.embedded_message_ids]
        ticket_id = ticket_of_our_message(
            session, mailbox_id=self.mailbox_id, rfc822_ids=referenced
        ) or self._outbox_ticket(session, referenced)
        if ticket_id is not None:
            return tickets.get_ticket(session, ticket_id)
        if direction is Direction.INBOUND:
            return self._ticket_by_number(session, parsed)
        return None

    def _ticket_by_number(self, session: Session, parsed: ParsedMessage) -> Ticket | None:
        """``[#1042]`` in the subject joins #1042 only when its own customer writes: anyone can
        type a number, and a stranger quoting one must not read or steer someone else's ticket."""
        match = _TICKET_NUMBER.search(parsed.subject)
        if match is None or parsed.from_address is None:
            return None
        ticket = tickets.find_ticket_by_number_in_mailbox(
            session, mailbox_id=self.mailbox_id, number=int(match.group(1))
        )
        if ticket is not None and ticket.customer.email == parsed.from_address:
            return ticket
        return None

    def _outbox_ticket(self, session: Session, rfc822_ids: list[str]) -> int | None:
        if not rfc822_ids:
            return None
        stmt = select(OutboxMessage.ticket_id).where(
            OutboxMessage.mailbox_id == self.mailbox_id,
            OutboxMessage.rfc822_message_id.in_(rfc822_ids),
        )
        return session.execute(stmt.limit(1)).scalar_one_or_none()

    def _is_our_message_id(self, session: Session, message_id: str | None) -> bool:
        return message_id is not None and self._outbox_ticket(session, [message_id]) is not None

    # -- writing -----------------------------------------------------------------------------
    def _open_ticket(
        self,
        session: Session,
        parsed: ParsedMessage,
        thread_id: str,
        verdict: Verdict,
        previous: Ticket | None,
    ) -> Ticket:
        sender = parsed.from_address or f"unknown-sender@{self.address.split('@')[-1]}"
        customer, _ = upsert_customer(
            session,
            email=_text(sender, 320) or sender,
            name=_text(parsed.from_name, 200),
            strict=False,
        )
        ticket = tickets.create_ticket(
            session,
            mailbox=session.get(Mailbox, self.mailbox_id),  # type: ignore[arg-type]
            customer=customer,
            subject=_text(parsed.subject, 998) or "",
            actor=self.sync_actor,
            # A closed ticket's thread moves to the new ticket below (attach_thread).
            gmail_thread_id=None if previous is not None else thread_id,
            tags=[AUTOMATED_TAG] if verdict.automated else [],
            previous_ticket_id=previous.id if previous is not None else None,
        )
        if previous is not None:
            tickets.attach_thread(session, ticket=ticket, gmail_thread_id=thread_id)
        return ticket

    def _store(
        self,
        session: Session,
        gmail_message: dict[str, Any],
        parsed: ParsedMessage,
        verdict: Verdict,
        direction: Direction,
        ticket: Ticket | None,
    ) -> Message:
        message = Message(
            mailbox_id=self.mailbox_id,
            ticket_id=ticket.id if ticket else None,
            gmail_message_id=gmail_message["id"],
            gmail_thread_id=gmail_message["threadId"],
            rfc822_message_id=_text(parsed.message_id, 998),
            direction=direction,
            from_address=_text(parsed.from_address, 320) or "",
            from_name=_text(parsed.from_name, 200),
            to_addresses=[_text(a, 320) for a in parsed.to],
            cc_addresses=[_text(a, 320) for a in parsed.cc],
            subject=_text(parsed.subject, 998),
            date=parsed.date,
            utc_offset_minutes=parsed.utc_offset_minutes,
            snippet=_text(gmail_message.get("snippet") or parsed.text[:200], 500),
            text_body=_text(parsed.text, 1_000_000),
            label_ids=list(gmail_message.get("labelIds", [])),
            attachments=[
                {"filename": _text(a.filename, 500), "content_type": a.content_type, "size": a.size}
                for a in parsed.attachments
            ],
            is_automated=verdict.automated,
            automated_reasons=list(verdict.reasons),
        )
        session.add(message)
        session.flush()
        return message
