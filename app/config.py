"""One settings object for the whole installation, read from ``INBOXDESK_*`` variables.

Settings are built on first use (``get_settings()``), never at import time, so tests and the CLI can
set the environment first and nothing reads a half-configured process.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Where Google publishes the x509 certificates that sign its ID tokens, {kid: PEM}
# (https://developers.google.com/identity/gsi/web/guides/verify-google-id-token).
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INBOXDESK_", extra="ignore")

    data_dir: Path = Path(".inboxdesk")
    # Empty means SQLite in the data dir (see ``database_url_resolved``).
    database_url: str = ""
    # Unset: Google's servers. Set: e.g. the local emulator at http://127.0.0.1:8025/.
    gmail_api_url: str | None = None
    secret_key: SecretStr | None = None
    public_url: str = "http://127.0.0.1:8000"
    # "dev": the demo (`inboxdesk demo`, /preview); the add-on endpoints then trust the local
    # signing key of app/addon/devkeys.py unless a certificates URL is configured. "prod" otherwise.
    env: Literal["prod", "dev"] = "prod"
    # Gmail add-on (app/addon/auth.py). The service account Google signs the add-on requests as and
    # the OAuth client id the user's ID token is issued to: `gcloud workspace-add-ons
    # get-authorization` prints both. Unset: every add-on request is refused (401).
    addon_service_account: str | None = None
    oauth_client_id: str | None = None
    # Certificates that verify those ID tokens; tests and air-gapped setups serve their own.
    google_certs_url: str = GOOGLE_CERTS_URL
    # Extra accepted audiences of the system ID token, besides public_url + the endpoint's path
    # (e.g. the URL the deployment descriptor names when a proxy rewrites it). JSON list or
    # comma-separated.
    addon_audiences: Annotated[list[str], NoDecode] = []
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

    @field_validator("addon_service_account", "oauth_client_id")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return (value or "").strip() or None

    @field_validator("addon_audiences", mode="before")
    @classmethod
    def _audiences(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

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
