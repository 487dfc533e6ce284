"""Running Alembic from our code (CLI, demo, tests), always through ``alembic/``."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "alembic"))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(
    connection: Connection | None = None, *, url: str | None = None, revision: str = "head"
) -> None:
    command.upgrade(alembic_config(connection, url), revision)


def downgrade(
    connection: Connection | None = None, *, url: str | None = None, revision: str = "base"
) -> None:
    command.downgrade(alembic_config(connection, url), revision)
