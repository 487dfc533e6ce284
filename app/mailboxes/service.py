from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.base import MAX_INTEGER
from app.emails import normalize_email
from app.errors import AlreadyExists, NotFound, ValidationFailed
from app.mailboxes.models import Mailbox, MailboxAuthKind


def create_mailbox(
    session: Session,
    *,
    email: str,
    name: str,
    language: str = "en",
    auth_kind: MailboxAuthKind = MailboxAuthKind.NONE,
) -> Mailbox:
    address = normalize_email(email)
    if find_mailbox(session, address) is not None:
        raise AlreadyExists(f"mailbox {address} already exists", code="mailbox_exists")
    mailbox = Mailbox(email=address, name=name, language=language, auth_kind=auth_kind)
    session.add(mailbox)
    session.flush()
    return mailbox


def find_mailbox(session: Session, email: str) -> Mailbox | None:
    return session.execute(
        select(Mailbox).where(Mailbox.email == normalize_email(email))
    ).scalar_one_or_none()


def get_mailbox(session: Session, mailbox_id: int) -> Mailbox:
    mailbox = session.get(Mailbox, mailbox_id)
    if mailbox is None:
        raise NotFound(f"mailbox {mailbox_id} not found", code="mailbox_not_found")
    return mailbox


def resolve_mailbox(session: Session, ref: str) -> Mailbox:
    """A mailbox named by id or address in a request; unknown → 422 naming the reference."""
    if ref.isascii() and ref.isdigit():  # not "²", which isdigit() but int() refuses
        # An id beyond the INTEGER key range names no mailbox (and would overflow the query).
        mailbox = session.get(Mailbox, int(ref)) if int(ref) <= MAX_INTEGER else None
    else:
        mailbox = find_mailbox(session, ref)
    if mailbox is None:
        raise ValidationFailed(f"unknown mailbox {ref!r}", code="unknown_mailbox")
    return mailbox


def list_mailboxes(session: Session) -> list[Mailbox]:
    return list(session.execute(select(Mailbox).order_by(Mailbox.id)).scalars())
