"""`inboxdesk rules seed|evaluate` run as an operator does: the real console script in a
subprocess, on a fresh database of the backend under test."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from app.db.session import Database
from app.mailboxes import service as mailboxes
from app.rules.defaults import load_default_rules
from app.rules.models import Rule
from tests.scratch_db import scratch_database_url
from tests.test_cli import cli_env, run_cli


@pytest.fixture
def cli_db(database_url: str, tmp_path: Path) -> Iterator[tuple[dict[str, str], Database]]:
    with scratch_database_url(database_url, tmp_path, prefix="inboxdesk_rules") as url:
        env = cli_env(tmp_path, url)
        upgraded = run_cli(env, "db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        database = Database.from_url(url)
        try:
            yield env, database
        finally:
            database.dispose()


def stored(database: Database) -> list[tuple[int | None, str]]:
    with database.unit_of_work() as s:
        rows = s.execute(select(Rule.mailbox_id, Rule.name).order_by(Rule.id))
        return [(mailbox_id, name) for mailbox_id, name in rows]


def test_seed_global_then_per_mailbox_idempotent(cli_db: tuple[dict[str, str], Database]) -> None:
    env, database = cli_db
    total = len(load_default_rules())

    first = run_cli(env, "rules", "seed")
    assert first.returncode == 0, first.stderr
    assert f"default rules for every mailbox: {total} added, 0 already there" in first.stdout
    assert stored(database) == [(None, r["name"]) for r in load_default_rules()]
    again = run_cli(env, "rules", "seed")
    assert again.returncode == 0, again.stderr
    assert f"0 added, {total} already there" in again.stdout
    assert len(stored(database)) == total

    with database.unit_of_work() as s:
        box = mailboxes.create_mailbox(s, email="support@shop.test", name="Support")
        box_id = box.id
    per_box = run_cli(env, "rules", "seed", "--mailbox", "Support@Shop.test")
    assert per_box.returncode == 0, per_box.stderr
    assert f"for Support@Shop.test: {total} added" in per_box.stdout
    assert sum(1 for mailbox_id, _ in stored(database) if mailbox_id == box_id) == total

    unknown = run_cli(env, "rules", "seed", "--mailbox", "nobody@shop.test")
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("error: unknown mailbox 'nobody@shop.test'")
    assert "Traceback" not in unknown.stderr
    assert len(stored(database)) == 2 * total


def test_evaluate_prints_the_figures_of_the_shipped_set(tmp_path: Path) -> None:
    result = run_cli(cli_env(tmp_path), "rules", "evaluate")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("overall   precision 0.")
    assert any(line.startswith("held out  precision") for line in lines)
    # The figures printed are the ones the threshold is checked on.
    overall = lines[0].split()
    assert float(overall[2]) >= 0.85
    assert float(overall[4]) >= 0.85


def write_set(path: Path, messages: list[tuple[str, str, bool]]) -> Path:
    path.write_text(
        "".join(
            json.dumps({"subject": s, "body": b, "language": "en", "urgent": u}) + "\n"
            for s, b, u in messages
        ),
        encoding="utf-8",
    )
    return path


def test_evaluate_fails_below_the_threshold_and_names_the_misses(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    labelled = write_set(
        tmp_path / "set.jsonl",
        [
            ("Site is down", "Our store is down since 9am", True),
            # No failure, loss or urgency word: only the context tells (the default rules miss it).
            (
                "Wedding",
                "The bouquet for the 1pm wedding is still not here, the courier is silent",
                True,
            ),
            # A product name, not a plea (the default rules raise it).
            ("Urgent Care kit", "Is the Urgent Care first aid kit back in stock?", False),
            ("Hello", "Just saying thanks", False),
        ],
    )
    result = run_cli(env, "rules", "evaluate", "--file", str(labelled))
    assert result.returncode == 1
    assert "precision 0.500  recall 0.500" in result.stdout
    assert "missed (line 2, en): 'Wedding'" in result.stdout
    assert "false alarm (line 3, en): 'Urgent Care kit'" in result.stdout
    assert "below 0.85" in result.stderr

    # The same set against rules of one's own (a rules document, as the seed file is).
    rules = tmp_path / "rules.json"
    rules.write_text(
        json.dumps(
            {
                "rules": [
                    {
                        "name": "down or the courier",
                        "conditions": [
                            {"field": "text", "op": "words", "value": ["is down", "courier"]}
                        ],
                        "actions": [{"type": "set_priority", "value": "urgent"}],
                    }
                ]
            }
        ),
        encoding="utf-8",
    )
    own = run_cli(env, "rules", "evaluate", "--file", str(labelled), "--rules", str(rules))
    assert own.returncode == 0, own.stdout + own.stderr
    assert "precision 1.000  recall 1.000" in own.stdout


def test_evaluate_refuses_bad_input_without_a_traceback(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    missing = run_cli(env, "rules", "evaluate", "--file", str(tmp_path / "nowhere.jsonl"))
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: cannot read")

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"subject": "x", "body": "y"}\n', encoding="utf-8")
    bad_line = run_cli(env, "rules", "evaluate", "--file", str(broken))
    assert bad_line.returncode == 1
    assert "line 1" in bad_line.stderr

    rules = tmp_path / "rules.json"
    rules.write_text(
        json.dumps(
            [
                {
                    "name": "bad regex",
                    "conditions": [{"field": "subject", "op": "regex", "value": "(unclosed"}],
                    "actions": [{"type": "set_priority", "value": "urgent"}],
                }
            ]
        ),
        encoding="utf-8",
    )
    bad_rule = run_cli(env, "rules", "evaluate", "--rules", str(rules))
    assert bad_rule.returncode == 1
    assert "rule 'bad regex'" in bad_rule.stderr
    rules.write_text("{not json", encoding="utf-8")
    not_json = run_cli(env, "rules", "evaluate", "--rules", str(rules))
    assert not_json.returncode == 1
    assert "is not a JSON document" in not_json.stderr
    for result in (missing, bad_line, bad_rule, not_json):
        assert "Traceback" not in result.stdout + result.stderr
