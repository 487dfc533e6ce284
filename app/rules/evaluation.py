"""How well the urgency rules find urgent mail: precision and recall on a labelled set.

Each labelled message goes through the real engine (``compile_rules`` + ``RuleSet.evaluate`` on
``MessageFacts``), exactly as the sync would evaluate a new ticket; it counts as "urgent" when a
rule that sets the priority to ``urgent`` fired. Compared with the human label this gives true and
false positives and negatives, hence precision (of the messages raised to urgent, how many were)
and recall (of the urgent messages, how many were raised).

The set (tests/data/urgency_labelled.jsonl) is JSON lines {"subject", "body", "language",
"urgent": bool, "segment"?, "held_out"?}. Messages marked ``held_out`` were written after the rules
were last tuned and are reported apart: their figures say how the rules do on mail nobody tuned
them on. (The set grew in rounds: each round's held-out batch was measured, then tuned on, and a
new batch written; the batches still marked (``batch`` tuner-1, tuner-2) were never tuned on,
except that tuner-1's misses were seen while writing the vocabulary.) tests/data/urgency_blind.jsonl
is a set written by someone who never saw the rules, measured once (README, Triage).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.errors import ValidationFailed
from app.rules.engine import Firing, RuleLike, compile_rules
from app.rules.facts import MessageFacts

__all__ = [
    "DEFAULT_LABELLED_SET",
    "LabelledMessage",
    "Scores",
    "UrgencyReport",
    "evaluate_urgency",
    "format_report",
    "load_labelled",
    "print_report",
    "raises_to_urgent",
]

# The set lives with the tests (it is test data); from a source checkout this finds it.
DEFAULT_LABELLED_SET = Path(__file__).resolve().parents[2] / "tests/data/urgency_labelled.jsonl"
# The labelled messages are customer mail; the sender does not matter to the urgency rules.
_SENDER = "customer@example.test"


@dataclass(frozen=True)
class LabelledMessage:
    subject: str
    body: str
    language: str | None
    urgent: bool
    segment: str | None = None
    held_out: bool = False
    line: int = 0


@dataclass(frozen=True)
class Misclassified:
    message: LabelledMessage
    # The urgent rules that fired (empty for a missed urgent message).
    rules: tuple[str, ...]


@dataclass
class Scores:
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0
    true_negatives: int = 0
    misclassified: list[Misclassified] = field(default_factory=list)

    @property
    def total(self) -> int:
        return (
            self.true_positives + self.false_positives + self.false_negatives + self.true_negatives
        )

    @property
    def precision(self) -> float:
        raised = self.true_positives + self.false_positives
        # Nothing raised: no wrong alarm either, but nothing found; report 0 so a rule set that
        # never fires cannot pass a threshold on precision alone.
        return self.true_positives / raised if raised else 0.0

    @property
    def recall(self) -> float:
        urgent = self.true_positives + self.false_negatives
        return self.true_positives / urgent if urgent else 0.0

    def add(self, message: LabelledMessage, fired: Sequence[str]) -> None:
        predicted = bool(fired)
        if predicted and message.urgent:
            self.true_positives += 1
        elif predicted:
            self.false_positives += 1
            self.misclassified.append(Misclassified(message, tuple(fired)))
        elif message.urgent:
            self.false_negatives += 1
            self.misclassified.append(Misclassified(message, ()))
        else:
            self.true_negatives += 1


@dataclass
class UrgencyReport:
    overall: Scores
    tuned: Scores
    held_out: Scores

    def passes(self, threshold: float) -> bool:
        return self.overall.precision >= threshold and self.overall.recall >= threshold


def load_labelled(path: Path | str = DEFAULT_LABELLED_SET) -> list[LabelledMessage]:
    """Read a labelled set; a malformed line raises ``ValidationFailed`` naming its number."""
    messages: list[LabelledMessage] = []
    text = Path(path).read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            if not isinstance(raw, dict):
                raise TypeError("not an object")
            message = LabelledMessage(
                subject=_text(raw.get("subject", "")),
                body=_text(raw.get("body", "")),
                language=raw.get("language"),
                urgent=_flag(raw["urgent"]),
                segment=raw.get("segment"),
                held_out=_flag(raw.get("held_out", False)),
                line=number,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationFailed(
                f"{path}, line {number}: not a labelled message "
                f'{{"subject", "body", "urgent": bool, …}}: {exc}',
                code="invalid_labelled_set",
            ) from exc
        messages.append(message)
    return messages


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("subject and body are strings")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("urgent and held_out are true or false")
    return value


def raises_to_urgent(firing: Firing) -> bool:
    return any(
        action["type"] == "set_priority" and action.get("value") == "urgent"
        for action in firing.actions
    )


def evaluate_urgency(
    messages: Iterable[LabelledMessage], rules: Sequence[RuleLike]
) -> UrgencyReport:
    """Run ``rules`` (stored ``Rule`` rows or transient ones) over ``messages`` as new tickets and
    score "a rule raised it to urgent" against the labels."""
    rule_set = compile_rules(rules)
    report = UrgencyReport(overall=Scores(), tuned=Scores(), held_out=Scores())
    for message in messages:
        facts = MessageFacts.build(
            from_address=_SENDER,
            subject=message.subject,
            body=message.body,
            language=message.language,
            segment=message.segment,
        )
        fired = [f.name for f in rule_set.evaluate(facts) if raises_to_urgent(f)]
        report.overall.add(message, fired)
        (report.held_out if message.held_out else report.tuned).add(message, fired)
    return report


def _scores_line(label: str, scores: Scores) -> str:
    return (
        f"{label:<9} precision {scores.precision:.3f}  recall {scores.recall:.3f}  "
        f"(tp {scores.true_positives}, fp {scores.false_positives}, "
        f"fn {scores.false_negatives}, tn {scores.true_negatives}; {scores.total} messages)"
    )


def format_report(report: UrgencyReport) -> list[str]:
    """The report as lines: the figures overall, on the tuning part and on the held-out part,
    then each misclassified message's subject (and which rule raised a false alarm)."""
    lines = [_scores_line("overall", report.overall)]
    if report.held_out.total:
        lines.append(_scores_line("tuned on", report.tuned))
        lines.append(_scores_line("held out", report.held_out))
    for miss in report.overall.misclassified:
        message = miss.message
        part = " [held out]" if message.held_out else ""
        if miss.rules:
            lines.append(
                f"false alarm{part} (line {message.line}, {message.language}): "
                f"{message.subject!r} ← {', '.join(miss.rules)}"
            )
        else:
            lines.append(
                f"missed{part} (line {message.line}, {message.language}): {message.subject!r}"
            )
    return lines


def print_report(report: UrgencyReport, echo: Callable[[str], Any] = print) -> None:
    for line in format_report(report):
        echo(line)
