"""Message-IDs that carry an HMAC of the ticket id: a reply finds its ticket by them alone.

Gmail starts a new thread when a customer changes the subject, and some clients drop
``References``; ``In-Reply-To`` usually survives (RFC 5322 §3.6.4). An id of the form
``<ack.{ticket}.{mac}@{domain}>`` names its ticket, and the MAC (HMAC-SHA256, 120 bits, base32)
proves we wrote it: nobody can point a reply at another customer's ticket by typing an id, and the
outbox row is not needed to find the ticket (rows may be purged; the sent copy may not be synced).

The key: HKDF-SHA256 (RFC 5869) from ``INBOXDESK_SECRET_KEY`` when it is set; else from the
installation's random secret, a one-row table that migration 0005 fills, so that signing works
with no configuration. That row is read by ``load_signing_key(session)`` (the sync calls it once
per chunk; it costs no query when the secret key is set); ``ack_message_id`` and
``ticket_of_message_id`` then need no session. Changing the key (setting
``INBOXDESK_SECRET_KEY`` later) only means that replies to older acknowledgements are found by
thread, outbox row or ``[#number]`` instead.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
from functools import lru_cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.config import get_settings
from app.outbox.models import InstallationSecret

__all__ = [
    "SigningKeyNotLoaded",
    "ack_message_id",
    "load_signing_key",
    "signed_by_us",
    "ticket_of_message_id",
]

# Versioned (RFC 5869 §3.2 "info"): the same secret also encrypts credentials (app/crypto.py);
# a different info gives an unrelated key.
_HKDF_INFO = b"inboxdesk/message-id/hmac-sha256/v1"
_MAC_BYTES = 15  # 120 bits: 24 base32 characters, no padding
_ACK_ID = re.compile(r"ack\.([1-9]\d{0,11})\.([a-z2-7]{24})@[^\s<>@]+")
_INSTALLATION_ROW = 1
_SESSION_FLAG = "inboxdesk.signing_key_loaded"


class SigningKeyNotLoaded(RuntimeError):
    """No INBOXDESK_SECRET_KEY and ``load_signing_key`` not called yet in this process."""


_lock = threading.Lock()
# The installation secret as last read from the database (None: not read yet).
_installation: bytes | None = None


@lru_cache(maxsize=8)
def _derive(material: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(material)


def _configured_secret() -> bytes | None:
    secret = get_settings().secret_key
    text = secret.get_secret_value() if secret is not None else ""
    return text.encode("utf-8") if text else None


def _key() -> bytes:
    configured = _configured_secret()
    if configured is not None:
        return _derive(configured)
    installation = _installation
    if installation is None:
        raise SigningKeyNotLoaded(
            "the Message-ID signing key is not loaded: call load_signing_key(session) first"
        )
    return _derive(installation)


def load_signing_key(session: Session) -> None:
    """Make the installation secret this process signs with current (no-op, no query, when
    ``INBOXDESK_SECRET_KEY`` is set). A missing row (a database emptied by hand) is written
    again: with the value this process knew, so its earlier ids stay valid, else a new one."""
    global _installation
    if _configured_secret() is not None or session.info.get(_SESSION_FLAG):
        return
    stmt = select(InstallationSecret.value).where(InstallationSecret.id == _INSTALLATION_ROW)
    value = session.execute(stmt).scalar_one_or_none()
    if value is None:
        candidate = _installation or secrets.token_bytes(32)
        try:
            with session.begin_nested():
                session.add(InstallationSecret(id=_INSTALLATION_ROW, value=candidate))
        except IntegrityError:
            pass  # another process wrote it first: theirs it is
        value = session.execute(stmt).scalar_one()
    with _lock:
        _installation = bytes(value)
    session.info[_SESSION_FLAG] = True  # read once per session (a sync chunk, a request)


def _mac(key: bytes, ticket_id: int) -> str:
    digest = hmac.new(key, f"ack.{ticket_id}".encode(), hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.b32encode(digest).decode("ascii").lower()


def ack_message_id(*, ticket_id: int, domain: str) -> str:
    """``<ack.{ticket_id}.{mac}@{domain}>``: the acknowledgement's Message-ID, angle brackets
    included (the header value as sent)."""
    host = domain.strip().strip(".").lower() or "inboxdesk.invalid"
    return f"<ack.{ticket_id}.{_mac(_key(), ticket_id)}@{host}>"


def ticket_of_message_id(message_id: str) -> int | None:
    """The ticket id a Message-ID of ours names, verified; None for any other id (with or
    without angle brackets). Raises ``SigningKeyNotLoaded`` only for an id of our form when no
    key is available."""
    match = _ACK_ID.fullmatch(message_id.strip().removeprefix("<").removesuffix(">"))
    if match is None:
        return None
    ticket_id = int(match.group(1))
    if not hmac.compare_digest(match.group(2), _mac(_key(), ticket_id)):
        return None
    return ticket_id


def signed_by_us(message_id: str | None) -> bool:
    """A verified id of ours; False when it cannot be verified (no key loaded)."""
    if not message_id:
        return False
    try:
        return ticket_of_message_id(message_id) is not None
    except SigningKeyNotLoaded:
        return False
