"""The template library as a file (export / import, all checked before anything is saved) and
the default library shipped with Inboxdesk."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.agents.models import Agent
from app.errors import ValidationFailed
from templates_replies import defaults, sandbox
from templates_replies.models import ReplyTemplate, Visibility
from templates_replies.schemas import (
    LIBRARY_FORMAT,
    LIBRARY_VERSION,
    ImportResult,
    ImportWarning,
    LibraryImport,
    TemplateCreate,
    TemplateFields,
)
from templates_replies.service import (
    AUTHORED_FIELDS,
    ShortcutTaken,
    TemplateForbidden,
    apply_fields,
    build_template,
    check_may_write,
    ensure_shortcut_free,
    flush_saves,
    spelling_warnings,
    validate_source,
    visible_to,
)

# -- the library file -----------------------------------------------------------------------------


def export_library(session: Session, *, agent: Agent | None) -> dict[str, Any]:
    """Every template the caller sees as one document: shared ones, and their own personal ones."""
    templates = session.execute(
        select(ReplyTemplate)
        .where(visible_to(agent))
        .order_by(
            ReplyTemplate.visibility, ReplyTemplate.language, ReplyTemplate.name, ReplyTemplate.id
        )
    ).scalars()
    return {
        "format": LIBRARY_FORMAT,
        "version": LIBRARY_VERSION,
        "templates": [_authored(t) for t in templates],
    }


def _authored(template: ReplyTemplate) -> dict[str, Any]:
    values = {field: getattr(template, field) for field in AUTHORED_FIELDS}
    values["visibility"] = template.visibility.value
    values["tags"] = list(template.tags)
    return values


class TemplateImportInvalid(ValidationFailed):
    code = "template_import_invalid"


def import_library(
    session: Session, *, document: LibraryImport | dict[str, Any], agent: Agent | None
) -> ImportResult:
    """Create or update the document's templates, all or nothing.

    Every template is checked (schema, sandbox, rights, shortcuts) before the first is written; a
    bad one → 4xx with ``details.index``. A template with the same name, language and visibility
    (and owner, for personal ones) as an existing one updates it (the lowest id, should names
    repeat), otherwise a new one is created.
    """
    if not isinstance(document, LibraryImport):
        try:
            document = LibraryImport.model_validate(document)
        except ValidationError as exc:
            raise TemplateImportInvalid(
                f"not an {LIBRARY_FORMAT} version {LIBRARY_VERSION} document: "
                f"{_first_problem(exc)}",
                details={"problems": _problems(exc)},
            ) from None
    items = [_checked_item(index, raw, agent) for index, raw in enumerate(document.templates)]
    targets = _match_existing(session, items, agent)
    _check_import_shortcuts(session, items, targets)

    created = updated = unchanged = 0
    warnings: list[ImportWarning] = []
    for index, (data, existing) in enumerate(zip(items, targets, strict=True)):
        if existing is None:
            session.add(build_template(data, agent))
            created += 1
        elif apply_fields(existing, data.model_dump(include=set(AUTHORED_FIELDS)), agent):
            updated += 1
        else:
            unchanged += 1
        warnings.extend(
            ImportWarning(index=index, name=data.name, **warning)
            for warning in spelling_warnings(
                body=data.body, subject=data.subject, language=data.language
            )
        )
    flush_saves(
        session,
        clash="the import's shortcuts collide with another shared template's; nothing was imported",
        stale="a template was changed by someone else during the import; nothing was imported",
    )
    return ImportResult(created=created, updated=updated, unchanged=unchanged, warnings=warnings)


def _problems(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": [str(part) for part in err["loc"]], "message": err["msg"]} for err in exc.errors()
    ]


def _first_problem(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err["loc"])
    return f"{where}: {err['msg']}" if where else err["msg"]


def _checked_item(index: int, raw: Any, agent: Agent | None) -> TemplateCreate:
    name = raw.get("name") if isinstance(raw, dict) else None
    name = name if isinstance(name, str) else None
    where = f"template {index}" + (f" ({name!r})" if name else "")
    try:
        data = TemplateCreate.model_validate(raw)
    except ValidationError as exc:
        raise TemplateImportInvalid(
            f"{where}: {_first_problem(exc)}; nothing was imported",
            details={"index": index, "problems": _problems(exc)},
        ) from None
    try:
        check_may_write(agent, data.visibility)
        validate_source(body=data.body, subject=data.subject, is_html=data.is_html)
    except (sandbox.TemplateInvalid, TemplateForbidden, ValidationFailed) as exc:
        exc.message = f"{where}: {exc.message}; nothing was imported"
        exc.args = (exc.message,)
        exc.details = {"index": index, **(exc.details or {})}
        raise
    return data


def _identity(data: TemplateFields) -> tuple[str, str, Visibility]:
    return (data.name, data.language, data.visibility)


def _match_existing(
    session: Session, items: Sequence[TemplateCreate], agent: Agent | None
) -> list[ReplyTemplate | None]:
    seen: dict[tuple[str, str, Visibility], int] = {}
    for index, data in enumerate(items):
        first = seen.setdefault(_identity(data), index)
        if first != index:
            raise TemplateImportInvalid(
                f"template {index} ({data.name!r}, {data.language}, {data.visibility.value}) "
                f"repeats template {first}; nothing was imported",
                details={"index": index, "same_as": first},
            )
    existing: dict[tuple[str, str, Visibility], ReplyTemplate] = {}
    for template in session.execute(
        select(ReplyTemplate).where(visible_to(agent)).order_by(ReplyTemplate.id.desc())
    ).scalars():
        # Descending ids: the lowest id of a repeated name is the one kept.
        existing[(template.name, template.language, template.visibility)] = template
    return [existing.get(_identity(data)) for data in items]


def _check_import_shortcuts(
    session: Session,
    items: Sequence[TemplateCreate],
    targets: Sequence[ReplyTemplate | None],
) -> None:
    """A shared shortcut names one template per language once the import is done: among the
    imported ones (422) and against the shared templates the import leaves alone (409)."""
    updated_ids = {t.id for t in targets if t is not None}
    claimed: dict[tuple[str, str], int] = {}
    for index, data in enumerate(items):
        if data.shortcut is None or data.visibility != Visibility.SHARED:
            continue
        key = (data.shortcut, data.language)
        first = claimed.setdefault(key, index)
        if first != index:
            raise TemplateImportInvalid(
                f"template {index} ({data.name!r}) uses the shortcut {data.shortcut!r} "
                f"({data.language}) of template {first}; nothing was imported",
                details={"index": index, "same_as": first},
            )
    if not claimed:
        return
    for template in session.execute(
        select(ReplyTemplate).where(
            ReplyTemplate.visibility == Visibility.SHARED, ReplyTemplate.shortcut.is_not(None)
        )
    ).scalars():
        index = claimed.get((template.shortcut or "", template.language))
        if index is not None and template.id not in updated_ids:
            raise ShortcutTaken(
                f"template {index} ({items[index].name!r}): the shortcut {template.shortcut!r} "
                f"({template.language}) already opens the shared template {template.name!r}; "
                "nothing was imported",
                details={"index": index, "template_id": template.id},
            )


# -- the default library --------------------------------------------------------------------------


def seed_default_templates(session: Session) -> tuple[int, int]:
    """Add the shipped default templates that are missing (by name and language among the shared
    ones); return (created, already there). A template an admin edited is left as it is; a
    shortcut already given to another shared template is left off the default."""
    created = kept = 0
    for raw in defaults.default_templates():
        data = TemplateCreate.model_validate({**raw, "visibility": Visibility.SHARED.value})
        exists = session.execute(
            select(ReplyTemplate.id)
            .where(
                ReplyTemplate.visibility == Visibility.SHARED,
                ReplyTemplate.name == data.name,
                ReplyTemplate.language == data.language,
            )
            .limit(1)
        ).first()
        if exists is not None:
            kept += 1
            continue
        validate_source(body=data.body, subject=data.subject, is_html=data.is_html)
        try:
            ensure_shortcut_free(
                session,
                shortcut=data.shortcut,
                language=data.language,
                visibility=data.visibility,
            )
        except ShortcutTaken:
            data = data.model_copy(update={"shortcut": None})
        session.add(build_template(data, None))
        session.flush()
        created += 1
    return created, kept
