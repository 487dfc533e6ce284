"""The Alembic migrations build exactly the schema the models describe, and undo it cleanly.

Each test runs on its own scratch database (a new SQLite file, or a new PostgreSQL database on the
test server), never on the session ``engine``: downgrading that one would break every other test.
"""

from __future__ import annotations

import pprint
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Engine, MetaData, String, inspect, text

from app.db import migrations
from app.db.registry import metadata
from app.db.session import create_db_engine
from tests.scratch_db import scratch_database_url


@pytest.fixture
def scratch_engine(database_url: str, tmp_path: Path) -> Iterator[Engine]:
    with scratch_database_url(database_url, tmp_path) as url:
        engine = create_db_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()


def _upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.connect() as conn:
        migrations.upgrade(conn, revision=revision)
        conn.commit()


def _downgrade(engine: Engine, revision: str = "base") -> None:
    with engine.connect() as conn:
        migrations.downgrade(conn, revision=revision)
        conn.commit()


def _diff(engine: Engine, target: MetaData = metadata) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, target))


# Schema objects other than alembic_version's own table and key, per backend.
_LEFTOVERS = {
    "sqlite": (
        "SELECT name FROM sqlite_master"
        " WHERE name NOT LIKE 'alembic_version%' AND name NOT LIKE 'sqlite_%'"
    ),
    "postgresql": (
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relname NOT LIKE 'alembic_version%'"
        " UNION ALL SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
        " WHERE n.nspname = 'public' AND t.typtype = 'e'"
    ),
}


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def _head() -> str:
    head = ScriptDirectory.from_config(migrations.alembic_config()).get_current_head()
    assert head is not None
    return head


def _current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def test_upgrade_to_head_builds_exactly_the_models_schema(scratch_engine: Engine) -> None:
    """Autogenerate finds nothing to add, drop or alter after ``upgrade head``."""
    assert _tables(scratch_engine) == set()
    _upgrade(scratch_engine)
    diff = _diff(scratch_engine)
    assert diff == [], "models and migrations differ:\n" + pprint.pformat(diff)
    assert _tables(scratch_engine) == set(metadata.tables) | {"alembic_version"}
    assert _current_revision(scratch_engine) == _head()


def test_comparison_notices_a_model_column_without_migration(scratch_engine: Engine) -> None:
    """The check above has teeth: a column only the models know is reported as missing."""
    _upgrade(scratch_engine)
    models = MetaData(naming_convention=metadata.naming_convention)
    for table in metadata.sorted_tables:
        table.to_metadata(models)
    models.tables["tickets"].append_column(Column("unmigrated_note", String(40), nullable=True))

    diff = _diff(scratch_engine, models)

    assert [(op[0], op[2], op[3].name) for op in diff] == [
        ("add_column", "tickets", "unmigrated_note")
    ], pprint.pformat(diff)


def test_downgrade_to_base_drops_everything_and_upgrade_works_again(
    scratch_engine: Engine,
) -> None:
    """upgrade → downgrade base → upgrade: nothing left behind, nothing in the way."""
    _upgrade(scratch_engine)
    _downgrade(scratch_engine)

    assert _tables(scratch_engine) == {"alembic_version"}
    assert _current_revision(scratch_engine) is None
    # Indexes, sequences and enum types must go with their tables, or the next upgrade trips.
    with scratch_engine.connect() as conn:
        query = _LEFTOVERS[scratch_engine.dialect.name]
        assert conn.execute(text(query)).scalars().all() == []

    _upgrade(scratch_engine)
    diff = _diff(scratch_engine)
    assert diff == [], "models and migrations differ after a round trip:\n" + pprint.pformat(diff)
    assert _tables(scratch_engine) == set(metadata.tables) | {"alembic_version"}
    assert _current_revision(scratch_engine) == _head()


def test_upgrade_seeds_the_ticket_counter_at_1000(scratch_engine: Engine) -> None:
    """The first ticket gets #1001: the counter row exists with value 1000 after ``upgrade``."""
    _upgrade(scratch_engine)
    with scratch_engine.connect() as conn:
        rows = conn.execute(text("SELECT name, value FROM ticket_counters")).all()
    assert [tuple(row) for row in rows] == [("ticket", 1000)]
