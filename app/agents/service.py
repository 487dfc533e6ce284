from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.agents.models import Agent, ApiToken, Role
from app.agents.tokens import display_prefix, hash_token, new_token
from app.db.base import utcnow
from app.emails import normalize_email
from app.errors import AlreadyExists, Conflict, Forbidden, NotFound, Unauthorized, ValidationFailed
from app.timezones import check_timezone

# Writing last_used_at on every request would turn each read into a write; once a minute is
# enough to tell a live token from a forgotten one.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def create_agent(
    session: Session, *, email: str, name: str, role: Role = Role.AGENT, timezone: str = "UTC"
) -> Agent:
    address = normalize_email(email)
    if find_agent(session, address) is not None:
        raise AlreadyExists(f"agent {address} already exists", code="agent_exists")
    agent = Agent(email=address, name=name, role=role, timezone=check_timezone(timezone))
    session.add(agent)
    session.flush()
    return agent


def find_agent(session: Session, email: str) -> Agent | None:
    return session.execute(
        select(Agent).where(Agent.email == normalize_email(email))
    ).scalar_one_or_none()


def get_agent(session: Session, agent_id: int) -> Agent:
    agent = session.get(Agent, agent_id)
    if agent is None:
        raise NotFound(f"agent {agent_id} not found", code="agent_not_found")
    return agent


def resolve_assignee(session: Session, email: str) -> Agent:
    """The agent a request wants to assign: must exist and be active (422 otherwise)."""
    agent = find_agent(session, email)
    if agent is None or not agent.is_active:
        raise ValidationFailed(f"no active agent {email!r}", code="unknown_agent")
    return agent


def list_agents(session: Session) -> list[Agent]:
    return list(session.execute(select(Agent).order_by(Agent.id)).scalars())


def update_agent(
    session: Session,
    *,
    agent_id: int,
    by: Agent,
    name: str | None = None,
    timezone: str | None = None,
    signature: str | None = None,
    role: Role | None = None,
    is_active: bool | None = None,
    away: bool | None = None,
    skills: list[str] | None = None,
) -> Agent:
    """Change an agent. Rights: admins anything; leads the away switch and the skills of anyone
    (they run the rota and know who can solve what); agents their own profile and away switch."""
    agent = get_agent(session, agent_id)
    is_admin = by.role == Role.ADMIN
    is_lead = by.role == Role.LEAD
    profile_change = name is not None or timezone is not None or signature is not None
    if not is_admin and by.id != agent.id and (profile_change or not is_lead):
        raise Forbidden("only admins change other agents; leads may set their away switch")
    if not is_admin and (role is not None or is_active is not None):
        raise Forbidden("only admins change roles and deactivate agents")
    if skills is not None and not (is_admin or is_lead):
        raise Forbidden("only leads and admins set skills")
    losing_admin = agent.role == Role.ADMIN and (
        (role is not None and role != Role.ADMIN) or is_active is False
    )
    if losing_admin and _active_admin_count(session) <= 1:
        raise Conflict("the last active admin cannot be demoted or deactivated", code="last_admin")
    if name is not None:
        agent.name = name
    if timezone is not None:
        agent.timezone = check_timezone(timezone)
    if signature is not None:
        agent.signature = signature
    if role is not None:
        agent.role = role
    if is_active is not None:
        agent.is_active = is_active
    if away is not None:
        agent.away = away
    if skills is not None:
        # Matched against ticket tags case-insensitively; kept once each, in the order given.
        agent.skills = list(dict.fromkeys(skill.lower() for skill in skills))
    session.flush()
    return agent


def _active_admin_count(session: Session) -> int:
    stmt = select(func.count()).where(Agent.role == Role.ADMIN, Agent.is_active.is_(True))
    return session.execute(stmt).scalar_one()


def issue_token(session: Session, *, agent: Agent, name: str = "default") -> tuple[ApiToken, str]:
    """Create a token; the plain value is returned here once and never stored."""
    token = new_token()
    row = ApiToken(
        agent_id=agent.id, name=name, prefix=display_prefix(token), token_hash=hash_token(token)
    )
    session.add(row)
    session.flush()
    return row, token


def list_tokens(session: Session, *, agent_id: int) -> list[ApiToken]:
    stmt = select(ApiToken).where(ApiToken.agent_id == agent_id).order_by(ApiToken.id)
    return list(session.execute(stmt).scalars())


def revoke_token(session: Session, *, agent_id: int, token_id: int) -> ApiToken:
    row = session.get(ApiToken, token_id)
    if row is None or row.agent_id != agent_id:
        raise NotFound(f"token {token_id} not found", code="token_not_found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
    return row


def authenticate(session: Session, token: str) -> Agent:
    """The active agent owning this token, or 401. One indexed query on the token's hash."""
    stmt = (
        select(ApiToken, Agent)
        .join(Agent, Agent.id == ApiToken.agent_id)
        .where(ApiToken.token_hash == hash_token(token))
    )
    row = session.execute(stmt).one_or_none()
    if row is None:
        raise Unauthorized("invalid API token", code="invalid_token")
    api_token, agent = row
    if api_token.revoked_at is not None:
        raise Unauthorized("this API token was revoked", code="invalid_token")
    if not agent.is_active:
        raise Unauthorized("this agent is deactivated", code="agent_inactive")
    now = utcnow()
    if api_token.last_used_at is None or now - api_token.last_used_at > LAST_USED_RESOLUTION:
        api_token.last_used_at = now
    return agent
