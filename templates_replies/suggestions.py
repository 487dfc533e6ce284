"""Template suggestions for a ticket: the visible templates ranked against the customer's latest
message (``ranking.py``), with what each template answered lately; the built index is cached
while the templates and their uses stay the same."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Hashable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.agents.models import Agent
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


_index_cache = _IndexCache()

_CYRILLIC = re.compile(r"[а-яё]", re.IGNORECASE)
_LATIN = re.compile(r"[a-z]", re.IGNORECASE)


def message_language(text: str) -> str:
    """ "ru" when most letters are Cyrillic, else "en": the two languages templates ship in."""
    sample = text[:2000]
    return "ru" if len(_CYRILLIC.findall(sample)) > len(_LATIN.findall(sample)) else "en"


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
    # What the index was built from: each template's id, version and last edit (versions alone
    # repeat across databases and rolled-back tests), and the uses so far.
    key = (
        str(session.get_bind().engine.url),
        tuple((row.id, row.version, row.updated_at) for row in visible),
        tuple(uses),
    )
    index = _index_cache.get(key)
    if index is None:
        index = ranking.TemplateIndex(_candidates(session, agent=agent))
        _index_cache.put(key, index)
    ranked = index.rank(message, limit=len(visible))
    language = message_language(message)
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
    return [
        ranking.Candidate(
            template_id=row.id,
            text="\n".join(part for part in (row.name, row.subject, row.body) if part),
            answered=tuple(answered.get(row.id, ())),
        )
        for row in rows
    ]
