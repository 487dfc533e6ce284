"""`inboxdesk templates seed|import|export` run as an operator does, and the demo's seeding."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.config import reset_settings
from app.db.session import Database, get_database
from templates_replies.defaults import default_templates
from templates_replies.models import ReplyTemplate
from tests.scratch_db import scratch_database_url
from tests.test_cli import cli_env, run_cli


@pytest.fixture
def cli_db(database_url: str, tmp_path: Path) -> Iterator[tuple[dict[str, str], Database]]:
    """An upgraded empty database on the backend under test, the CLI's environment for it, and
    a Database to look at what the CLI did."""
    with scratch_database_url(database_url, tmp_path, prefix="inboxdesk_tpl") as url:
        env = cli_env(tmp_path, url)
        upgraded = run_cli(env, "db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        database = Database.from_url(url)
        try:
            yield env, database
        finally:
            database.dispose()


def stored(database: Database) -> list[tuple[Any, ...]]:
    with database.unit_of_work() as s:
        return [
            tuple(row)
            for row in s.execute(
                select(
                    ReplyTemplate.id,
                    ReplyTemplate.name,
                    ReplyTemplate.language,
                    ReplyTemplate.body,
                    ReplyTemplate.version,
                ).order_by(ReplyTemplate.id)
            )
        ]


def test_seed_is_idempotent(cli_db: tuple[dict[str, str], Database]) -> None:
    """`templates seed` adds the whole default library once; run again it adds nothing."""
    env, database = cli_db
    total = len(default_templates())

    first = run_cli(env, "templates", "seed")
    assert first.returncode == 0, first.stderr
    assert f"{total} created, 0 already there" in first.stdout
    rows = stored(database)
    assert len(rows) == total

    again = run_cli(env, "templates", "seed")
    assert again.returncode == 0, again.stderr
    assert f"0 created, {total} already there" in again.stdout
    assert stored(database) == rows


def test_export_then_import_round_trip_and_a_bad_file(
    cli_db: tuple[dict[str, str], Database], tmp_path: Path
) -> None:
    """export FILE writes the library; import of an edited copy updates what changed; a file
    with one invalid template, or that is no JSON at all, fails (exit 1, one error line, no
    traceback) and saves nothing; export without FILE prints the same document."""
    env, database = cli_db
    assert run_cli(env, "templates", "seed").returncode == 0
    library = tmp_path / "library.json"

    exported = run_cli(env, "templates", "export", str(library))
    assert exported.returncode == 0, exported.stderr
    document = json.loads(library.read_text(encoding="utf-8"))
    assert document["format"] == "inboxdesk-templates"
    assert len(document["templates"]) == len(default_templates())
    printed = run_cli(env, "templates", "export")
    assert json.loads(printed.stdout) == document

    document["templates"][0]["body"] = "Changed body for {{ customer.first_name }}."
    document["templates"].append({"name": "Brand new", "body": "Hello!", "language": "en"})
    library.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    imported = run_cli(env, "templates", "import", str(library))
    assert imported.returncode == 0, imported.stderr
    assert "1 created, 1 updated" in imported.stdout
    before = stored(database)

    document["templates"].insert(3, {"name": "Broken", "body": "{{ customer.name "})
    document["templates"][0]["body"] = "Would change"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(document), encoding="utf-8")
    refused = run_cli(env, "templates", "import", str(bad))
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: template 3 ('Broken')"), refused.stderr
    assert "Traceback" not in refused.stderr + refused.stdout
    assert stored(database) == before

    bad.write_text("{not json", encoding="utf-8")
    not_json = run_cli(env, "templates", "import", str(bad))
    assert not_json.returncode == 1
    assert "is not a JSON document" in not_json.stderr
    missing = run_cli(env, "templates", "import", str(tmp_path / "nowhere.json"))
    assert missing.returncode == 1
    assert "cannot read" in missing.stderr
    assert stored(database) == before


def test_cli_import_refuses_personal_templates(
    cli_db: tuple[dict[str, str], Database], tmp_path: Path
) -> None:
    """The CLI has no agent to own a personal template: refused with the template's index."""
    env, database = cli_db
    file = tmp_path / "personal.json"
    file.write_text(
        json.dumps(
            {
                "format": "inboxdesk-templates",
                "version": 1,
                "templates": [{"name": "Mine", "body": "Hi", "visibility": "personal"}],
            }
        ),
        encoding="utf-8",
    )
    refused = run_cli(env, "templates", "import", str(file))
    assert refused.returncode == 1
    assert "template 0" in refused.stderr
    assert stored(database) == []


def test_demo_preparation_seeds_the_defaults_once(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each demo start seeds the default library; a restart adds nothing."""
    from app.db import migrations
    from app.demo import prepare_demo

    with scratch_database_url(database_url, tmp_path, prefix="inboxdesk_demo") as url:
        monkeypatch.setenv("INBOXDESK_DATABASE_URL", url)
        reset_settings()
        try:
            migrations.upgrade(url=url)
            prepare_demo(admin_email="admin@demo.test")
            database = get_database()
            first = stored(database)
            prepare_demo(admin_email="admin@demo.test")
            assert stored(database) == first
            assert len(first) == len(default_templates())
            database.dispose()
        finally:
            monkeypatch.delenv("INBOXDESK_DATABASE_URL")
            reset_settings()
