"""Ticket state ⇄ Gmail labels, for one mailbox.

Out: threads marked ``labels_dirty`` (in the transaction that changed their ticket) get one
``threads.modify`` with the difference, and are marked clean only after Gmail accepted it — the
ticket_threads table is the outbox of label writes, so a crash or a Gmail error only delays them.

In: history labelAdded / labelRemoved on our labels, replayed on ``labels_applied`` (what we last
wrote). The result equal to ``labels_applied`` means the records were the echo of our own write;
different means a person changed the labels in Gmail, and that becomes the ticket change. After a
history 404 the same comparison is made with the labels read from Gmail (``resync``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.agents.models import Agent
from app.db.session import Database
from app.errors import AppError
from app.mailboxes.models import Mailbox
from app.sla.escalation import SLA_BREACHED_TAG
from app.tickets import service as tickets
from app.tickets.events import Actor
from app.tickets.models import ActorKind, Ticket, TicketThread
from app.tickets.schemas import TicketUpdate
from gmail_sync.client import GmailClient, GmailError, GmailNotFound
from gmail_sync.ingest import AUTOMATED_TAG
from labels.taxonomy import LabelChange, Taxonomy, TicketLabelState

log = logging.getLogger(__name__)

# One labelAdded / labelRemoved step of a thread's history: (label ids added, label ids removed).
LabelDelta = tuple[frozenset[str], frozenset[str]]


def label_state(ticket: Ticket) -> TicketLabelState:
    return TicketLabelState(
        status=ticket.status,
        priority=ticket.priority,
        assignee_name=ticket.assignee.name if ticket.assignee else None,
        automated=AUTOMATED_TAG in ticket.tags,
        sla_breached=SLA_BREACHED_TAG in ticket.tags,
    )


@dataclass
class LabelPushReport:
    pushed: int = 0
    failed: int = 0


class LabelSync:
    def __init__(self, database: Database, client: GmailClient, taxonomy: Taxonomy) -> None:
        self.database = database
        self.client = client
        self.taxonomy = taxonomy

    # -- label ids ---------------------------------------------------------------------------
    def ensure_label_ids(self, mailbox_id: int, names: Iterable[str]) -> dict[str, str]:
        """Gmail ids of our labels, created on demand; the map is cached on the mailbox."""
        with self.database.unit_of_work() as session:
            known = dict(session.get_one(Mailbox, mailbox_id).label_ids or {})
        missing = sorted(set(names) - known.keys())
        if not missing:
            return known
        existing = {label["name"]: label["id"] for label in self.client.list_labels()}
        # Learn every label of ours the list shows, not only those asked for: an agent's label
        # a person made in Gmail is then understood when they put it on a thread.
        known.update(
            (name, i)
            for name, i in existing.items()
            if self.taxonomy.is_ours(name) and name not in known
        )
        for name in missing:
            if name in existing:
                known[name] = existing[name]
                continue
            spec = self.taxonomy.spec(name)
            # create_label answers the existing label on Gmail's 409 "exists": idempotent.
            created = self.client.create_label(name, background=spec.background, text=spec.text)
            known[name] = created["id"]
        with self.database.unit_of_work() as session:
            mailbox = session.get_one(Mailbox, mailbox_id)
            mailbox.label_ids = {**(mailbox.label_ids or {}), **known}
        return known

    def forget_label_ids(self, mailbox_id: int) -> None:
        """Gmail refused a cached label id (a person deleted the label): drop the cache, so the
        next push lists the labels and creates what is missing instead of failing forever."""
        with self.database.unit_of_work() as session:
            session.get_one(Mailbox, mailbox_id).label_ids = {}

    def _our_label_names(self, session: Session, mailbox_id: int) -> dict[str, str]:
        """Gmail label id → our label name, for the labels of ours cached on the mailbox."""
        cached = session.get_one(Mailbox, mailbox_id).label_ids or {}
        return {i: name for name, i in cached.items() if self.taxonomy.is_ours(name)}

    # -- out: tickets → Gmail ----------------------------------------------------------------
    def push_dirty(self, mailbox_id: int, *, limit: int = 500) -> LabelPushReport:
        report = LabelPushReport()
        with self.database.unit_of_work() as session:
            rows = session.execute(
                select(
                    TicketThread.id,
                    TicketThread.ticket_id,
                    TicketThread.gmail_thread_id,
                    TicketThread.labels_applied,
                )
                .where(TicketThread.mailbox_id == mailbox_id, TicketThread.labels_dirty.is_(True))
                .order_by(TicketThread.id)
                .limit(limit)
            ).all()
            wanted = self._wanted(session, [(row.id, row.ticket_id) for row in rows])
        if not rows:
            return report
        all_names = set().union(*wanted.values()) | self.taxonomy.fixed_labels()
        ids = self.ensure_label_ids(mailbox_id, all_names)
        ours = {name: label_id for name, label_id in ids.items() if self.taxonomy.is_ours(name)}
        done: dict[int, tuple[frozenset[str], bool]] = {}  # row id → (labels applied, finished)
        changes: dict[str, tuple[list[str], list[str]]] = {}
        row_of_thread: dict[str, Any] = {}
        for row in rows:
            desired = wanted[row.id]
            if desired == frozenset(row.labels_applied or ()):
                # Gmail shows this already (e.g. low → normal priority: neither has a label);
                # a threads.modify would cost 10 units and change nothing.
                done[row.id] = (desired, False)
                continue
            add = sorted(ours[name] for name in desired)
            remove = sorted(label_id for name, label_id in ours.items() if name not in desired)
            changes[row.gmail_thread_id] = (add, remove)
            row_of_thread[row.gmail_thread_id] = row
        try:
            outcomes = self.client.modify_threads(changes) if changes else {}
        except AppError as exc:
            report.failed += len(changes)
            log.warning("label push failed for %d threads: %s", len(changes), exc)
            outcomes = {}
        stale_ids = False
        for thread_id, outcome in outcomes.items():
            row = row_of_thread[thread_id]
            if outcome is None:
                # The thread was deleted in Gmail: there is nothing to label, now or later.
                done[row.id] = (frozenset(row.labels_applied or ()), True)
            elif isinstance(outcome, GmailError):
                report.failed += 1
                log.warning("label push failed for thread %s: %s", thread_id, outcome)
                # 400: a label id we cached no longer exists (deleted in Gmail).
                stale_ids = stale_ids or outcome.http_status == 400
            else:
                done[row.id] = (wanted[row.id], False)
                report.pushed += 1
        if stale_ids:
            self.forget_label_ids(mailbox_id)
        self._pushed(done)
        return report

    def _wanted(
        self, session: Session, threads: list[tuple[int, int]]
    ) -> dict[int, frozenset[str]]:
        """(thread row id, ticket id) → thread row id → the labels its ticket should show now."""
        by_id = tickets.tickets_for_labels(
            session, ticket_ids={ticket_id for _row, ticket_id in threads}
        )
        return {
            row_id: self.taxonomy.labels_for(label_state(by_id[ticket_id]))
            for row_id, ticket_id in threads
        }

    def _pushed(self, done: dict[int, tuple[frozenset[str], bool]]) -> None:
        """Record what Gmail shows now, in one transaction for the whole push."""
        if not done:
            return
        with self.database.unit_of_work() as session:
            threads = list(
                session.execute(
                    select(TicketThread).where(TicketThread.id.in_(list(done)))
                ).scalars()
            )
            # Still dirty if the ticket changed while we were writing: push again next time.
            now_wanted = self._wanted(session, [(t.id, t.ticket_id) for t in threads])
            for thread in threads:
                applied, finished = done[thread.id]
                thread.labels_applied = sorted(applied)
                thread.labels_dirty = not finished and now_wanted[thread.id] != applied

    def reconcile(self, mailbox_id: int) -> tuple[int, int]:
        """Compare every ticket thread's labels in Gmail with its ticket; mark drifted threads
        dirty so the next push repairs them. Returns (threads checked, threads drifted)."""
        with self.database.unit_of_work() as session:
            rows = session.execute(
                select(TicketThread.id, TicketThread.ticket_id, TicketThread.gmail_thread_id)
                .where(TicketThread.mailbox_id == mailbox_id)
                .order_by(TicketThread.id)
            ).all()
            id_to_name = self._our_label_names(session, mailbox_id)
        drifted = 0
        for row in rows:
            try:
                label_ids = self.client.get_thread_label_ids(row.gmail_thread_id)
            except GmailNotFound:
                continue  # the thread was deleted in Gmail: nothing to label
            current = frozenset(id_to_name[i] for i in label_ids if i in id_to_name)
            with self.database.unit_of_work() as session:
                wanted = self.taxonomy.labels_for(
                    label_state(tickets.get_ticket(session, row.ticket_id))
                )
                if wanted != current:
                    drifted += 1
                    thread = session.get_one(TicketThread, row.id)
                    thread.labels_applied = sorted(current)
                    thread.labels_dirty = True
        return len(rows), drifted

    # -- in: Gmail → tickets -----------------------------------------------------------------
    def apply_history(
        self, session: Session, *, mailbox_id: int, changes: dict[str, list[LabelDelta]]
    ) -> int:
        """Apply label changes people made in Gmail, from history records: thread id → the
        (added, removed) label ids of its labelAdded / labelRemoved records, in order.

        The changes are replayed on ``labels_applied`` rather than taken from the records'
        message snapshots: a record names only the messages that changed, and a thread's labels
        are the union over all its messages (Gmail's model) — reading the customer's new reply
        (UNREAD off that message alone) must not look like every label of ours removed.
        Returns how many tickets changed."""
        names = self._our_label_names(session, mailbox_id)
        ours: dict[str, list[tuple[set[str], set[str]]]] = {}
        for thread_id, deltas in changes.items():
            relevant = [
                ({names[i] for i in added if i in names}, {names[i] for i in gone if i in names})
                for added, gone in deltas
            ]
            relevant = [(a, r) for a, r in relevant if a or r]
            if relevant:
                ours[thread_id] = relevant
        changed = 0
        for thread_id, row in self._thread_rows(session, mailbox_id, list(ours)).items():
            current = set(row.labels_applied or ())
            for added, gone in ours[thread_id]:
                current = (current | added) - gone
            changed += self._take_current(session, row, frozenset(current), mailbox_id)
        session.flush()
        return changed

    def apply_current(
        self, session: Session, *, mailbox_id: int, current: dict[str, frozenset[str]]
    ) -> int:
        """Apply label changes people made in Gmail, from the threads' labels as they are now
        (thread id → our label names). Returns how many tickets changed."""
        names = frozenset(self._our_label_names(session, mailbox_id).values())
        changed = 0
        for thread_id, row in self._thread_rows(session, mailbox_id, list(current)).items():
            # A label whose Gmail id we do not know (the cache was dropped) cannot be seen in
            # Gmail's lists: its absence there is no removal.
            unseen = frozenset(row.labels_applied or ()) - names
            changed += self._take_current(session, row, current[thread_id] | unseen, mailbox_id)
        session.flush()
        return changed

    def labels_in_gmail(self, mailbox_id: int) -> dict[str, frozenset[str]]:
        """Thread id → our labels on it, read from Gmail: one messages.list per label of ours
        (5 units a page of 500 messages) rather than a threads.get (10 units) per thread."""
        with self.database.unit_of_work() as session:
            names = self._our_label_names(session, mailbox_id)
        found: dict[str, set[str]] = {}
        for label_id, name in sorted(names.items(), key=lambda item: item[1]):
            for _message_id, thread_id in self.client.list_message_ids(label_ids=[label_id]):
                found.setdefault(thread_id, set()).add(name)
        return {thread_id: frozenset(labels) for thread_id, labels in found.items()}

    def resync(self, mailbox_id: int, *, seen_threads: Iterable[str]) -> int:
        """After Gmail's history was lost (404, full resync): apply the label changes people
        made in the lost stretch, read from the labels themselves.

        A thread with none of our labels counts only if the full sync just listed it (it exists,
        in INBOX or Sent): a deleted or trashed thread must not read as "a person took every
        label off", which would unassign its ticket."""
        current = self.labels_in_gmail(mailbox_id)
        if not current and not self._knows_labels(mailbox_id):
            return 0  # no label of ours is known: nothing in Gmail can be read as a change
        for thread_id in seen_threads:
            current.setdefault(thread_id, frozenset())
        with self.database.unit_of_work() as session:
            return self.apply_current(session, mailbox_id=mailbox_id, current=current)

    def _knows_labels(self, mailbox_id: int) -> bool:
        with self.database.unit_of_work() as session:
            return bool(self._our_label_names(session, mailbox_id))

    def _thread_rows(
        self, session: Session, mailbox_id: int, thread_ids: list[str]
    ) -> dict[str, TicketThread]:
        rows: dict[str, TicketThread] = {}
        # Bounded IN lists: SQLite allows 32,766 parameters, and long lists plan badly anyway.
        for start in range(0, len(thread_ids), 500):
            stmt = select(TicketThread).where(
                TicketThread.mailbox_id == mailbox_id,
                TicketThread.gmail_thread_id.in_(thread_ids[start : start + 500]),
            )
            rows.update((row.gmail_thread_id, row) for row in session.scalars(stmt))
        return rows

    def _take_current(
        self, session: Session, row: TicketThread, current: frozenset[str], mailbox_id: int
    ) -> bool:
        """Gmail shows ``current`` on the thread; we last wrote ``labels_applied``."""
        applied = frozenset(row.labels_applied or ())
        if current == applied:
            return False  # the echo of our own write
        change = self.taxonomy.interpret(applied=applied, current=current)
        ticket = tickets.get_ticket(session, row.ticket_id)
        changed = not change.is_empty and self._apply(session, ticket, change, mailbox_id)
        row.labels_applied = sorted(current)
        # Gmail has ``current`` now: push only what the ticket wants differently — the labels
        # of a refused change, or a change the API made that is not pushed yet. Reloaded: a
        # refused change rolled its savepoint back.
        wanted = self.taxonomy.labels_for(label_state(tickets.get_ticket(session, ticket.id)))
        row.labels_dirty = wanted != current
        return changed

    def _apply(
        self, session: Session, ticket: Ticket, change: LabelChange, mailbox_id: int
    ) -> bool:
        assignee: str | None = None
        assign = False
        if change.assignee_name is not None:
            agent = (
                session.execute(
                    select(Agent).where(
                        Agent.name == change.assignee_name, Agent.is_active.is_(True)
                    )
                )
                .scalars()
                .first()
            )
            if agent is not None:
                assignee, assign = agent.email, True
        elif change.unassign:
            assign = True
        fields: dict[str, object] = {"version": ticket.version}
        if change.status is not None and change.status != ticket.status:
            fields["status"] = change.status
        if change.priority is not None and change.priority != ticket.priority:
            fields["priority"] = change.priority
        if assign:
            fields["assignee"] = assignee
        if change.sla_breached is not None and change.sla_breached != (
            SLA_BREACHED_TAG in ticket.tags
        ):
            # The label mirrors the tag (labels/taxonomy.py interpret): taken off in Gmail, the
            # flag is dismissed; nothing else about the ticket changes.
            others = [tag for tag in ticket.tags if tag != SLA_BREACHED_TAG]
            fields["tags"] = [*others, SLA_BREACHED_TAG] if change.sla_breached else others
        if len(fields) == 1:
            return False
        try:
            update = TicketUpdate.model_validate(fields)
        except ValidationError as exc:
            # Only the tags can be refused here (a ticket already at the tag limit): the labels
            # are put back instead, as for any refused change.
            log.info("label change on ticket #%s not applied: %s", ticket.number, exc)
            return False
        try:
            # A savepoint: a refused change must leave no half-applied field behind.
            with session.begin_nested():
                changed = tickets.update_ticket(
                    session,
                    ticket_id=ticket.id,
                    update=update,
                    actor=Actor(kind=ActorKind.SYNC, id=mailbox_id),
                )
                if "tags" in fields:
                    # Tags are not among LABELLED_FIELDS; the ticket's other threads show the
                    # breached label too and must lose it as well.
                    tickets.mark_labels_dirty(changed)
        except AppError as exc:
            # E.g. a label asking a closed ticket to reopen: the labels are put back instead.
            log.info("label change on ticket #%s not applied: %s", ticket.number, exc.message)
            return False
        return True
