"""Template suggestions: word normalisation, BM25 ranking, the usage blend, accuracy and speed."""

from __future__ import annotations

import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from templates_replies.defaults import default_templates
from templates_replies.ranking import Candidate, TemplateIndex, message_body
from templates_replies.text import words

LABELLED = Path(__file__).parent / "data" / "template_suggestions.json"


def _template_text(template: dict[str, Any]) -> str:
    # As the service builds it: name + subject + body source.
    return "\n".join([template["name"], template["subject"] or "", template["body"]])


def _library() -> tuple[list[dict[str, Any]], dict[tuple[str, str], int]]:
    templates = default_templates()
    ids = {(t["shortcut"], t["language"]): number for number, t in enumerate(templates)}
    return templates, ids


def _index(answered: dict[int, tuple[str, ...]] | None = None) -> TemplateIndex:
    templates, _ = _library()
    return TemplateIndex(
        [
            Candidate(number, _template_text(t), (answered or {}).get(number, ()))
            for number, t in enumerate(templates)
        ]
    )


# ------------------------------------------------------------------------------------ words()


def test_words_fold_case_yo_and_inflections_to_one_stem() -> None:
    """Case, "ё" and Russian/English inflections meet: "Паролем"/"пароля" and "refunds"/"refunded"
    give one stem each, so a message matches a template however either is worded."""
    assert len(set(words("ПАРОЛЬ паролем пароля"))) == 1
    assert len(set(words("refund refunds refunded"))) == 1
    assert words("ёлка") == words("елка")


def test_words_drop_jinja_html_stop_words_and_normalise_width() -> None:
    """Variables, tags, entities and stop words are no words; full-width letters are NFKC'd."""
    source = (
        "{{ greeting }}, {{ customer.first_name }}! {% if ticket.due %}{# note #}{% endif %}"
        "<p class='x'>Здравствуйте, <b>пароль</b>&nbsp;&#169;</p> and the ｒｅｆｕｎｄ"
    )
    assert words(source) == [*words("пароль"), *words("refund")]
    assert words("a < b > c") == [], "one-letter words go; '<' alone is no tag"
    assert words("") == []


# ------------------------------------------------------------------------------------- rank()


def test_empty_message_no_candidates_or_no_shared_word_give_nothing() -> None:
    """Nothing to rank, nothing to rank by, or nothing in common → []."""
    index = _index()
    assert index.rank("") == []
    assert index.rank("   \n> \n") == []
    assert index.rank("{{ customer.name }} <br> and the of", limit=3) == []
    assert index.rank("zzqx wvvk", limit=3) == []
    assert index.rank("refund", limit=0) == []
    assert TemplateIndex([]).rank("refund please") == []


def test_rank_best_first_scores_in_unit_interval_limit_respected() -> None:
    """Best first, the best normalised to 1, every score in [0, 1], at most `limit` back."""
    suggestions = _index().rank("How do I reset my password? I forgot it.", limit=5)
    assert 1 <= len(suggestions) <= 5
    assert suggestions[0].score == pytest.approx(1.0)
    scores = [s.score for s in suggestions]
    assert scores == sorted(scores, reverse=True)
    for suggestion in suggestions:
        assert 0.0 <= suggestion.score <= 1.0
        assert 0.0 <= suggestion.text_score <= 1.0
        assert suggestion.usage_score == 0.0, "no history given"
    _, ids = _library()
    assert suggestions[0].template_id == ids[("password", "en")]


def test_ties_are_broken_by_template_id() -> None:
    """Identical templates score alike; the lower id comes first whatever the input order."""
    index = TemplateIndex(
        [
            Candidate(9, "Refund of your payment"),
            Candidate(4, "Refund of your payment"),
            Candidate(6, "Something about passwords"),
        ]
    )
    suggestions = index.rank("I want a refund of my payment")
    assert [s.template_id for s in suggestions] == [4, 9]
    assert suggestions[0].score == suggestions[1].score


def test_russian_message_meets_russian_template_through_inflection() -> None:
    """A message in one case form finds the template written in another."""
    _, ids = _library()
    top = _index().rank("Не приходит письмо для сброса паролей на почту", limit=1)
    assert [s.template_id for s in top] == [ids[("password", "ru")]]


def test_quoted_earlier_reply_and_signature_do_not_vote() -> None:
    """The customer's own words decide; our quoted reply (a password answer) and a signature full
    of billing words do not — unless the quote is all there is."""
    _, ids = _library()
    message = (
        "Thanks, that fixed it, all works now. You can close this.\n\n"
        "On Mon, 3 Jun 2024, Support <help@shop.test> wrote:\n"
        "> Open the sign-in page, click Forgot password and choose a new password.\n"
        "> The reset link is valid for one hour.\n"
        "-- \n"
        "Jane, Billing and invoices, refunds department\n"
    )
    assert "password" not in message_body(message)
    assert "invoices" not in message_body(message)
    top = _index().rank(message, limit=1)
    assert [s.template_id for s in top] == [ids[("close", "en")]]

    only_quote = "> How do I reset my forgotten password?\n> I cannot log in."
    assert message_body(only_quote) == only_quote
    top = _index().rank(only_quote, limit=1)
    assert [s.template_id for s in top] == [ids[("password", "en")]]


# ---------------------------------------------------------------------------- usage history


def test_usage_history_decides_a_message_ambiguous_by_text() -> None:
    """Text alone puts "invoice" narrowly ahead of "refund" for a money-taken message; once
    refund was the template used on similar messages, refund comes first. And the other way
    round for a message where text favours refund — so it is the history, not the wording."""
    _, ids = _library()
    invoice, refund = ids[("invoice", "en")], ids[("refund", "en")]

    message = "You took money from my card again this month"
    text_only = _index().rank(message, limit=2)
    assert [s.template_id for s in text_only] == [invoice, refund]
    assert text_only[1].score > 0.7, "ambiguous: the two are close by text"

    history = {
        refund: (
            "you took money from my card after I cancelled, give it back",
            "money was taken from my card twice this month",
        ),
        invoice: ("please send the invoice with our company address",),
    }
    with_history = _index(history).rank(message, limit=2)
    assert with_history[0].template_id == refund
    assert with_history[0].usage_score == pytest.approx(1.0)
    assert with_history[0].score > with_history[1].score

    message = "I was charged again"
    assert _index().rank(message, limit=1)[0].template_id == refund
    history = {invoice: ("charged again this month, which invoice is that charge for?",)}
    assert _index(history).rank(message, limit=1)[0].template_id == invoice


def test_history_unrelated_to_the_message_leaves_text_ranking_alone() -> None:
    """Usage that shares no word with the message does not dilute the text score (text only)."""
    _, ids = _library()
    history = {ids[("refund", "en")]: ("money back please",)}
    plain = _index().rank("I forgot my password", limit=3)
    blended = _index(history).rank("I forgot my password", limit=3)
    assert plain == blended


# ---------------------------------------------------------------------- the labelled set


def _labelled_pairs() -> list[dict[str, Any]]:
    return json.loads(LABELLED.read_text(encoding="utf-8"))["pairs"]


def test_labelled_set_is_big_varied_and_points_at_real_templates() -> None:
    """≥ 60 pairs, both languages, ≥ 8 different templates, each one in the default library."""
    pairs = _labelled_pairs()
    _, ids = _library()
    assert len(pairs) >= 60
    assert {p["language"] for p in pairs} == {"ru", "en"}
    assert len({(p["shortcut"], p["language"]) for p in pairs}) >= 16
    assert len({p["shortcut"] for p in pairs}) >= 8
    for pair in pairs:
        assert (pair["shortcut"], pair["language"]) in ids
        assert pair["message"].strip()
    assert len({p["message"] for p in pairs}) == len(pairs), "no duplicate messages"


def test_right_template_is_in_the_top_three_for_at_least_80_percent() -> None:
    """The issue's bar: on the labelled set the right template is in the top 3 for ≥ 80 %."""
    pairs = _labelled_pairs()
    _, ids = _library()
    index = _index()
    hits: dict[str, list[tuple[bool, bool]]] = {"all": [], "held_out": []}
    for pair in pairs:
        expected = ids[(pair["shortcut"], pair["language"])]
        ranked = [s.template_id for s in index.rank(pair["message"], limit=3)]
        hit = (bool(ranked) and ranked[0] == expected, expected in ranked)
        hits["all"].append(hit)
        if pair["held_out"]:
            hits["held_out"].append(hit)
    for name, results in hits.items():
        top1 = sum(h[0] for h in results) / len(results)
        top3 = sum(h[1] for h in results) / len(results)
        print(  # noqa: T201 - the figures (pytest -s shows them)
            f"template suggestions ({name}, n={len(results)}): top-1 {top1:.1%}, top-3 {top3:.1%}"
        )
    top3_all = sum(h[1] for h in hits["all"]) / len(hits["all"])
    assert top3_all >= 0.80


def test_usage_history_from_half_the_set_does_not_hurt_the_other_half() -> None:
    """Two-fold: the pairs of one half become the history of their templates; ranking the other
    half with it is at least as good in the top 3 as text alone, and better at the top."""
    pairs = _labelled_pairs()
    _, ids = _library()
    halves = (pairs[0::2], pairs[1::2])
    with_history = [0, 0]
    text_only = [0, 0]
    for history_half, test_half in (halves, halves[::-1]):
        history: dict[int, list[str]] = {}
        for pair in history_half:
            history.setdefault(ids[(pair["shortcut"], pair["language"])], []).append(
                pair["message"]
            )
        blended_index = _index({k: tuple(v) for k, v in history.items()})
        plain_index = _index()
        for pair in test_half:
            expected = ids[(pair["shortcut"], pair["language"])]
            for index, tally in ((blended_index, with_history), (plain_index, text_only)):
                ranked = [s.template_id for s in index.rank(pair["message"], limit=3)]
                tally[0] += bool(ranked) and ranked[0] == expected
                tally[1] += expected in ranked
    print(f"top-1/top-3 text only {text_only}, with history {with_history} of {len(pairs)}")  # noqa: T201
    assert with_history[1] >= text_only[1]
    assert with_history[0] > text_only[0]


# ----------------------------------------------------------------------------------- speed


def test_rank_over_500_templates_within_20_ms_at_p95() -> None:
    """The issue's budget: suggestions over 500 templates, p95 ≤ 20 ms (index built once)."""
    rng = random.Random(4)
    templates, _ = _library()
    pairs = _labelled_pairs()
    messages = [p["message"] for p in pairs]
    vocabulary = " ".join(t["body"] for t in templates).split()
    candidates = [
        Candidate(
            number,
            _template_text(templates[number % len(templates)])
            + " ".join(rng.choices(vocabulary, k=rng.randint(50, 250))),
            tuple(rng.sample(messages, rng.randint(0, 20))),
        )
        for number in range(500)
    ]
    index = TemplateIndex(candidates)
    forwarded = "---------- Forwarded message ---------\n" + "\n".join(messages * 3)
    queries = [*messages, forwarded]
    timings = []
    for message in queries * 3:
        started = time.perf_counter()
        index.rank(message, limit=3)
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    p95 = timings[int(len(timings) * 0.95) - 1]
    median = statistics.median(timings)
    print(f"rank over 500 templates: p50 {median:.2f} ms, p95 {p95:.2f} ms")  # noqa: T201
    assert p95 <= 20.0
