"""Encryption of stored mailbox credentials (OAuth refresh tokens, service-account keys).

Fernet (AES-128-CBC + HMAC-SHA256, authenticated) with a key derived from ``INBOXDESK_SECRET_KEY``
by HKDF-SHA256 (RFC 5869), so any string works as the secret. HKDF is a key *expander*, not a
password hash: the secret should be long and random (``python -c "import secrets;
print(secrets.token_urlsafe(32))"``). The HKDF ``info`` names this use, so the same secret can also
sign other things (DESIGN §4) without the keys ever coinciding (RFC 5869 §3.2).

Failures are ``AppError``s raised ``from None``: a traceback or a log line never carries the
ciphertext's plaintext, and the Fernet exception chain is dropped on purpose.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr

from app.errors import AppError

# Versioned, so a future scheme can be told apart from this one (RFC 5869 §3.2 "info").
_HKDF_INFO = b"inboxdesk/mailbox-credentials/fernet/v1"

Secret = SecretStr | str | None


class SecretKeyMissing(AppError):
    status_code = 500
    code = "secret_key_missing"


class CredentialsUnreadable(AppError):
    status_code = 500
    code = "credentials_unreadable"


def _secret_text(secret: Secret) -> str:
    text = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    if not text:
        raise SecretKeyMissing(
            "INBOXDESK_SECRET_KEY is not set: it encrypts the stored mailbox credentials; set it "
            "to a long random string (e.g. the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    return text


def require_secret(secret: Secret) -> None:
    """Fail early (before an OAuth dance, say) when there is no key to store the result with."""
    _secret_text(secret)


def _fernet(secret: Secret) -> Fernet:
    derived = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        # No salt (RFC 5869 §3.1 allows it): the secret is the only input and must stay stable,
        # or every stored credential would become unreadable.
        salt=None,
        info=_HKDF_INFO,
    ).derive(_secret_text(secret).encode("utf-8"))
    return Fernet(base64.urlsafe_b64encode(derived))


def encrypt(plaintext: bytes, secret: Secret) -> bytes:
    return _fernet(secret).encrypt(plaintext)


def decrypt(token: bytes, secret: Secret) -> bytes:
    fernet = _fernet(secret)
    try:
        return fernet.decrypt(bytes(token))
    except InvalidToken:
        raise CredentialsUnreadable(
            "stored mailbox credentials cannot be decrypted with INBOXDESK_SECRET_KEY: the key "
            "changed or the data is damaged; restore the old key, or add the mailbox again "
            "(`inboxdesk mailbox add`)"
        ) from None


def encrypt_json(value: dict[str, Any], secret: Secret) -> bytes:
    return encrypt(json.dumps(value, separators=(",", ":"), sort_keys=True).encode(), secret)


def decrypt_json(token: bytes, secret: Secret) -> dict[str, Any]:
    plaintext = decrypt(token, secret)
    try:
        value = json.loads(plaintext)
    except ValueError:
        raise CredentialsUnreadable("stored mailbox credentials are not JSON") from None
    if not isinstance(value, dict):
        raise CredentialsUnreadable("stored mailbox credentials are not a JSON object")
    return value
