"""Word-form-normalised phrase matching for the ``words`` / ``not_words`` rule conditions.

A rule author writes phrases the way a person says them ("не проходит оплата", "payment failed");
a customer writes "не проходят платежи" or "our payments are failing". Both sides go through the
same normalisation — markup stripped, NFKC, lower case, "ё" → "е", English contractions expanded,
each word reduced to its Snowball stem (``templates_replies.text.stem``) — and a phrase matches
when its stems occur consecutively in the message's stems.

Unlike ``templates_replies.text.words`` nothing is dropped: "не", "not" and "down" are stop words
for ranking templates but they are the whole point of "не работает" and "site is down".

Negation: a match is ignored when a negator ("не", "нет", "ни", "без", "not", "no", "never",
"nothing", …) stands right before it, optionally with one softener between them ("не очень
срочно", "not that urgent", "not super urgent"). So ``words ["срочно"]`` does not fire on "не
срочно", ``words ["горит"]`` not on "не горит", ``words ["urgent"]`` not on "this is not urgent".
A phrase that itself starts with a negator ("не работает", "not working") is taken as written:
"не работает" still matches in "сайт не работает". Whole-message cues such as "no rush" or "когда
будет время" are not negation of one word; the default rules list them in a ``not_words``
condition instead.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache

from templates_replies.text import stem, strip_markup

# A word is a run of letters or of digits: an error code is a signal ("ошибка 502", "500 error"),
# so unlike template ranking digits are kept; underscores and punctuation separate words.
_WORD = re.compile(r"[^\W\d_]+|\d+")

# English contractions, after lower-casing and folding the typographic apostrophe. "can't" and
# "cannot" become "can not" so one phrase "can not log in" (or "cannot log in") covers all three;
# "'s" after any word becomes "is" ("the site's down" → "site is down"); a possessive read as "is"
# costs nothing for phrase matching since phrases do not contain possessives.
_CONTRACTIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bcan'?t\b|\bcannot\b"), "can not"),
    (re.compile(r"\bwon't\b"), "will not"),
    (re.compile(r"\bain't\b"), "is not"),
    (re.compile(r"\bshan't\b"), "shall not"),
    (re.compile(r"n't\b"), " not"),
    (re.compile(r"'re\b"), " are"),
    (re.compile(r"'ve\b"), " have"),
    (re.compile(r"'ll\b"), " will"),
    (re.compile(r"'m\b"), " am"),
    (re.compile(r"'d\b"), " would"),
    (re.compile(r"'s\b"), " is"),
)
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u02bc": "'", "\u2032": "'", "`": "'"})


def _normalise(text: str) -> str:
    text = strip_markup(unicodedata.normalize("NFKC", text)).lower().replace("ё", "е")
    if "'" in text or "\u2019" in text or "\u02bc" in text or "\u2032" in text or "`" in text:
        text = text.translate(_APOSTROPHES)
    # "cannot" has no apostrophe but is expanded all the same.
    if "'" in text or "cannot" in text:
        for pattern, replacement in _CONTRACTIONS:
            text = pattern.sub(replacement, text)
    return text


def text_stems(text: str) -> tuple[str, ...]:
    """The words of ``text`` in order, each reduced to its Snowball stem (Russian for Cyrillic
    words, English for Latin ones); nothing is dropped."""
    if not text:
        return ()
    return tuple(stem(token) for token in _WORD.findall(_normalise(text)))


# Checked on stems, so every form counts ("ничего", "никогда"); the stems are computed once.
NEGATORS: frozenset[str] = frozenset(
    stem(word)
    for word in (
        "не",
        "нет",
        "ни",
        "без",
        "ничего",
        "никак",
        "никогда",
        "нисколько",
        "отнюдь",
        "not",
        "no",
        "never",
        "nothing",
        "none",
        "neither",
        "nor",
        "without",
        "hardly",
    )
)
# Words that may stand between the negator and the phrase without breaking the negation.
SOFTENERS: frozenset[str] = frozenset(
    stem(word)
    for word in (
        "очень",
        "так",
        "слишком",
        "особо",
        "особенно",
        "сильно",
        "уж",
        "прям",
        "прямо",
        "настолько",
        "то",
        "супер",
        "very",
        "that",
        "so",
        "too",
        "super",
        "particularly",
        "really",
        "terribly",
        "extremely",
        "overly",
        "all",
        "at",
        "an",
        "a",
    )
)


def _negated(stems: Sequence[str], start: int) -> bool:
    """Whether the match beginning at ``start`` is preceded by a negator, directly or through one
    softener ("не очень срочно", "not that urgent", "is not an urgent matter")."""
    if start >= 1 and stems[start - 1] in NEGATORS:
        return True
    if start >= 2 and stems[start - 1] in SOFTENERS:
        if stems[start - 2] in NEGATORS:
            return True
        # Two softeners at most: "not at all urgent", "not so very urgent".
        if start >= 3 and stems[start - 2] in SOFTENERS and stems[start - 3] in NEGATORS:
            return True
    return False


# A phrase compiled: its stems, the phrase as written, whether a negator before it cancels it.
_Entry = tuple[tuple[str, ...], str, bool]


class _Compiled:
    """The matching index of one list of phrases, shared by every ``PhraseSet`` built from the
    same list, with the last answer remembered.

    The default rules repeat one long "it can wait / it is over" list as a ``not_words`` guard in
    every urgency rule; the engine compiles each condition apart, but a message's stems are one
    cached tuple (``MessageFacts``), so sharing the index and its last answer scans a long message
    for that list once instead of once per rule."""

    __slots__ = ("index", "last")

    def __init__(self, phrases: tuple[str, ...]) -> None:
        index: dict[str, list[_Entry]] = {}
        for phrase in phrases:
            stems = text_stems(phrase)
            if not stems:
                # It could never match: refused, so a rule saved with it is a 422 naming it
                # rather than a condition that silently never holds.
                raise ValueError(f"the phrase {phrase!r} has no words")
            negation_applies = stems[0] not in NEGATORS
            index.setdefault(stems[0], []).append((stems, phrase, negation_applies))
        # Longest first, so "payment failed" wins over "payment" at the same position.
        self.index: dict[str, tuple[_Entry, ...]] = {
            first: tuple(sorted(entries, key=lambda entry: -len(entry[0])))
            for first, entries in index.items()
        }
        # (stems, answer) of the last search: a tuple is immutable and held here, so the same
        # object means the same words. One attribute assigned at once: safe across threads.
        self.last: tuple[tuple[str, ...], str | None] | None = None

    def search(self, stems: Sequence[str]) -> str | None:
        last = self.last
        if last is not None and last[0] is stems:
            return last[1]
        index = self.index
        length = len(stems)
        found: str | None = None
        for position, current in enumerate(stems):
            candidates = index.get(current)
            if candidates is None:
                continue
            for phrase_stems, phrase, negation_applies in candidates:
                size = len(phrase_stems)
                end = position + size
                if end > length:
                    continue
                if size > 1 and (
                    # The second word first: most candidates sharing a first word ("не …")
                    # differ there, and comparing one string is cheaper than slicing.
                    stems[position + 1] != phrase_stems[1]
                    or (size > 2 and tuple(stems[position + 2 : end]) != phrase_stems[2:])
                ):
                    continue
                if negation_applies and _negated(stems, position):
                    continue
                found = phrase
                break
            if found is not None:
                break
        if type(stems) is tuple:
            self.last = (stems, found)
        return found


@lru_cache(maxsize=4096)
def _compiled(phrases: tuple[str, ...]) -> _Compiled:
    return _Compiled(phrases)


class PhraseSet:
    """A compiled list of phrases, matched against a message's stems.

    Built once per rule condition (a phrase without any word raises ``ValueError``);
    ``first_match`` walks the message's stems once and, at each position, looks only at the
    phrases starting with that stem (a dict keyed on the first stem), so the cost is
    O(len(stems)) times the few phrases sharing a first word. Sets built from the same phrases
    share one index (see ``_Compiled``).
    """

    __slots__ = ("_compiled", "phrases")

    def __init__(self, phrases: Sequence[str]) -> None:
        self.phrases: tuple[str, ...] = tuple(phrases)
        self._compiled = _compiled(self.phrases)

    def __bool__(self) -> bool:
        return bool(self._compiled.index)

    def __repr__(self) -> str:
        return f"PhraseSet({list(self.phrases)!r})"

    def first_match(self, stems: Sequence[str]) -> str | None:
        """The phrase (as written) matching earliest in ``stems``, or None.

        A match preceded by a negator is skipped (see the module docstring) and the search goes
        on, so "не срочно, но сайт не работает" still matches "не работает".
        """
        if not self._compiled.index:
            return None
        return self._compiled.search(stems)

    def matches(self, stems: Sequence[str]) -> bool:
        return self.first_match(stems) is not None
