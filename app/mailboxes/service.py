from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.crypto import Secret, encrypt_json
from app.db.base import MAX_INTEGER
from app.emails import normalize_email
from app.errors import AlreadyExists, NotFound, ValidationFailed
from app.mailboxes.models import Mailbox, MailboxAuthKind, MailboxState
from app.mailboxes.schemas import MailboxUpdate
from app.sla.models import BusinessCalendar
from app.timezones import check_timezone

_LANGUAGE = re.compile(r"[a-z]{2}")


def create_mailbox(
    session: Session,
    *,
    email: str,
    name: str,
    language: str = "en",
    timezone: str = "UTC",
    auth_kind: MailboxAuthKind = MailboxAuthKind.NONE,
    business_calendar_id: int | None = None,
) -> Mailbox:
    address = normalize_email(email)
    check_timezone(timezone)
    _check_calendar(session, business_calendar_id)
    if find_mailbox(session, address) is not None:
        raise AlreadyExists(f"mailbox {address} already exists", code="mailbox_exists")
    mailbox = Mailbox(
        email=address,
        name=name,
        language=language,
        timezone=timezone,
        auth_kind=auth_kind,
        business_calendar_id=business_calendar_id,
    )
    session.add(mailbox)
    session.flush()
    return mailbox


def connect_mailbox(
    session: Session,
    *,
    email: str,
    name: str | None,
    auth_kind: MailboxAuthKind,
    credentials: dict[str, Any] | None,
    secret_key: Secret,
    language: str | None = None,
    timezone: str | None = None,
    auto_ack: bool | None = None,
) -> Mailbox:
    """Create the mailbox, or give an existing one new credentials; either way it is ``active``.

    Re-adding is how a mailbox in ``needs_reauth`` comes back: its history cursor is kept, so the
    sync resumes where it stopped. ``credentials`` (a refresh token, a key) are stored only
    encrypted; ``None`` (the emulator) stores nothing. ``name``/``language`` ``None`` keep the
    existing values (new mailbox: the address, English); so do ``timezone`` (new: UTC) and
    ``auto_ack`` (new: acknowledgements on).
    """
    if timezone is not None:
        check_timezone(timezone)
    if language is not None and not _LANGUAGE.fullmatch(language):
        raise ValidationFailed(f"language must be two lower-case letters, not {language!r}")
    if name is not None and not 0 < len(name) <= 200:  # the column's size (MailboxCreate too)
        raise ValidationFailed("a mailbox name has 1 to 200 characters")
    address = normalize_email(email)
    # Encrypt first: a missing secret key must fail before anything changes.
    encrypted = encrypt_json(credentials, secret_key) if credentials is not None else None
    mailbox = find_mailbox(session, address)
    if mailbox is None:
        mailbox = Mailbox(
            email=address,
            name=name or address,
            language=language or "en",
            timezone=timezone or "UTC",
        )
        session.add(mailbox)
    else:
        if name:
            mailbox.name = name
        if language:
            mailbox.language = language
        if timezone:
            mailbox.timezone = timezone
    if auto_ack is not None:
        mailbox.auto_ack_enabled = auto_ack
    mailbox.auth_kind = auth_kind
    mailbox.credentials_encrypted = encrypted
    mailbox.state = MailboxState.ACTIVE
    mailbox.last_error = None
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


def update_mailbox(session: Session, *, mailbox_id: int, update: MailboxUpdate) -> Mailbox:
    """An admin's change of name, language, zone, business calendar or the acknowledgement
    switch; everything is checked before anything changes."""
    mailbox = get_mailbox(session, mailbox_id)
    fields = update.model_dump(exclude_unset=True)
    if "timezone" in fields:
        check_timezone(fields["timezone"])
    if "business_calendar_id" in fields:
        _check_calendar(session, fields["business_calendar_id"])
    for name, value in fields.items():
        setattr(mailbox, name, value)
    session.flush()
    return mailbox


def _check_calendar(session: Session, calendar_id: int | None) -> None:
    if calendar_id is not None and session.get(BusinessCalendar, calendar_id) is None:
        raise ValidationFailed(f"no business calendar {calendar_id}", code="unknown_calendar")
