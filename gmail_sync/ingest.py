"""Gmail messages into the helpdesk: each stored once, attached to exactly one ticket.

Everything a message does (its row, a new ticket, a reopened one, the first response) happens in
the caller's transaction, keyed on Gmail's message id: a message processed twice — after a crash,
a history 404 and full resync, or by two workers — finds its row and does nothing the second time.

A sync chunk is ingested in two passes so that the database sees a few statements per chunk
rather than a dozen per message: the first pass decides, in arrival order and in memory, which
ticket each message belongs to (an existing one, one the chunk opens, or none), from lookups made
once for the whole chunk; the second opens the new tickets together and writes the messages.
Then, in the same transaction, the triage rules (app/rules/) run on each ticket an inbound message
opened and, for the rules that ask to, on customers' replies; a new ticket no rule put in a team
or assigned goes to the mailbox's default team (app/assignment/). Each ticket a customer opened
gets its acknowledgement queued in the outbox (app/acknowledgements/) unless a rule skipped it or
closed the ticket as spam, and a bounce of our own mail leaves a ``delivery_failed`` event on its
ticket.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from app.acknowledgements.compose import CustomerMessage, load_signing_key, ticket_of_message_id
from app.acknowledgements.service import SKIPPED_EVENT, AckRequest, acknowledge_new_tickets
from app.assignment.service import assign_ticket, default_team_id
from app.customers.models import Customer
from app.db.base import utcnow
from app.mailboxes.models import Mailbox
from app.messages.models import Direction, Message
from app.messages.service import known_gmail_ids, our_messages_by_rfc822
from app.outbox.service import tickets_of_outbox_ids
from app.rules import service as rules
from app.rules.actions import RuleOutcome
from app.rules.engine import RuleSet
from app.rules.facts import MessageFacts
from app.sla.calendar import Calendar, is_business_time
from app.sla.service import calendar_for_mailbox
from app.tickets import service as tickets
from app.tickets.events import Actor, record_event
from app.tickets.models import ActorKind, Status, Ticket, TicketThread
from gmail_sync.automated import Verdict, automated_verdict
from gmail_sync.bounce import failure_summary
from gmail_sync.parse import ParsedMessage, parse_message
from templates_replies.greeting import base_language

log = logging.getLogger(__name__)

AUTOMATED_TAG = "automated"
# "[#1042]" in a subject: our acknowledgements put it there (the acknowledgement issue).
_TICKET_NUMBER = re.compile(r"\[#(\d{1,12})\]")
# Labels Gmail gives mail that is not a conversation with a customer.
IGNORED_LABELS = frozenset({"DRAFT", "SPAM", "TRASH"})
# The ticket event a failure notice of our own mail leaves (shown to agents).
DELIVERY_FAILED_EVENT = "delivery_failed"
# Why a rule held an acknowledgement back (the ``acknowledgement_skipped`` event's value).
SKIP_RULE = "rule"
SKIP_SPAM = "spam"
_RUNNING = (Status.NEW, Status.OPEN, Status.PENDING)
# Verdict reasons of a delivery status notification (RFC 3464, RFC 6533).
_FAILURE_NOTICE = frozenset(
    {"multipart/report", "message/delivery-status", "message/global-delivery-status"}
)


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


@dataclass
class _Arrival:
    """One new message of the chunk and what the first pass decided for it."""

    gmail: dict[str, Any]
    parsed: ParsedMessage
    direction: Direction = Direction.INBOUND
    verdict: Verdict = field(default_factory=lambda: Verdict(automated=False, reasons=()))
    # Its ticket: an existing one, or the index of the opening (new ticket) it starts or joins.
    ticket: Ticket | None = None
    opening: int | None = None
    opens: bool = False  # this message is the one that opens ``opening``
    attach: bool = False  # its Gmail thread is not its ticket's yet


@dataclass
class _ChunkState:
    """What the first pass knows: looked up once for the chunk, kept current as it goes."""

    # Gmail thread → its ticket, or the opening that will own it.
    threads: dict[str, Ticket | int]
    # Message-ID of a message we sent → (its age mark, its ticket or opening). The mark orders
    # rows stored before the chunk, (0, row id), before the chunk's own, (1, position).
    ours: dict[str, tuple[tuple[int, int], Ticket | int]]
    # Message-ID of our outbox, or signed by us (app/acknowledgements/signing.py) for a ticket
    # of this mailbox → that ticket's id.
    outbox: dict[str, int]
    openings: list[tickets.Opening] = field(default_factory=list)
    # Message-IDs of our notices to staff (SLA escalations): mail answering one is a colleague's.
    staff_notices: frozenset[str] = frozenset()


class Ingestor:
    """Ingests the messages of one mailbox within one sync pass."""

    def __init__(self, mailbox: Mailbox, *, own_addresses: Collection[str] = ()) -> None:
        self.mailbox_id = mailbox.id
        self.address = mailbox.email
        self.own_addresses = frozenset({mailbox.email, *(a.lower() for a in own_addresses)})
        self.sync_actor = Actor(kind=ActorKind.SYNC, id=mailbox.id)

    def ingest(self, session: Session, gmail_message: dict[str, Any]) -> IngestResult:
        return self.ingest_chunk(session, [gmail_message])[0]

    def ingest_chunk(
        self, session: Session, gmail_messages: Sequence[dict[str, Any]]
    ) -> list[IngestResult]:
        """Ingest these messages, in this order (oldest first), in the session's transaction."""
        known = known_gmail_ids(
            session, mailbox_id=self.mailbox_id, gmail_ids={m["id"] for m in gmail_messages}
        )
        results: dict[int, IngestResult] = {}
        arrivals: dict[int, _Arrival] = {}
        for position, gmail_message in enumerate(gmail_messages):
            gmail_id = gmail_message["id"]
            if gmail_id in known:
                results[position] = IngestResult(gmail_id, None, False, duplicate=True)
                continue
            known.add(gmail_id)
            if IGNORED_LABELS.intersection(gmail_message.get("labelIds", ())):
                results[position] = IngestResult(gmail_id, None, False, ignored=True)
                continue
            parsed = parse_message(_decode_raw(gmail_message.get("raw", "")))
            arrivals[position] = _Arrival(gmail_message, parsed)

        if arrivals:
            # Our signed Message-IDs are verified below (references, the verdict).
            load_signing_key(session)
        state = self._look_up(session, arrivals.values())
        for position, arrival in arrivals.items():
            self._decide(session, state, position, arrival)
        opened = tickets.open_tickets(
            session, mailbox_id=self.mailbox_id, openings=state.openings, actor=self.sync_actor
        )
        rows: list[dict[str, Any]] = []
        for position, arrival in arrivals.items():
            results[position] = self._write(session, state, arrival, opened, rows)
        session.flush()
        if rows:
            # A Core INSERT of plain rows: the ORM's bookkeeping for thousands of message objects
            # nobody reads back would cost more than the parsing.
            session.execute(insert(Message), rows)
        outcomes = self._triage(session, arrivals.values(), opened)
        # After the messages: the acknowledgement's template context reads the customer's
        # latest message (their time zone, from its Date header).
        self._acknowledge(session, arrivals.values(), opened, outcomes)
        return [results[position] for position in range(len(gmail_messages))]

    # -- first pass: decide ------------------------------------------------------------------
    def _look_up(self, session: Session, arrivals: Collection[_Arrival]) -> _ChunkState:
        referenced = {
            ref
            for a in arrivals
            for ref in (*_references(a.parsed), a.parsed.message_id)
            if ref is not None
        }
        ours = our_messages_by_rfc822(session, mailbox_id=self.mailbox_id, rfc822_ids=referenced)
        # Ids we signed name their ticket without any row (the outbox row may be purged).
        signed = {ref: t for ref in referenced if (t := ticket_of_message_id(ref)) is not None}
        by_id = tickets.tickets_by_ids(
            session,
            ticket_ids={ticket_id for _row, ticket_id in ours.values()} | set(signed.values()),
        )
        threads = tickets.tickets_by_threads(
            session,
            mailbox_id=self.mailbox_id,
            gmail_thread_ids={a.gmail["threadId"] for a in arrivals},
        )
        outbox = {
            # Another mailbox's ticket (two of our mailboxes writing to each other) is not ours
            # to join: that mail is only recognised as automated (gmail_sync/automated.py).
            ref: ticket_id
            for ref, ticket_id in signed.items()
            if ticket_id in by_id and by_id[ticket_id].mailbox_id == self.mailbox_id
        }
        outbox_ids = tickets_of_outbox_ids(
            session, mailbox_id=self.mailbox_id, rfc822_ids=referenced
        )
        outbox.update(outbox_ids.tickets)
        return _ChunkState(
            threads=dict(threads),
            ours={rfc: ((0, row), by_id[ticket_id]) for rfc, (row, ticket_id) in ours.items()},
            outbox=outbox,
            staff_notices=outbox_ids.staff_notices,
        )

    def _decide(self, session: Session, state: _ChunkState, position: int, a: _Arrival) -> None:
        label_ids = a.gmail.get("labelIds", [])
        message_id = a.parsed.message_id
        ours = message_id is not None and (
            message_id in state.outbox or message_id in state.staff_notices
        )
        a.verdict = automated_verdict(
            a.parsed,
            own_addresses=self.own_addresses,
            own_message_ids=[message_id] if ours and message_id else (),
            label_ids=label_ids,
        )
        if ours:
            a.direction = Direction.AUTO
        elif "SENT" in label_ids or a.parsed.from_address in self.own_addresses:
            a.direction = Direction.OUTBOUND

        thread_id = a.gmail["threadId"]
        if message_id in state.staff_notices or not state.staff_notices.isdisjoint(
            _references(a.parsed)
        ):
            # Our notice to a lead, or a lead's answer to it: stored, but neither the customer's
            # message nor a new conversation (the notice says where the ticket is).
            return
        target = self._find_ticket(session, state, a)
        existing = target if isinstance(target, Ticket) else None
        if a.direction is Direction.INBOUND and (
            target is None or (existing is not None and existing.status == Status.CLOSED)
        ):
            if existing is not None or "INBOX" in label_ids:
                target = self._open(state, a, previous=existing)
                a.opens = True
                state.threads[thread_id] = target
        elif target is not None:
            a.attach = thread_id not in state.threads
            state.threads[thread_id] = target
        if isinstance(target, Ticket):
            a.ticket = target
        else:
            a.opening = target
        if target is not None and a.direction is not Direction.INBOUND and message_id:
            state.ours[message_id] = ((1, position), target)

    def _find_ticket(
        self, session: Session, state: _ChunkState, a: _Arrival
    ) -> Ticket | int | None:
        found = state.threads.get(a.gmail["threadId"])
        if found is not None:
            return found
        # Gmail starts a new thread when the subject changed or the client dropped headers;
        # a reference to a message we sent still ties the reply to its ticket (RFC 5322 §3.6.4).
        referenced = _references(a.parsed)
        newest = max(
            (state.ours[ref] for ref in referenced if ref in state.ours),
            key=lambda mark: mark[0],
            default=None,
        )
        if newest is not None:
            return newest[1]
        outbox_ticket = next((state.outbox[r] for r in referenced if r in state.outbox), None)
        if outbox_ticket is not None:
            return tickets.get_ticket(session, outbox_ticket)
        if a.direction is Direction.INBOUND:
            return self._ticket_by_number(session, a.parsed)
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

    def _open(self, state: _ChunkState, a: _Arrival, previous: Ticket | None) -> int:
        sender = a.parsed.from_address or f"unknown-sender@{self.address.split('@')[-1]}"
        state.openings.append(
            tickets.Opening(
                sender_email=_text(sender, 320) or sender,
                sender_name=_text(a.parsed.from_name, 200),
                subject=_text(a.parsed.subject, 998) or "",
                # A closed ticket's thread moves to the new ticket (``_write``).
                gmail_thread_id=None if previous is not None else a.gmail["threadId"],
                tags=[AUTOMATED_TAG] if a.verdict.automated else [],
                previous_ticket_id=previous.id if previous is not None else None,
            )
        )
        return len(state.openings) - 1

    # -- second pass: write ------------------------------------------------------------------
    def _write(
        self,
        session: Session,
        state: _ChunkState,
        a: _Arrival,
        opened: list[Ticket],
        rows: list[dict[str, Any]],
    ) -> IngestResult:
        ticket = opened[a.opening] if a.opening is not None else a.ticket
        thread_id = a.gmail["threadId"]
        if ticket is not None and a.opens and ticket.previous_ticket_id is not None:
            tickets.attach_thread(session, ticket=ticket, gmail_thread_id=thread_id)
        elif ticket is not None and a.attach:
            # The chunk's lookup found no ticket owning this thread: it is new to us.
            ticket.threads.append(
                TicketThread(mailbox_id=ticket.mailbox_id, gmail_thread_id=thread_id)
            )
        rows.append(self._message_row(a, ticket))
        if ticket is not None and not a.opens:
            if a.direction is Direction.INBOUND and not a.verdict.automated:
                actor = Actor(kind=ActorKind.CUSTOMER, id=ticket.customer_id)
                tickets.record_customer_message(session, ticket=ticket, actor=actor)
            elif a.direction is Direction.OUTBOUND:
                at = a.parsed.date or datetime.now(UTC)
                tickets.record_agent_reply(session, ticket=ticket, at=at, actor=self.sync_actor)
        if ticket is not None and self._is_failure_of_ours(state, a):
            # A bounce of our own mail: the agents must see that the customer did not get it.
            # Once per notice: a notice ingested again is a known Gmail id and never gets here.
            failed = failure_summary(_decode_raw(a.gmail.get("raw", "")))
            named = next(r for r in _references(a.parsed) if self._is_ours(state, r))
            record_event(
                session,
                ticket_id=ticket.id,
                actor=self.sync_actor,
                field=DELIVERY_FAILED_EVENT,
                new=failed or named,
            )
        return IngestResult(a.gmail["id"], ticket.id if ticket else None, a.opens)

    @staticmethod
    def _is_ours(state: _ChunkState, message_id: str) -> bool:
        return message_id in state.outbox or message_id in state.ours

    def _is_failure_of_ours(self, state: _ChunkState, a: _Arrival) -> bool:
        """A delivery status notification (RFC 3464) naming a message we sent."""
        return (
            a.direction is Direction.INBOUND
            and not _FAILURE_NOTICE.isdisjoint(a.verdict.reasons)
            and any(self._is_ours(state, ref) for ref in _references(a.parsed))
        )

    # -- triage ------------------------------------------------------------------------------
    def _triage(
        self, session: Session, arrivals: Collection[_Arrival], opened: list[Ticket]
    ) -> dict[int, RuleOutcome]:
        """The rules on the chunk's new tickets and customers' replies, then the default team
        for new tickets no rule placed. One rule-set lookup for the chunk (a cached compile)."""
        new = [
            a
            for a in arrivals
            if a.opens and a.opening is not None and a.direction is Direction.INBOUND
        ]
        replies = [
            a
            for a in arrivals
            if not a.opens
            and a.direction is Direction.INBOUND
            and not a.verdict.automated
            and (a.ticket is not None or a.opening is not None)
        ]
        if not new and not replies:
            return {}
        rule_set = rules.rule_set_for_mailbox(session, mailbox_id=self.mailbox_id)
        context = _FactsContext(session, self.mailbox_id)
        outcomes: dict[int, RuleOutcome] = {}
        new_tickets = [(opened[a.opening], a) for a in new if a.opening is not None]
        if new_tickets and rule_set.has_active_rules:
            outcomes = rules.apply_rules_to_new_tickets(
                session,
                rule_set=rule_set,
                arrivals=[(ticket, context.facts(a, ticket)) for ticket, a in new_tickets],
            )
        if new_tickets:
            self._default_team(session, [ticket for ticket, _ in new_tickets], outcomes)
        if replies and rule_set.has_reply_rules:
            self._reply_rules(session, rule_set, context, replies, opened)
        return outcomes

    def _default_team(
        self, session: Session, tickets_: list[Ticket], outcomes: dict[int, RuleOutcome]
    ) -> None:
        """A new ticket that no rule put in a team or assigned goes to the mailbox's team (and
        its strategy picks a member); the team is looked up once, and only when needed."""
        team_id: int | None = None
        looked_up = False
        for ticket in tickets_:
            outcome = outcomes.get(ticket.id)
            if ticket.team_id is not None or ticket.status not in _RUNNING:
                continue
            if outcome is not None and outcome.assigned:
                continue
            if not looked_up:
                team_id, looked_up = default_team_id(session, mailbox_id=self.mailbox_id), True
            if team_id is None:
                return
            assign_ticket(session, ticket=ticket, actor=self.sync_actor, team_id=team_id)

    def _reply_rules(
        self,
        session: Session,
        rule_set: RuleSet,
        context: _FactsContext,
        replies: list[_Arrival],
        opened: list[Ticket],
    ) -> None:
        pairs: list[tuple[Ticket, _Arrival]] = []
        for a in replies:
            ticket = opened[a.opening] if a.opening is not None else a.ticket
            if ticket is not None:
                pairs.append((ticket, a))
        context.load_customers({ticket.customer_id for ticket, _ in pairs})
        rules.apply_rules_to_replies(
            session,
            rule_set=rule_set,
            replies=[(ticket, context.facts(a, ticket)) for ticket, a in pairs],
        )

    def _acknowledge(
        self,
        session: Session,
        arrivals: Collection[_Arrival],
        opened: list[Ticket],
        outcomes: dict[int, RuleOutcome],
    ) -> None:
        """Queue the acknowledgement of each ticket a customer's message opened: inbound, not
        automated, delivered to INBOX (app/acknowledgements/service.py checks the limits) — and
        not skipped by a rule (skip_acknowledgement, close_as_spam), which leaves an
        ``acknowledgement_skipped`` event ("rule" / "spam") signed by that rule instead."""
        candidates = [
            a
            for a in arrivals
            if a.opens
            and a.opening is not None
            and a.direction is Direction.INBOUND
            and not a.verdict.automated
            and "INBOX" in a.gmail.get("labelIds", ())
            and a.parsed.from_address
        ]
        if not candidates:
            return
        mailbox = session.get_one(Mailbox, self.mailbox_id)
        requests: list[AckRequest] = []
        for a in candidates:
            ticket = opened[a.opening] if a.opening is not None else None
            if ticket is None:
                continue
            outcome = outcomes.get(ticket.id)
            if outcome is not None and outcome.skips_acknowledgement:
                # As acknowledge_new_tickets does: a mailbox with acknowledgements off gets no
                # event on every ticket.
                if mailbox.auto_ack_enabled:
                    spam = outcome.spam_rule_id is not None
                    rule_id = outcome.spam_rule_id if spam else outcome.skip_ack_rule_id
                    record_event(
                        session,
                        ticket_id=ticket.id,
                        actor=Actor(kind=ActorKind.RULE, id=rule_id),
                        field=SKIPPED_EVENT,
                        new=SKIP_SPAM if spam else SKIP_RULE,
                    )
                continue
            requests.append(
                AckRequest(
                    ticket=ticket, message=_customer_message(a), received_at=_received_at(a.gmail)
                )
            )
        if requests:
            acknowledge_new_tickets(
                session, mailbox=mailbox, requests=requests, actor=self.sync_actor
            )

    def _message_row(self, a: _Arrival, ticket: Ticket | None) -> dict[str, Any]:
        gmail_message, parsed, verdict = a.gmail, a.parsed, a.verdict
        return {
            "mailbox_id": self.mailbox_id,
            "ticket_id": ticket.id if ticket else None,
            "gmail_message_id": gmail_message["id"],
            "gmail_thread_id": gmail_message["threadId"],
            "rfc822_message_id": _text(parsed.message_id, 998),
            "direction": a.direction,
            "from_address": _text(parsed.from_address, 320) or "",
            "from_name": _text(parsed.from_name, 200),
            "to_addresses": [_text(x, 320) for x in parsed.to],
            "cc_addresses": [_text(x, 320) for x in parsed.cc],
            "subject": _text(parsed.subject, 998),
            "date": parsed.date,
            "utc_offset_minutes": parsed.utc_offset_minutes,
            "snippet": _text(gmail_message.get("snippet") or parsed.text[:200], 500),
            "text_body": _text(parsed.text, 1_000_000),
            "label_ids": list(gmail_message.get("labelIds", [])),
            "attachments": [
                {"filename": _text(x.filename, 500), "content_type": x.content_type, "size": x.size}
                for x in parsed.attachments
            ],
            "is_automated": verdict.automated,
            "automated_reasons": list(verdict.reasons),
        }


class _FactsContext:
    """What the rules' facts need beyond the message, read once per chunk and only when a rule
    is to be evaluated: the mailbox's calendar and language, the senders' segments."""

    def __init__(self, session: Session, mailbox_id: int) -> None:
        self.session = session
        self.mailbox_id = mailbox_id
        self._calendar: Calendar | None = None
        self._language = "en"

    def load_customers(self, customer_ids: Collection[int]) -> None:
        """Existing tickets' customers, in one query (new tickets' are loaded by open_tickets)."""
        if customer_ids:
            stmt = select(Customer).where(Customer.id.in_(list(customer_ids)))
            self.session.execute(stmt).scalars().all()

    def facts(self, a: _Arrival, ticket: Ticket) -> MessageFacts:
        if self._calendar is None:
            self._calendar = calendar_for_mailbox(self.session, mailbox_id=self.mailbox_id)
            self._language = base_language(self.session.get_one(Mailbox, self.mailbox_id).language)
        # In the session already (open_tickets, load_customers): no query. ``ticket.customer``
        # is lazy="raise".
        customer = self.session.get(Customer, ticket.customer_id)
        return MessageFacts.from_parsed(
            a.parsed,
            segment=customer.segment if customer is not None else None,
            # When Gmail received it (internalDate) against the mailbox's business calendar.
            business_hours=is_business_time(self._calendar, _received_at(a.gmail) or utcnow()),
            automated=a.verdict.automated,
            default_language=self._language,
        )


def _references(parsed: ParsedMessage) -> list[str]:
    return [*parsed.in_reply_to, *parsed.references, *parsed.embedded_message_ids]


def _received_at(gmail_message: dict[str, Any]) -> datetime | None:
    """Gmail's internalDate: when the message reached the mailbox (epoch milliseconds)."""
    try:
        return datetime.fromtimestamp(int(gmail_message["internalDate"]) / 1000, tz=UTC)
    except (KeyError, TypeError, ValueError, OverflowError, OSError):
        return None


def _customer_message(a: _Arrival) -> CustomerMessage:
    parsed = a.parsed
    return CustomerMessage(
        from_address=parsed.from_address or "",
        subject=parsed.subject,
        text=parsed.text,
        message_id=parsed.message_id,
        references=parsed.references or parsed.in_reply_to,
        gmail_thread_id=a.gmail["threadId"],
    )
