"""`inboxdesk mailbox add`, the real console script in a subprocess, on a fresh database.

Google is the fake Gmail of test_gmail_client, served from this process: it is the token endpoint
of the key file and client secrets, and INBOXDESK_GMAIL_API_URL points the profile check at it.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from app.crypto import decrypt_json
from app.db import migrations
from app.db.session import Database
from tests.scratch_db import scratch_database_url
from tests.test_cli import INBOXDESK, cli_env, run_cli
from tests.test_credentials import consent, make_service_account_key, write_client_secrets
from tests.test_gmail_client import MAILBOX, FakeGmail, running_fake_gmail

SECRET = "cli-test-secret"


@pytest.fixture
def fake_gmail() -> Iterator[FakeGmail]:
    with running_fake_gmail() as fake:
        yield fake


@pytest.fixture
def cli_db(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A fresh database at head: a SQLite file, or on the PostgreSQL run a scratch PG one."""
    with scratch_database_url(database_url, tmp_path, prefix="inboxdesk_mbx") as url:
        migrations.upgrade(url=url)
        yield url


def env_for(
    tmp_path: Path, url: str, fake: FakeGmail | None = None, **extra: str
) -> dict[str, str]:
    env = cli_env(tmp_path, url)
    if fake is not None:
        env["INBOXDESK_GMAIL_API_URL"] = fake.url
    env.update(extra)
    return env


def mailbox_rows(url: str) -> list[dict[str, Any]]:
    database = Database.from_url(url)
    try:
        with database.engine.connect() as conn:
            rows = conn.execute(text("SELECT * FROM mailboxes ORDER BY id")).mappings().all()
            return [dict(r) for r in rows]
    finally:
        database.dispose()


def set_state(url: str, address: str, state: str) -> None:
    database = Database.from_url(url)
    try:
        with database.engine.begin() as conn:
            conn.execute(
                text("UPDATE mailboxes SET state = :s, last_error = 'x' WHERE email = :e"),
                {"s": state, "e": address},
            )
    finally:
        database.dispose()


def assert_clean_failure(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith("error:"), result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_add_emulator_mailbox_and_readd_it(cli_db: str, tmp_path: Path) -> None:
    """--emulator needs no secret key and stores no credentials; re-adding a needs_reauth
    mailbox makes it active again with the same id and name."""
    env = env_for(tmp_path, cli_db)
    added = run_cli(
        env, "mailbox", "add", "Support@Shop.test", "--emulator", "--name", "Shop", "--language",
        "ru", "--timezone", "Asia/Kamchatka",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip().splitlines() == [
        "mailbox support@shop.test (emulator) connected with id 1, state active",
        # The first mailbox of an installation without rules gets the default triage rules.
        "default triage rules: 12 added (urgency, VIP); review them at /api/v1/rules",
    ]
    [row] = mailbox_rows(cli_db)
    assert (row["email"], row["name"], row["language"], row["timezone"]) == (
        MAILBOX,
        "Shop",
        "ru",
        "Asia/Kamchatka",
    )
    assert (row["auth_kind"], row["state"], row["credentials_encrypted"]) == (
        "emulator",
        "active",
        None,
    )

    set_state(cli_db, MAILBOX, "needs_reauth")
    again = run_cli(env, "mailbox", "add", MAILBOX, "--emulator")
    assert again.returncode == 0, again.stderr
    assert "triage rules" not in again.stdout, "rules exist: never topped up"
    [row] = mailbox_rows(cli_db)
    assert (row["id"], row["name"], row["state"], row["last_error"]) == (1, "Shop", "active", None)
    assert row["timezone"] == "Asia/Kamchatka"

    assert row["auto_ack_enabled"]
    quiet = run_cli(env, "mailbox", "add", MAILBOX, "--emulator", "--no-ack")
    assert quiet.returncode == 0, quiet.stderr
    assert not mailbox_rows(cli_db)[0]["auto_ack_enabled"]
    kept = run_cli(env, "mailbox", "add", MAILBOX, "--emulator")
    assert kept.returncode == 0, kept.stderr
    assert not mailbox_rows(cli_db)[0]["auto_ack_enabled"], "re-adding keeps the choice"

    unknown_zone = run_cli(env, "mailbox", "add", MAILBOX, "--emulator", "--timezone", "Mars/Base")
    assert_clean_failure(unknown_zone, "Mars/Base")
    [row] = mailbox_rows(cli_db)
    assert row["timezone"] == "Asia/Kamchatka"


def test_add_service_account_mailbox(cli_db: str, tmp_path: Path, fake_gmail: FakeGmail) -> None:
    """--service-account: the key's JWT asks for the mailbox as subject, the profile check
    passes, the key is stored encrypted and never printed."""
    key = make_service_account_key(fake_gmail)
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(key))
    env = env_for(tmp_path, cli_db, fake_gmail, INBOXDESK_SECRET_KEY=SECRET)

    added = run_cli(env, "mailbox", "add", MAILBOX, "--service-account", str(key_file))

    assert added.returncode == 0, added.stderr
    assert "(service_account) connected" in added.stdout
    assert [c["sub"] for c in fake_gmail.jwt_claims] == [MAILBOX]
    assert [c.path for c in fake_gmail.calls] == ["/gmail/v1/users/me/profile"]
    [row] = mailbox_rows(cli_db)
    assert (row["auth_kind"], row["state"], row["name"]) == ("service_account", "active", MAILBOX)
    stored = bytes(row["credentials_encrypted"])
    assert decrypt_json(stored, SECRET) == key
    body = key["private_key"].splitlines()[5]
    assert body.encode() not in stored
    assert body not in added.stdout + added.stderr


def test_service_account_not_delegated_for_the_mailbox_stores_nothing(
    cli_db: str, tmp_path: Path, fake_gmail: FakeGmail
) -> None:
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(make_service_account_key(fake_gmail)))
    env = env_for(tmp_path, cli_db, fake_gmail, INBOXDESK_SECRET_KEY=SECRET)
    result = run_cli(env, "mailbox", "add", "billing@shop.test", "--service-account", str(key_file))
    assert_clean_failure(result, "unauthorized_client")
    assert mailbox_rows(cli_db) == []


def test_add_refuses_bad_invocations_cleanly(
    cli_db: str, tmp_path: Path, fake_gmail: FakeGmail
) -> None:
    """No way or two ways to connect, no secret key, a bad key file, a bad language: exit 1, a
    one-line error, no traceback, no row."""
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(make_service_account_key(fake_gmail)))
    plain = env_for(tmp_path, cli_db, fake_gmail)
    keyed = env_for(tmp_path, cli_db, fake_gmail, INBOXDESK_SECRET_KEY=SECRET)

    assert_clean_failure(run_cli(plain, "mailbox", "add", MAILBOX), "exactly one of")
    assert_clean_failure(
        run_cli(plain, "mailbox", "add", MAILBOX, "--emulator", "--service-account", str(key_file)),
        "exactly one of",
    )
    assert_clean_failure(
        run_cli(plain, "mailbox", "add", MAILBOX, "--service-account", str(key_file)),
        "INBOXDESK_SECRET_KEY is not set",
    )
    assert_clean_failure(
        run_cli(keyed, "mailbox", "add", MAILBOX, "--service-account", str(tmp_path / "nope")),
        "cannot read the service-account key file",
    )
    assert_clean_failure(
        run_cli(plain, "mailbox", "add", MAILBOX, "--emulator", "--language", "Russian"),
        "language must be two lower-case letters",
    )
    assert_clean_failure(
        run_cli(plain, "mailbox", "add", "not-an-address", "--emulator"), "invalid"
    )
    assert mailbox_rows(cli_db) == []
    assert fake_gmail.token_requests == []


class RunningCli:
    """The console script in the background, stdout and stderr read on threads."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen(  # noqa: S603 - our own console script
            [str(INBOXDESK), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    def _read(self, stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line)
            self.lines.put(line)

    def wait_for_line(self, start: str, timeout: float = 60) -> str:
        while True:
            line = self.lines.get(timeout=timeout)
            if start in line:
                return line

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        try:
            self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        for reader in self.readers:
            reader.join(timeout=10)
        return self.proc.returncode, "".join(self.stdout), "".join(self.stderr)


@pytest.mark.parametrize("account", [MAILBOX, "someone.else@shop.test"])
def test_add_oauth_mailbox_through_the_consent_redirect(
    cli_db: str, tmp_path: Path, fake_gmail: FakeGmail, account: str
) -> None:
    """--oauth --no-browser prints the consent URL; the browser's redirect to the loopback
    address with a code completes it; the refresh token is stored encrypted and never printed.
    Consent given with another Google account is refused and nothing is stored."""
    fake_gmail.mailboxes.add(account)
    secrets_file = write_client_secrets(tmp_path / "client_secret.json", fake_gmail)
    env = env_for(
        tmp_path,
        cli_db,
        fake_gmail,
        INBOXDESK_SECRET_KEY=SECRET,
        # oauthlib refuses a plain-http token endpoint (the fake's) unless told otherwise.
        OAUTHLIB_INSECURE_TRANSPORT="1",
    )
    cli = RunningCli(env, "mailbox", "add", MAILBOX, "--oauth", str(secrets_file), "--no-browser")
    try:
        line = cli.wait_for_line("https://accounts.google.com/")
        url = line[line.index("https://") :].strip()
        redirect = consent(url, fake_gmail, address=account, refresh_token="1//cli-refresh-zz")
        assert redirect.status_code == 200
    finally:
        code, stdout, stderr = cli.finish()

    assert "1//cli-refresh-zz" not in stdout + stderr
    if account != MAILBOX:
        assert code == 1
        assert f"open the Gmail account {account}, not {MAILBOX}" in stderr
        assert mailbox_rows(cli_db) == []
        return
    assert code == 0, stderr
    assert "(oauth) connected" in stdout
    [row] = mailbox_rows(cli_db)
    stored = bytes(row["credentials_encrypted"])
    assert b"cli-refresh" not in stored
    info = decrypt_json(stored, SECRET)
    assert info["refresh_token"] == "1//cli-refresh-zz"
    assert info["token_uri"] == fake_gmail.url + "token"
    # the code exchange, then the profile check with the stored refresh token: it works
    assert [r["grant_type"] for r in fake_gmail.token_requests] == [
        "authorization_code",
        "refresh_token",
    ]
