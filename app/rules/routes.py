"""/api/v1/rules: the triage rules. Every agent may read them; leads and admins change them and
try them (dry run)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response, status

from app.agents.models import Agent, Role
from app.api.deps import CurrentAgent, RowId, SessionDep
from app.db.base import MAX_INTEGER
from app.errors import Forbidden
from app.rules import service
from app.rules.schemas import DryRunRequest, DryRunResult, RuleCreate, RuleRead, RuleUpdate

router = APIRouter(prefix="/api/v1/rules", tags=["rules"])

_INVALID = {
    422: {
        "description": "invalid_rule (names the condition or action index: unknown field, op or "
        "action, wrong value type, a regex that does not compile or is over 1000 characters), "
        "unknown_mailbox, unknown_team, unknown_agent, unknown_sla_policy"
    },
    403: {"description": "rules_forbidden: only leads and admins change rules"},
}


def require_rule_editor(agent: CurrentAgent) -> Agent:
    if agent.role not in (Role.LEAD, Role.ADMIN):
        raise Forbidden("only leads and admins change triage rules", code="rules_forbidden")
    return agent


RuleEditor = Annotated[Agent, Depends(require_rule_editor)]


@router.get("", response_model=list[RuleRead])
def list_rules(
    session: SessionDep,
    _agent: CurrentAgent,
    mailbox: Annotated[
        int | None,
        Query(ge=1, le=MAX_INTEGER, description="the rules evaluated for this mailbox, in order"),
    ] = None,
) -> list[RuleRead]:
    return [RuleRead.model_validate(r) for r in service.list_rules(session, mailbox_id=mailbox)]


@router.post("", response_model=RuleRead, status_code=status.HTTP_201_CREATED, responses=_INVALID)
def create_rule(body: RuleCreate, session: SessionDep, _editor: RuleEditor) -> RuleRead:
    return RuleRead.model_validate(service.create_rule(session, data=body))


@router.post(
    "/dry-run",
    response_model=DryRunResult,
    responses={
        422: {"description": "unknown_mailbox, unknown_message, or not exactly one source"},
        403: {"description": "rules_forbidden"},
    },
)
def dry_run(body: DryRunRequest, session: SessionDep, _editor: RuleEditor) -> dict[str, Any]:
    """Which rules would fire for a message (``raw`` RFC 822 text, a stored ``message_id``, or
    ``fields``) and what they would change. Nothing is changed."""
    return service.dry_run(session, request=body)


@router.get("/{rule_id}", response_model=RuleRead)
def get_rule(rule_id: RowId, session: SessionDep, _agent: CurrentAgent) -> RuleRead:
    return RuleRead.model_validate(service.get_rule(session, rule_id))


@router.patch("/{rule_id}", response_model=RuleRead, responses=_INVALID)
def update_rule(
    rule_id: RowId, body: RuleUpdate, session: SessionDep, _editor: RuleEditor
) -> RuleRead:
    return RuleRead.model_validate(service.update_rule(session, rule_id=rule_id, update=body))


@router.delete("/{rule_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_INVALID)
def delete_rule(rule_id: RowId, session: SessionDep, _editor: RuleEditor) -> Response:
    service.delete_rule(session, rule_id=rule_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
