"""The sync worker: leases mailboxes, syncs each, pushes labels, and never lets one bad mailbox
stop the others.

Leases are rows, not a coordinator (DESIGN §5): a worker owns a mailbox until ``lease_until``;
a heartbeat thread renews every lease it holds a few times per lease period, for as long as the
worker lives — through a pass that outlasts the lease (a first full sync of a busy mailbox takes
minutes at Gmail's quota) as well as between passes. A worker that dies stops renewing, and another
takes the mailbox once the lease expires. On PostgreSQL the claim is ``SELECT … FOR UPDATE SKIP
LOCKED``, so two workers claiming at once never block on or take the same row.

Ownership is the ``lease_owner`` column alone: a claim is only possible after expiry and always
writes the new owner, so "the owner is still me" means nobody has taken the mailbox — the renewal
checks exactly that, and the sync checks it again before it moves the history cursor.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import Engine, or_, select, true, update

from app.assignment.service import assign_waiting
from app.db.base import utcnow
from app.db.session import Database
from app.mailboxes.models import Mailbox, MailboxState
from app.sla.escalation import run_escalations
from gmail_sync.client import GmailAuthError, GmailClient
from gmail_sync.sender import OutboxSender
from gmail_sync.sync import LeaseLost, MailboxSync, SyncReport
from labels.taxonomy import Taxonomy

log = logging.getLogger(__name__)

ClientFactory = Callable[[Mailbox], GmailClient]


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(
        self,
        database: Database,
        client_factory: ClientFactory,
        *,
        taxonomy: Taxonomy,
        owner: str | None = None,
        lease_seconds: float = 60.0,
        interval_seconds: float = 10.0,
        only_mailbox: str | None = None,
        heartbeat_seconds: float | None = None,
    ) -> None:
        self.database = database
        self.client_factory = client_factory
        self.taxonomy = taxonomy
        self.owner = owner or default_owner()
        self.lease = timedelta(seconds=lease_seconds)
        self.interval = interval_seconds
        self.only_mailbox = only_mailbox.lower() if only_mailbox else None
        # Three renewals per lease: one late or failed heartbeat does not lose a mailbox.
        self.heartbeat_seconds = heartbeat_seconds or lease_seconds / 3
        self.stop_event = threading.Event()
        # Mailboxes whose lease we hold (what the heartbeat renews and release() gives back).
        self._held: set[int] = set()
        self._held_lock = threading.Lock()
        self._beating = False
        # Outcome of the latest run_once, for `inboxdesk sync --once`: mailbox id → error.
        self.failures: dict[int, str] = {}

    @property
    def held(self) -> frozenset[int]:
        with self._held_lock:
            return frozenset(self._held)

    # -- leases ------------------------------------------------------------------------------
    def claim(self) -> list[int]:
        """Claim (or renew) every mailbox that is free, expired, or already ours."""
        claimed: list[int] = []
        while True:
            with self.database.unit_of_work() as session:
                now = utcnow()
                stmt = (
                    select(Mailbox.id)
                    .where(
                        Mailbox.state == MailboxState.ACTIVE,
                        Mailbox.id.not_in(claimed) if claimed else true(),
                        or_(
                            Mailbox.lease_until.is_(None),
                            Mailbox.lease_until < now,
                            Mailbox.lease_owner == self.owner,
                        ),
                    )
                    .order_by(Mailbox.id)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                )
                if self.only_mailbox:
                    stmt = stmt.where(Mailbox.email == self.only_mailbox)
                mailbox_id = session.execute(stmt).scalar_one_or_none()
                if mailbox_id is None:
                    break
                session.execute(
                    update(Mailbox)
                    .where(Mailbox.id == mailbox_id)
                    .values(lease_owner=self.owner, lease_until=now + self.lease)
                )
            claimed.append(mailbox_id)
            with self._held_lock:
                self._held.add(mailbox_id)
        # Held but no longer claimable by anyone (paused, needs re-authorisation): give back.
        stale = sorted(self.held - set(claimed))
        if stale:
            self.release(stale)
        return claimed

    def renew(self, mailbox_id: int) -> bool:
        """Extend our lease; False if the mailbox is no longer ours (taken over after expiry).

        Only the owner is checked, not the expiry: a lease that ran out while nobody claimed the
        mailbox is still ours (a claim would have written its owner), and refusing it would only
        throw away a pass that is safe to finish.
        """
        with self.database.unit_of_work() as session:
            now = utcnow()
            result = session.execute(
                update(Mailbox)
                .where(Mailbox.id == mailbox_id, Mailbox.lease_owner == self.owner)
                .values(lease_until=now + self.lease)
                .returning(Mailbox.id)
            )
            mine = result.scalar_one_or_none() is not None
        if not mine:
            with self._held_lock:
                self._held.discard(mailbox_id)
        return mine

    def renew_all(self) -> None:
        """The heartbeat: extend every lease we hold; forget those another worker took."""
        held = sorted(self.held)
        if not held:
            return
        with self.database.unit_of_work() as session:
            now = utcnow()
            renewed = set(
                session.execute(
                    update(Mailbox)
                    .where(Mailbox.id.in_(held), Mailbox.lease_owner == self.owner)
                    .values(lease_until=now + self.lease)
                    .returning(Mailbox.id)
                ).scalars()
            )
        lost = set(held) - renewed
        if lost:
            log.warning("lost the lease on mailbox(es) %s to another worker", sorted(lost))
            with self._held_lock:
                self._held -= lost

    def release(self, mailbox_ids: list[int] | None = None) -> None:
        with self.database.unit_of_work() as session:
            stmt = update(Mailbox).where(Mailbox.lease_owner == self.owner)
            if mailbox_ids is not None:
                stmt = stmt.where(Mailbox.id.in_(mailbox_ids))
            session.execute(stmt.values(lease_owner=None, lease_until=None))
        with self._held_lock:
            if mailbox_ids is None:
                self._held.clear()
            else:
                self._held.difference_update(mailbox_ids)

    @contextmanager
    def heartbeat(self) -> Iterator[None]:
        """Renew the held leases in the background while the block runs.

        Needs a database that can serve two threads: a ``Database`` bound to one connection (the
        rolled-back test transaction) gets no heartbeat, only the renewals of the passes."""
        if self._beating or not isinstance(self.database.bind, Engine):
            yield
            return
        self._beating = True
        done = threading.Event()

        def beat() -> None:
            while not done.wait(self.heartbeat_seconds):
                try:
                    self.renew_all()
                except Exception:  # a database blip: the next beat tries again
                    log.exception("lease renewal failed")

        thread = threading.Thread(target=beat, name=f"lease-heartbeat-{self.owner}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
            self._beating = False

    # -- passes ------------------------------------------------------------------------------
    def run_once(self, *, release: bool = True) -> list[SyncReport]:
        """One pass over every mailbox this worker can claim."""
        self.failures = {}
        reports: list[SyncReport] = []
        claimed = self.claim()
        try:
            with self.heartbeat():
                for mailbox_id in claimed:
                    if self.stop_event.is_set():
                        break
                    report = self.sync_mailbox(mailbox_id)
                    if report is not None:
                        reports.append(report)
        finally:
            if release:
                self.release(claimed)
        return reports

    def sync_mailbox(self, mailbox_id: int) -> SyncReport | None:
        if not self.renew(mailbox_id):
            return None
        address = str(mailbox_id)
        client: GmailClient | None = None
        try:
            with self.database.unit_of_work() as session:
                mailbox = session.get_one(Mailbox, mailbox_id)
                address = mailbox.email
                # Inside the try: a mailbox without usable credentials raises here, and that is
                # this mailbox's problem, not the worker's.
                client = self.client_factory(mailbox)
            syncer = MailboxSync(
                self.database,
                mailbox_id,
                client,
                taxonomy=self.taxonomy,
                still_leased=lambda: self.renew(mailbox_id),
            )
            report = syncer.run()
            self._triage(mailbox_id, address, report)
            if report.assigned or report.escalated:
                # Their labels (assignee, priority, SLA/Breached) in this pass, not the next.
                pushed = syncer.labels.push_dirty(mailbox_id)
                report.labels_pushed += pushed.pushed
                report.labels_failed += pushed.failed
            # Then the acknowledgements the pass enqueued (and any earlier ones still due), under
            # the same lease and client: only the worker holding the mailbox sends for it.
            sender = OutboxSender(
                self.database,
                mailbox_id,
                client,
                resend_after=self.lease.total_seconds(),
                still_leased=lambda: self.renew(mailbox_id),
            )
            sent = sender.send_pending()
            report.acks_sent = sent.sent
            report.errors.extend(sent.errors)
        except GmailAuthError as exc:
            log.error("mailbox %s needs re-authorisation: %s", address, exc.message)
            self._record_failure(mailbox_id, exc.message, needs_reauth=True)
            return None
        except LeaseLost:
            log.warning("lost the lease on %s; another worker has it", address)
            return None
        except Exception as exc:  # one broken mailbox must not stop the others
            log.exception("sync of %s failed", address)
            self._record_failure(mailbox_id, f"{type(exc).__name__}: {exc}"[:1000])
            return None
        finally:
            if client is not None:
                client.close()  # its HTTP connections; a new pass builds a new client
        # Idle passes are the common case (every interval, every mailbox): not worth a line.
        busy = (
            report.fetched
            or report.label_changes
            or report.labels_pushed
            or report.acks_sent
            or report.assigned
            or report.escalated
        )
        level = logging.WARNING if report.labels_failed else logging.INFO if busy else logging.DEBUG
        log.log(
            level,
            "synced %s: fetched=%d new_tickets=%d label_changes=%d labels_pushed=%d"
            " labels_failed=%d assigned=%d escalated=%d lead_notices=%d acks_sent=%d",
            address,
            report.fetched,
            report.tickets_created,
            report.label_changes,
            report.labels_pushed,
            report.labels_failed,
            report.assigned,
            report.escalated,
            report.lead_notices,
            report.acks_sent,
        )
        return report

    def _triage(self, mailbox_id: int, address: str, report: SyncReport) -> None:
        """Waiting tickets to agents who came on shift, then the SLA escalations due — each in
        its own unit of work, so that one failing keeps the other's work. Both run before the
        outbox sender: a lead's notification goes out in this pass. A failure here is logged
        and the pass goes on: acknowledgements must not wait on an escalation bug."""
        if not self.renew(mailbox_id):
            raise LeaseLost(address)
        try:
            with self.database.unit_of_work() as session:
                report.assigned = assign_waiting(session, mailbox_id=mailbox_id)
        except Exception as exc:
            log.exception("assigning the waiting tickets of %s failed", address)
            report.errors.append(f"assign_waiting: {type(exc).__name__}: {exc}"[:1000])
        try:
            with self.database.unit_of_work() as session:
                escalations = run_escalations(session, mailbox_id=mailbox_id)
            report.escalated = escalations.escalated
            report.lead_notices = escalations.notified
        except Exception as exc:
            log.exception("SLA escalations of %s failed", address)
            report.errors.append(f"run_escalations: {type(exc).__name__}: {exc}"[:1000])

    def _record_failure(self, mailbox_id: int, message: str, *, needs_reauth: bool = False) -> None:
        self.failures[mailbox_id] = message
        with self.database.unit_of_work() as session:
            mailbox = session.get_one(Mailbox, mailbox_id)
            mailbox.last_error = message
            if needs_reauth:
                # Nobody can sync it until a person connects it again (`inboxdesk mailbox add`):
                # no worker should look as if it were holding it.
                mailbox.state = MailboxState.NEEDS_REAUTH
                if mailbox.lease_owner == self.owner:
                    mailbox.lease_owner = None
                    mailbox.lease_until = None
        if needs_reauth:
            with self._held_lock:
                self._held.discard(mailbox_id)

    def run_forever(self) -> None:
        """Poll until ``stop()``: finish the mailbox at hand, release the leases, return."""
        log.info("sync worker %s started (every %g s)", self.owner, self.interval)
        try:
            with self.heartbeat():
                while not self.stop_event.is_set():
                    try:
                        self.run_once(release=False)
                    except Exception:  # e.g. the database restarting: try again next round
                        log.exception("sync round failed")
                    self.stop_event.wait(self.interval)
        finally:
            self.release()
            log.info("sync worker %s stopped", self.owner)

    def stop(self) -> None:
        self.stop_event.set()
