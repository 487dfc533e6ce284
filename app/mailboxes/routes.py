from __future__ import annotations

from fastapi import APIRouter, status

from app.api.deps import AdminAgent, CurrentAgent, RowId, SessionDep
from app.mailboxes import service
from app.mailboxes.schemas import MailboxCreate, MailboxRead, MailboxUpdate

router = APIRouter(prefix="/api/v1/mailboxes", tags=["mailboxes"])


@router.get("", response_model=list[MailboxRead])
def list_mailboxes(session: SessionDep, _agent: CurrentAgent) -> list[MailboxRead]:
    return [MailboxRead.model_validate(m) for m in service.list_mailboxes(session)]


@router.post("", response_model=MailboxRead, status_code=status.HTTP_201_CREATED)
def create_mailbox(body: MailboxCreate, session: SessionDep, _admin: AdminAgent) -> MailboxRead:
    mailbox = service.create_mailbox(
        session,
        email=body.email,
        name=body.name,
        language=body.language,
        timezone=body.timezone,
        business_calendar_id=body.business_calendar_id,
    )
    return MailboxRead.model_validate(mailbox)


@router.patch(
    "/{mailbox_id}",
    response_model=MailboxRead,
    responses={422: {"description": "unknown_timezone, unknown_calendar or a bad field"}},
)
def update_mailbox(
    mailbox_id: RowId, body: MailboxUpdate, session: SessionDep, _admin: AdminAgent
) -> MailboxRead:
    mailbox = service.update_mailbox(session, mailbox_id=mailbox_id, update=body)
    return MailboxRead.model_validate(mailbox)
