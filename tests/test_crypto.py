"""app.crypto and the stored mailbox credentials: encrypted at rest, never in a row or a log."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.orm import Session

from app.config import Settings
from app.crypto import (
    CredentialsUnreadable,
    SecretKeyMissing,
    decrypt,
    decrypt_json,
    encrypt,
    encrypt_json,
)
from app.mailboxes.models import MailboxAuthKind, MailboxState
from app.mailboxes.service import connect_mailbox, find_mailbox
from gmail_sync.client import GmailAuthError
from gmail_sync.mailbox_access import client_for_mailbox
from tests.test_gmail_client import (
    MAILBOX,
    FakeGmail,
    Sleeps,
    guard_loopback,
    policy,
    running_fake_gmail,
)

REFRESH_TOKEN = "1//0gREFRESH-token-that-must-never-leak-Zq9"
CLIENT_SECRET = "GOCSPX-client-secret-never-leaks"


@pytest.fixture
def fake_gmail() -> Iterator[FakeGmail]:
    with running_fake_gmail() as fake:
        yield fake


@pytest.mark.parametrize(
    "secret",
    ["x", "correct horse battery staple", "ключ-на-русском 🔑", "s" * 500, SecretStr("wrapped")],
)
def test_round_trip_with_any_string_as_the_secret(secret: str | SecretStr) -> None:
    """Any non-empty string works as the secret (HKDF makes the Fernet key); a fresh IV makes
    two encryptions of the same plaintext differ; the ciphertext does not contain it."""
    plaintext = REFRESH_TOKEN.encode()
    first, second = encrypt(plaintext, secret), encrypt(plaintext, secret)
    assert first != second
    assert plaintext not in first
    assert decrypt(first, secret) == decrypt(second, secret) == plaintext
    value = {"refresh_token": REFRESH_TOKEN, "n": 1}
    assert decrypt_json(encrypt_json(value, secret), secret) == value


def test_wrong_key_is_a_clear_error_without_the_secret_in_its_traceback() -> None:
    right, wrong = "key-" + "one", "key-" + "two"  # the traceback shows source lines: no literals
    token = encrypt_json({"refresh_token": REFRESH_TOKEN}, right)
    with pytest.raises(CredentialsUnreadable, match="INBOXDESK_SECRET_KEY") as caught:
        decrypt_json(token, wrong)
    rendered = "".join(traceback.format_exception(caught.value))
    for secret in (REFRESH_TOKEN, right, wrong):
        assert secret not in rendered
    # raised `from None`: no chained Fernet exception to print
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_similar_secrets_give_unrelated_keys() -> None:
    token = encrypt(b"data", "secret")
    for other in ("secret ", "Secret", "secre", "secret\n"):
        with pytest.raises(CredentialsUnreadable):
            decrypt(token, other)


def test_tampered_ciphertext_is_refused() -> None:
    """Fernet authenticates (HMAC-SHA256): flipping any byte — version, timestamp, IV,
    ciphertext or tag — is detected, never decrypted to something else."""
    token = bytearray(encrypt(REFRESH_TOKEN.encode(), "k"))
    for position in (0, 5, 20, len(token) // 2, len(token) - 2):
        tampered = bytearray(token)
        tampered[position] = ord("A") if tampered[position] != ord("A") else ord("B")
        with pytest.raises(CredentialsUnreadable):
            decrypt(bytes(tampered), "k")
    with pytest.raises(CredentialsUnreadable):
        decrypt(bytes(token[:-10]), "k")
    with pytest.raises(CredentialsUnreadable):
        decrypt(b"not a fernet token", "k")


def test_decrypted_data_must_be_a_json_object() -> None:
    with pytest.raises(CredentialsUnreadable, match="not JSON"):
        decrypt_json(encrypt(b"{oops", "k"), "k")
    with pytest.raises(CredentialsUnreadable, match="JSON object"):
        decrypt_json(encrypt(b"[1, 2]", "k"), "k")


@pytest.mark.parametrize("secret", [None, "", SecretStr("")])
def test_missing_secret_is_a_clear_error(secret: str | SecretStr | None) -> None:
    with pytest.raises(SecretKeyMissing, match="INBOXDESK_SECRET_KEY is not set"):
        encrypt(b"x", secret)
    with pytest.raises(SecretKeyMissing):
        decrypt(encrypt(b"x", "k"), secret)


def _oauth_info(fake: FakeGmail) -> dict[str, str]:
    return {
        "type": "authorized_user",
        "client_id": "client-1.apps.googleusercontent.com",
        "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH_TOKEN,
        "token_uri": fake.url + "token",
    }


def _raw_row(session: Session, address: str) -> str:
    """Every column of the mailbox row as the database holds it, as text."""
    row = session.execute(text("SELECT * FROM mailboxes WHERE email = :e"), {"e": address}).one()
    return " ".join(
        bytes(v).decode("latin-1") if isinstance(v, bytes | memoryview) else str(v) for v in row
    )


def test_connect_mailbox_stores_only_ciphertext_and_readding_reactivates(
    session: Session, fake_gmail: FakeGmail
) -> None:
    """The row holds an encrypted blob that decrypts to the credentials with the key; neither
    the refresh token nor the client secret appears in any column. Re-adding a mailbox in
    needs_reauth stores the new credentials, keeps its id, name and cursor, and makes it active;
    without a secret key nothing changes."""
    mailbox = connect_mailbox(
        session,
        email="Support@Shop.test",
        name="Shop Support",
        auth_kind=MailboxAuthKind.OAUTH,
        credentials=_oauth_info(fake_gmail),
        secret_key="the-key",
        language="ru",
    )
    assert (mailbox.email, mailbox.name, mailbox.language) == (MAILBOX, "Shop Support", "ru")
    raw = _raw_row(session, MAILBOX)
    assert REFRESH_TOKEN not in raw
    assert CLIENT_SECRET not in raw
    assert decrypt_json(mailbox.credentials_encrypted or b"", "the-key") == _oauth_info(fake_gmail)

    mailbox.state = MailboxState.NEEDS_REAUTH
    mailbox.last_error = "invalid_grant"
    mailbox.history_id = 4242
    session.flush()
    new_info = {**_oauth_info(fake_gmail), "refresh_token": "1//second-token"}
    again = connect_mailbox(
        session,
        email=MAILBOX,
        name=None,
        auth_kind=MailboxAuthKind.OAUTH,
        credentials=new_info,
        secret_key="the-key",
    )
    assert again.id == mailbox.id
    assert (again.state, again.last_error, again.history_id) == (MailboxState.ACTIVE, None, 4242)
    assert (again.name, again.language) == ("Shop Support", "ru")
    assert decrypt_json(again.credentials_encrypted or b"", "the-key") == new_info

    before = again.credentials_encrypted
    with pytest.raises(SecretKeyMissing):
        connect_mailbox(
            session,
            email=MAILBOX,
            name="Other",
            auth_kind=MailboxAuthKind.OAUTH,
            credentials=new_info,
            secret_key=None,
        )
    session.expire_all()
    reloaded = find_mailbox(session, MAILBOX)
    assert reloaded is not None
    assert (reloaded.name, reloaded.credentials_encrypted) == ("Shop Support", before)


def test_refresh_token_never_reaches_the_logs(
    session: Session,
    fake_gmail: FakeGmail,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With every logger at DEBUG (google-auth, httplib2, googleapiclient, ours): storing,
    loading, refreshing, a revoked token and a wrong key log neither secret."""
    guard_loopback(monkeypatch)
    caplog.set_level(logging.DEBUG)
    fake_gmail.refresh_tokens[REFRESH_TOKEN] = MAILBOX
    settings = Settings(gmail_api_url=fake_gmail.url, secret_key="the-key")
    mailbox = connect_mailbox(
        session,
        email=MAILBOX,
        name=None,
        auth_kind=MailboxAuthKind.OAUTH,
        credentials=_oauth_info(fake_gmail),
        secret_key=settings.secret_key,
    )
    sleeps = Sleeps()
    client = client_for_mailbox(mailbox, settings, retry=policy(sleeps))
    assert client.get_profile()["emailAddress"] == MAILBOX
    fake_gmail.fail("GET", "/gmail/v1/users/me/labels", 503)
    client.list_labels()  # a retry logs a warning

    del fake_gmail.refresh_tokens[REFRESH_TOKEN]  # revoked
    with pytest.raises(GmailAuthError) as revoked:
        client_for_mailbox(mailbox, settings, retry=policy(sleeps)).get_profile()
    with pytest.raises(CredentialsUnreadable) as unreadable:
        client_for_mailbox(mailbox, Settings(gmail_api_url=fake_gmail.url, secret_key="other"))

    assert fake_gmail.token_requests[0]["refresh_token"] == REFRESH_TOKEN  # it was used
    assert any(r.name.startswith("gmail_sync") for r in caplog.records)
    assert any(r.name.startswith("google") for r in caplog.records)
    logged = caplog.text
    for secret in (REFRESH_TOKEN, CLIENT_SECRET, REFRESH_TOKEN.replace("/", "%2F")):
        assert secret not in logged
        for error in (revoked.value, unreadable.value):
            assert secret not in "".join(traceback.format_exception(error))
