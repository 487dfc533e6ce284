"""Word normalisation shared by template suggestions: Russian and English, offline.

``words()`` turns a customer message or a template source into the stems BM25 compares. The same
function serves both sides, so a template's ``{{ customer.first_name }}`` and its HTML markup never
count as words, and "паролем" in a message meets "пароль" in a template.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from functools import lru_cache

import snowballstemmer

# Jinja expressions, statements and comments: variable names and control flow are not the words
# a customer could ever write.
_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
# HTML comments and tags (a tag must start with a letter, "/" or "!" so "a < b" survives) and
# character references. Bodies may be the simple HTML Gmail drafts accept.
_HTML_TAG = re.compile(r"<!--.*?-->|</?[a-zA-Z!][^<>]*>", re.DOTALL)
_HTML_ENTITY = re.compile(r"&(?:#\d+|#x[0-9a-fA-F]+|[a-zA-Z]{2,8});")
# A word is a run of letters: digits, underscores and punctuation separate words.
_WORD = re.compile(r"[^\W\d_]+")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_LATIN = re.compile(r"[a-z]")


def word_set(text: str) -> frozenset[str]:
    """The whitespace-separated words of ``text``: word lists written as prose."""
    return frozenset(text.split())


# Function words, pronouns and the salutations/sign-offs every message carries: they say nothing
# about which answer fits. Checked before stemming, after "ё" → "е".
RUSSIAN_STOP_WORDS = word_set(
    """
    а без более бы был была были было быть в вам вас весь во вот все всего всех вы где да даже
    для до его ее если есть еще же за здесь и из или им их к как какой когда кто ли либо между
    меня мне мной мое могу может мой мы на над нам нас не него нее нет ни них но ну о об однако
    он она они оно от очень по под после при про с со так также такой там те тем то того тоже
    той только том ты у уже хотя чем что чтобы чье эта эти это этот я
    будет будут вообще впрочем всегда именно конечно можно нужно поэтому потому
    просто раз сейчас тогда тут
    здравствуйте здравствуй привет добрый доброе добрая день утро вечер уважаемый уважаемая
    уважением доброго хорошего пожалуйста
    """
)
ENGLISH_STOP_WORDS = word_set(
    """
    a about above after again all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had
    has have having he her here hers him his how i if in into is it its itself just me more most
    my no nor not now of off on once only or other our ours out over own same she should so some
    such than that the their them then there these they this those through to too under until
    up very was we were what when where which while who whom why will with would you your yours
    also already anyway even ever get got let like may might must one since still
    us well yet
    hello hi hey dear regards best kind sincerely cheers please
    s t d ll m re ve http https www com
    """
)
STOP_WORDS = RUSSIAN_STOP_WORDS | ENGLISH_STOP_WORDS

# Snowball stemmers keep per-call state, and routes run in a thread pool: one lock per stemmer.
_STEMMERS = {
    "russian": (snowballstemmer.stemmer("russian"), threading.Lock()),
    "english": (snowballstemmer.stemmer("english"), threading.Lock()),
}


@lru_cache(maxsize=65_536)
def stem(word: str) -> str:
    """Stem one lower-cased word with the stemmer of its script (Cyrillic → Russian, Latin →
    English); other scripts are kept as they are."""
    if _CYRILLIC.search(word):
        algorithm = "russian"
    elif _LATIN.search(word):
        algorithm = "english"
    else:
        return word
    stemmer, lock = _STEMMERS[algorithm]
    with lock:
        return stemmer.stemWord(word)


def strip_markup(text: str) -> str:
    """Replace Jinja blocks, HTML tags and character references with spaces."""
    text = _JINJA.sub(" ", text)
    text = _HTML_TAG.sub(" ", text)
    return _HTML_ENTITY.sub(" ", text)


def words(text: str) -> list[str]:
    """The stems of ``text`` in order, stop words and one-letter words dropped.

    NFKC first so full-width letters and ligatures ("ﬁ") become ordinary ones; "ё" is folded to
    "е" because Russian writers use the two interchangeably.
    """
    if not text:
        return []
    normalised = strip_markup(unicodedata.normalize("NFKC", text)).lower().replace("ё", "е")
    return [
        stem(token)
        for token in _WORD.findall(normalised)
        if len(token) > 1 and token not in STOP_WORDS
    ]
