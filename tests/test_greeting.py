"""The greeting by the customer's local time of day, in Russian and English."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from templates_replies.greeting import base_language, greeting


@pytest.mark.parametrize(
    ("hour", "minute", "ru", "en"),
    [
        (0, 0, "Добрый вечер", "Good evening"),
        (3, 59, "Добрый вечер", "Good evening"),
        (4, 0, "Доброе утро", "Good morning"),
        (11, 59, "Доброе утро", "Good morning"),
        (12, 0, "Добрый день", "Good afternoon"),
        (16, 59, "Добрый день", "Good afternoon"),
        (17, 0, "Добрый вечер", "Good evening"),
        (23, 59, "Добрый вечер", "Good evening"),
    ],
)
def test_boundaries(hour: int, minute: int, ru: str, en: str) -> None:
    """04:00–11:59 morning, 12:00–16:59 afternoon, the rest evening, to the minute."""
    moment = datetime(2026, 11, 23, hour, minute, tzinfo=ZoneInfo("Europe/Moscow"))
    assert greeting(moment, "ru") == ru
    assert greeting(moment, "en") == en


def test_moscow_and_kamchatka_differ_for_the_same_instant() -> None:
    """One instant, two Russian customers: morning in Moscow, not in Kamchatka (UTC+12)."""
    instant = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)  # 09:00 in Moscow, 18:00 in Kamchatka
    assert greeting(instant.astimezone(ZoneInfo("Europe/Moscow")), "ru") == "Доброе утро"
    assert greeting(instant.astimezone(ZoneInfo("Asia/Kamchatka")), "ru") == "Добрый вечер"
    earlier = datetime(2026, 11, 23, 1, 30, tzinfo=UTC)  # 04:30 Moscow, 13:30 Kamchatka
    assert greeting(earlier.astimezone(ZoneInfo("Europe/Moscow")), "ru") == "Доброе утро"
    assert greeting(earlier.astimezone(ZoneInfo("Asia/Kamchatka")), "ru") == "Добрый день"


def test_uses_the_local_hour_not_utc() -> None:
    """The hour of the given local time counts, whatever UTC says."""
    local = datetime(2026, 11, 23, 21, 0, tzinfo=ZoneInfo("America/New_York"))  # 02:00 UTC next day
    assert greeting(local, "en") == "Good evening"


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("ru", "Доброе утро"),
        ("ru-RU", "Доброе утро"),
        ("RU_ru", "Доброе утро"),
        ("en", "Good morning"),
        ("en-GB", "Good morning"),
        ("de", "Good morning"),
        ("", "Good morning"),
    ],
)
def test_language_variants_and_fallback(language: str, expected: str) -> None:
    """Regional tags map to their language; languages without texts fall back to English."""
    assert greeting(datetime(2026, 11, 23, 9, 0, tzinfo=UTC), language) == expected


def test_base_language() -> None:
    assert [base_language(x) for x in ("ru", "ru-RU", "EN_us", " en ")] == ["ru", "ru", "en", "en"]
