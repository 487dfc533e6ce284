"""google.auth credentials for a mailbox: OAuth user, service account with delegation, emulator.

What is stored (encrypted, ``app.crypto``) is plain JSON in Google's own formats, so the google-auth
loaders read it back: an ``authorized_user`` document for OAuth (client id/secret, refresh token,
token URI), the service-account key file itself for delegation; nothing for the emulator.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import google.auth.credentials
from google.auth.exceptions import RefreshError
from google.auth.transport import Request
from google.oauth2 import credentials as oauth2_credentials
from google.oauth2 import service_account

from app.errors import AppError

# gmail.modify: read, label, send; not permanent deletion (Gmail API scopes reference).
GMAIL_SCOPES = ["https://www.googleapis.com/auth/gmail.modify"]
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL, not a secret

_SERVICE_ACCOUNT_FIELDS = ("type", "client_email", "private_key", "token_uri")
_AUTHORIZED_USER_FIELDS = ("client_id", "client_secret", "refresh_token")


class CredentialsError(AppError):
    status_code = 400
    code = "credentials_invalid"


class EmulatorCredentials(google.auth.credentials.Credentials):
    """The emulator's static bearer token ``emulator:<address>``; it never expires or refreshes.

    ``refresh`` is only called after a 401 (google-auth-httplib2, the batch re-send): refusing it
    turns that 401 into an auth failure at once instead of re-sending with the same token.
    """

    def __init__(self, address: str) -> None:
        super().__init__()
        self.address = address
        self.token = f"emulator:{address}"
        self.expiry = None

    def refresh(self, request: Request) -> None:
        raise RefreshError(
            f"the emulator rejected the token of {self.address} (no such mailbox?)",
            retryable=False,
        )


def emulator_credentials(address: str) -> EmulatorCredentials:
    return EmulatorCredentials(address)


def oauth_user_credentials(info: Mapping[str, Any]) -> oauth2_credentials.Credentials:
    """Credentials from a stored ``authorized_user`` document; the access token comes on refresh.

    Built directly rather than by ``from_authorized_user_info``, which always replaces the token
    URI with Google's: ours is the one of the client-secrets file the consent used, and it is
    stored encrypted and authenticated (Fernet's HMAC), so database access alone cannot swap it.
    """
    missing = [f for f in _AUTHORIZED_USER_FIELDS if not info.get(f)]
    if missing:
        raise CredentialsError(f"stored OAuth credentials lack {', '.join(missing)}")
    return oauth2_credentials.Credentials(
        token=None,
        refresh_token=info["refresh_token"],
        token_uri=info.get("token_uri") or GOOGLE_TOKEN_URI,
        client_id=info["client_id"],
        client_secret=info["client_secret"],
        scopes=GMAIL_SCOPES,
    )


def service_account_credentials(
    key_info: Mapping[str, Any], address: str
) -> service_account.Credentials:
    """Domain-wide delegation: the key signs a JWT whose ``sub`` is the mailbox (RFC 7523 §2.1).

    The token exchange goes to the key's ``token_uri`` (self-signed JWT access is not used: it
    cannot carry a subject, and Gmail needs one).
    """
    try:
        creds = service_account.Credentials.from_service_account_info(
            dict(key_info), scopes=GMAIL_SCOPES
        )
    except (ValueError, KeyError) as exc:
        raise CredentialsError(f"not a usable service-account key: {exc}") from None
    return creds.with_subject(address)


def load_service_account_key(path: Path) -> dict[str, Any]:
    """Read and check a service-account key file (the JSON downloaded from Google Cloud)."""
    info = _read_json(path, "service-account key")
    missing = [f for f in _SERVICE_ACCOUNT_FIELDS if not info.get(f)]
    if missing or info.get("type") != "service_account":
        raise CredentialsError(
            f"{path} is not a service-account key file"
            + (f" (missing {', '.join(missing)})" if missing else "")
        )
    # Parsing the private key now reports a damaged file here, not at the first sync.
    service_account_credentials(info, "check@invalid.test")
    return info


def run_oauth_flow(client_secrets: Path, *, open_browser: bool = True) -> dict[str, Any]:
    """Google's installed-app flow (RFC 8252): a loopback redirect on 127.0.0.1, any free port.

    Returns the ``authorized_user`` document to store. ``prompt=consent`` makes Google issue a
    refresh token again when the account had already consented (re-adding a mailbox after
    ``needs_reauth``); without it the second consent yields an access token only.
    """
    from google_auth_oauthlib.flow import InstalledAppFlow
    from oauthlib.oauth2 import OAuth2Error

    config = _read_json(client_secrets, "OAuth client secrets")
    if not isinstance(config.get("installed") or config.get("web"), dict):
        raise CredentialsError(
            f"{client_secrets} is not an OAuth client secrets file (no 'installed' client)"
        )
    try:
        flow = InstalledAppFlow.from_client_secrets_file(str(client_secrets), scopes=GMAIL_SCOPES)
        creds = flow.run_local_server(
            host="127.0.0.1", port=0, open_browser=open_browser, prompt="consent"
        )
    except OAuth2Error as exc:
        raise CredentialsError(f"Google refused the authorization: {exc.error}") from None
    except (ValueError, KeyError) as exc:
        raise CredentialsError(f"the OAuth flow failed: {exc}") from None
    if not creds.refresh_token:
        raise CredentialsError("Google returned no refresh token; run the command again")
    return {
        "type": "authorized_user",
        "client_id": creds.client_id,
        "client_secret": creds.client_secret,
        "refresh_token": creds.refresh_token,
        "token_uri": creds.token_uri,
    }


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise CredentialsError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    except ValueError:
        raise CredentialsError(f"the {what} file {path} is not JSON") from None
    if not isinstance(value, dict):
        raise CredentialsError(f"the {what} file {path} is not a JSON object")
    return value
