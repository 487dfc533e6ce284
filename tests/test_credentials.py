"""gmail_sync.credentials and gmail_sync.mailbox_access: the three ways to reach a mailbox.

Google is replaced at the HTTP boundary only: the fake Gmail of test_gmail_client also plays the
token endpoint (the key's / client secrets' ``token_uri`` points at it) and checks what google-auth
sends: the service account's signed JWT (``sub`` = the mailbox), the OAuth code exchange.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.orm import Session

from app.config import Settings
from app.mailboxes.models import MailboxAuthKind
from app.mailboxes.service import connect_mailbox, create_mailbox
from gmail_sync.client import GmailAuthError, GmailClient, GmailError
from gmail_sync.credentials import (
    GMAIL_SCOPES,
    CredentialsError,
    EmulatorCredentials,
    load_service_account_key,
    run_oauth_flow,
    service_account_credentials,
)
from gmail_sync.mailbox_access import client_for_mailbox
from tests.test_gmail_client import (
    MAILBOX,
    FakeGmail,
    Sleeps,
    guard_loopback,
    policy,
    running_fake_gmail,
)

SECRET = "test-secret-key-for-credentials"
SA_EMAIL = "inboxdesk@project-1.iam.gserviceaccount.com"


@pytest.fixture
def fake_gmail() -> Iterator[FakeGmail]:
    with running_fake_gmail() as fake:
        yield fake


@pytest.fixture
def only_loopback(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    return guard_loopback(monkeypatch)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def make_service_account_key(fake: FakeGmail, client_email: str = SA_EMAIL) -> dict[str, Any]:
    """A key file as Google Cloud issues it, with a fresh RSA key; its public half is registered
    with the fake token endpoint, which verifies the JWT signature with it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    fake.service_accounts[client_email] = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "type": "service_account",
        "project_id": "project-1",
        "private_key_id": "kid-1",
        "private_key": private_pem,
        "client_email": client_email,
        "client_id": "1234567890",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": fake.url + "token",
    }


def test_service_account_delegation_asks_for_the_mailbox_as_subject(
    fake_gmail: FakeGmail, sleeps: Sleeps, only_loopback: list[str]
) -> None:
    """The signed JWT (verified with the public key) names the mailbox as ``sub``, the service
    account as ``iss``, the key's token_uri as ``aud`` and the gmail.modify scope; the access
    token it buys opens that mailbox."""
    key = make_service_account_key(fake_gmail)
    creds = service_account_credentials(key, MAILBOX)
    client = GmailClient(creds, api_url=fake_gmail.url, retry=policy(sleeps))

    assert client.get_profile()["emailAddress"] == MAILBOX

    [claims] = fake_gmail.jwt_claims
    assert claims["sub"] == MAILBOX
    assert claims["iss"] == SA_EMAIL
    assert claims["aud"] == "https://oauth2.googleapis.com/token"  # google-auth: always Google's
    assert claims["scope"] == " ".join(GMAIL_SCOPES)
    assert claims["_kid"] == "kid-1"
    [call] = fake_gmail.calls
    assert fake_gmail.tokens[call.authorization.removeprefix("Bearer ")] == MAILBOX
    assert only_loopback == []


def test_service_account_without_delegation_for_that_user_is_an_auth_error(
    fake_gmail: FakeGmail, sleeps: Sleeps, only_loopback: list[str]
) -> None:
    """Google answers unauthorized_client when delegation is not granted (here: an unknown
    subject): a GmailAuthError, no Gmail call."""
    key = make_service_account_key(fake_gmail)
    client = GmailClient(
        service_account_credentials(key, "nobody@shop.test"),
        api_url=fake_gmail.url,
        retry=policy(sleeps),
    )
    with pytest.raises(GmailAuthError, match="unauthorized_client"):
        client.get_profile()
    assert fake_gmail.jwt_claims[0]["sub"] == "nobody@shop.test"
    assert fake_gmail.calls == []


def test_service_account_key_file_is_checked(tmp_path: Path, fake_gmail: FakeGmail) -> None:
    key = make_service_account_key(fake_gmail)
    good = tmp_path / "key.json"
    good.write_text(json.dumps(key))
    assert load_service_account_key(good) == key

    cases = {
        "missing.json": None,
        "not-json.json": "{nope",
        "oauth.json": json.dumps({"installed": {"client_id": "x"}}),
        "no-key.json": json.dumps({**key, "private_key": ""}),
        "bad-key.json": json.dumps({**key, "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n"}),
    }
    for name, text in cases.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        with pytest.raises(CredentialsError) as caught:
            load_service_account_key(path)
        assert "PRIVATE KEY" not in caught.value.message
        assert key["private_key"][40:80] not in caught.value.message


def test_emulator_credentials_are_static_and_never_refresh() -> None:
    creds = EmulatorCredentials(MAILBOX)
    assert creds.token == f"emulator:{MAILBOX}"
    assert creds.valid
    headers: dict[str, str] = {}
    creds.apply(headers)
    assert headers["authorization"] == f"Bearer emulator:{MAILBOX}"
    from google.auth.exceptions import RefreshError

    with pytest.raises(RefreshError):
        creds.refresh(None)  # type: ignore[arg-type]


# --- OAuth installed-app flow ---------------------------------------------------------------


def write_client_secrets(path: Path, fake: FakeGmail) -> Path:
    """A Desktop-app client secrets file, its token_uri on the fake."""
    path.write_text(
        json.dumps(
            {
                "installed": {
                    "client_id": "client-1.apps.googleusercontent.com",
                    "client_secret": "client-secret-1",
                    "project_id": "project-1",
                    "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                    "token_uri": fake.url + "token",
                    "redirect_uris": ["http://localhost"],
                }
            }
        )
    )
    return path


def consent(
    auth_url: str, fake: FakeGmail, *, address: str, refresh_token: str, deny: bool = False
) -> httpx.Response:
    """What Google and the browser do after the user consents: redirect to the loopback
    redirect_uri with a code (or an error) and the state."""
    query = {k: v[0] for k, v in parse_qs(urlsplit(auth_url).query).items()}
    code = f"code-{refresh_token}"
    fake.auth_codes[code] = (address, refresh_token)
    params = {"state": query["state"]}
    params.update({"error": "access_denied"} if deny else {"code": code, "scope": query["scope"]})
    return httpx.get(query["redirect_uri"], params=params, timeout=10)


class FakeBrowser:
    """Stands in for ``webbrowser``: 'opening' the consent URL records it and, on a thread, does
    the redirect the user's browser would do after consent."""

    def __init__(self, fake: FakeGmail, **consent_args: Any) -> None:
        self.fake = fake
        self.consent_args = consent_args
        self.opened: list[str] = []
        self.responses: list[httpx.Response] = []
        self.threads: list[threading.Thread] = []

    def open(self, url: str, new: int = 0, autoraise: bool = True) -> bool:
        self.opened.append(url)

        def follow() -> None:
            self.responses.append(consent(url, self.fake, **self.consent_args))

        thread = threading.Thread(target=follow, daemon=True)
        thread.start()
        self.threads.append(thread)
        return True


def test_oauth_flow_returns_a_refresh_token_document(
    fake_gmail: FakeGmail, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The consent URL asks for gmail.modify, offline access, prompt=consent and PKCE, with a
    127.0.0.1 loopback redirect; the code exchange sends the verifier that matches the
    challenge; the result is an authorized_user document with the refresh token."""
    import webbrowser

    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the fake token endpoint is http
    browser = FakeBrowser(fake_gmail, address=MAILBOX, refresh_token="1//fresh")
    monkeypatch.setattr(webbrowser, "get", lambda using=None: browser)

    info = run_oauth_flow(write_client_secrets(tmp_path / "cs.json", fake_gmail))

    assert info == {
        "type": "authorized_user",
        "client_id": "client-1.apps.googleusercontent.com",
        "client_secret": "client-secret-1",
        "refresh_token": "1//fresh",
        "token_uri": fake_gmail.url + "token",
    }
    [url] = browser.opened
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert url.startswith("https://accounts.google.com/o/oauth2/auth?")
    assert query["scope"] == GMAIL_SCOPES[0]
    assert query["access_type"] == "offline"
    assert query["prompt"] == "consent"
    assert query["code_challenge_method"] == "S256"
    assert urlsplit(query["redirect_uri"]).hostname == "127.0.0.1"
    [exchange] = fake_gmail.token_requests
    assert exchange["grant_type"] == "authorization_code"
    assert exchange["redirect_uri"] == query["redirect_uri"]
    challenge = base64.urlsafe_b64encode(
        hashlib.sha256(exchange["code_verifier"].encode()).digest()
    ).rstrip(b"=")
    assert challenge.decode() == query["code_challenge"]
    for thread in browser.threads:  # the browser gets its answer after the flow moved on
        thread.join(timeout=10)
    assert [r.status_code for r in browser.responses] == [200]


def test_oauth_flow_denied_is_a_clear_error(
    fake_gmail: FakeGmail, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import webbrowser

    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    browser = FakeBrowser(fake_gmail, address=MAILBOX, refresh_token="1//x", deny=True)
    monkeypatch.setattr(webbrowser, "get", lambda using=None: browser)
    with pytest.raises(CredentialsError, match="access_denied"):
        run_oauth_flow(write_client_secrets(tmp_path / "cs.json", fake_gmail))
    assert fake_gmail.token_requests == []


def test_oauth_flow_rejects_a_file_that_is_not_client_secrets(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    path.write_text(json.dumps({"type": "service_account"}))
    with pytest.raises(CredentialsError, match="not an OAuth client secrets file"):
        run_oauth_flow(path, open_browser=False)


# --- from a stored mailbox to a client ------------------------------------------------------


def settings_for(fake: FakeGmail, secret: str | None = SECRET) -> Settings:
    return Settings(gmail_api_url=fake.url, secret_key=secret)


def test_client_for_each_kind_of_stored_mailbox(
    session: Session, fake_gmail: FakeGmail, sleeps: Sleeps, only_loopback: list[str]
) -> None:
    """OAuth, service account and emulator mailboxes, stored by connect_mailbox, each give a
    client that opens its own mailbox on the configured API URL."""
    oauth_box, sa_box, emu_box = "oauth@shop.test", "sa@shop.test", "emu@shop.test"
    fake_gmail.mailboxes |= {oauth_box, sa_box, emu_box}
    fake_gmail.refresh_tokens["1//oauth-refresh"] = oauth_box
    stored = {
        oauth_box: (
            MailboxAuthKind.OAUTH,
            {
                "type": "authorized_user",
                "client_id": "c",
                "client_secret": "s",
                "refresh_token": "1//oauth-refresh",
                "token_uri": fake_gmail.url + "token",
            },
        ),
        sa_box: (MailboxAuthKind.SERVICE_ACCOUNT, make_service_account_key(fake_gmail)),
        emu_box: (MailboxAuthKind.EMULATOR, None),
    }
    settings = settings_for(fake_gmail)
    for address, (kind, creds) in stored.items():
        mailbox = connect_mailbox(
            session,
            email=address,
            name=None,
            auth_kind=kind,
            credentials=creds,
            secret_key=SECRET,
        )
        client = client_for_mailbox(mailbox, settings, retry=policy(sleeps))
        assert client.root_url == fake_gmail.url
        assert client.get_profile()["emailAddress"] == address
    assert fake_gmail.jwt_claims[0]["sub"] == sa_box
    assert only_loopback == []


def test_mailbox_without_usable_credentials(session: Session, fake_gmail: FakeGmail) -> None:
    """No credentials → GmailAuthError (needs_reauth); an emulator mailbox without an API URL →
    a configuration error, not an auth error."""
    bare = create_mailbox(session, email="bare@shop.test", name="Bare")
    with pytest.raises(GmailAuthError, match="inboxdesk mailbox add"):
        client_for_mailbox(bare, settings_for(fake_gmail))

    emu = connect_mailbox(
        session,
        email="emu@shop.test",
        name=None,
        auth_kind=MailboxAuthKind.EMULATOR,
        credentials=None,
        secret_key=None,
    )
    with pytest.raises(GmailError, match="INBOXDESK_GMAIL_API_URL") as caught:
        client_for_mailbox(emu, Settings(gmail_api_url=None))
    assert not isinstance(caught.value, GmailAuthError)

    broken = connect_mailbox(
        session,
        email="broken@shop.test",
        name=None,
        auth_kind=MailboxAuthKind.OAUTH,
        credentials={"type": "authorized_user", "client_id": "c"},
        secret_key=SECRET,
    )
    with pytest.raises(GmailAuthError, match="refresh_token"):
        client_for_mailbox(broken, settings_for(fake_gmail))
