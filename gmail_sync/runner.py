"""Running the sync worker as a process: settings, signals, and the reconcile command."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from types import FrameType

from sqlalchemy import select

from app.config import get_settings
from app.db.session import get_database
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
    """Run until SIGTERM/SIGINT (or one pass with ``once``); returns how many mailboxes failed."""
    worker = build_worker(only_mailbox=only_mailbox)
    if once:
        reports = worker.run_once()
        with get_database().unit_of_work() as session:
            stmt = select(Mailbox).where(Mailbox.state == MailboxState.ACTIVE)
            if only_mailbox:
                stmt = stmt.where(Mailbox.email == only_mailbox.lower())
            active = list(session.execute(stmt).scalars())
        synced = {report.mailbox for report in reports}
        return sum(1 for m in active if m.email not in synced)

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: finishing the current mailbox, then stopping", signum)
        worker.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    worker.run_forever()
    return 0


def reconcile_all(*, only_mailbox: str | None = None) -> Iterator[str]:
    """Sync first (so people's label edits are read, not overwritten), then compare every
    ticket thread's labels in Gmail with its ticket and push the ones that drifted."""
    settings = get_settings()
    worker = build_worker(only_mailbox=only_mailbox)
    worker.run_once()
    database = get_database()
    with database.unit_of_work() as session:
        stmt = select(Mailbox).where(Mailbox.state == MailboxState.ACTIVE)
        if only_mailbox:
            stmt = stmt.where(Mailbox.email == only_mailbox.lower())
        mailboxes = list(session.execute(stmt).scalars())
    for mailbox in mailboxes:
        sync = LabelSync(
            database, client_for_mailbox(mailbox, settings), Taxonomy(settings.label_root)
        )
        checked, drifted = sync.reconcile(mailbox.id)
        pushed = sync.push_dirty(mailbox.id).pushed
        yield f"{mailbox.email}: {checked} threads checked, {drifted} drifted, {pushed} repaired"
