"""Template suggestions for a ticket: the visible templates ranked against the customer's latest
message (``ranking.py``), with what each template answered lately; the built index is cached
while the templates and their uses stay the same."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.agents.models import Agent
from app.languages import detect_language
from templates_replies import ranking
from templates_replies.models import ReplyTemplate, TemplateUse
from templates_replies.service import get_ticket, latest_customer_text, visible_to

# The suggestions learn from what each template answered lately, not from its whole history.
ANSWERED_PER_TEMPLATE = 20


class _IndexCache:
    """Built TemplateIndexes by fingerprint of what they were built from, most recent kept."""

    def __init__(self, size: int = 32) -> None:
        self._size = size
        self._entries: OrderedDict[Hashable, ranking.TemplateIndex] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> ranking.TemplateIndex | None:
        with self._lock:
            index = self._entries.get(key)
            if index is not None:
                self._entries.move_to_end(key)
            return index

    def put(self, key: Hashable, index: ranking.TemplateIndex) -> None:
        with self._lock:
            self._entries[key] = index
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


# Built indexes: the templates' text alone, and with the usage history of the moment.
_text_cache = _IndexCache()
_index_cache = _IndexCache()


def suggest_templates(
    session: Session, *, ticket_id: int, agent: Agent, limit: int = 3
) -> list[tuple[ReplyTemplate, ranking.Suggestion]]:
    """The templates visible to ``agent`` that best answer the ticket's latest customer message,
    best first; on an equal score a template in the message's language comes first."""
    ticket = get_ticket(session, ticket_id)
    message = latest_customer_text(session, ticket=ticket)
    visible = session.execute(
        select(
            ReplyTemplate.id,
            ReplyTemplate.version,
            ReplyTemplate.updated_at,
            ReplyTemplate.language,
        )
        .where(visible_to(agent))
        .order_by(ReplyTemplate.id)
    ).all()
    if not visible:
        return []
    uses = session.execute(
        select(func.count(TemplateUse.id), func.max(TemplateUse.id)).where(
            TemplateUse.template_id.in_(select(ReplyTemplate.id).where(visible_to(agent)))
        )
    ).one()
    # What the indexes were built from: each template's id, version and last edit (versions
    # alone repeat across databases and rolled-back tests), and for the usage part the uses so
    # far. A recorded use rebuilds only the (small) index of answered messages.
    templates_key = (
        str(session.get_bind().engine.url),
        tuple((row.id, row.version, row.updated_at) for row in visible),
    )
    key = (*templates_key, tuple(uses))
    index = _index_cache.get(key)
    if index is None:
        text_index = _text_cache.get(templates_key)
        if text_index is None:
            text_index = ranking.TemplateIndex(_candidates(session, agent=agent))
            _text_cache.put(templates_key, text_index)
        index = text_index.with_answered(_answered(session, agent=agent))
        _index_cache.put(key, index)
    ranked = index.rank(message, limit=len(visible))
    # "ru" for Cyrillic, else "en": the two languages the default library ships in.
    language = detect_language(message, default="en")
    languages = {row.id: row.language for row in visible}
    # sort() is stable: equal scores in the same language keep the ranking's order.
    ranked.sort(key=lambda s: (-round(s.score, 9), languages.get(s.template_id) != language))
    top = ranked[:limit]
    templates = {
        t.id: t
        for t in session.execute(
            select(ReplyTemplate).where(ReplyTemplate.id.in_([s.template_id for s in top]))
        ).scalars()
    }
    return [(templates[s.template_id], s) for s in top if s.template_id in templates]


def _candidates(session: Session, *, agent: Agent | None) -> list[ranking.Candidate]:
    rows = session.execute(
        select(
            ReplyTemplate.id, ReplyTemplate.name, ReplyTemplate.subject, ReplyTemplate.body
        ).where(visible_to(agent))
    ).all()
    return [
        ranking.Candidate(
            template_id=row.id,
            text="\n".join(part for part in (row.name, row.subject, row.body) if part),
        )
        for row in rows
    ]


def _answered(session: Session, *, agent: Agent | None) -> dict[int, list[str]]:
    """Template id → the customer messages it was inserted for lately, newest first."""
    recent = (
        select(
            TemplateUse.template_id,
            TemplateUse.message_excerpt,
            func.row_number()
            .over(
                partition_by=TemplateUse.template_id,
                order_by=(TemplateUse.used_at.desc(), TemplateUse.id.desc()),
            )
            .label("position"),
        )
        .where(TemplateUse.template_id.in_(select(ReplyTemplate.id).where(visible_to(agent))))
        .subquery()
    )
    answered: dict[int, list[str]] = {}
    for template_id, excerpt, _ in session.execute(
        select(recent)
        .where(recent.c.position <= ANSWERED_PER_TEMPLATE)
        .order_by(recent.c.template_id, recent.c.position)
    ):
        if excerpt:
            answered.setdefault(template_id, []).append(excerpt)
    return answered
