"""IANA time zone names, checked once where they enter the system."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.errors import ValidationFailed


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationFailed(
            f"unknown time zone {name!r}: use an IANA name such as Europe/Moscow",
            code="unknown_timezone",
        ) from exc
    return name
