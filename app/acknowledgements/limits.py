"""How many acknowledgements a mailbox may send: per sender, per sender and subject, per minute.

Auto-replies that answer auto-replies are how mail loops start; the automated-mail verdict stops
most, these limits stop the rest (a robot the verdict does not recognise, a customer's mail rule
that resends): per mailbox, at most ``ack_per_sender_hour`` acknowledgements to one address an
hour and ``ack_per_sender_day`` a day; one per address and subject within
``ack_same_subject_minutes``. Above ``ack_breaker_per_minute`` acknowledgements in the mailbox's
last minute the circuit breaker trips: acknowledgements pause for ``BREAKER_PAUSE`` and
``mailbox.ack_alert`` says why (GET /api/v1/mailboxes shows it until an admin clears it).

Everything is counted from the outbox (``to_address``, ``created_at``, kind ``ack``; indexed),
read once per sync chunk by ``AckBudget.load``; the acknowledgements the chunk itself queues are
added in memory (``record``), so a burst within one chunk counts as fully as one across chunks.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from app.mailboxes.models import Mailbox
from app.outbox.models import OutboxMessage
from app.tickets.models import Ticket

__all__ = [
    "BREAKER_PAUSE",
    "SKIP_BREAKER",
    "SKIP_PAUSED",
    "SKIP_SAME_SUBJECT",
    "SKIP_SENDER_DAY",
    "SKIP_SENDER_HOUR",
    "AckBudget",
    "AckLimits",
    "subject_key",
]

log = logging.getLogger(__name__)

ACK_KIND = "ack"
BREAKER_PAUSE = timedelta(minutes=15)
_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)
_MINUTE = timedelta(minutes=1)

# Reasons an acknowledgement was skipped (the "acknowledgement_skipped" event's new_value).
SKIP_PAUSED = "paused"
SKIP_BREAKER = "circuit_breaker"
SKIP_SAME_SUBJECT = "same_subject"
SKIP_SENDER_HOUR = "sender_hourly_limit"
SKIP_SENDER_DAY = "sender_daily_limit"

_PREFIXES = re.compile(
    r"^\s*(?:re|fwd?|aw|wg|sv|vs|antw|ответ|отв|пересл)\s*(?:\[\d+\]|\(\d+\))?\s*:\s*", re.I
)
_TICKET_TAG = re.compile(r"\[#\d{1,12}\]")


def subject_key(subject: str) -> str:
    """What "the same subject" compares: reply/forward prefixes and ``[#n]`` tags removed,
    whitespace collapsed, case folded."""
    s = _TICKET_TAG.sub(" ", subject or "")
    while (m := _PREFIXES.match(s)) is not None:
        s = s[m.end() :]
    return " ".join(s.split()).casefold()


@dataclass(frozen=True)
class AckLimits:
    per_sender_hour: int = 3
    per_sender_day: int = 10
    same_subject_minutes: int = 10
    breaker_per_minute: int = 60

    @classmethod
    def of(cls, mailbox: Mailbox) -> AckLimits:
        return cls(
            per_sender_hour=mailbox.ack_per_sender_hour,
            per_sender_day=mailbox.ack_per_sender_day,
            same_subject_minutes=mailbox.ack_same_subject_minutes,
            breaker_per_minute=mailbox.ack_breaker_per_minute,
        )

    @property
    def lookback(self) -> timedelta:
        return max(_DAY, timedelta(minutes=self.same_subject_minutes))


# Built once, run per sync chunk with parameters: building a statement costs more than running
# it on its index.
_SENDERS_ACKS = (
    select(OutboxMessage.to_address, OutboxMessage.created_at, Ticket.subject)
    .join(Ticket, Ticket.id == OutboxMessage.ticket_id)
    .where(
        OutboxMessage.mailbox_id == bindparam("mailbox_id"),
        OutboxMessage.kind == ACK_KIND,
        OutboxMessage.to_address.in_(bindparam("addresses", expanding=True)),
        OutboxMessage.created_at >= bindparam("since"),
    )
)
_MAILBOX_ACKS = select(OutboxMessage.created_at).where(
    OutboxMessage.mailbox_id == bindparam("mailbox_id"),
    OutboxMessage.kind == ACK_KIND,
    OutboxMessage.created_at >= bindparam("since"),
)


@dataclass
class AckBudget:
    """The acknowledgements a mailbox sent lately, and whether one more may go."""

    mailbox: Mailbox
    limits: AckLimits
    # address → [(queued at, subject key)] within ``limits.lookback``
    by_sender: dict[str, list[tuple[datetime, str]]] = field(default_factory=dict)
    # when the mailbox's acknowledgements of the last minute were queued
    recent: list[datetime] = field(default_factory=list)

    @classmethod
    def load(
        cls, session: Session, *, mailbox: Mailbox, addresses: Collection[str], now: datetime
    ) -> AckBudget:
        """Two indexed queries: the senders' acknowledgements of the lookback window (with the
        subject of the ticket each acknowledged), and the mailbox's of the last minute."""
        limits = AckLimits.of(mailbox)
        budget = cls(mailbox=mailbox, limits=limits)
        wanted = sorted({a.strip().lower() for a in addresses if a})
        if wanted:
            rows = session.execute(
                _SENDERS_ACKS,
                {"mailbox_id": mailbox.id, "addresses": wanted, "since": now - limits.lookback},
            )
            for address, created_at, subject in rows:
                budget.by_sender.setdefault(address, []).append((created_at, subject_key(subject)))
        budget.recent = list(
            session.execute(
                _MAILBOX_ACKS, {"mailbox_id": mailbox.id, "since": now - _MINUTE}
            ).scalars()
        )
        return budget

    def check(self, address: str, subject: str, now: datetime) -> str | None:
        """Why an acknowledgement to ``address`` about ``subject`` may not go now (one of the
        ``SKIP_*`` reasons), or None. Trips the breaker (changes the mailbox) when this one would
        exceed the mailbox's minute."""
        mailbox, limits = self.mailbox, self.limits
        if mailbox.ack_paused_until is not None and now < mailbox.ack_paused_until:
            return SKIP_PAUSED
        last_minute = sum(1 for at in self.recent if at > now - _MINUTE)
        if last_minute >= limits.breaker_per_minute:
            self._trip(now, last_minute)
            return SKIP_BREAKER
        sent = self.by_sender.get(address.strip().lower(), [])
        key = subject_key(subject)
        if limits.same_subject_minutes > 0:
            window = now - timedelta(minutes=limits.same_subject_minutes)
            if any(at > window and k == key for at, k in sent):
                return SKIP_SAME_SUBJECT
        if sum(1 for at, _ in sent if at > now - _HOUR) >= limits.per_sender_hour:
            return SKIP_SENDER_HOUR
        if sum(1 for at, _ in sent if at > now - _DAY) >= limits.per_sender_day:
            return SKIP_SENDER_DAY
        return None

    def record(self, address: str, subject: str, now: datetime) -> None:
        """Count an acknowledgement just queued."""
        self.by_sender.setdefault(address.strip().lower(), []).append((now, subject_key(subject)))
        self.recent.append(now)

    def _trip(self, now: datetime, count: int) -> None:
        until = now + BREAKER_PAUSE
        self.mailbox.ack_paused_until = until
        self.mailbox.ack_alert = (
            f"Acknowledgements paused until {until:%Y-%m-%d %H:%M} UTC: {count} were queued "
            f"in the minute before {now:%H:%M:%S} UTC, more than the limit of "
            f"{self.limits.breaker_per_minute} a minute (a mail loop or a flood?)"
        )[:1000]
        log.warning(
            "mailbox %s: acknowledgement circuit breaker tripped (%d in a minute), paused until %s",
            self.mailbox.email,
            count,
            until.isoformat(),
        )
