"""Rank reply templates for a customer's message: BM25 over stems, blended with usage history.

Two Okapi BM25 indexes are built over the same candidates:

* **text** — each template's own words (name + subject + body source);
* **usage** — the customer messages each template was inserted for earlier, concatenated into one
  document per template.

Each index's scores are divided by that query's best score, so both lie in [0, 1] and the best
template of each gets 1. The blend is ``TEXT_WEIGHT * text + USAGE_WEIGHT * usage`` (0.7 / 0.3) when
the message resembles some past message, and text alone otherwise.

Why 0.7 / 0.3: the template's text is curated and always there; usage history is sparse, noisy
(an agent inserts a template and then rewrites it, excerpts carry quoted history) and feeds on
itself (what is suggested gets used, so gets suggested). At 0.3 the history can overturn a close
text race — two templates within 0.3 of each other — which is exactly the ambiguous message it is
for, but never a clear text winner. Measured on the labelled set (tests/data/
template_suggestions.json), each half serving as the other's history: text alone 64 % top-1 /
89 % top-3; 0.3 gives 68 % / 89 %; 0.4 gives 69 % / 88 % and 0.5 68 % / 87 %, so past 0.3 the
top-3 figure, the one an agent sees, starts to fall.

BM25 is written out here rather than taken from a package: it is thirty lines, and the usage blend
and the precomputed posting weights (rank() is a dictionary walk, no per-query arithmetic over
documents that share no word with the message) are what make 500 templates fit in 20 ms.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from templates_replies.text import words

# Okapi BM25 parameters, the usual ones (Robertson & Zaragoza, "The Probabilistic Relevance
# Framework: BM25 and Beyond", 2009): k1 saturates term frequency, b normalises document length.
K1 = 1.2
B = 0.75
TEXT_WEIGHT = 0.7
USAGE_WEIGHT = 0.3
# A forwarded thread can be megabytes; the first 20,000 characters say what the customer wants and
# keep rank() within its time budget.
MAX_MESSAGE_CHARS = 20_000

# The RFC 3676 §4.3 signature separator ("-- " alone on a line): what follows is a signature.
_SIGNATURE = re.compile(r"^-- ?$", re.MULTILINE)
# Reply quotes (RFC 3676 §4.5 "> " lines) and the "On … wrote:" line that introduces them.
_QUOTE_LINE = re.compile(r"^\s*>.*$", re.MULTILINE)
_ATTRIBUTION = re.compile(
    r"^.{0,200}(?:wrote|писал|написал|написала|пишет)(?:\(а\))?:\s*$", re.MULTILINE | re.IGNORECASE
)


@dataclass(frozen=True)
class Candidate:
    """A template to rank: ``text`` is name + subject + body source; ``answered`` the customer
    messages it was inserted for (most recent first)."""

    template_id: int
    text: str
    answered: tuple[str, ...] = ()


@dataclass(frozen=True)
class Suggestion:
    template_id: int
    score: float
    text_score: float
    usage_score: float


def message_body(message: str) -> str:
    """The customer's own words: quoted earlier messages and the signature removed.

    Quoted lines are usually our previous reply — the very template used last time — so they
    would vote for it whatever the customer now asks. A message that is nothing but a quote (a
    forward quoted with ">") keeps its quote, as that is all there is.
    """
    text = message[:MAX_MESSAGE_CHARS]
    signature = _SIGNATURE.search(text)
    if signature:
        text = text[: signature.start()]
    own = _ATTRIBUTION.sub("", _QUOTE_LINE.sub("", text))
    return own if own.strip() else text


class _Bm25:
    """An inverted index: stem → [(document number, BM25 term weight without the IDF)], and the
    IDF per stem, so a query costs one dictionary walk per distinct query stem."""

    def __init__(self, documents: Sequence[list[str]]) -> None:
        count = len(documents)
        lengths = [len(document) for document in documents]
        average = (sum(lengths) / count) if count else 0.0
        postings: dict[str, list[tuple[int, float]]] = {}
        for number, document in enumerate(documents):
            if not document:
                continue
            norm = K1 * (1 - B + B * len(document) / average)
            for term, frequency in Counter(document).items():
                weight = frequency * (K1 + 1) / (frequency + norm)
                postings.setdefault(term, []).append((number, weight))
        # The "+1" IDF (Lucene's) stays positive for stems found in more than half the documents.
        self.idf = {
            term: math.log(1 + (count - len(found) + 0.5) / (len(found) + 0.5))
            for term, found in postings.items()
        }
        self.postings = postings
        self.empty = not postings

    def scores(self, query: Iterable[str]) -> dict[int, float]:
        """Document number → raw BM25 score, for the documents sharing a stem with the query.

        Each distinct query stem counts once: a customer repeating "refund" five times is not five
        times more about refunds.
        """
        result: dict[int, float] = {}
        for term in query:
            found = self.postings.get(term)
            if found is None:
                continue
            idf = self.idf[term]
            for number, weight in found:
                result[number] = result.get(number, 0.0) + idf * weight
        return result


def _normalised(scores: dict[int, float]) -> dict[int, float]:
    best = max(scores.values(), default=0.0)
    if best <= 0:
        return {}
    return {number: score / best for number, score in scores.items()}


class TemplateIndex:
    """Built once per set of templates (the caller may cache it); ``rank`` is the hot path."""

    def __init__(self, candidates: Sequence[Candidate]) -> None:
        self._ids = [candidate.template_id for candidate in candidates]
        self._text = _Bm25([words(candidate.text) for candidate in candidates])
        self._usage = _Bm25([words(" ".join(candidate.answered)) for candidate in candidates])

    def __len__(self) -> int:
        return len(self._ids)

    def with_answered(self, answered: Mapping[int, Sequence[str]]) -> TemplateIndex:
        """The same templates with another usage history: the text index (the costly part) is
        shared, so a recorded use costs an index of the answered messages only."""
        index = object.__new__(TemplateIndex)
        index._ids = self._ids
        index._text = self._text
        index._usage = _Bm25([words(" ".join(answered.get(i, ()))) for i in self._ids])
        return index

    def rank(self, message: str, *, limit: int = 3) -> list[Suggestion]:
        """The ``limit`` best templates for ``message``, best first, ties by template id.

        Templates sharing no word with the message are left out (a score of 0 suggests
        nothing), so fewer than ``limit`` may come back; an empty message gives [].
        """
        if limit <= 0 or not self._ids or not message:
            return []
        query = set(words(message_body(message)))
        if not query:
            return []
        text = _normalised(self._text.scores(query))
        usage = {} if self._usage.empty else _normalised(self._usage.scores(query))
        text_weight, usage_weight = (TEXT_WEIGHT, USAGE_WEIGHT) if usage else (1.0, 0.0)
        blended = [
            Suggestion(
                template_id=self._ids[number],
                score=min(
                    1.0,
                    text_weight * text.get(number, 0.0) + usage_weight * usage.get(number, 0.0),
                ),
                text_score=text.get(number, 0.0),
                usage_score=usage.get(number, 0.0),
            )
            for number in text.keys() | usage.keys()
        ]
        blended.sort(key=lambda suggestion: (-suggestion.score, suggestion.template_id))
        return blended[:limit]
