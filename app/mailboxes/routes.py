from __future__ import annotations

from fastapi import APIRouter, status

from app.api.deps import AdminAgent, CurrentAgent, SessionDep
from app.mailboxes import service
from app.mailboxes.schemas import MailboxCreate, MailboxRead

router = APIRouter(prefix="/api/v1/mailboxes", tags=["mailboxes"])


@router.get("", response_model=list[MailboxRead])
def list_mailboxes(session: SessionDep, _agent: CurrentAgent) -> list[MailboxRead]:
    return [MailboxRead.model_validate(m) for m in service.list_mailboxes(session)]


@router.post("", response_model=MailboxRead, status_code=status.HTTP_201_CREATED)
def create_mailbox(body: MailboxCreate, session: SessionDep, _admin: AdminAgent) -> MailboxRead:
    mailbox = service.create_mailbox(
        session, email=body.email, name=body.name, language=body.language, timezone=body.timezone
    )
    return MailboxRead.model_validate(mailbox)
