"""Control endpoints under ``/emulator/`` (not Gmail): counters, mailboxes, faults.

Unauthenticated on purpose: the emulator is local test and demo infrastructure.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from gmail_sync.emulator.faults import DEFAULT_STATUSES
from gmail_sync.emulator.state import EmulatorState

router = APIRouter(prefix="/emulator", tags=["emulator"])


class MailboxIn(BaseModel):
    address: str = Field(min_length=3, max_length=320)


class FaultsIn(BaseModel):
    rate: float = Field(ge=0.0, le=1.0)
    statuses: list[int] = Field(default_factory=lambda: list(DEFAULT_STATUSES), min_length=1)
    seed: int | None = None


def _state(request: Request) -> EmulatorState:
    return request.app.state.emulator  # type: ignore[no-any-return]


@router.get("/stats")
def stats(request: Request) -> dict[str, Any]:
    """Calls, quota units and injected faults per Gmail method and per mailbox."""
    return _state(request).stats()


@router.post("/reset-stats", status_code=204)
def reset_stats(request: Request) -> None:
    _state(request).reset_stats()


@router.get("/mailboxes")
def list_mailboxes(request: Request) -> dict[str, Any]:
    return {"mailboxes": _state(request).addresses}


@router.post("/mailboxes", status_code=201)
def add_mailbox(request: Request, body: MailboxIn) -> dict[str, Any]:
    try:
        mailbox = _state(request).add_mailbox(body.address)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return {"address": mailbox.address}


@router.get("/faults")
def get_faults(request: Request) -> dict[str, Any]:
    return _state(request).faults.config.as_json()


@router.post("/faults")
def set_faults(request: Request, body: FaultsIn) -> dict[str, Any]:
    """Fail a share (``rate``) of Gmail calls with one of ``statuses``; 0 turns faults off."""
    try:
        config = _state(request).set_faults(body.rate, body.statuses, body.seed)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return config.as_json()


class MethodFaultIn(BaseModel):
    method: str = Field(min_length=1, max_length=100)  # e.g. "gmail.users.messages.send"
    status: int
    times: int = Field(default=1, ge=1, le=1000)
    after_work: bool = False


@router.post("/faults/method")
def fail_method(request: Request, body: MethodFaultIn) -> dict[str, Any]:
    """The next ``times`` calls of one Gmail method answer ``status``: before doing anything,
    or (``after_work``) after doing it, as a send that went out but answered 500."""
    try:
        _state(request).fail_method(
            body.method, body.status, times=body.times, after_work=body.after_work
        )
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return body.model_dump()


@router.post("/faults/history-expired")
def expire_history(request: Request, body: MailboxIn) -> dict[str, Any]:
    """The next users.history.list of this mailbox answers 404, as for a too-old start id."""
    try:
        _state(request).expire_history(body.address)
    except KeyError:
        raise HTTPException(404, f"no mailbox {body.address}") from None
    return {"address": body.address, "history_expired": True}
