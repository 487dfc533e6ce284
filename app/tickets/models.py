from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.agents.models import Agent, Team
from app.customers.models import Customer
from app.db.base import Base, TimestampMixin, utcnow
from app.db.types import enum_type
from app.mailboxes.models import Mailbox


class Status(enum.StrEnum):
    NEW = "new"
    OPEN = "open"
    PENDING = "pending"
    RESOLVED = "resolved"
    CLOSED = "closed"


class Priority(enum.StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


PRIORITY_RANK = {Priority.LOW: 0, Priority.NORMAL: 1, Priority.HIGH: 2, Priority.URGENT: 3}


class ActorKind(enum.StrEnum):
    AGENT = "agent"
    CUSTOMER = "customer"
    RULE = "rule"
    SYNC = "sync"
    SYSTEM = "system"


class TicketCounter(Base):
    """The installation's ticket number sequence, one row per name.

    A row updated inside the creating transaction, not a database SEQUENCE: a sequence never rolls
    back, so a failed creation would leave a gap in the numbers customers see.
    """

    __tablename__ = "ticket_counters"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class Ticket(TimestampMixin, Base):
    __tablename__ = "tickets"
    __table_args__ = (
        # The agent's queue: status=open&assignee=me, newest first (see benchmarks/).
        Index("ix_tickets_assignee_status_number", "assignee_id", "status", "number"),
        Index("ix_tickets_status_number", "status", "number"),
        Index("ix_tickets_mailbox_status_number", "mailbox_id", "status", "number"),
        Index("ix_tickets_customer_number", "customer_id", "number"),
        # The unfiltered "recently updated / created" lists: without these PostgreSQL sorts the
        # whole table (~100 ms at 100k tickets, see benchmarks/).
        Index("ix_tickets_updated_at_id", "updated_at", "id"),
        Index("ix_tickets_created_at_id", "created_at", "id"),
        # `?sla=breached|at_risk` (app/sla/service.py sla_condition): the running statuses and a
        # due time before / after now. Due times alone are not selective (every old ticket's
        # lies in the past); with the status first, only live tickets are read.
        Index("ix_tickets_status_first_response_due_at", "status", "first_response_due_at"),
        Index("ix_tickets_status_resolution_due_at", "status", "resolution_due_at"),
        Index("ix_tickets_awaiting_assignment_team_id", "awaiting_assignment", "team_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[int] = mapped_column(BigInteger, unique=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="RESTRICT"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="RESTRICT"))
    subject: Mapped[str] = mapped_column(String(998))  # RFC 5322 §2.1.1 line limit
    status: Mapped[Status] = mapped_column(enum_type(Status, "ticket_status"), default=Status.NEW)
    priority: Mapped[Priority] = mapped_column(
        enum_type(Priority, "ticket_priority"), default=Priority.NORMAL
    )
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    team_id: Mapped[int | None] = mapped_column(
        ForeignKey("teams.id", ondelete="SET NULL"), index=True
    )
    sla_policy_id: Mapped[int | None] = mapped_column(
        ForeignKey("sla_policies.id", ondelete="SET NULL")
    )
    first_response_due_at: Mapped[datetime | None] = mapped_column(index=True)
    resolution_due_at: Mapped[datetime | None] = mapped_column(index=True)
    # When the share of the target that makes a ticket "at risk" is used up (app/sla/service.py):
    # stored with the due times so that `?sla=at_risk` is a plain comparison in SQL.
    first_response_at_risk_at: Mapped[datetime | None]
    resolution_at_risk_at: Mapped[datetime | None]
    # The SLA clock stops while the ticket is pending: since when, and the business minutes
    # spent paused in earlier pending periods (the due times were pushed by them).
    sla_paused_at: Mapped[datetime | None]
    sla_paused_minutes: Mapped[int] = mapped_column(Integer, default=0)
    first_response_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    # A message on a closed ticket opens a new one linked to the old (DESIGN §3).
    previous_ticket_id: Mapped[int | None] = mapped_column(
        ForeignKey("tickets.id", ondelete="SET NULL")
    )
    # The ticket's team assigns automatically but nobody was available: the worker retries
    # (app/assignment/service.py assign_waiting) until someone comes on shift.
    awaiting_assignment: Mapped[bool] = mapped_column(default=False, server_default=false())
    version: Mapped[int] = mapped_column(Integer, default=1)

    # Every UPDATE checks and bumps ``version``: a concurrent writer gets StaleDataError (409).
    __mapper_args__ = {"version_id_col": version}

    mailbox: Mapped[Mailbox] = relationship(lazy="raise")
    customer: Mapped[Customer] = relationship(lazy="raise")
    assignee: Mapped[Agent | None] = relationship(lazy="raise")
    team: Mapped[Team | None] = relationship(lazy="raise")
    tag_rows: Mapped[list[TicketTag]] = relationship(
        lazy="raise", cascade="all, delete-orphan", order_by="TicketTag.tag"
    )
    threads: Mapped[list[TicketThread]] = relationship(
        back_populates="ticket", lazy="raise", cascade="all, delete-orphan"
    )

    @property
    def tags(self) -> list[str]:
        return [row.tag for row in self.tag_rows]

    @property
    def gmail_thread_ids(self) -> list[str]:
        return [thread.gmail_thread_id for thread in self.threads]


class TicketTag(Base):
    __tablename__ = "ticket_tags"
    __table_args__ = (Index("ix_ticket_tags_tag_ticket_id", "tag", "ticket_id"),)

    ticket_id: Mapped[int] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)


class TicketThread(Base):
    """A Gmail thread that belongs to a ticket. Gmail thread ids are unique per mailbox only.

    ``labels_applied`` is what we last wrote to Gmail; ``labels_dirty`` marks a thread whose labels
    must be pushed again. Both change in the transaction that changes the ticket, which makes this
    table the outbox of label writes: a crash never loses one.
    """

    __tablename__ = "ticket_threads"
    __table_args__ = (
        UniqueConstraint("mailbox_id", "gmail_thread_id"),
        Index("ix_ticket_threads_mailbox_id_labels_dirty", "mailbox_id", "labels_dirty"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"))
    gmail_thread_id: Mapped[str] = mapped_column(String(64))
    labels_applied: Mapped[list[str]] = mapped_column(JSON, default=list)
    labels_dirty: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    ticket: Mapped[Ticket] = relationship(back_populates="threads", lazy="raise")


class Event(Base):
    """The audit log: who changed what on a ticket, from which value to which, and when."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_ticket_id_id", "ticket_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    actor_kind: Mapped[ActorKind] = mapped_column(enum_type(ActorKind, "event_actor_kind"))
    actor_id: Mapped[int | None]
    field: Mapped[str] = mapped_column(String(64))
    old_value: Mapped[Any] = mapped_column(JSON, nullable=True)
    new_value: Mapped[Any] = mapped_column(JSON, nullable=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class Note(Base):
    """An internal note: seen by agents, never sent to the customer."""

    __tablename__ = "notes"
    __table_args__ = (Index("ix_notes_ticket_id_id", "ticket_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    author: Mapped[Agent | None] = relationship(lazy="raise")
