from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from app.agents.models import Agent, Role
from app.api.deps import AdminAgent, CurrentAgent, RowId, SessionDep
from app.db.base import MAX_INTEGER
from app.errors import Forbidden, NotFound
from app.mailboxes.models import Mailbox
from app.sla import escalation_rules, service
from app.sla.schemas import (
    CalendarCreate,
    CalendarRead,
    CalendarUpdate,
    EffectiveEscalation,
    EffectiveStage,
    EscalationAction,
    EscalationRuleCreate,
    EscalationRuleRead,
    EscalationRuleUpdate,
    SlaPolicyCreate,
    SlaPolicyRead,
    SlaPolicyUpdate,
)

router = APIRouter(prefix="/api/v1", tags=["sla"])

_CALENDAR_INVALID = {
    422: {
        "description": "unknown_timezone, unknown_holiday_country, unknown_holiday_subdivision, "
        "calendar_never_open (no hours on any day), or bad intervals (HH:MM, start < end, no "
        "overlap)"
    },
    409: {"description": "calendar_exists: the name is taken"},
}
_POLICY_INVALID = {
    422: {"description": "unknown_mailbox, unknown_calendar, or a target not in 1..527040"},
    409: {"description": "sla_policy_exists: another policy has this priority/segment/mailbox"},
}


@router.get("/calendars", response_model=list[CalendarRead])
def list_calendars(session: SessionDep, _agent: CurrentAgent) -> list[CalendarRead]:
    return [CalendarRead.model_validate(c) for c in service.list_calendars(session)]


@router.post(
    "/calendars",
    response_model=CalendarRead,
    status_code=status.HTTP_201_CREATED,
    responses=_CALENDAR_INVALID,
)
def create_calendar(body: CalendarCreate, session: SessionDep, _admin: AdminAgent) -> CalendarRead:
    return CalendarRead.model_validate(service.create_calendar(session, data=body))


@router.get("/calendars/{calendar_id}", response_model=CalendarRead)
def get_calendar(calendar_id: RowId, session: SessionDep, _agent: CurrentAgent) -> CalendarRead:
    return CalendarRead.model_validate(service.get_calendar(session, calendar_id))


@router.patch("/calendars/{calendar_id}", response_model=CalendarRead, responses=_CALENDAR_INVALID)
def update_calendar(
    calendar_id: RowId, body: CalendarUpdate, session: SessionDep, _admin: AdminAgent
) -> CalendarRead:
    row = service.update_calendar(session, calendar_id=calendar_id, update=body)
    return CalendarRead.model_validate(row)


@router.delete("/calendars/{calendar_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_calendar(calendar_id: RowId, session: SessionDep, _admin: AdminAgent) -> Response:
    """Mailboxes and policies using it lose it (always open / the mailbox's calendar);
    tickets keep their due times."""
    service.delete_calendar(session, calendar_id=calendar_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/sla-policies", response_model=list[SlaPolicyRead])
def list_policies(session: SessionDep, _agent: CurrentAgent) -> list[SlaPolicyRead]:
    return [SlaPolicyRead.model_validate(p) for p in service.list_policies(session)]


@router.post(
    "/sla-policies",
    response_model=SlaPolicyRead,
    status_code=status.HTTP_201_CREATED,
    responses=_POLICY_INVALID,
)
def create_policy(body: SlaPolicyCreate, session: SessionDep, _admin: AdminAgent) -> SlaPolicyRead:
    return SlaPolicyRead.model_validate(service.create_policy(session, data=body))


@router.get("/sla-policies/{policy_id}", response_model=SlaPolicyRead)
def get_policy(policy_id: RowId, session: SessionDep, _agent: CurrentAgent) -> SlaPolicyRead:
    return SlaPolicyRead.model_validate(service.get_policy(session, policy_id))


@router.patch("/sla-policies/{policy_id}", response_model=SlaPolicyRead, responses=_POLICY_INVALID)
def update_policy(
    policy_id: RowId, body: SlaPolicyUpdate, session: SessionDep, _admin: AdminAgent
) -> SlaPolicyRead:
    """Tickets keep the due times they have; new tickets and priority changes use the change."""
    return SlaPolicyRead.model_validate(
        service.update_policy(session, policy_id=policy_id, update=body)
    )


@router.delete("/sla-policies/{policy_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_policy(policy_id: RowId, session: SessionDep, _admin: AdminAgent) -> Response:
    service.delete_policy(session, policy_id=policy_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- escalation rules -----------------------------------------------------------------------------


def require_lead(agent: CurrentAgent) -> Agent:
    if agent.role not in (Role.LEAD, Role.ADMIN):
        raise Forbidden(
            "escalation rules are changed by leads and admins", code="escalation_rules_forbidden"
        )
    return agent


LeadAgent = Annotated[Agent, Depends(require_lead)]
MailboxFilter = Annotated[
    int | None,
    Query(alias="mailbox", ge=1, le=MAX_INTEGER, description="a mailbox id"),
]

_RULE_INVALID = {
    422: {
        "description": "unknown_mailbox, a stage other than at_risk / breached, or an action "
        "type other than notify_lead, raise_priority, reassign, add_label"
    },
    409: {"description": "escalation_rule_exists: that mailbox (or global) has a rule for it"},
}


@router.get("/escalation-rules", response_model=list[EscalationRuleRead])
def list_escalation_rules(
    session: SessionDep, _agent: CurrentAgent, mailbox: MailboxFilter = None
) -> list[EscalationRuleRead]:
    """All rules; with ``mailbox``, those that can apply to it (its own and the global ones)."""
    rows = escalation_rules.list_rules(session, mailbox_id=mailbox)
    return [EscalationRuleRead.model_validate(r) for r in rows]


@router.get("/escalation-rules/effective", response_model=EffectiveEscalation)
def effective_escalation(
    session: SessionDep, _agent: CurrentAgent, mailbox: MailboxFilter = None
) -> EffectiveEscalation:
    """What each stage does for ``mailbox`` (without it: for a mailbox with no rules of its
    own): its rule, else the global one, else the built-in defaults."""
    if mailbox is not None and session.get(Mailbox, mailbox) is None:
        raise NotFound(f"mailbox {mailbox} not found", code="mailbox_not_found")
    found = escalation_rules.effective_rules(session, mailbox_id=mailbox)
    return EffectiveEscalation(
        mailbox_id=mailbox,
        stages=[
            EffectiveStage(
                stage=e.stage,
                actions=[EscalationAction(type=a) for a in e.actions],  # type: ignore[arg-type]
                source=e.source,
                rule_id=e.rule_id,
            )
            for e in found.values()
        ],
    )


@router.post(
    "/escalation-rules",
    response_model=EscalationRuleRead,
    status_code=status.HTTP_201_CREATED,
    responses=_RULE_INVALID,
)
def create_escalation_rule(
    body: EscalationRuleCreate, session: SessionDep, _lead: LeadAgent
) -> EscalationRuleRead:
    return EscalationRuleRead.model_validate(escalation_rules.create_rule(session, data=body))


@router.get("/escalation-rules/{rule_id}", response_model=EscalationRuleRead)
def get_escalation_rule(
    rule_id: RowId, session: SessionDep, _agent: CurrentAgent
) -> EscalationRuleRead:
    return EscalationRuleRead.model_validate(escalation_rules.get_rule(session, rule_id))


@router.patch(
    "/escalation-rules/{rule_id}", response_model=EscalationRuleRead, responses=_RULE_INVALID
)
def update_escalation_rule(
    rule_id: RowId, body: EscalationRuleUpdate, session: SessionDep, _lead: LeadAgent
) -> EscalationRuleRead:
    rule = escalation_rules.update_rule(session, rule_id=rule_id, update=body)
    return EscalationRuleRead.model_validate(rule)


@router.delete("/escalation-rules/{rule_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_escalation_rule(rule_id: RowId, session: SessionDep, _lead: LeadAgent) -> Response:
    """The global rule or the built-in defaults apply again; escalations done stay done."""
    escalation_rules.delete_rule(session, rule_id=rule_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
