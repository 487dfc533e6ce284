"""Offline spelling check of templates on save (Russian, English): warnings, never errors.

English words are looked up in pyspellchecker's English word-frequency list (~160,000 forms),
with British spellings mapped to the American ones it holds ("colour", "organise").

Russian words are looked up in the OpenCorpora dictionary shipped by pymorphy3 (~5 million word
forms, every inflection of ~400,000 lemmas). pyspellchecker's Russian list has only ~20,000
forms, too few for a language where a noun has a dozen endings: measured on the default library
and the labelled customer messages, it flagged 16 % of the distinct correct words ("подписки",
"сервис", "скачать"), against 0.6 % for OpenCorpora, which also caught more made-up typos (97 %
against 96 %). Without pymorphy3 installed the check falls back to pyspellchecker's list, also
accepting a word whose Snowball stem is that of a listed word ("паролем" ← "пароль").

Not checked: Jinja expressions and blocks, HTML tags and character references, URLs, e-mail
addresses, words with digits or underscores, words shorter than three letters, words in capitals
(acronyms: GDPR, ИНН), capitalised words inside a sentence (names: Gmail, Анна) and words with a
capital after their first letter (brands: iPhone, iOS).
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from spellchecker import SpellChecker

from templates_replies.text import stem, strip_markup, word_set

LANGUAGES = ("ru", "en")

# Words of a support team's trade that the dictionaries lack. Each is a real word, checked by a
# person, not a way to silence a warning. Russian ones match by stem ("тикета" → "тикет"),
# English ones also in the plural.
SUPPORT_VOCABULARY = {
    "ru": word_set(
        """
        тикет дашборд вебхук лог чат-бот фича апдейт
        """
    ),
    "en": word_set(
        """
        admin app autocomplete backend chatbot checkbox dropdown frontend inbox login
        onboarding popup roadmap screenshot signup smartphone subfolder tooltip webhook wifi
        wishlist workspace
        """
    ),
}

# Letters with inner apostrophes or hyphens ("don't", "какой-нибудь") are one word; digits and
# underscores stay attached so such tokens can be skipped whole.
_TOKEN = re.compile(r"\w+(?:['’-]\w+)*")
_URL = re.compile(r"\b(?:https?://|ftp://|www\.)\S+", re.IGNORECASE)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
# Basic Latin and Latin-1 letters ("café").
_LATIN = re.compile(r"[a-zà-öø-ÿ]")
# What may stand between a sentence end and the first word of the next one: spaces, quotes,
# brackets, list bullets.
_LEAD_IN = " \t\"'«“„‘([{*•·>-–—"
_SENTENCE_END = ".!?…"
# British → American endings, for the American list pyspellchecker ships.
_BRITISH = (
    (re.compile(r"is(e|ed|es|ing|ation|ations)$"), r"iz\1"),
    (re.compile(r"ys(e|ed|es|ing)$"), r"yz\1"),
    (re.compile(r"our(s|ed|ing|ful|ite|ites)?$"), r"or\1"),
    (re.compile(r"tre(s)?$"), r"ter\1"),
    (re.compile(r"ence$"), "ense"),
    (re.compile(r"ogue(s)?$"), r"og\1"),
)

_lock = threading.Lock()
_loaded: dict[str, Any] = {}


def _once(key: str, load: Callable[[], Any]) -> Any:
    """Load a dictionary once per process, even when two requests ask for it at the same time
    (each load reads megabytes)."""
    value = _loaded.get(key)
    if value is None:
        with _lock:
            value = _loaded.get(key)
            if value is None:
                value = _loaded[key] = load()
    return value


def _english() -> SpellChecker:
    return _once("en", lambda: SpellChecker(language="en"))


def _russian() -> Callable[[str], bool]:
    """The Russian "is this a word" test: OpenCorpora via pymorphy3, else pyspellchecker."""
    return _once("ru", _load_russian)


def _load_russian() -> Callable[[str], bool]:
    try:
        import pymorphy3
    except ImportError:
        return _russian_fallback()
    # word_is_known folds "ё" to "е" itself and knows hyphenated words ("какой-нибудь").
    return pymorphy3.MorphAnalyzer(lang="ru").word_is_known


def _russian_fallback() -> Callable[[str], bool]:
    checker = SpellChecker(language="ru")
    dictionary = frozenset(word.replace("ё", "е") for word in checker.word_frequency.dictionary)
    stems = frozenset(stem(word) for word in dictionary)

    def known(word: str) -> bool:
        folded = word.replace("ё", "е")
        return folded in dictionary or stem(folded) in stems

    return known


@lru_cache(maxsize=1)
def _russian_vocabulary_stems() -> frozenset[str]:
    return frozenset(stem(word) for word in SUPPORT_VOCABULARY["ru"])


def _known_english(word: str) -> bool:
    vocabulary = SUPPORT_VOCABULARY["en"]
    if word in vocabulary or (word.endswith("s") and word[:-1] in vocabulary):
        return True
    checker = _english()
    if word in checker:
        return True
    return any(
        pattern.search(word) and pattern.sub(replacement, word) in checker
        for pattern, replacement in _BRITISH
    )


def _known(word: str, language: str) -> bool:
    """Whether the lower-cased ``word`` is a word of ``language``."""
    if language == "en":
        return _known_english(word)
    folded = word.replace("ё", "е")
    return _russian()(folded) or stem(folded) in _russian_vocabulary_stems()


def _starts_sentence(text: str, start: int) -> bool:
    before = text[:start].rstrip(_LEAD_IN)
    if not before:
        return True
    # A line break ends a sentence for our purposes: greeting lines, list items, sign-offs.
    return before[-1] in _SENTENCE_END or "\n" in text[len(before) : start]


def _should_check(token: str, text: str, start: int) -> bool:
    if any(char.isdigit() or char == "_" for char in token):
        return False
    if sum(char.isalpha() for char in token) < 3:
        return False
    if token.isupper() or any(char.isupper() for char in token[1:]):
        return False
    return not (token[0].isupper() and not _starts_sentence(text, start))


def _language_for(word: str) -> str | None:
    """The dictionary for ``word``: that of its alphabet, whatever the template's language, as a
    Latin word in a Russian template is an English term or a product and vice versa. Other
    alphabets have no dictionary here (None: not checked)."""
    if _CYRILLIC.search(word):
        return "ru"
    if _LATIN.search(word):
        return "en"
    return None


def misspelled_words(text: str, language: str) -> list[str]:
    """The sorted, unique, lower-cased words of ``text`` that look misspelled.

    ``language`` is "ru" or "en" (a region suffix such as "en-GB" is ignored); any other → [].
    """
    primary = (language or "").replace("_", "-").split("-")[0].lower()
    if primary not in LANGUAGES or not text:
        return []
    # Markup and addresses become spaces, not nothing, so the words around them stay apart and
    # what remains still shows where sentences start.
    text = strip_markup(unicodedata.normalize("NFKC", text))
    text = _EMAIL.sub(" ", _URL.sub(" ", text))
    suspicious: set[str] = set()
    for match in _TOKEN.finditer(text):
        token = match.group().replace("’", "'")
        if not _should_check(token, text, match.start()):
            continue
        word = token.lower()
        word_language = _language_for(word)
        if word_language is None or _known(word, word_language):
            continue
        # A hyphenated word the dictionary lacks whole ("follow-up") passes if each part does.
        parts = [part for part in word.split("-") if part]
        if len(parts) > 1 and all(
            len(part) < 3 or _known(part, _language_for(part) or word_language) for part in parts
        ):
            continue
        suspicious.add(word)
    return sorted(suspicious)
