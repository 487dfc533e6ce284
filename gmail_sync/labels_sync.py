"""Ticket state ⇄ Gmail labels, for one mailbox.

Out: threads marked ``labels_dirty`` (in the transaction that changed their ticket) get one
``threads.modify`` with the difference, and are marked clean only after Gmail accepted it — the
ticket_threads table is the outbox of label writes, so a crash or a Gmail error only delays them.

In: history labelAdded / labelRemoved on our labels. We compare the thread's labels in Gmail with
``labels_applied`` (what we last wrote): equal means the record is the echo of our own write;
different means a person changed them in Gmail, and that becomes the ticket change.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.agents.models import Agent
from app.db.session import Database
from app.errors import AppError
from app.mailboxes.models import Mailbox
from app.tickets import service as tickets
from app.tickets.events import Actor
from app.tickets.models import ActorKind, Ticket, TicketThread
from app.tickets.schemas import TicketUpdate
from gmail_sync.client import GmailClient, GmailNotFound
from gmail_sync.ingest import AUTOMATED_TAG
from labels.taxonomy import LabelChange, Taxonomy, TicketLabelState

log = logging.getLogger(__name__)


def label_state(ticket: Ticket) -> TicketLabelState:
    return TicketLabelState(
        status=ticket.status,
        priority=ticket.priority,
        assignee_name=ticket.assignee.name if ticket.assignee else None,
        automated=AUTOMATED_TAG in ticket.tags,
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

    # -- out: tickets → Gmail ----------------------------------------------------------------
    def push_dirty(self, mailbox_id: int, *, limit: int = 500) -> LabelPushReport:
        report = LabelPushReport()
        with self.database.unit_of_work() as session:
            rows = session.execute(
                select(TicketThread.id, TicketThread.ticket_id, TicketThread.gmail_thread_id)
                .where(TicketThread.mailbox_id == mailbox_id, TicketThread.labels_dirty.is_(True))
                .order_by(TicketThread.id)
                .limit(limit)
            ).all()
            wanted = {
                row.id: self.taxonomy.labels_for(
                    label_state(tickets.get_ticket(session, row.ticket_id))
                )
                for row in rows
            }
        if not rows:
            return report
        all_names = set().union(*wanted.values())
        ids = self.ensure_label_ids(mailbox_id, all_names)
        ours = {name: label_id for name, label_id in ids.items() if self.taxonomy.is_ours(name)}
        for row in rows:
            desired = wanted[row.id]
            add = sorted(ours[name] for name in desired)
            remove = sorted(label_id for name, label_id in ours.items() if name not in desired)
            try:
                self.client.modify_thread(row.gmail_thread_id, add=add, remove=remove)
            except AppError as exc:
                report.failed += 1
                log.warning("label push failed for thread %s: %s", row.gmail_thread_id, exc)
                continue
            with self.database.unit_of_work() as session:
                thread = session.get_one(TicketThread, row.id)
                thread.labels_applied = sorted(desired)
                # Still dirty if the ticket changed while we were writing: push again next time.
                now_wanted = self.taxonomy.labels_for(
                    label_state(tickets.get_ticket(session, thread.ticket_id))
                )
                thread.labels_dirty = now_wanted != desired
            report.pushed += 1
        return report

    def reconcile(self, mailbox_id: int) -> tuple[int, int]:
        """Compare every ticket thread's labels in Gmail with its ticket; mark drifted threads
        dirty so the next push repairs them. Returns (threads checked, threads drifted)."""
        with self.database.unit_of_work() as session:
            rows = session.execute(
                select(TicketThread.id, TicketThread.ticket_id, TicketThread.gmail_thread_id)
                .where(TicketThread.mailbox_id == mailbox_id)
                .order_by(TicketThread.id)
            ).all()
            id_to_name = {v: k for k, v in session.get_one(Mailbox, mailbox_id).label_ids.items()}
        drifted = 0
        for row in rows:
            try:
                label_ids = self.client.get_thread_label_ids(row.gmail_thread_id)
            except GmailNotFound:
                continue  # the thread was deleted in Gmail: nothing to label
            current = frozenset(
                name for i in label_ids if self.taxonomy.is_ours(name := id_to_name.get(i, ""))
            )
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
    def apply_gmail_labels(
        self, session: Session, *, mailbox_id: int, thread_labels: dict[str, set[str]]
    ) -> int:
        """Apply label changes people made in Gmail. ``thread_labels``: thread id → its current
        label ids (from history records). Returns how many tickets changed."""
        if not thread_labels:
            return 0
        id_to_name = {v: k for k, v in session.get_one(Mailbox, mailbox_id).label_ids.items()}
        changed = 0
        for thread_id, label_ids in thread_labels.items():
            row = session.execute(
                select(TicketThread).where(
                    TicketThread.mailbox_id == mailbox_id,
                    TicketThread.gmail_thread_id == thread_id,
                )
            ).scalar_one_or_none()
            if row is None:
                continue
            current = frozenset(
                id_to_name[i]
                for i in label_ids
                if i in id_to_name and self.taxonomy.is_ours(id_to_name[i])
            )
            applied = frozenset(row.labels_applied or [])
            if current == applied:
                continue  # the echo of our own write
            change = self.taxonomy.interpret(applied=applied, current=current)
            ticket = tickets.get_ticket(session, row.ticket_id)
            if not change.is_empty and self._apply(session, ticket, change, mailbox_id):
                changed += 1
            row.labels_applied = sorted(current)
            wanted = self.taxonomy.labels_for(label_state(ticket))
            row.labels_dirty = row.labels_dirty or wanted != current
        session.flush()
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
        if len(fields) == 1:
            return False
        try:
            # A savepoint: a refused change must leave no half-applied field behind.
            with session.begin_nested():
                tickets.update_ticket(
                    session,
                    ticket_id=ticket.id,
                    update=TicketUpdate.model_validate(fields),
                    actor=Actor(kind=ActorKind.SYNC, id=mailbox_id),
                )
        except AppError as exc:
            # E.g. a label asking a closed ticket to reopen: the labels are put back instead.
            log.info("label change on ticket #%s not applied: %s", ticket.number, exc.message)
            return False
        return True
