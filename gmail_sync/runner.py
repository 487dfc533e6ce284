"""Running the sync worker as a process: settings, signals, and the reconcile command."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from types import FrameType

from sqlalchemy import select

from app.config import get_settings
from app.db.session import get_database
from app.errors import AppError
from app.mailboxes.models import Mailbox, MailboxState
from gmail_sync.labels_sync import LabelSync
from gmail_sync.mailbox_access import client_for_mailbox
from gmail_sync.worker import Worker
from labels.taxonomy import Taxonomy

log = logging.getLogger(__name__)


def build_worker(*, only_mailbox: str | None = None, interval: float | None = None) -> Worker:
    settings = get_settings()
    return Worker(
        get_database(),
        lambda mailbox: client_for_mailbox(mailbox, settings),
        taxonomy=Taxonomy(settings.label_root),
        lease_seconds=settings.lease_seconds,
        interval_seconds=settings.sync_interval_seconds if interval is None else interval,
        only_mailbox=only_mailbox,
    )


def run_worker(*, once: bool, only_mailbox: str | None = None) -> int:
    """Run until SIGTERM/SIGINT (or one pass with ``once``); returns how many mailboxes failed.

    A signal lets the mailbox at hand finish, then the leases are released, so another worker
    can start on them at once. With ``once``, a mailbox another worker holds is skipped, not
    failed: that worker syncs it (``inboxdesk sync --once`` next to ``inboxdesk sync`` is fine).
    """
    worker = build_worker(only_mailbox=only_mailbox)

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: finishing the current mailbox, then stopping", signum)
        worker.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if not once:
        worker.run_forever()
        return 0
    reports = worker.run_once()
    synced = {report.mailbox for report in reports}
    with get_database().unit_of_work() as session:
        stmt = select(Mailbox).where(Mailbox.state == MailboxState.ACTIVE)
        if only_mailbox:
            stmt = stmt.where(Mailbox.email == only_mailbox.lower())
        for mailbox in session.execute(stmt).scalars():
            if mailbox.email in synced or mailbox.id in worker.failures:
                continue
            if worker.stop_event.is_set():
                log.warning("stopped before %s", mailbox.email)
            else:
                log.warning(
                    "skipped %s: its lease is held by %s until %s",
                    mailbox.email,
                    mailbox.lease_owner,
                    mailbox.lease_until,
                )
    return len(worker.failures)


def reconcile_all(*, only_mailbox: str | None = None) -> Iterator[str]:
    """Sync first (so people's label edits are read, not overwritten), then compare every
    ticket thread's labels in Gmail with its ticket and push the ones that drifted.

    Under the mailboxes' leases, like a sync pass: a running worker holding a mailbox is not
    written to behind its back (that mailbox is skipped, and said so)."""
    settings = get_settings()
    worker = build_worker(only_mailbox=only_mailbox)
    database = get_database()
    try:
        with worker.heartbeat():
            worker.run_once(release=False)
            with database.unit_of_work() as session:
                stmt = select(Mailbox).order_by(Mailbox.id)
                if only_mailbox:
                    stmt = stmt.where(Mailbox.email == only_mailbox.lower())
                boxes = list(session.execute(stmt).scalars())
            for mailbox in boxes:
                if mailbox.id in worker.failures:
                    failure = worker.failures[mailbox.id]
                    yield f"{mailbox.email}: not reconciled, its sync failed: {failure}"
                    continue
                if mailbox.state != MailboxState.ACTIVE:
                    yield f"{mailbox.email}: not reconciled, mailbox is {mailbox.state.value}"
                    continue
                if mailbox.id not in worker.held:
                    yield (
                        f"{mailbox.email}: not reconciled, held by the worker {mailbox.lease_owner}"
                        " (stop it, or try again after its lease)"
                    )
                    continue
                try:
                    with client_for_mailbox(mailbox, settings) as client:
                        sync = LabelSync(database, client, Taxonomy(settings.label_root))
                        checked, drifted = sync.reconcile(mailbox.id)
                        pushed = sync.push_dirty(mailbox.id).pushed
                except AppError as exc:  # Gmail gave up on this mailbox: say so, go on
                    yield f"{mailbox.email}: reconcile failed: {exc.message}"
                    continue
                yield (
                    f"{mailbox.email}: {checked} threads checked, {drifted} drifted, "
                    f"{pushed} repaired"
                )
    finally:
        worker.release()
