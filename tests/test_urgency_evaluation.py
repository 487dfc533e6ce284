"""Precision and recall of the default urgency rules on the labelled set, through the real engine.

Run with ``-s`` to see the figures (overall, the part the rules were tuned on, the held-out part)
and the misclassified subjects.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from app.errors import ValidationFailed
from app.languages import detect_language
from app.rules.defaults import default_rule_objects, rule_objects
from app.rules.evaluation import (
    DEFAULT_LABELLED_SET,
    LabelledMessage,
    evaluate_urgency,
    format_report,
    load_labelled,
)

THRESHOLD = 0.85


def test_the_labelled_set_is_what_the_issue_asks_for() -> None:
    messages = load_labelled()
    assert len(messages) >= 100
    languages = Counter(m.language for m in messages)
    assert set(languages) == {"ru", "en"}
    assert abs(languages["ru"] - languages["en"]) <= len(messages) * 0.1
    share = sum(m.urgent for m in messages) / len(messages)
    assert 0.3 <= share <= 0.5
    assert sum(m.held_out for m in messages) >= 20
    # The label's language is the one the sync would detect.
    for m in messages:
        assert detect_language(f"{m.subject}\n{m.body}", default="en") == m.language, m.subject
    assert len({(m.subject, m.body) for m in messages}) == len(messages), "no duplicates"


def test_default_rules_precision_and_recall() -> None:
    report = evaluate_urgency(load_labelled(), default_rule_objects())
    # The figures of the run (pytest -s shows them).
    print("\n" + "\n".join(format_report(report)))  # noqa: T201
    assert report.overall.total == len(load_labelled())
    assert report.overall.precision >= THRESHOLD
    assert report.overall.recall >= THRESHOLD
    assert report.passes(THRESHOLD)


def labelled(subject: str, urgent: bool, *, held_out: bool = False) -> LabelledMessage:
    return LabelledMessage(
        subject=subject, body="", language="en", urgent=urgent, held_out=held_out
    )


def test_counts_and_parts_are_scored_apart() -> None:
    rules = rule_objects(
        [
            {
                "name": "outage",
                "conditions": [{"field": "subject", "op": "words", "value": ["outage"]}],
                "actions": [{"type": "set_priority", "value": "urgent"}],
            },
            # High is not urgent: a firing that does not raise to urgent is no positive.
            {
                "name": "question",
                "conditions": [{"field": "subject", "op": "contains", "value": "?"}],
                "actions": [{"type": "set_priority", "value": "high"}],
            },
        ]
    )
    report = evaluate_urgency(
        [
            labelled("Outage in eu-west", True),  # tp
            labelled("Post-mortem of the outage?", False),  # fp
            labelled("Everything is down", True),  # fn
            labelled("A question?", False),  # tn
            labelled("Another outage", True, held_out=True),  # tp, held out
        ],
        rules,
    )
    o = report.overall
    assert (o.true_positives, o.false_positives, o.false_negatives, o.true_negatives) == (
        2,
        1,
        1,
        1,
    )
    assert o.precision == pytest.approx(2 / 3)
    assert o.recall == pytest.approx(2 / 3)
    assert (report.tuned.total, report.held_out.total) == (4, 1)
    assert report.held_out.recall == 1.0
    lines = format_report(report)
    assert any(
        "false alarm" in line and "Post-mortem" in line and "outage" in line for line in lines
    )
    assert any(line.startswith("missed") and "Everything is down" in line for line in lines)
    assert not report.passes(THRESHOLD)


def test_a_rule_set_that_never_fires_scores_zero() -> None:
    report = evaluate_urgency([labelled("Down!", True), labelled("Hi", False)], [])
    assert (report.overall.precision, report.overall.recall) == (0.0, 0.0)


def test_a_malformed_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "set.jsonl"
    good = json.dumps({"subject": "a", "body": "b", "language": "en", "urgent": False})
    path.write_text(f"{good}\n\n{json.dumps({'subject': 'x', 'urgent': 'yes'})}\n")
    with pytest.raises(ValidationFailed, match="line 3"):
        load_labelled(path)
    path.write_text(f"{good}\n[1, 2]\n")
    with pytest.raises(ValidationFailed, match="line 2"):
        load_labelled(path)
    path.write_text(f"{good}\n")
    assert load_labelled(path)[0].line == 1


def test_the_default_set_path_is_the_test_data() -> None:
    expected = Path(__file__).parent / "data" / "urgency_labelled.jsonl"
    assert expected == DEFAULT_LABELLED_SET
