"""Settings come from INBOXDESK_* variables, are read on first use (not at import), hide secrets,
and default to SQLite inside the data directory."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import Settings, get_settings, reset_settings
from tests.conftest import PROJECT_ROOT


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No INBOXDESK_* setting from outside; the settings cache is cleared before and after."""
    for key in list(os.environ):
        if key.startswith("INBOXDESK_") and "TEST" not in key:
            monkeypatch.delenv(key)
    reset_settings()
    yield monkeypatch
    reset_settings()


def test_importing_the_app_reads_no_settings(tmp_path: Path) -> None:
    """A fresh interpreter imports every entry point with an invalid INBOXDESK_ECHO_SQL: nothing
    reads it until get_settings(), which then fails; fixed and reset, it is picked up."""
    script = textwrap.dedent(
        """
        import os
        import pydantic
        import app.cli, app.config, app.db.session, app.demo, app.main
        from app.config import get_settings, reset_settings
        assert get_settings.cache_info().currsize == 0, "settings were built at import time"
        try:
            get_settings()
        except pydantic.ValidationError:
            pass
        else:
            raise SystemExit("INBOXDESK_ECHO_SQL=maybe was accepted")
        os.environ["INBOXDESK_ECHO_SQL"] = "true"
        os.environ["INBOXDESK_LOG_LEVEL"] = "DEBUG"
        reset_settings()
        settings = get_settings()
        print(settings.echo_sql, settings.log_level)
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("INBOXDESK_")}
    env["INBOXDESK_ECHO_SQL"] = "maybe"
    env["INBOXDESK_DATA_DIR"] = str(tmp_path)
    done = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", script],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split() == ["True", "DEBUG"]


def test_environment_changes_show_after_reset(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """get_settings() is cached until reset_settings(); then it reflects the new environment."""
    clean_env.setenv("INBOXDESK_PUBLIC_URL", "https://one.example")
    first = get_settings()
    assert first.public_url == "https://one.example"

    clean_env.setenv("INBOXDESK_PUBLIC_URL", "https://two.example")
    clean_env.setenv("INBOXDESK_DATA_DIR", str(tmp_path / "elsewhere"))
    assert get_settings() is first, "settings must be built once, not per call"

    reset_settings()
    second = get_settings()
    assert second.public_url == "https://two.example"
    assert second.data_dir == tmp_path / "elsewhere"


def test_only_prefixed_variables_count(clean_env: pytest.MonkeyPatch) -> None:
    """LOG_LEVEL or DATABASE_URL meant for other programs do not configure Inboxdesk."""
    clean_env.setenv("LOG_LEVEL", "ERROR")
    clean_env.setenv("DATABASE_URL", "postgresql://someone-else/db")
    clean_env.setenv("PUBLIC_URL", "https://not-us.example")
    settings = get_settings()
    assert settings.log_level == "INFO"
    assert settings.database_url == ""
    assert settings.public_url == "http://127.0.0.1:8000"

    clean_env.setenv("INBOXDESK_LOG_LEVEL", "WARNING")
    clean_env.setenv("INBOXDESK_DATABASE_URL", "  postgresql+psycopg://db.internal/inboxdesk  ")
    reset_settings()
    settings = get_settings()
    assert settings.log_level == "WARNING"
    assert settings.database_url_resolved == "postgresql+psycopg://db.internal/inboxdesk"


def test_secret_key_is_hidden_from_repr_and_str(clean_env: pytest.MonkeyPatch) -> None:
    """A logged or printed Settings never shows the secret key; the code can still read it."""
    secret = "hunter2-do-not-print-me"
    clean_env.setenv("INBOXDESK_SECRET_KEY", secret)
    settings = get_settings()
    assert settings.secret_key is not None
    assert settings.secret_key.get_secret_value() == secret
    for shown in (repr(settings), str(settings), settings.model_dump_json(), f"{settings!r}"):
        assert secret not in shown
    assert "secret_key" in repr(settings), "the field is listed, masked"


def test_default_database_is_sqlite_in_the_data_dir(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Unset (or blank) INBOXDESK_DATABASE_URL: an absolute SQLite file inside the data dir."""
    clean_env.chdir(tmp_path)
    clean_env.setenv("INBOXDESK_DATA_DIR", "relative-data")
    clean_env.setenv("INBOXDESK_DATABASE_URL", "   ")
    settings = get_settings()
    expected = tmp_path.resolve() / "relative-data" / "inboxdesk.db"
    assert settings.database_url_resolved == f"sqlite:///{expected}"

    clean_env.delenv("INBOXDESK_DATABASE_URL")
    reset_settings()
    assert get_settings().database_url_resolved == f"sqlite:///{expected}"


def test_unconfigured_settings_use_dot_inboxdesk(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With nothing set at all, the data live in ./.inboxdesk of the working directory."""
    clean_env.chdir(tmp_path)
    settings = Settings()
    assert settings.data_dir == Path(".inboxdesk")
    expected = tmp_path.resolve() / ".inboxdesk" / "inboxdesk.db"
    assert settings.database_url_resolved == f"sqlite:///{expected}"
