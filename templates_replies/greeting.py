"""The greeting of a reply, by the time of day where the customer is.

The caller passes the customer's local time (see ``context.customer_zone``): Russia alone spans
eleven time zones, so a Moscow "Доброе утро" is wrong in Kamchatka.
"""

from __future__ import annotations

from datetime import datetime

_GREETINGS = {
    "ru": ("Доброе утро", "Добрый день", "Добрый вечер"),
    "en": ("Good morning", "Good afternoon", "Good evening"),
}


def base_language(language: str) -> str:
    """``ru`` for ``ru``, ``ru-RU`` or ``RU_ru``; what our texts are keyed by."""
    return language.strip().replace("_", "-").split("-", 1)[0].lower()


def greeting(local_time: datetime, language: str) -> str:
    """04:00–11:59 morning, 12:00–16:59 afternoon, else evening; languages other than ru → en."""
    morning, afternoon, evening = _GREETINGS.get(base_language(language), _GREETINGS["en"])
    hour = local_time.hour
    if 4 <= hour < 12:
        return morning
    if 12 <= hour < 17:
        return afternoon
    return evening
