"""One settings object for the whole installation, read from ``INBOXDESK_*`` variables.

Settings are built on first use (``get_settings()``), never at import time, so tests and the CLI can
set the environment first and nothing reads a half-configured process.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INBOXDESK_", extra="ignore")

    data_dir: Path = Path(".inboxdesk")
    # Empty means SQLite in the data dir (see ``database_url_resolved``).
    database_url: str = ""
    # Unset: Google's servers. Set: e.g. the local emulator at http://127.0.0.1:8025/.
    gmail_api_url: str | None = None
    secret_key: SecretStr | None = None
    public_url: str = "http://127.0.0.1:8000"
    addon_service_account: str | None = None
    oauth_client_id: str | None = None
    # Gmail sync (gmail_sync/): labels live under this root; the worker polls this often.
    label_root: str = "Support"
    sync_interval_seconds: float = 10.0
    # A worker owns a mailbox for this long unless it renews; another takes over after expiry.
    lease_seconds: float = 60.0
    full_sync_days: int = 30
    # Reply templates: `{{ company.name }}`; empty means the mailbox's display name.
    company_name: str = ""
    # SLA (app/sla/service.py): a ticket is "at risk" once this share of a target is used.
    sla_at_risk_share: float = 0.75
    log_level: str = "INFO"
    # "json": one JSON object a line, for log collectors; "text": for people.
    log_format: Literal["text", "json"] = "text"
    # SQL statements logged at DEBUG only: they may carry customer data.
    echo_sql: bool = False

    @field_validator("database_url")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    @field_validator("sla_at_risk_share")
    @classmethod
    def _share(cls, value: float) -> float:
        if not 0 < value <= 1:
            raise ValueError("the at-risk share is a fraction in (0, 1], e.g. 0.75")
        return value

    @property
    def database_url_resolved(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'inboxdesk.db').resolve()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings (after the environment changed: tests, ``inboxdesk demo``)."""
    get_settings.cache_clear()
