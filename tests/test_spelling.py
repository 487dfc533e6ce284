"""Spelling check of templates: real typos found, correct text, variables and names left alone."""

from __future__ import annotations

import pytest

from templates_replies.spelling import _russian_fallback, misspelled_words

RUSSIAN_TEXT = (
    "Добрый день!\n\n"
    "Спасибо, что написали нам. Мы проверили вашу подписку: списание прошло по ошибке, и мы уже "
    "оформили возврат. Деньги вернутся на карту в течение нескольких рабочих дней. Если у вас "
    "остались вопросы, просто ответьте на это письмо — мы всё подробно объясним.\n\n"
    "С уважением,\nслужба поддержки"
)
ENGLISH_TEXT = (
    "Hello,\n\n"
    "Thank you for getting in touch. We have checked your subscription: the payment was taken by "
    "mistake, and we have already issued a refund. The money should reach your card within a "
    "few business days. If anything is still unclear, just reply to this email and we'll "
    "explain everything in detail.\n\n"
    "Kind regards,\nthe support team"
)


def test_correct_russian_and_english_text_is_clean() -> None:
    """Ordinary support prose in either language, every inflection, gives no warning."""
    assert misspelled_words(RUSSIAN_TEXT, "ru") == []
    assert misspelled_words(ENGLISH_TEXT, "en") == []


@pytest.mark.parametrize(
    ("text", "language", "expected"),
    [
        ("Превет! Мы получили ваше письмо.", "ru", ["превет"]),
        ("Мы обезательно ответим вам завтра.", "ru", ["обезательно"]),
        ("We did not recieve your payment.", "en", ["recieve"]),
        ("Your acount will be updated tomorow.", "en", ["acount", "tomorow"]),
        # A typo at the start of a sentence is capitalised and still checked.
        ("Recieve our thanks. Превет.", "en", ["recieve", "превет"]),
    ],
)
def test_real_typos_are_found(text: str, language: str, expected: list[str]) -> None:
    """Typos come back lower-cased, sorted and unique."""
    assert misspelled_words(text, language) == expected


def test_result_is_sorted_unique_and_lower_cased() -> None:
    """One warning per word however often and however cased it is written."""
    text = "Tomorow we will recieve it. Recieve, recieve! And tomorow too."
    assert misspelled_words(text, "en") == ["recieve", "tomorow"]


def test_variables_markup_addresses_and_names_are_not_checked() -> None:
    """Jinja (even misspelled names in it), HTML, URLs, e-mails, names inside a sentence,
    acronyms, brand casing, short words and words with digits are never flagged."""
    text = (
        "{{ greeting }}, {{ customer.frist_nmae }}! {% if agnet.signatur %}x{% endif %}{# notte #}"
        '<p class="grretings">Please contact Kowalczyk or Shevchenko at '
        "support@exmaple.test or https://exmaple.test/pasword-resett.</p> "
        "GDPR and SMTPS apply to iPhone and macOS users; ticket x9z7 has id abc123 and xq."
    )
    assert misspelled_words(text, "en") == []
    russian = (
        "{{ greeting }}, {{ customer.first_name }}! Вам напишет Чеботарёв из отдела ЦРМ, "
        "ИНН и КПП указаны в счёте."
    )
    assert misspelled_words(russian, "ru") == []


def test_each_word_meets_the_dictionary_of_its_alphabet() -> None:
    """A Latin word in a Russian template is checked as English and vice versa."""
    assert misspelled_words("Мы используем сервис для recieve писем.", "ru") == ["recieve"]
    assert misspelled_words("Our partner says превет to everyone.", "en") == ["превет"]
    assert misspelled_words("Мы используем e-mail и follow-up письма.", "ru") == []


def test_british_spellings_are_accepted() -> None:
    """The English list is American; British spellings of the same words are not typos."""
    text = "We apologise: the colour of the centre button will be analysed and organised."
    assert misspelled_words(text, "en") == []


def test_unknown_or_empty_language_gives_nothing_and_region_is_ignored() -> None:
    """Only ru and en are checked; "en-GB" / "ru_RU" are their languages."""
    assert misspelled_words("Превет, we did not recieve it", "de") == []
    assert misspelled_words("Превет, we did not recieve it", "") == []
    assert misspelled_words("We did not recieve it", "en-GB") == ["recieve"]
    assert misspelled_words("Превет", "ru_RU") == ["превет"]
    assert misspelled_words("", "en") == []


def test_russian_fallback_list_accepts_inflections_and_catches_typos() -> None:
    """Without pymorphy3, pyspellchecker's short Russian list plus Snowball stems still accept
    inflected forms it lacks and flag a typo in a stem."""
    known = _russian_fallback()
    assert known("паролем"), "the list has 'пароль' only; the stem matches"
    assert known("привет")
    assert not known("превет")
