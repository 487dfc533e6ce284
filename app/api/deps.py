"""Request dependencies: one session per request, committed before the response is sent, and
the agent behind the bearer token."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.agents.models import Agent, Role
from app.agents.service import authenticate
from app.db.base import MAX_INTEGER
from app.db.session import Database
from app.errors import Forbidden, Unauthorized
from app.tickets.events import Actor

RowId = Annotated[int, Path(ge=1, le=MAX_INTEGER)]


def get_database(request: Request) -> Database:
    return request.app.state.database


def get_session(request: Request) -> Iterator[Session]:
    """The request's unit of work: commit if the route returned, roll back if it raised."""
    with get_database(request).unit_of_work() as session:
        yield session


# scope="function": commit before the response goes out, so a failed commit is an error answer
# rather than a success the database then forgot.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]

_bearer = HTTPBearer(
    auto_error=False, description="An agent's API token: `Authorization: Bearer ibx_…`"
)


def current_agent(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Agent:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Unauthorized("missing bearer token: send `Authorization: Bearer <API token>`")
    return authenticate(session, credentials.credentials)


CurrentAgent = Annotated[Agent, Depends(current_agent)]


def current_actor(agent: CurrentAgent) -> Actor:
    return Actor.for_agent(agent)


CurrentActor = Annotated[Actor, Depends(current_actor)]


def require_admin(agent: CurrentAgent) -> Agent:
    if agent.role != Role.ADMIN:
        raise Forbidden("this needs the admin role")
    return agent


AdminAgent = Annotated[Agent, Depends(require_admin)]
