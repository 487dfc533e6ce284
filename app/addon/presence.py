"""Collision warnings: which other agents have the same ticket open in Gmail, or a reply to it.

Building a ticket's card records the agent as ``viewing`` it, building the compose card for a
reply as ``drafting``: one upserted row per agent, ticket and kind (app/addon/models.py). The
"also here" line names the others seen within ``WINDOW``. Gmail tells an add-on nothing when a
card closes, so presence is "seen lately", never "still there".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from app.addon.models import AddonPresence, PresenceKind
from app.agents.models import Agent
from app.db.base import utcnow

WINDOW = timedelta(minutes=5)
# An agent's rows older than this are deleted when they open another card: the table holds
# what the last hour's cards need, not every ticket anyone ever opened.
KEEP = timedelta(hours=1)


@dataclass(frozen=True)
class Colleague:
    name: str
    drafting: bool


def touch(
    session: Session,
    *,
    agent_id: int,
    ticket_id: int,
    kind: PresenceKind,
    now: datetime | None = None,
) -> None:
    """Record that ``agent_id`` has ``ticket_id`` open (``kind``) at ``now``."""
    now = now or utcnow()
    values = {"agent_id": agent_id, "ticket_id": ticket_id, "kind": kind, "seen_at": now}
    # INSERT … ON CONFLICT DO UPDATE: two cards of one agent built at once never collide on the
    # primary key (both dialects spell it the same way in SQLAlchemy).
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(AddonPresence).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["agent_id", "ticket_id", "kind"], set_={"seen_at": now}
    )
    session.execute(stmt)
    session.execute(
        delete(AddonPresence).where(
            AddonPresence.agent_id == agent_id, AddonPresence.seen_at < now - KEEP
        )
    )


def others_here(
    session: Session, *, ticket_id: int, agent_id: int, now: datetime | None = None
) -> list[Colleague]:
    """The other active agents seen on the ticket within ``WINDOW``, by name; someone both
    viewing and drafting counts as drafting (that is the collision that matters)."""
    since = (now or utcnow()) - WINDOW
    rows = session.execute(
        select(Agent.id, Agent.name, AddonPresence.kind)
        .join(Agent, Agent.id == AddonPresence.agent_id)
        .where(
            AddonPresence.ticket_id == ticket_id,
            AddonPresence.seen_at >= since,
            AddonPresence.agent_id != agent_id,
            Agent.is_active.is_(True),
        )
    ).all()
    names: dict[int, str] = {}
    drafting: set[int] = set()
    for other_id, name, kind in rows:
        names[other_id] = name
        if kind == PresenceKind.DRAFTING:
            drafting.add(other_id)
    return sorted(
        (Colleague(name=name, drafting=other_id in drafting) for other_id, name in names.items()),
        key=lambda colleague: (not colleague.drafting, colleague.name.lower()),
    )
