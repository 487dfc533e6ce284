"""One sync pass over one mailbox: Gmail's change history in, tickets out.

First pass: a bounded full sync (INBOX and Sent of the last ``full_sync_days``), starting from the
historyId read BEFORE listing, so nothing arriving meanwhile is missed. Later passes: history.list
from the stored cursor. The cursor moves only after the changes it covers are committed, so a
crash means reading some history again — harmless, because ingestion is keyed on Gmail's ids.
A 404 on history (Gmail keeps it about a week) falls back to a full sync, which again creates
nothing twice, and reads the label changes of the lost stretch from the labels themselves.
(Gmail API guide, "Synchronizing clients with Gmail".)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from app.db.base import utcnow
from app.db.session import Database
from app.mailboxes.models import Mailbox
from app.messages.service import known_gmail_ids
from gmail_sync.client import GmailClient, HistoryExpired, HistoryPage
from gmail_sync.ingest import IGNORED_LABELS, Ingestor
from gmail_sync.labels_sync import LabelDelta, LabelSync
from labels.taxonomy import Taxonomy

log = logging.getLogger(__name__)

# Message ids fetched and ingested per transaction: one HTTP batch of Gmail's maximum useful size
# (the client splits at 50) and a commit small enough to lose little work on a crash.
CHUNK = 100
# Mail a helpdesk should see: INBOX (new conversations), SENT (agents' replies from Gmail).
_RELEVANT = frozenset({"INBOX", "SENT"})


def _wanted(label_ids: Iterable[str]) -> bool:
    """Worth a messages.get (5 units): in INBOX or Sent, and not a draft, spam or trash."""
    labels = frozenset(label_ids)
    return bool(_RELEVANT & labels) and not IGNORED_LABELS & labels


@dataclass
class SyncReport:
    mailbox: str
    full_sync: bool = False
    fetched: int = 0
    tickets_created: int = 0
    duplicates: int = 0
    label_changes: int = 0
    labels_pushed: int = 0
    labels_failed: int = 0  # label pushes Gmail refused this pass; retried on the next
    acks_sent: int = 0  # outbox rows the worker sent after the pass (gmail_sync.sender)
    assigned: int = 0  # waiting tickets the worker assigned after the sync (app/assignment)
    escalated: int = 0  # SLA escalations the worker ran after the sync (app/sla/escalation.py)
    lead_notices: int = 0  # lead notifications those escalations queued in the outbox
    history_id: int | None = None
    errors: list[str] = field(default_factory=list)


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _note_record(record: dict[str, Any], label_changes: dict[str, list[LabelDelta]]) -> list[str]:
    """The ids of messages a history record brings in, noting its label changes by thread."""
    added: list[str] = []
    for item in record.get("messagesAdded", []):
        if _wanted(item["message"].get("labelIds", ())):
            added.append(item["message"]["id"])
    for key in ("labelsAdded", "labelsRemoved"):
        for item in record.get(key, []):
            message, ids = item["message"], frozenset(item.get("labelIds", ()))
            # Moved into INBOX (rescued from spam, a filter's archive undone): new to us unless
            # stored already, which the known-id check finds.
            if key == "labelsAdded" and _RELEVANT & ids and _wanted(message.get("labelIds", ())):
                added.append(message["id"])
            delta = (ids, frozenset()) if key == "labelsAdded" else (frozenset(), ids)
            label_changes.setdefault(message["threadId"], []).append(delta)
    return added


class MailboxSync:
    def __init__(
        self,
        database: Database,
        mailbox_id: int,
        client: GmailClient,
        *,
        taxonomy: Taxonomy,
        still_leased: Callable[[], bool] = lambda: True,
    ) -> None:
        self.database = database
        self.mailbox_id = mailbox_id
        self.client = client
        self.taxonomy = taxonomy
        self.labels = LabelSync(database, client, taxonomy)
        # The client is shared by the history reader and the fetch thread (``_ingest_ids``).
        self._client_lock = threading.Lock()
        # Checked before the cursor moves: a worker that lost its lease must not move it.
        self.still_leased = still_leased

    def run(self) -> SyncReport:
        with self.database.unit_of_work() as session:
            mailbox = session.get_one(Mailbox, self.mailbox_id)
            report = SyncReport(mailbox=mailbox.email)
            cursor, days = mailbox.history_id, mailbox.full_sync_days
        if cursor is None:
            self._full_sync(report, days)
        else:
            try:
                self._incremental(report, cursor)
            except HistoryExpired:
                log.warning("history of %s expired: full resync", report.mailbox)
                self._full_sync(report, days)
        pushed = self.labels.push_dirty(self.mailbox_id)
        report.labels_pushed, report.labels_failed = pushed.pushed, pushed.failed
        return report

    # -- full --------------------------------------------------------------------------------
    def _full_sync(self, report: SyncReport, days: int) -> None:
        report.full_sync = True
        start = int(self.client.get_profile()["historyId"])
        # Sent too: an agent's reply from Gmail in the window is the ticket's first response,
        # and after a history 404 it would otherwise be lost. ``{a b}`` is Gmail's OR.
        listed = self.client.list_message_ids(query=f"{{in:inbox in:sent}} newer_than:{days}d")
        # Oldest first, so tickets are numbered in the order customers wrote.
        ids = [message_id for message_id, _thread in reversed(listed)]
        self._ingest_ids(report, ids)
        # History since the cursor is gone, and with it the label changes people made in that
        # stretch: read them from the labels themselves.
        report.label_changes += self.labels.resync(
            self.mailbox_id, seen_threads={thread_id for _id, thread_id in listed}
        )
        self._advance(report, start)

    # -- incremental -------------------------------------------------------------------------
    def _incremental(self, report: SyncReport, cursor: int) -> None:
        label_changes: dict[str, list[LabelDelta]] = {}
        latest = cursor

        def added() -> Iterator[str]:
            """New message ids, read a history page at a time (a backlog of 20,000 records is
            never held at once) and each once, as they come."""
            nonlocal latest
            seen: set[str] = set()
            for page in self._one_at_a_time(self.client.iter_history(cursor)):
                latest = page.history_id
                for record in page.records:
                    for message_id in _note_record(record, label_changes):
                        if message_id not in seen:
                            seen.add(message_id)
                            yield message_id

        self._ingest_ids(report, added())
        if label_changes:
            with self.database.unit_of_work() as session:
                report.label_changes += self.labels.apply_history(
                    session, mailbox_id=self.mailbox_id, changes=label_changes
                )
        self._advance(report, latest)

    # -- shared ------------------------------------------------------------------------------
    def _ingest_ids(self, report: SyncReport, ids: Iterable[str]) -> None:
        """Fetch and store these messages a chunk per transaction. The next chunk's
        messages.get batches run in a second thread while this one's are parsed and stored:
        Gmail's latency and the database's then overlap instead of adding up."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gmail-fetch") as fetcher:
            in_flight: tuple[list[str], Future[dict[str, dict[str, Any] | None]]] | None = None
            for chunk in _chunks(ids, CHUNK):
                # Stop early rather than fetch for a mailbox another worker now owns.
                if not self.still_leased():
                    raise LeaseLost(report.mailbox)
                new = self._unknown(report, chunk)
                fetching = (new, fetcher.submit(self._fetch, new)) if new else None
                if in_flight is not None:
                    self._store(report, *in_flight)
                in_flight = fetching
            if in_flight is not None:
                self._store(report, *in_flight)

    def _unknown(self, report: SyncReport, chunk: Sequence[str]) -> list[str]:
        """The ids of the chunk not stored yet: only those are worth a messages.get."""
        with self.database.unit_of_work() as session:
            known = known_gmail_ids(session, mailbox_id=self.mailbox_id, gmail_ids=chunk)
        report.duplicates += sum(1 for i in chunk if i in known)
        return [i for i in chunk if i not in known]

    def _fetch(self, ids: list[str]) -> dict[str, dict[str, Any] | None]:
        with self._client_lock:
            return self.client.get_messages(ids, format="raw")

    def _one_at_a_time(self, pages: Iterator[HistoryPage]) -> Iterator[HistoryPage]:
        """The history pages, each read while no fetch uses the client (httplib2 connections
        are not thread-safe)."""
        while True:
            with self._client_lock:
                page = next(pages, None)
            if page is None:
                return
            yield page

    def _store(
        self,
        report: SyncReport,
        ids: list[str],
        fetching: Future[dict[str, dict[str, Any] | None]],
    ) -> None:
        fetched = fetching.result()
        # A message deleted between listing and fetching comes back as None.
        messages = [m for m in (fetched.get(i) for i in ids) if m is not None]
        report.fetched += len(messages)
        with self.database.unit_of_work() as session:
            ingestor = Ingestor(session.get_one(Mailbox, self.mailbox_id))
            for result in ingestor.ingest_chunk(session, messages):
                report.tickets_created += int(result.created_ticket)
                report.duplicates += int(result.duplicate)

    def _advance(self, report: SyncReport, history_id: int) -> None:
        if not self.still_leased():
            raise LeaseLost(report.mailbox)
        with self.database.unit_of_work() as session:
            mailbox = session.get_one(Mailbox, self.mailbox_id)
            # History ids only grow; never move the cursor back (a slower pass finishing late).
            if mailbox.history_id is None or history_id > mailbox.history_id:
                mailbox.history_id = history_id
            mailbox.last_synced_at = utcnow()
            mailbox.last_error = None
            report.history_id = mailbox.history_id


class LeaseLost(RuntimeError):
    """Another worker owns the mailbox now; this pass stops without moving its cursor."""
