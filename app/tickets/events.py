"""Who acts on a ticket, and the audit event every change leaves behind."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.agents.models import Agent, Role
from app.tickets.models import ActorKind, Event


@dataclass(frozen=True)
class Actor:
    kind: ActorKind
    id: int | None = None
    role: Role | None = None

    @classmethod
    def for_agent(cls, agent: Agent) -> Actor:
        return cls(kind=ActorKind.AGENT, id=agent.id, role=agent.role)

    @classmethod
    def system(cls) -> Actor:
        return cls(kind=ActorKind.SYSTEM)

    @property
    def is_lead_or_admin(self) -> bool:
        return self.role in (Role.LEAD, Role.ADMIN)


def record_event(
    session: Session,
    *,
    ticket_id: int,
    actor: Actor,
    field: str,
    old: Any = None,
    new: Any = None,
) -> Event:
    event = Event(
        ticket_id=ticket_id,
        actor_kind=actor.kind,
        actor_id=actor.id,
        field=field,
        old_value=old,
        new_value=new,
    )
    session.add(event)
    return event
