from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status

from app.api.deps import CurrentAgent, RowId, SessionDep
from app.api.validation import NO_NUL
from templates_replies import library, service, suggestions
from templates_replies.models import ReplyTemplate, Visibility
from templates_replies.schemas import (
    LANGUAGE,
    ImportResult,
    LibraryImport,
    LibraryRead,
    PreviewRequest,
    RenderedRead,
    RenderRequest,
    SpellingWarning,
    SuggestionList,
    SuggestionRead,
    TemplateCreate,
    TemplatePage,
    TemplateRead,
    TemplateSaved,
    TemplateUpdate,
    UseCreate,
    UseRead,
)

router = APIRouter(prefix="/api/v1", tags=["templates"])

_INVALID = {
    422: {
        "description": "template_invalid: a syntax error (with its line), an unknown variable "
        "(the known ones listed), a source over the size limit, or a sandbox escape"
    }
}


def _saved(template: ReplyTemplate, warnings: list[dict[str, Any]]) -> TemplateSaved:
    return TemplateSaved(
        template=TemplateRead.model_validate(template),
        warnings=[SpellingWarning.model_validate(w) for w in warnings],
    )


@router.get("/templates", response_model=TemplatePage)
def list_templates(
    session: SessionDep,
    agent: CurrentAgent,
    q: Annotated[
        str | None,
        Query(description="text in the name or body", max_length=200, pattern=NO_NUL),
    ] = None,
    tag: Annotated[str | None, Query(max_length=64, pattern=NO_NUL)] = None,
    language: Annotated[str | None, Query(pattern=LANGUAGE)] = None,
    folder: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
    visibility: Visibility | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> TemplatePage:
    filters = service.TemplateFilters(
        q=q, tag=tag, language=language, folder=folder, visibility=visibility
    )
    items, total = service.list_templates(
        session, agent=agent, filters=filters, limit=limit, offset=offset
    )
    return TemplatePage(
        items=[TemplateRead.model_validate(t) for t in items],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.post(
    "/templates",
    response_model=TemplateSaved,
    status_code=status.HTTP_201_CREATED,
    responses={**_INVALID, 409: {"description": "shortcut_taken"}},
)
def create_template(
    body: TemplateCreate, session: SessionDep, agent: CurrentAgent
) -> TemplateSaved:
    template, warnings = service.create_template(session, data=body, agent=agent)
    return _saved(template, warnings)


# The fixed paths come before /templates/{template_id}, which would take "export" for an id.
@router.get("/templates/export", response_model=LibraryRead)
def export_templates(session: SessionDep, agent: CurrentAgent) -> LibraryRead:
    """Shared templates and the caller's own personal ones, as one JSON document."""
    return LibraryRead.model_validate(library.export_library(session, agent=agent))


@router.post(
    "/templates/import",
    response_model=ImportResult,
    responses={
        422: {"description": "a bad template: details.index says which; nothing is saved"},
        409: {"description": "shortcut_taken (details.index)"},
    },
)
def import_templates(body: LibraryImport, session: SessionDep, agent: CurrentAgent) -> ImportResult:
    return library.import_library(session, document=body, agent=agent)


@router.post("/templates/preview", response_model=RenderedRead, responses=_INVALID)
def preview_template(
    body: PreviewRequest, session: SessionDep, agent: CurrentAgent
) -> RenderedRead:
    rendered = service.render_preview(
        session,
        body=body.body,
        subject=body.subject,
        is_html=body.is_html,
        language=body.language,
        ticket_id=body.ticket_id,
        agent=agent,
    )
    return RenderedRead.model_validate(rendered)


@router.get("/templates/{template_id}", response_model=TemplateRead)
def get_template(template_id: RowId, session: SessionDep, agent: CurrentAgent) -> TemplateRead:
    return TemplateRead.model_validate(
        service.get_template(session, template_id=template_id, agent=agent)
    )


@router.patch(
    "/templates/{template_id}",
    response_model=TemplateSaved,
    responses={
        **_INVALID,
        409: {"description": "version_conflict (stale version) or shortcut_taken"},
    },
)
def update_template(
    template_id: RowId, body: TemplateUpdate, session: SessionDep, agent: CurrentAgent
) -> TemplateSaved:
    template, warnings = service.update_template(
        session, template_id=template_id, update=body, agent=agent
    )
    return _saved(template, warnings)


@router.delete("/templates/{template_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_template(template_id: RowId, session: SessionDep, agent: CurrentAgent) -> Response:
    service.delete_template(session, template_id=template_id, agent=agent)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/templates/{template_id}/render", response_model=RenderedRead)
def render_template(
    template_id: RowId, body: RenderRequest, session: SessionDep, agent: CurrentAgent
) -> RenderedRead:
    """The template filled in for the ticket; a failure inside the template is a warning."""
    rendered = service.render_saved(
        session, template_id=template_id, ticket_id=body.ticket_id, agent=agent
    )
    return RenderedRead.model_validate(rendered)


@router.post(
    "/templates/{template_id}/uses", response_model=UseRead, status_code=status.HTTP_201_CREATED
)
def record_use(
    template_id: RowId, body: UseCreate, session: SessionDep, agent: CurrentAgent
) -> UseRead:
    """The template was inserted into a reply on the ticket (feeds usage counts and
    suggestions)."""
    use = service.record_use(
        session, template_id=template_id, ticket_id=body.ticket_id, agent=agent
    )
    return UseRead.model_validate(use)


@router.get("/tickets/{ticket_id}/template-suggestions", response_model=SuggestionList)
def template_suggestions(
    ticket_id: RowId,
    session: SessionDep,
    agent: CurrentAgent,
    limit: Annotated[int, Query(ge=1, le=20)] = 3,
) -> SuggestionList:
    """The templates that best answer the customer's latest message, best first."""
    ranked = suggestions.suggest_templates(session, ticket_id=ticket_id, agent=agent, limit=limit)
    return SuggestionList(
        items=[
            SuggestionRead(
                template=TemplateRead.model_validate(template),
                score=suggestion.score,
                text_score=suggestion.text_score,
                usage_score=suggestion.usage_score,
            )
            for template, suggestion in ranked
        ]
    )
