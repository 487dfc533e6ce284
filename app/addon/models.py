"""What the add-on remembers between requests: who has a ticket open in Gmail right now."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, utcnow
from app.db.types import enum_type


class PresenceKind(enum.StrEnum):
    VIEWING = "viewing"
    DRAFTING = "drafting"


class AddonPresence(Base):
    """An agent had a ticket's card open (``viewing``) or its reply's compose card (``drafting``)
    at ``seen_at``. One row per agent, ticket and kind, upserted each time a card is built: the
    "also here" line of the ticket card lists the others seen within the last minutes."""

    __tablename__ = "addon_presence"
    __table_args__ = (
        # "Who else is on this ticket lately": one range scan per card.
        Index("ix_addon_presence_ticket_id_seen_at", "ticket_id", "seen_at"),
    )

    agent_id: Mapped[int] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True
    )
    ticket_id: Mapped[int] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[PresenceKind] = mapped_column(
        enum_type(PresenceKind, "addon_presence_kind"), primary_key=True
    )
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)
