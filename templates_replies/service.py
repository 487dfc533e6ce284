"""Reply-template rules: who sees and edits what, checked saves, rendering and uses.
(Suggestions: ``suggestions.py``; the library file and the default library: ``library.py``.)

Rights (issue 4 §7): a personal template exists only for its owner (anyone else, admins included,
gets 404, as for an id that does not exist); shared templates are read by every agent and created,
changed and deleted by leads and admins. The CLI acts without an agent (``agent=None``): it is the
operator, with the rights of an admin over shared templates and no personal ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import StaleDataError

from app.agents.models import Agent, Role
from app.customers.models import Customer
from app.db.base import utcnow
from app.errors import AlreadyExists, Forbidden, NotFound, ValidationFailed, VersionConflict
from app.mailboxes.models import Mailbox
from app.messages.models import Direction, Message
from app.tickets.models import Ticket
from templates_replies import sandbox, spelling
from templates_replies.context import KNOWN_OFFSETS, build_context, latest_inbound_offset
from templates_replies.models import (
    MESSAGE_EXCERPT_CHARS,
    ReplyTemplate,
    TemplateUse,
    Visibility,
)
from templates_replies.schemas import (
    TemplateCreate,
    TemplateFields,
    TemplateUpdate,
)

# The suggestions learn from what each template answered lately, not from its whole history.
ANSWERED_PER_TEMPLATE = 20
# Fields of a template as authored: what the library file carries and an import compares.
AUTHORED_FIELDS = tuple(TemplateFields.model_fields)


class TemplateNotFound(NotFound):
    code = "template_not_found"


class ShortcutTaken(AlreadyExists):
    code = "shortcut_taken"


class TemplateForbidden(Forbidden):
    code = "template_forbidden"


# -- visibility and rights ------------------------------------------------------------------------


def visible_to(agent: Agent | None) -> ColumnElement[bool]:
    """Shared templates, and the agent's own personal ones (the CLI sees shared ones only)."""
    shared = ReplyTemplate.visibility == Visibility.SHARED
    if agent is None:
        return shared
    return or_(
        shared,
        and_(ReplyTemplate.visibility == Visibility.PERSONAL, ReplyTemplate.owner_id == agent.id),
    )


def _is_lead_or_admin(agent: Agent | None) -> bool:
    return agent is None or agent.role in (Role.LEAD, Role.ADMIN)


def check_may_write(agent: Agent | None, visibility: Visibility) -> None:
    if visibility == Visibility.SHARED and not _is_lead_or_admin(agent):
        raise TemplateForbidden(
            "shared templates are created and changed by leads and admins; "
            "save it as a personal template (visibility: personal) or ask a lead"
        )
    if visibility == Visibility.PERSONAL and agent is None:
        raise ValidationFailed(
            "a personal template belongs to an agent: create it through the API as that agent",
            code="personal_needs_owner",
        )


def get_template(session: Session, *, template_id: int, agent: Agent | None) -> ReplyTemplate:
    template = session.execute(
        select(ReplyTemplate).where(ReplyTemplate.id == template_id, visible_to(agent))
    ).scalar_one_or_none()
    if template is None:
        raise TemplateNotFound(f"template {template_id} not found")
    return template


def get_ticket(session: Session, ticket_id: int) -> Ticket:
    """The ticket with its customer and mailbox, 404 as on the ticket routes."""
    row = session.execute(_ticket_with_parties().where(Ticket.id == ticket_id)).first()
    if row is None:
        raise NotFound(f"ticket {ticket_id} not found", code="ticket_not_found")
    return _holding_parties(*row)


def _ticket_with_parties() -> Select[tuple[Ticket, Customer, Mailbox]]:
    # Not tickets.service.get_ticket: its eager loads (tags, threads, assignee) are unused here.
    return (
        select(Ticket, Customer, Mailbox)
        .join(Customer, Customer.id == Ticket.customer_id)
        .join(Mailbox, Mailbox.id == Ticket.mailbox_id)
    )


def _holding_parties(ticket: Ticket, customer: Customer, mailbox: Mailbox) -> Ticket:
    """The ticket, holding on to its customer and mailbox: the identity map keeps objects only
    while something refers to them, and build_context finds them there by id, with no query."""
    set_committed_value(ticket, "customer", customer)
    set_committed_value(ticket, "mailbox", mailbox)
    return ticket


# -- listing --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TemplateFilters:
    q: str | None = None
    tag: str | None = None
    language: str | None = None
    folder: str | None = None
    visibility: Visibility | None = None


def _like_literal(text: str) -> str:
    """``text`` for a LIKE pattern: `%`, `_` and `\\` typed by a user are literal."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def list_templates(
    session: Session,
    *,
    agent: Agent | None,
    filters: TemplateFilters | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[ReplyTemplate], int]:
    """Visible templates matching the filters, most used first, then by name.

    ``q`` is found case-insensitively in the name or the body, ``tag`` is one of the tags: both
    through the derived columns of templates_replies/models.py, so the same LIKE works on SQLite
    and PostgreSQL whatever the alphabet.
    """
    filters = filters or TemplateFilters()
    stmt = select(ReplyTemplate).where(visible_to(agent))
    if filters.q:
        pattern = f"%{_like_literal(filters.q.lower())}%"
        stmt = stmt.where(ReplyTemplate.search_text.like(pattern, escape="\\"))
    if filters.tag:
        pattern = f"%|{_like_literal(filters.tag.strip().lower())}|%"
        stmt = stmt.where(ReplyTemplate.tag_index.like(pattern, escape="\\"))
    if filters.language:
        stmt = stmt.where(ReplyTemplate.language == filters.language)
    if filters.folder:
        stmt = stmt.where(ReplyTemplate.folder == filters.folder)
    if filters.visibility:
        stmt = stmt.where(ReplyTemplate.visibility == filters.visibility)
    total = session.execute(
        stmt.with_only_columns(func.count(ReplyTemplate.id)).order_by(None)
    ).scalar_one()
    stmt = (
        stmt.order_by(ReplyTemplate.usage_count.desc(), ReplyTemplate.name, ReplyTemplate.id)
        .limit(limit)
        .offset(offset)
    )
    return list(session.execute(stmt).scalars()), total


# -- saving ---------------------------------------------------------------------------------------


def validate_source(*, body: str, subject: str | None, is_html: bool) -> None:
    """Raises sandbox.TemplateInvalid (422 template_invalid: syntax, unknown variable, too large,
    unsafe) before anything is written."""
    sandbox.validate_template(body=body, subject=subject, is_html=is_html)


def spelling_warnings(*, body: str, subject: str | None, language: str) -> list[dict[str, Any]]:
    text = f"{subject}\n{body}" if subject else body
    words = spelling.misspelled_words(text, language)
    return [{"code": "spelling", "words": words}] if words else []


def ensure_shortcut_free(
    session: Session,
    *,
    shortcut: str | None,
    language: str,
    visibility: Visibility,
    exclude_id: int | None = None,
) -> None:
    if shortcut is None or visibility != Visibility.SHARED:
        return
    stmt = select(ReplyTemplate.id, ReplyTemplate.name).where(
        ReplyTemplate.visibility == Visibility.SHARED,
        ReplyTemplate.shortcut == shortcut,
        ReplyTemplate.language == language,
    )
    if exclude_id is not None:
        stmt = stmt.where(ReplyTemplate.id != exclude_id)
    taken = session.execute(stmt.limit(1)).first()
    if taken is not None:
        raise ShortcutTaken(
            f"the shortcut {shortcut!r} ({language}) already opens the shared template "
            f"{taken.name!r}; choose another one",
            details={"template_id": taken.id},
        )


def _flush_save(session: Session, *, shortcut: str | None, language: str, name: str) -> None:
    flush_saves(
        session,
        clash=f"the shortcut {shortcut!r} ({language}) was just taken by another shared template",
        stale=f"template {name!r} was changed by someone else meanwhile; reload and retry",
    )


def flush_saves(session: Session, *, clash: str, stale: str) -> None:
    """Flush template saves, turning the database's refusals into our errors: ``clash`` when the
    partial unique index finds a shortcut another save took since our check, ``stale`` when a
    template changed meanwhile (its version)."""
    try:
        session.flush()
    except IntegrityError as exc:
        if not is_shortcut_clash(exc):
            raise
        raise ShortcutTaken(clash) from exc
    except StaleDataError as exc:
        raise VersionConflict(stale) from exc


def is_shortcut_clash(exc: IntegrityError) -> bool:
    # PostgreSQL names the index; SQLite names its columns ("… reply_templates.shortcut, …").
    message = str(exc.orig)
    return "ix_reply_templates_shared_shortcut" in message or "reply_templates.shortcut" in message


def create_template(
    session: Session, *, data: TemplateCreate, agent: Agent | None
) -> tuple[ReplyTemplate, list[dict[str, Any]]]:
    """Save a new template and return it with its spelling warnings."""
    check_may_write(agent, data.visibility)
    validate_source(body=data.body, subject=data.subject, is_html=data.is_html)
    ensure_shortcut_free(
        session, shortcut=data.shortcut, language=data.language, visibility=data.visibility
    )
    template = build_template(data, agent)
    session.add(template)
    _flush_save(session, shortcut=data.shortcut, language=data.language, name=data.name)
    return template, spelling_warnings(body=data.body, subject=data.subject, language=data.language)


def build_template(data: TemplateFields, agent: Agent | None) -> ReplyTemplate:
    owner_id = agent.id if agent is not None and data.visibility == Visibility.PERSONAL else None
    return ReplyTemplate(
        **data.model_dump(include=set(AUTHORED_FIELDS)),
        owner_id=owner_id,
        author_id=agent.id if agent is not None else None,
        usage_count=0,
    )


def update_template(
    session: Session, *, template_id: int, update: TemplateUpdate, agent: Agent
) -> tuple[ReplyTemplate, list[dict[str, Any]]]:
    """Apply a change made from version ``update.version``; stale → 409 version_conflict."""
    template = get_template(session, template_id=template_id, agent=agent)
    check_may_write(agent, template.visibility)
    if update.version != template.version:
        raise VersionConflict(
            f"template {template.name!r} was changed by someone else: you have version "
            f"{update.version}, the current one is {template.version}; reload and retry",
            details={"current_version": template.version},
        )
    changes = update.model_dump(exclude_unset=True, exclude={"version"})
    new = {field: changes.get(field, getattr(template, field)) for field in AUTHORED_FIELDS}
    if new["visibility"] != template.visibility:
        check_may_write(agent, new["visibility"])
    validate_source(body=new["body"], subject=new["subject"], is_html=new["is_html"])
    ensure_shortcut_free(
        session,
        shortcut=new["shortcut"],
        language=new["language"],
        visibility=new["visibility"],
        exclude_id=template.id,
    )
    apply_fields(template, new, agent)
    _flush_save(session, shortcut=new["shortcut"], language=new["language"], name=new["name"])
    return template, spelling_warnings(
        body=template.body, subject=template.subject, language=template.language
    )


def apply_fields(template: ReplyTemplate, new: dict[str, Any], agent: Agent | None) -> bool:
    """Set the authored fields; return whether anything changed (only then the row is written
    and its version moves)."""
    changed = False
    for field, value in new.items():
        if getattr(template, field) != value:
            setattr(template, field, value)
            changed = True
    if template.visibility == Visibility.PERSONAL and template.owner_id is None and agent:
        # Made personal by a lead: it becomes theirs.
        template.owner_id = agent.id
        changed = True
    elif template.visibility == Visibility.SHARED and template.owner_id is not None:
        template.owner_id = None
        changed = True
    return changed


def delete_template(session: Session, *, template_id: int, agent: Agent) -> None:
    template = get_template(session, template_id=template_id, agent=agent)
    check_may_write(agent, template.visibility)
    session.delete(template)
    session.flush()


# -- rendering ------------------------------------------------------------------------------------


# Built once: the template (if the agent sees it), the ticket, its customer and mailbox, and the
# customer's latest Date offset (wanted only when they have no zone on record) in one statement.
_RENDER_ROWS = (
    select(
        ReplyTemplate,
        Ticket,
        Customer,
        Mailbox,
        latest_inbound_offset(Customer.id, Customer.email),
    )
    .select_from(ReplyTemplate)
    .outerjoin(Ticket, Ticket.id == bindparam("ticket_id"))
    .outerjoin(Customer, Customer.id == Ticket.customer_id)
    .outerjoin(Mailbox, Mailbox.id == Ticket.mailbox_id)
    .where(
        ReplyTemplate.id == bindparam("template_id"),
        or_(
            ReplyTemplate.visibility == Visibility.SHARED,
            ReplyTemplate.owner_id == bindparam("agent_id"),
        ),
    )
)


def render_saved(
    session: Session, *, template_id: int, ticket_id: int | None, agent: Agent
) -> sandbox.RenderedTemplate:
    """The template filled in for a ticket (sample values without one). Problems while rendering
    become warnings, never an error (sandbox.render_template).

    One prepared statement reads everything (``_RENDER_ROWS``): the sidebar's compose card
    renders on every insert, so each round trip and each statement built counts."""
    if ticket_id is None:
        template = get_template(session, template_id=template_id, agent=agent)
        ticket = None
    else:
        found = session.execute(
            _RENDER_ROWS,
            {"template_id": template_id, "ticket_id": ticket_id, "agent_id": agent.id},
        ).first()
        if found is None:
            raise TemplateNotFound(f"template {template_id} not found")
        template, ticket, customer, mailbox, offset = found
        if ticket is None:
            raise NotFound(f"ticket {ticket_id} not found", code="ticket_not_found")
        _holding_parties(ticket, customer, mailbox)
        session.info.setdefault(KNOWN_OFFSETS, {})[customer.id] = offset
    context = build_context(session, ticket=ticket, agent=agent, language=template.language)
    return sandbox.render_template(
        body=template.body, subject=template.subject, is_html=template.is_html, context=context
    )


def render_preview(
    session: Session,
    *,
    body: str,
    subject: str | None,
    is_html: bool,
    language: str,
    ticket_id: int | None,
    agent: Agent,
) -> sandbox.RenderedTemplate:
    """An unsaved template: refused like a save would be (422 template_invalid), then rendered."""
    validate_source(body=body, subject=subject, is_html=is_html)
    ticket = get_ticket(session, ticket_id) if ticket_id is not None else None
    context = build_context(session, ticket=ticket, agent=agent, language=language)
    return sandbox.render_template(body=body, subject=subject, is_html=is_html, context=context)


# -- uses -----------------------------------------------------------------------------------------


def latest_customer_text(session: Session, *, ticket: Ticket) -> str:
    """The text of the customer's latest message on the ticket; the subject if there is none
    (a ticket opened through the API)."""
    row = session.execute(
        select(Message.text_body, Message.snippet)
        .where(Message.ticket_id == ticket.id, Message.direction == Direction.INBOUND)
        # Portable NULLS LAST: a message without a Date header is the least likely latest one.
        .order_by(Message.date.is_(None), Message.date.desc(), Message.id.desc())
        .limit(1)
    ).first()
    text = (row.text_body or row.snippet or "") if row is not None else ""
    return text.strip() or ticket.subject


def record_use(session: Session, *, template_id: int, ticket_id: int, agent: Agent) -> TemplateUse:
    """The agent inserted the template into a reply on the ticket."""
    template = get_template(session, template_id=template_id, agent=agent)
    ticket = get_ticket(session, ticket_id)
    now = utcnow()
    # One UPDATE … SET usage_count = usage_count + 1: concurrent uses all count, and a use is not
    # an edit — the version (and updated_at) stay, or an author would meet a needless 409.
    session.execute(
        update(ReplyTemplate)
        .where(ReplyTemplate.id == template.id)
        .values(
            usage_count=ReplyTemplate.usage_count + 1,
            last_used_at=now,
            updated_at=ReplyTemplate.updated_at,
        )
        .execution_options(synchronize_session="fetch")
    )
    use = TemplateUse(
        template_id=template.id,
        ticket_id=ticket.id,
        agent_id=agent.id,
        message_excerpt=latest_customer_text(session, ticket=ticket)[:MESSAGE_EXCERPT_CHARS],
        used_at=now,
    )
    session.add(use)
    session.flush()
    return use
