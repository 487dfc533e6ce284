"""app/rules/words.py: word-form-normalised phrase matching for the ``words`` rule conditions."""

from __future__ import annotations

import time

import pytest

from app.rules.words import PhraseSet, text_stems


def match(phrases: list[str], text: str) -> str | None:
    return PhraseSet(phrases).first_match(text_stems(text))


@pytest.mark.parametrize(
    ("phrase", "text"),
    [
        # Russian: number, tense, case and word order within the phrase as written.
        ("не работает", "У нас не работают уведомления"),
        ("не работает", "Вчера весь день не работал сайт"),
        ("перестал работать", "Вход перестали работать у всех"),
        ("не проходит оплата", "С утра не проходят оплаты картой"),
        ("теряем", "Мы теряем клиентов каждую минуту"),
        ("горит", "Горят сроки по акции"),
        ("срочно", "Нужен СРОЧНЫЙ возврат"),
        ("списали дважды", "С карты списали дважды"),
        # English: plurals, tenses, contractions (’ and ').
        ("payment failed", "All payments failing since noon"),
        ("payment failed", "Every card payment fails"),
        ("can not log in", "I can’t log in"),
        ("can not log in", "We cannot log in to the dashboard"),
        ("can not log in", "we can't log in"),
        ("is down", "The site's down again"),
        ("not working", "Checkout isn't working"),
        ("losing money", "We are losing money"),
        ("urgent", "Please handle this urgently"),
    ],
)
def test_inflected_forms_match(phrase: str, text: str) -> None:
    assert match([phrase], text) == phrase


@pytest.mark.parametrize(
    ("phrase", "text"),
    [
        # The words are there but not one after the other.
        ("payment failed", "The payment went through, but the parcel failed to arrive"),
        ("не проходит оплата", "Оплата проходит, но заказ не создается"),
        ("сайт лежит", "Лежит посылка на почте, а сайт показывает другое"),
        # A different word that only shares letters.
        ("is down", "How does the down payment work?"),
        ("горит", "Когда сгорают бонусные баллы?"),
        ("теряем", "Посылка потерялась"),
    ],
)
def test_a_phrase_needs_its_words_consecutively(phrase: str, text: str) -> None:
    assert match([phrase], text) is None


def test_yo_is_folded_both_ways() -> None:
    assert match(["всё сломалось"], "у нас все сломалось") == "всё сломалось"
    assert match(["все сломалось"], "У нас ВСЁ сломалось") == "все сломалось"
    assert text_stems("ещё") == text_stems("еще")


def test_markup_and_entities_are_not_words() -> None:
    assert text_stems("<p><b>Срочно</b>&nbsp;нужна помощь</p>") == text_stems("Срочно нужна помощь")
    assert match(["payment failed"], "<div>payment</div><div>failed</div>") == "payment failed"
    assert match(["span"], "<span>ok</span>") is None


def test_digits_are_words_and_nothing_is_dropped() -> None:
    # Stop words of template ranking ("не", "down", "not") carry the meaning here.
    assert text_stems("Не работает, site is down, not working") == (
        "не",
        "работа",
        "site",
        "is",
        "down",
        "not",
        "work",
    )
    assert match(["ошибка 502"], "Сайт выдает ошибку 502 с утра") == "ошибка 502"
    assert match(["ошибка 502"], "Сайт выдает ошибку 503") is None


@pytest.mark.parametrize(
    ("phrase", "text"),
    [
        ("срочно", "Не срочно, просто вопрос"),
        ("срочно", "Это не очень срочно"),
        ("срочно", "ничего срочного, спасибо"),
        ("горит", "Документы нужны к концу месяца, так что не горит"),
        ("urgent", "Not urgent, whenever you have time"),
        ("urgent", "It isn't urgent"),
        ("urgent", "This is not that urgent"),
        ("urgent", "not at all urgent"),
        ("urgent", "Nothing urgent, just planning ahead"),
        ("is down", "The site is not down, only slow"),
    ],
)
def test_a_negated_phrase_does_not_count(phrase: str, text: str) -> None:
    assert match([phrase], text) is None


def test_negation_is_local() -> None:
    # A negated occurrence is skipped but a later plain one still counts …
    assert match(["срочно"], "Раньше было не срочно, а теперь срочно!") == "срочно"
    # … a phrase that itself starts with a negator is taken as written …
    assert match(["не работает"], "Не срочно, но сайт не работает") == "не работает"
    assert match(["not working"], "Checkout is not working") == "not working"
    # … and a negator further away does not negate.
    assert match(["urgent"], "No idea why, but this is urgent") == "urgent"


def test_first_match_is_the_earliest_and_the_longest_at_a_position() -> None:
    phrases = PhraseSet(["outage", "payment", "payment failed"])
    assert phrases.first_match(text_stems("Payment failed during the outage")) == ("payment failed")
    assert phrases.first_match(text_stems("An outage: payment failed")) == "outage"
    assert phrases.first_match(text_stems("A payment question")) == "payment"


def test_empty_inputs() -> None:
    assert text_stems("") == ()
    assert PhraseSet([]).first_match(text_stems("срочно")) is None
    assert not PhraseSet([])
    with pytest.raises(ValueError, match="'!!!' has no words"):
        PhraseSet(["срочно", "!!!"])
    assert PhraseSet(["срочно"]).first_match(()) is None


def test_matching_is_linear_in_the_text() -> None:
    """Built once, a phrase set of a few hundred phrases walks a long message once: a 20,000-word
    body is matched in well under the sync's budget (generous bound for a loaded machine)."""
    phrases = PhraseSet([f"сигнал номер {i}" for i in range(300)] + ["payment failed"])
    stems = text_stems("обычное письмо про заказ и доставку " * 3_000 + "payment failed")
    started = time.perf_counter()
    for _ in range(10):
        assert phrases.first_match(stems) == "payment failed"
    assert (time.perf_counter() - started) / 10 < 0.05
