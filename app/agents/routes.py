from __future__ import annotations

from fastapi import APIRouter, status

from app.agents import service
from app.agents.models import Agent, Role
from app.agents.schemas import (
    AgentCreate,
    AgentRead,
    AgentUpdate,
    TokenCreate,
    TokenIssued,
    TokenRead,
)
from app.api.deps import AdminAgent, CurrentAgent, RowId, SessionDep
from app.assignment.service import assign_waiting_for_agent
from app.errors import Forbidden

router = APIRouter(prefix="/api/v1/agents", tags=["agents"])


def _self_or_admin(caller: Agent, agent_id: int) -> None:
    if caller.id != agent_id and caller.role != Role.ADMIN:
        raise Forbidden("only admins manage other agents' tokens")


@router.get("", response_model=list[AgentRead])
def list_agents(session: SessionDep, _agent: CurrentAgent) -> list[AgentRead]:
    return [AgentRead.model_validate(a) for a in service.list_agents(session)]


@router.get("/me", response_model=AgentRead)
def me(agent: CurrentAgent) -> AgentRead:
    return AgentRead.model_validate(agent)


@router.post("", response_model=AgentRead, status_code=status.HTTP_201_CREATED)
def create_agent(body: AgentCreate, session: SessionDep, _admin: AdminAgent) -> AgentRead:
    agent = service.create_agent(
        session, email=body.email, name=body.name, role=body.role, timezone=body.timezone
    )
    return AgentRead.model_validate(agent)


@router.get("/{agent_id}", response_model=AgentRead)
def get_agent(agent_id: RowId, session: SessionDep, _agent: CurrentAgent) -> AgentRead:
    return AgentRead.model_validate(service.get_agent(session, agent_id))


@router.patch("/{agent_id}", response_model=AgentRead)
def update_agent(
    agent_id: RowId, body: AgentUpdate, session: SessionDep, caller: CurrentAgent
) -> AgentRead:
    agent = service.update_agent(
        session,
        agent_id=agent_id,
        by=caller,
        name=body.name,
        timezone=body.timezone,
        signature=body.signature,
        role=body.role,
        is_active=body.is_active,
        away=body.away,
        skills=body.skills,
    )
    if body.away is False or body.is_active or body.timezone is not None:
        # The agent may be available now: the tickets waiting in their teams go out with this
        # request rather than at the worker's next pass.
        assign_waiting_for_agent(session, agent_id=agent.id)
    return AgentRead.model_validate(agent)


@router.get("/{agent_id}/tokens", response_model=list[TokenRead])
def list_tokens(agent_id: RowId, session: SessionDep, caller: CurrentAgent) -> list[TokenRead]:
    _self_or_admin(caller, agent_id)
    service.get_agent(session, agent_id)
    return [TokenRead.model_validate(t) for t in service.list_tokens(session, agent_id=agent_id)]


@router.post("/{agent_id}/tokens", response_model=TokenIssued, status_code=status.HTTP_201_CREATED)
def issue_token(
    agent_id: RowId, body: TokenCreate, session: SessionDep, caller: CurrentAgent
) -> TokenIssued:
    _self_or_admin(caller, agent_id)
    row, token = service.issue_token(
        session, agent=service.get_agent(session, agent_id), name=body.name
    )
    return TokenIssued.model_validate(
        {**TokenRead.model_validate(row).model_dump(), "token": token}
    )


@router.delete("/{agent_id}/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_token(
    agent_id: RowId, token_id: RowId, session: SessionDep, caller: CurrentAgent
) -> None:
    _self_or_admin(caller, agent_id)
    service.revoke_token(session, agent_id=agent_id, token_id=token_id)
