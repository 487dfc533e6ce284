"""The sync worker: leases mailboxes, syncs each, pushes labels, and never lets one bad mailbox
stop the others.

Leases are rows, not a coordinator (DESIGN §5): a worker owns a mailbox until ``lease_until``
and renews before every pass; a worker that dies simply stops renewing, and another takes the
mailbox once the lease expires. On PostgreSQL the claim is ``SELECT … FOR UPDATE SKIP LOCKED``, so
two workers claiming at once never block on or take the same row.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import or_, select, true, update

from app.db.base import utcnow
from app.db.session import Database
from app.mailboxes.models import Mailbox, MailboxState
from gmail_sync.client import GmailAuthError, GmailClient
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
    ) -> None:
        self.database = database
        self.client_factory = client_factory
        self.taxonomy = taxonomy
        self.owner = owner or default_owner()
        self.lease = timedelta(seconds=lease_seconds)
        self.interval = interval_seconds
        self.only_mailbox = only_mailbox.lower() if only_mailbox else None
        self.stop_event = threading.Event()

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
                    return claimed
                session.execute(
                    update(Mailbox)
                    .where(Mailbox.id == mailbox_id)
                    .values(lease_owner=self.owner, lease_until=now + self.lease)
                )
            claimed.append(mailbox_id)

    def renew(self, mailbox_id: int) -> bool:
        """Extend our lease; False if it is no longer ours (expired and taken over)."""
        with self.database.unit_of_work() as session:
            now = utcnow()
            result = session.execute(
                update(Mailbox)
                .where(
                    Mailbox.id == mailbox_id,
                    Mailbox.lease_owner == self.owner,
                    Mailbox.lease_until >= now,
                )
                .values(lease_until=now + self.lease)
                .returning(Mailbox.id)
            )
            return result.scalar_one_or_none() is not None

    def release(self, mailbox_ids: list[int] | None = None) -> None:
        with self.database.unit_of_work() as session:
            stmt = update(Mailbox).where(Mailbox.lease_owner == self.owner)
            if mailbox_ids is not None:
                stmt = stmt.where(Mailbox.id.in_(mailbox_ids))
            session.execute(stmt.values(lease_owner=None, lease_until=None))

    # -- passes ------------------------------------------------------------------------------
    def run_once(self, *, release: bool = True) -> list[SyncReport]:
        reports: list[SyncReport] = []
        claimed = self.claim()
        try:
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
        with self.database.unit_of_work() as session:
            mailbox = session.get_one(Mailbox, mailbox_id)
            address = mailbox.email
            client = self.client_factory(mailbox)
        syncer = MailboxSync(
            self.database,
            mailbox_id,
            client,
            taxonomy=self.taxonomy,
            still_leased=lambda: self.renew(mailbox_id),
        )
        try:
            report = syncer.run()
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
        log.info(
            "synced %s: fetched=%d new_tickets=%d label_changes=%d labels_pushed=%d",
            address,
            report.fetched,
            report.tickets_created,
            report.label_changes,
            report.labels_pushed,
        )
        return report

    def _record_failure(self, mailbox_id: int, message: str, *, needs_reauth: bool = False) -> None:
        with self.database.unit_of_work() as session:
            mailbox = session.get_one(Mailbox, mailbox_id)
            mailbox.last_error = message
            if needs_reauth:
                mailbox.state = MailboxState.NEEDS_REAUTH

    def run_forever(self) -> None:
        """Poll until ``stop()``: finish the mailbox at hand, release the leases, return."""
        log.info("sync worker %s started (every %.0f s)", self.owner, self.interval)
        try:
            while not self.stop_event.is_set():
                self.run_once(release=False)
                self.stop_event.wait(self.interval)
        finally:
            self.release()
            log.info("sync worker %s stopped", self.owner)

    def stop(self) -> None:
        self.stop_event.set()
