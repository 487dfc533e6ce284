"""Business calendars and business-time arithmetic: pure functions, no database.

**What counts as business time** (the definition the tests' minute-by-minute reference
implements): an instant is business time when its wall-clock time in the calendar's zone lies in one
of the intervals ``[start, end)`` of its local weekday and its local date is not a holiday. Minutes
are real elapsed minutes, never differences of wall-clock readings. Across DST this means:

- *Spring forward* (e.g. Berlin 2026-03-29, 02:00 → 03:00): the skipped wall times never occur, so
  they hold no business time. An interval ``[02:30, 04:00)`` that day holds 03:00–04:00 (60 real
  minutes); an interval wholly inside the gap holds nothing.
- *Fall back* (e.g. New York 2026-11-01, 02:00 → 01:00): the repeated wall times occur twice and
  count twice. ``[00:00, 03:00)`` that day holds four real hours; an interval that starts or ends
  inside the repeated hour holds its part of both passes.
- Holidays close whole local days (00:00 to 24:00 wall time).

**How**: time is handled as integer microseconds since the epoch. The zone's UTC offset is constant
between transitions; the walk finds the next transition by probing a week ahead and bisecting to
the second, and inside a constant-offset stretch turns the weekly intervals of each local day into
UTC spans by plain subtraction. Adding 10,000 business minutes walks about a month of days, never
minute by minute: about 45 µs in all. A calendar with no business time within
``SEARCH_LIMIT_DAYS`` of where a search starts raises ``NoBusinessTime`` instead of looping.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.errors import ValidationFailed

if TYPE_CHECKING:
    from app.sla.models import BusinessCalendar

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# A search for business time gives up after this many days without any (a calendar whose every
# day is a holiday, or with no hours at all): an error, never an endless loop.
SEARCH_LIMIT_DAYS = 400
# Country holidays are resolved for this many years either side of the current one.
HOLIDAY_YEARS_AROUND = 10

_US = 1_000_000
_MINUTE = 60 * _US
_DAY = 86_400 * _US
_WEEK_SECONDS = 7 * 86_400
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_ONE_US = timedelta(microseconds=1)


class NoBusinessTime(ValidationFailed):
    """The calendar has no business time within ``SEARCH_LIMIT_DAYS`` of the start."""

    code = "calendar_never_open"


@dataclass(frozen=True)
class Calendar:
    """When a team works. ``weekly_hours``: weekday (0 = Monday) → local ``[start, end)``
    intervals; an ``end`` of ``time.max`` stands for 24:00. Overlapping intervals are merged.
    ``holidays``: local dates closed all day (country holidays ∪ custom dates)."""

    timezone: str
    weekly_hours: Mapping[int, tuple[tuple[time, time], ...]]
    holidays: frozenset[date] = frozenset()
    _plan: _Plan = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_plan", _Plan.build(self))

    def __hash__(self) -> int:
        # ``weekly_hours`` is a mapping (unhashable); the normalized plan says the same.
        return hash((self.timezone, self._plan.days, self._plan.holidays))

    @classmethod
    def always_open(cls) -> Calendar:
        """24×7, no holidays: business minutes are calendar minutes."""
        return _ALWAYS_OPEN

    @property
    def is_always_open(self) -> bool:
        return self._plan.always

    @property
    def has_hours(self) -> bool:
        """False for a calendar with no interval on any weekday (never open)."""
        return not self._plan.never


# -- public functions ---------------------------------------------------------------------------


def is_business_time(calendar: Calendar, instant: datetime) -> bool:
    plan = calendar._plan
    if plan.always or plan.never:
        return plan.always
    u = _to_us(instant)
    wall = u + plan.offset(u)
    day, moment = divmod(wall, _DAY)
    if day in plan.holidays:
        return False
    return any(start <= moment < end for start, end in plan.days[(day + 3) % 7])


def next_business_start(calendar: Calendar, instant: datetime) -> datetime:
    """``instant`` itself if it is business time, else the instant business time next begins."""
    u = _to_us(instant)
    if calendar._plan.always:
        return _from_us(u)
    for start, _end in _spans(calendar._plan, u):
        return _from_us(start)
    raise AssertionError("unreachable: _spans raises when it finds nothing")  # pragma: no cover


def add_business_minutes(calendar: Calendar, start: datetime, minutes: int) -> datetime:
    """The earliest instant by which ``minutes`` of business time have passed since ``start``.

    0 minutes → ``start``. The answer is the end of a working interval when the minutes run out
    exactly there (17:00 on a 9–17 day), not the start of the next one.
    """
    return add_business_minutes_many(calendar, start, [minutes])[0]


def add_business_minutes_many(
    calendar: Calendar, start: datetime, minutes: Sequence[int]
) -> list[datetime]:
    """``add_business_minutes`` for several amounts from one start, in one walk."""
    if any(m < 0 for m in minutes):
        raise ValueError("business minutes to add must be >= 0")
    u = _to_us(start)
    if calendar._plan.always:
        return [_from_us(u + m * _MINUTE) for m in minutes]
    order = sorted(range(len(minutes)), key=lambda i: minutes[i])
    answers: list[datetime] = [_from_us(u)] * len(minutes)
    pending = [(minutes[i] * _MINUTE, i) for i in order if minutes[i] > 0]
    if not pending:
        return answers
    used = 0  # business microseconds before the current span
    position = 0
    for span_start, span_end in _spans(calendar._plan, u):
        length = span_end - span_start
        while position < len(pending) and pending[position][0] <= used + length:
            need, index = pending[position]
            answers[index] = _from_us(span_start + need - used)
            position += 1
        if position == len(pending):
            return answers
        used += length
    raise AssertionError("unreachable: _spans raises when it finds nothing")  # pragma: no cover


def business_minutes_between(calendar: Calendar, start: datetime, end: datetime) -> int:
    """Whole business minutes in ``[start, end)`` (rounded down); negative if ``end < start``."""
    a, b = _to_us(start), _to_us(end)
    if b < a:
        return -business_minutes_between(calendar, end, start)
    if calendar._plan.always:
        return (b - a) // _MINUTE
    total = sum(span_end - span_start for span_start, span_end in _spans(calendar._plan, a, b))
    return total // _MINUTE


# -- building calendars -------------------------------------------------------------------------


def calendar_from_row(row: BusinessCalendar | None) -> Calendar:
    """The ``Calendar`` a stored business calendar describes; ``None`` → always open."""
    if row is None:
        return Calendar.always_open()
    return _cached_calendar(
        row.timezone,
        _freeze_hours(row.weekly_hours or {}),
        row.holiday_country,
        row.holiday_subdivision,
        tuple(sorted(set(row.custom_holidays or ()))),
        datetime.now(UTC).year,
    )


def parse_hhmm(text: str, *, end: bool = False) -> time:
    """ "09:30" → 09:30. "24:00" (only as an interval's end) → ``time.max``."""
    if end and text == "24:00":
        return time.max
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def format_hhmm(value: time) -> str:
    return "24:00" if value == time.max else f"{value.hour:02d}:{value.minute:02d}"


def weekly_hours_from_json(data: Mapping[str, Any]) -> dict[int, tuple[tuple[time, time], ...]]:
    """``{"mon": [["09:00", "18:00"]], …}`` (the stored form) → weekday number → intervals."""
    hours: dict[int, tuple[tuple[time, time], ...]] = {}
    for key, intervals in data.items():
        hours[WEEKDAYS.index(key)] = tuple(
            (parse_hhmm(start), parse_hhmm(end, end=True)) for start, end in intervals
        )
    return hours


def check_holiday_region(country: str | None, subdivision: str | None) -> None:
    """The ``holidays`` package knows the country (ISO 3166-1 alpha-2) and the subdivision."""
    import holidays as holidays_package

    if country is None:
        if subdivision is not None:
            raise ValidationFailed(
                "a holiday subdivision needs holiday_country", code="unknown_holiday_subdivision"
            )
        return
    supported = holidays_package.list_supported_countries()
    if country not in supported:
        raise ValidationFailed(
            f"no holidays known for country {country!r}: use an ISO 3166-1 code such as RU",
            code="unknown_holiday_country",
        )
    if subdivision is not None and subdivision not in supported[country]:
        raise ValidationFailed(
            f"{country} has no subdivision {subdivision!r}; known: "
            + ", ".join(supported[country][:40]),
            code="unknown_holiday_subdivision",
        )


def country_holidays(
    country: str, subdivision: str | None, first_year: int, last_year: int
) -> frozenset[date]:
    """The days off of a country (and region) in ``first_year..last_year`` (observed and
    substituted days included)."""
    return _country_holidays(country, subdivision, first_year, last_year)


@lru_cache(maxsize=64)
def _country_holidays(
    country: str, subdivision: str | None, first_year: int, last_year: int
) -> frozenset[date]:
    import holidays as holidays_package

    found = holidays_package.country_holidays(
        country, subdiv=subdivision, years=range(first_year, last_year + 1)
    )
    return frozenset(found.keys())


_FrozenHours = tuple[tuple[str, tuple[tuple[str, str], ...]], ...]


def _freeze_hours(data: Mapping[str, Any]) -> _FrozenHours:
    return tuple(
        (key, tuple((str(start), str(end)) for start, end in data[key]))
        for key in WEEKDAYS
        if key in data
    )


@lru_cache(maxsize=256)
def _cached_calendar(
    timezone: str,
    hours: _FrozenHours,
    country: str | None,
    subdivision: str | None,
    custom: tuple[str, ...],
    year: int,
) -> Calendar:
    # Keyed by the row's content (and the year, which moves the holiday window): an edited
    # calendar is a new key, never a stale answer.
    days_off = {date.fromisoformat(day) for day in custom}
    if country:
        days_off |= _country_holidays(
            country, subdivision, year - HOLIDAY_YEARS_AROUND, year + HOLIDAY_YEARS_AROUND
        )
    return Calendar(
        timezone=timezone,
        weekly_hours=weekly_hours_from_json(dict(hours)),
        holidays=frozenset(days_off),
    )


# -- the walk -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """A calendar in the walk's terms: microseconds, days since the epoch."""

    zone: ZoneInfo
    days: tuple[tuple[tuple[int, int], ...], ...]  # weekday → merged [start, end) µs of the day
    holidays: frozenset[int]  # days since 1970-01-01
    always: bool
    never: bool

    @classmethod
    def build(cls, calendar: Calendar) -> _Plan:
        try:
            zone = ZoneInfo(calendar.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {calendar.timezone!r}") from exc
        days: list[tuple[tuple[int, int], ...]] = []
        for weekday in range(7):
            intervals = sorted(
                (_time_us(start), _DAY if end == time.max else _time_us(end))
                for start, end in calendar.weekly_hours.get(weekday, ())
            )
            merged: list[tuple[int, int]] = []
            for start, end in intervals:
                if not start < end:
                    raise ValueError(f"an interval must start before it ends: {start}, {end}")
                if merged and start <= merged[-1][1]:
                    merged[-1] = (merged[-1][0], max(merged[-1][1], end))
                else:
                    merged.append((start, end))
            days.append(tuple(merged))
        unknown = set(calendar.weekly_hours) - set(range(7))
        if unknown:
            raise ValueError(f"weekdays are 0 (Monday) to 6, not {sorted(unknown)}")
        holidays = frozenset(d.toordinal() - _EPOCH_ORDINAL for d in calendar.holidays)
        always = not holidays and all(day == ((0, _DAY),) for day in days)
        never = not any(days)
        return cls(zone=zone, days=tuple(days), holidays=holidays, always=always, never=never)

    def offset(self, u: int) -> int:
        """The zone's UTC offset at instant ``u``, in microseconds."""
        off = (_EPOCH + timedelta(microseconds=u)).astimezone(self.zone).utcoffset()
        return 0 if off is None else off // _ONE_US

    def constant_until(self, u: int, off: int) -> int:
        """An instant after ``u`` up to which the offset stays ``off``: the next transition
        within a week, else a week ahead. Transitions are on whole seconds (tzdata), so the
        bisection works in seconds; two transitions less than a week apart that cancel out would
        go unseen, and tzdata has none."""
        low = u // _US
        high = low + _WEEK_SECONDS
        if self.offset(high * _US) == off:
            return high * _US
        while high - low > 1:
            middle = (low + high) // 2
            if self.offset(middle * _US) == off:
                low = middle
            else:
                high = middle
        return high * _US


def _spans(plan: _Plan, start: int, end: int | None = None) -> Iterator[tuple[int, int]]:
    """Business time from ``start`` (to ``end`` if given) as UTC ``[s, e)`` spans, in order.

    Unbounded, it raises ``NoBusinessTime`` after ``SEARCH_LIMIT_DAYS`` without a span.
    """
    if plan.never and end is None:
        raise NoBusinessTime("the business calendar has no working hours on any day")
    cursor = start
    last_found = start
    limit = SEARCH_LIMIT_DAYS * _DAY
    while end is None or cursor < end:
        off = plan.offset(cursor)
        chunk_end = plan.constant_until(cursor, off)
        if end is not None and chunk_end > end:
            chunk_end = end
        wall_start, wall_end = cursor + off, chunk_end + off
        day = wall_start // _DAY
        while day * _DAY < wall_end:
            if day not in plan.holidays:
                base = day * _DAY
                for interval_start, interval_end in plan.days[(day + 3) % 7]:
                    s, e = base + interval_start, base + interval_end
                    if e <= wall_start:
                        continue
                    if s >= wall_end:
                        break
                    last_found = chunk_end
                    yield max(s, wall_start) - off, min(e, wall_end) - off
            day += 1
        cursor = chunk_end
        if end is None and cursor - last_found > limit:
            raise NoBusinessTime(
                f"the business calendar has no business time in {SEARCH_LIMIT_DAYS} days "
                f"from {_from_us(last_found).isoformat()}"
            )


def _time_us(value: time) -> int:
    return ((value.hour * 60 + value.minute) * 60 + value.second) * _US + value.microsecond


def _to_us(instant: datetime) -> int:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("naive datetimes are refused: pass an aware datetime")
    return (instant - _EPOCH) // _ONE_US


def _from_us(u: int) -> datetime:
    return _EPOCH + timedelta(microseconds=u)


def ceil_share(minutes: int, share: float) -> int:
    """The whole minutes at which ``share`` of ``minutes`` is used (0.75 of 480 → 360)."""
    return math.ceil(round(minutes * share, 6))


_ALWAYS_OPEN = Calendar(
    timezone="UTC", weekly_hours={day: ((time(0), time.max),) for day in range(7)}
)

__all__ = [
    "SEARCH_LIMIT_DAYS",
    "WEEKDAYS",
    "Calendar",
    "NoBusinessTime",
    "add_business_minutes",
    "add_business_minutes_many",
    "business_minutes_between",
    "calendar_from_row",
    "ceil_share",
    "check_holiday_region",
    "country_holidays",
    "format_hhmm",
    "is_business_time",
    "next_business_start",
    "parse_hhmm",
    "weekly_hours_from_json",
]
