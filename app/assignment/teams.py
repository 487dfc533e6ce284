"""Teams: who is in them, which mailbox's tickets they get, and how those are assigned."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from app.agents.models import Agent, Team
from app.assignment.schemas import TeamUpdate
from app.assignment.service import Strategy, assign_waiting
from app.errors import AlreadyExists, NotFound, ValidationFailed
from app.mailboxes.models import Mailbox
from app.tickets.models import Ticket


def list_teams(session: Session) -> list[Team]:
    stmt = select(Team).options(selectinload(Team.members)).order_by(Team.id)
    return list(session.execute(stmt).scalars())


def get_team(session: Session, team_id: int) -> Team:
    stmt = (
        select(Team)
        .where(Team.id == team_id)
        .options(selectinload(Team.members))
        .execution_options(populate_existing=True)
    )
    team = session.execute(stmt).scalar_one_or_none()
    if team is None:
        raise NotFound(f"team {team_id} not found", code="team_not_found")
    return team


def create_team(
    session: Session,
    *,
    name: str,
    mailbox_id: int | None = None,
    assignment_strategy: Strategy = Strategy.MANUAL,
    agent_cap: int | None = None,
    member_ids: Sequence[int] = (),
) -> Team:
    _check_name_free(session, name)
    _check_mailbox(session, mailbox_id)
    team = Team(
        name=name,
        mailbox_id=mailbox_id,
        assignment_strategy=assignment_strategy.value,
        agent_cap=agent_cap,
    )
    team.members = _agents(session, member_ids)
    session.add(team)
    _flush(session, name)
    return team


def update_team(session: Session, *, team_id: int, update: TeamUpdate) -> Team:
    """Apply the fields sent. More members, a higher cap or an automatic strategy may let
    waiting tickets go out: they are assigned in the same transaction."""
    team = get_team(session, team_id)
    sent = update.model_fields_set
    if update.name is not None and update.name != team.name:
        _check_name_free(session, update.name)
        team.name = update.name
    if "mailbox_id" in sent:
        _check_mailbox(session, update.mailbox_id)
        team.mailbox_id = update.mailbox_id
    if update.assignment_strategy is not None:
        team.assignment_strategy = update.assignment_strategy.value
    if "agent_cap" in sent:
        team.agent_cap = update.agent_cap
    if update.members is not None:
        team.members = _agents(session, update.members)
    _flush(session, team.name)
    assign_waiting(session, team_ids=[team.id])
    # Read again: the assignment may have moved the round-robin turn.
    return get_team(session, team.id)


def delete_team(session: Session, *, team_id: int) -> None:
    team = get_team(session, team_id)
    # The tickets lose their team (ON DELETE SET NULL) and with it any wait for a member.
    session.execute(
        update(Ticket)
        .where(Ticket.team_id == team.id, Ticket.awaiting_assignment.is_(True))
        .values(awaiting_assignment=False)
        .execution_options(synchronize_session=False)
    )
    session.delete(team)
    session.flush()


def _check_name_free(session: Session, name: str) -> None:
    if session.execute(select(Team.id).where(Team.name == name)).first() is not None:
        raise AlreadyExists(f"a team named {name!r} already exists", code="team_exists")


def _check_mailbox(session: Session, mailbox_id: int | None) -> None:
    if mailbox_id is not None and session.get(Mailbox, mailbox_id) is None:
        raise ValidationFailed(f"no mailbox {mailbox_id}", code="unknown_mailbox")


def _agents(session: Session, ids: Sequence[int]) -> list[Agent]:
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return []
    found = {
        agent.id: agent
        for agent in session.execute(select(Agent).where(Agent.id.in_(wanted))).scalars()
    }
    missing = [agent_id for agent_id in wanted if agent_id not in found]
    if missing:
        raise ValidationFailed(
            f"no agent with id {', '.join(map(str, missing))}",
            code="unknown_agent",
            details={"missing": missing},
        )
    return [found[agent_id] for agent_id in wanted]


def _flush(session: Session, name: str) -> None:
    try:
        session.flush()
    except IntegrityError as exc:
        # Another request took the name between our check and our write.
        raise AlreadyExists(f"a team named {name!r} already exists", code="team_exists") from exc
