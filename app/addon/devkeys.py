"""A local stand-in for Google's ID-token signing key: the demo, /preview and the tests.

Google signs the add-on's ID tokens (RS256 JWTs, the key named by the header's ``kid``) and
publishes the certificates at https://www.googleapis.com/oauth2/v1/certs as
``{kid: "-----BEGIN CERTIFICATE-----…"}`` ("Verify the Google ID token on your server side",
https://developers.google.com/identity/gsi/web/guides/verify-google-id-token). A ``DevKeys`` is
one such key: it signs tokens with google-auth's own signer and serves its certificate in the
same format, so the verification code in auth.py runs unchanged against it.

Never trusted in production: auth.py uses it only when ``INBOXDESK_ENV=dev`` and no certificates
URL is configured (see ``auth.certificate_source``).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

# The values Google fills in, imitated (https://accounts.google.com is the other accepted form).
ISSUER = "https://accounts.google.com"
# Used in dev mode when INBOXDESK_ADDON_SERVICE_ACCOUNT / INBOXDESK_OAUTH_CLIENT_ID are unset.
DEV_SERVICE_ACCOUNT = "inboxdesk-addon@dev.inboxdesk.test"
DEV_OAUTH_CLIENT_ID = "inboxdesk-dev.apps.inboxdesk.test"
# The key file inside the data directory (see ``dev_keys``).
KEY_FILE_NAME = "addon-dev-key.pem"
TOKEN_LIFETIME_SECONDS = 3600


@dataclass(frozen=True)
class DevKeys:
    """An RSA key, its ``kid`` and a self-signed certificate of its public half."""

    private_key_pem: bytes
    kid: str
    certificate_pem: str

    def signer(self) -> crypt.RSASigner:
        return crypt.RSASigner.from_string(self.private_key_pem, key_id=self.kid)

    def sign_id_token(self, claims: dict[str, Any]) -> str:
        """``claims`` signed as Google signs an ID token: RS256, ``kid`` in the header."""
        token = jwt.encode(self.signer(), claims, key_id=self.kid)
        return token.decode("ascii")

    def certs_json(self) -> dict[str, str]:
        """What the v1/certs endpoint would serve for this key."""
        return {self.kid: self.certificate_pem}

    def system_token(
        self,
        *,
        audience: str,
        email: str = DEV_SERVICE_ACCOUNT,
        lifetime: int = TOKEN_LIFETIME_SECONDS,
        **claims: Any,
    ) -> str:
        """A system ID token like the one in the add-on request's ``Authorization`` header:
        ``aud`` = the endpoint URL, ``email`` = the deployment's service account."""
        return self.sign_id_token(
            id_token_claims(audience=audience, email=email, lifetime=lifetime, **claims)
        )

    def user_token(
        self,
        *,
        email: str,
        audience: str = DEV_OAUTH_CLIENT_ID,
        lifetime: int = TOKEN_LIFETIME_SECONDS,
        **claims: Any,
    ) -> str:
        """A user ID token like ``authorizationEventObject.userIdToken``: ``aud`` = the add-on's
        OAuth client id, ``email`` = the Gmail user."""
        return self.sign_id_token(
            id_token_claims(audience=audience, email=email, lifetime=lifetime, **claims)
        )


def id_token_claims(
    *, audience: str, email: str, lifetime: int = TOKEN_LIFETIME_SECONDS, **extra: Any
) -> dict[str, Any]:
    """The claims of a Google ID token; ``extra`` overrides any of them (tests forge bad ones)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": audience,
        "azp": audience,
        "sub": str(int(hashlib.sha256(email.encode()).hexdigest()[:15], 16)),
        "email": email,
        "email_verified": True,
        "iat": now,
        "exp": now + lifetime,
    }
    claims.update(extra)
    return claims


def generate(*, kid: str | None = None) -> DevKeys:
    """A fresh 2048-bit key (RS256, as Google's). ``kid`` defaults to the key's fingerprint."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return _from_key(key, pem, kid)


def from_pem(private_key_pem: bytes, *, kid: str | None = None) -> DevKeys:
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the add-on development key must be an RSA key")
    return _from_key(key, private_key_pem, kid)


def _from_key(key: rsa.RSAPrivateKey, pem: bytes, kid: str | None) -> DevKeys:
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    kid = kid or hashlib.sha256(public_der).hexdigest()[:40]
    return DevKeys(private_key_pem=pem, kid=kid, certificate_pem=_self_signed(key, kid))


def _self_signed(key: rsa.RSAPrivateKey, kid: str) -> str:
    # Google's certificates are self-signed too (issuer = subject); only the public key matters
    # to the verifier, the validity period is for tools that look at it.
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"inboxdesk-dev-{kid[:16]}")])
    start = datetime(2024, 1, 1, tzinfo=UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=365 * 30))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def load_or_create(path: Path) -> DevKeys:
    """The key stored at ``path`` (PEM), or a new one written there readable by the owner only.

    Two processes starting together (demo server and CLI) agree on one key: the file is created
    exclusively and the loser of the race reads the winner's.
    """
    try:
        return from_pem(path.read_bytes())
    except FileNotFoundError:
        pass
    keys = generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return from_pem(path.read_bytes())
    with os.fdopen(fd, "wb") as handle:
        handle.write(keys.private_key_pem)
    return keys


_lock = threading.Lock()
_loaded: dict[Path, DevKeys] = {}


def dev_keys(data_dir: Path) -> DevKeys:
    """The demo's key (``<data dir>/addon-dev-key.pem``), loaded once per process."""
    path = (data_dir / KEY_FILE_NAME).resolve()
    with _lock:
        keys = _loaded.get(path)
        if keys is None:
            keys = _loaded[path] = load_or_create(path)
        return keys
