"""The add-on's HTTP endpoints: Google POSTs an event object, we answer a render action.

Thin: the caller is verified by ``AddonCallerDep`` (app/addon/auth.py: 401 before anything is
read), the work is actions.py's. Gmail shows a broken card for any error status, so every
failure after verification is answered as a card or a notification with status 200; only an
unknown action name is a 404 (no card of ours can send it). A failure we did not expect is
logged, its changes rolled back, and the user sees an error card instead of a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Path
from sqlalchemy.orm import Session

from app.addon import actions, cards
from app.addon.auth import AddonCallerDep
from app.api.deps import SessionDep
from app.config import get_settings
from app.errors import AppError

log = logging.getLogger(__name__)

router = APIRouter(prefix="/addon", tags=["gmail add-on"])

Answer = dict[str, Any]


def _base_url() -> str:
    # Card actions name absolute URLs, which Google also uses as the token audience.
    return get_settings().public_url.rstrip("/")


def _safely(session: Session, work: Callable[[], Answer], *, trigger: bool) -> Answer:
    try:
        return work()
    except actions.UnknownAction:
        raise
    except AppError as exc:
        session.rollback()
        message = exc.message
    except Exception:
        log.exception("add-on request failed")
        session.rollback()
        message = "Inboxdesk could not answer this time; try again in a moment."
    if trigger:
        return cards.push_card(cards.error_card(message))
    return cards.render(notification=message)


@router.post("/homepage", summary="Homepage trigger: the agent's queues")
def homepage(caller: AddonCallerDep, session: SessionDep) -> Answer:
    return _safely(
        session, lambda: actions.homepage(session, caller, base_url=_base_url()), trigger=True
    )


@router.post("/contextual", summary="Contextual trigger: the open thread's ticket")
def contextual(caller: AddonCallerDep, session: SessionDep) -> Answer:
    return _safely(
        session, lambda: actions.contextual(session, caller, base_url=_base_url()), trigger=True
    )


@router.post("/compose", summary="Compose trigger: reply templates")
def compose(caller: AddonCallerDep, session: SessionDep) -> Answer:
    return _safely(
        session, lambda: actions.compose(session, caller, base_url=_base_url()), trigger=True
    )


@router.post("/action/{name}", summary="A card's action (assign, set_status, add_note, …)")
def action(
    caller: AddonCallerDep,
    session: SessionDep,
    name: str = Path(description="the action's name; unknown → 404"),
) -> Answer:
    return _safely(
        session,
        lambda: actions.run_action(session, caller, name, base_url=_base_url()),
        trigger=False,
    )
