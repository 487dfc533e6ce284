"""The outbox sender: pending rows of one mailbox out through Gmail's messages.send, each once.

Sending and recording cannot be one transaction — Gmail is not our database — so "exactly once"
rests on three things (the issue's item 4):

1. **Claim, then send.** Before a row is sent its ``attempts`` goes up by one and
   ``next_attempt_at`` moves ``resend_after`` seconds ahead, in a transaction of its own that
   commits before Gmail is called (a compare-and-set on status and due time: a row another
   process claimed meanwhile is left alone). A row whose attempt died half-way is therefore not
   due again before that attempt's worker would have lost its lease, and Gmail's search has had
   time to index what it sent.
2. **Look before sending again.** A claimed row with ``attempts > 1`` may already be out: the
   earlier attempt could have died after Gmail accepted the mail and before the result was
   recorded, or Gmail may have answered 5xx after doing the work. Such a row is first looked up
   with ``rfc822msgid:`` (its Message-ID was generated with the row and is in the raw message);
   found → recorded as sent with that Gmail id, not sent again.
3. **Record in a transaction of its own.** Status ``sent``, Gmail's message id, ``sent_at``.

Only the worker holding the mailbox's lease sends: the lease is checked before each claim and
again right before Gmail is called (``LeaseLost`` ends the pass, the row keeps its block).

The crash windows, and what the next pass does: before (1) commits — nothing happened, the row
is sent; between (1) and Gmail's answer — the search decides; between Gmail's answer and (3) —
the search finds it. The only way to send twice would be Gmail's search missing a message it
accepted more than ``resend_after`` seconds earlier.

Gmail's refusals: 429 / rate-limit 403 / 5xx / network trouble keep the row pending with an
exponential ``next_attempt_at`` (and end this pass: Gmail asked us to slow down, or is unwell);
any other 4xx fails the row with Gmail's message in ``last_error``; a revoked authorization
raises ``GmailAuthError`` for the worker, which parks the mailbox in ``needs_reauth`` as the sync
does. A row still unsent after ``max_attempts`` is failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import or_, update

from app.db.base import utcnow
from app.db.session import Database
from app.mailboxes.models import Mailbox
from app.outbox.models import OutboxMessage, OutboxStatus
from app.outbox.service import pending
from gmail_sync.client import GmailAuthError, GmailClient, GmailError
from gmail_sync.outgoing import build_mime
from gmail_sync.sync import LeaseLost

log = logging.getLogger(__name__)

# Rows sent per pass at most: a burst of new tickets is acknowledged over a few passes rather
# than holding the mailbox's pass (and Gmail's per-user quota, 100 units a send) for minutes.
BATCH_SIZE = 50
# A started attempt blocks its row this long (the worker passes its lease period): see (1) above.
RESEND_AFTER_SECONDS = 60.0
# Retryable refusals: 1, 2, 4 … minutes after the attempt, at most an hour apart.
BACKOFF_BASE_SECONDS = 60.0
BACKOFF_MAX_SECONDS = 3600.0
# Eight attempts span about four hours; an acknowledgement later than that is no longer one.
MAX_ATTEMPTS = 8


@dataclass
class SendReport:
    mailbox: str
    sent: int = 0  # sent by this pass
    recovered: int = 0  # found in the mailbox: an earlier attempt had sent them
    deferred: int = 0  # Gmail refused for now: pending, retried after next_attempt_at
    failed: int = 0  # refused for good, or given up: status failed
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Claimed:
    """A row claimed for this attempt, and the message to send."""

    id: int
    attempts: int
    thread_id: str | None
    rfc822_message_id: str
    raw: bytes


def backoff(attempts: int) -> timedelta:
    """The wait after a retryable refusal of the ``attempts``-th attempt."""
    seconds = BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1)
    return timedelta(seconds=min(BACKOFF_MAX_SECONDS, seconds))


class OutboxSender:
    def __init__(
        self,
        database: Database,
        mailbox_id: int,
        client: GmailClient,
        *,
        batch_size: int = BATCH_SIZE,
        resend_after: float = RESEND_AFTER_SECONDS,
        max_attempts: int = MAX_ATTEMPTS,
        still_leased: Callable[[], bool] = lambda: True,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.database = database
        self.mailbox_id = mailbox_id
        self.client = client
        self.batch_size = batch_size
        self.resend_after = timedelta(seconds=resend_after)
        self.max_attempts = max_attempts
        # Checked before each claim and each send: only the lease holder sends for the mailbox.
        self.still_leased = still_leased
        self.now = now

    def send_pending(self) -> SendReport:
        """Send the mailbox's due rows, oldest first, at most ``batch_size`` of them."""
        with self.database.unit_of_work() as session:
            mailbox = session.get_one(Mailbox, self.mailbox_id)
            report = SendReport(mailbox=mailbox.email)
            from_address, from_name = mailbox.email, mailbox.name
            due = [
                row.id
                for row in pending(
                    session, mailbox_id=self.mailbox_id, now=self.now(), limit=self.batch_size
                )
            ]
        for row_id in due:
            if not self.still_leased():
                raise LeaseLost(report.mailbox)
            claimed = self._claim(row_id, from_address=from_address, from_name=from_name)
            if claimed is None:
                continue
            if isinstance(claimed, str):  # no message can be built from it
                self._fail(row_id, claimed, report)
                continue
            if not self._attempt(claimed, report):
                break  # Gmail asked us to slow down, or is unwell: the rest waits a pass
        if report.sent or report.recovered or report.failed or report.deferred:
            log.info(
                "outbox of %s: sent=%d recovered=%d deferred=%d failed=%d",
                report.mailbox,
                report.sent,
                report.recovered,
                report.deferred,
                report.failed,
            )
        return report

    # -- one row -----------------------------------------------------------------------------
    def _claim(self, row_id: int, *, from_address: str, from_name: str) -> _Claimed | str | None:
        """Count the attempt and block the row for ``resend_after``, committed before Gmail is
        called. None: the row is no longer pending and due (sent, or claimed, by someone else).
        A string: why no message can be built from the row."""
        now = self.now()
        with self.database.unit_of_work() as session:
            attempts = session.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.id == row_id,
                    OutboxMessage.status == OutboxStatus.PENDING,
                    or_(
                        OutboxMessage.next_attempt_at.is_(None),
                        OutboxMessage.next_attempt_at <= now,
                    ),
                )
                .values(
                    attempts=OutboxMessage.attempts + 1,
                    next_attempt_at=now + self.resend_after,
                )
                .returning(OutboxMessage.attempts)
            ).scalar_one_or_none()
            if attempts is None:
                return None
            row = session.get_one(OutboxMessage, row_id)
            try:
                raw = build_mime(row, from_address=from_address, from_name=from_name, date=now)
            except ValueError as exc:
                return f"cannot build the message: {exc}"
            return _Claimed(row_id, attempts, row.gmail_thread_id, row.rfc822_message_id, raw)

    def _attempt(self, row: _Claimed, report: SendReport) -> bool:
        """Send (or find) one claimed row; False when the pass should stop here."""
        try:
            if row.attempts > 1:
                earlier = self._already_sent(row.rfc822_message_id)
                if earlier is not None:
                    log.info("outbox row %d was already sent (%s): recorded", row.id, earlier)
                    self._record_sent(row.id, earlier)
                    report.recovered += 1
                    return True
            if row.attempts > self.max_attempts:
                self._fail(row.id, f"gave up after {row.attempts - 1} attempts", report)
                return True
            # Again right before sending: a worker that stalled since its claim (and so lost the
            # mailbox to another, which may be sending this row now) must not send it too.
            if not self.still_leased():
                raise LeaseLost(report.mailbox)
            answer = self.client.send_raw(row.raw, thread_id=row.thread_id)
        except GmailAuthError:
            raise  # the worker's: the mailbox needs a person to authorize it again
        except GmailError as exc:
            if _retry_later(exc):
                self._defer(row, exc.message, report)
                return False
            self._fail(row.id, exc.message, report)
            return True
        self._record_sent(row.id, str(answer["id"]))
        report.sent += 1
        return True

    def _already_sent(self, rfc822_message_id: str) -> str | None:
        """The Gmail id of a message in this mailbox carrying the Message-ID, if any. Gmail's
        ``rfc822msgid:`` takes the id without angle brackets; ``in:anywhere`` also looks in Trash
        and Spam (someone may have deleted the sent copy: it was still sent)."""
        found = self.client.search_message_ids(
            f"in:anywhere rfc822msgid:{rfc822_message_id.strip().strip('<>')}"
        )
        return found[0] if found else None

    # -- outcomes, each its own transaction ---------------------------------------------------
    def _record_sent(self, row_id: int, gmail_message_id: str) -> None:
        with self.database.unit_of_work() as session:
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == row_id)
                .values(
                    status=OutboxStatus.SENT,
                    gmail_message_id=gmail_message_id,
                    sent_at=self.now(),
                    next_attempt_at=None,
                    last_error=None,
                )
            )

    def _defer(self, row: _Claimed, error: str, report: SendReport) -> None:
        # Not before resend_after either: a 5xx may have come after Gmail sent it.
        wait = max(backoff(row.attempts), self.resend_after)
        with self.database.unit_of_work() as session:
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == row.id, OutboxMessage.status == OutboxStatus.PENDING)
                .values(next_attempt_at=self.now() + wait, last_error=error[:1000])
            )
        log.warning("outbox row %d: %s; next attempt in %s", row.id, error, wait)
        report.deferred += 1
        report.errors.append(error)

    def _fail(self, row_id: int, error: str, report: SendReport) -> None:
        with self.database.unit_of_work() as session:
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == row_id, OutboxMessage.status == OutboxStatus.PENDING)
                .values(status=OutboxStatus.FAILED, next_attempt_at=None, last_error=error[:1000])
            )
        log.error("outbox row %d failed: %s", row_id, error)
        report.failed += 1
        report.errors.append(error)


def _retry_later(error: GmailError) -> bool:
    """Worth another attempt later: rate limits, Gmail's own failures, and no answer at all.
    (The client's ``retryable`` is narrower for a send — it does not repeat a call that may
    have done its work — but the outbox may: it looks in the mailbox first.)"""
    status = error.http_status
    return error.retryable or status is None or status >= 500 or status == 429
