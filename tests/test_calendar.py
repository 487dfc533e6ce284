"""Business calendars: the fast walk agrees with a brute-force minute-by-minute reference on random
calendars, instants and zones around DST changes; the DST, holiday and never-open cases behave as
app/sla/calendar.py documents; adding 10,000 business minutes stays far under a millisecond."""

from __future__ import annotations

import statistics
import time as clock
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.sla.calendar import (
    SEARCH_LIMIT_DAYS,
    Calendar,
    NoBusinessTime,
    add_business_minutes,
    add_business_minutes_many,
    business_minutes_between,
    calendar_from_row,
    is_business_time,
    next_business_start,
)
from app.sla.models import BusinessCalendar

MINUTE = timedelta(minutes=1)
Hours = Mapping[int, tuple[tuple[time, time], ...]]

# -- the reference: one minute at a time, straight from the definition --------------------------


def _minute_of_day(value: time) -> int:
    return 1440 if value == time.max else value.hour * 60 + value.minute


def ref_is_open(calendar: Calendar, instant: datetime) -> bool:
    """Is this (whole) minute business time? Wall clock in the zone, weekday, holidays."""
    local = instant.astimezone(ZoneInfo(calendar.timezone))
    if local.date() in calendar.holidays:
        return False
    minute = local.hour * 60 + local.minute
    return any(
        _minute_of_day(start) <= minute < _minute_of_day(end)
        for start, end in calendar.weekly_hours.get(local.weekday(), ())
    )


def ref_add(calendar: Calendar, start: datetime, minutes: int) -> datetime:
    instant, counted = start, 0
    if minutes == 0:
        return start
    while True:
        if ref_is_open(calendar, instant):
            counted += 1
            if counted == minutes:
                return instant + MINUTE
        instant += MINUTE


def ref_between(calendar: Calendar, start: datetime, end: datetime) -> int:
    total, instant = 0, start
    while instant < end:
        total += ref_is_open(calendar, instant)
        instant += MINUTE
    return total


def ref_next_start(calendar: Calendar, instant: datetime) -> datetime:
    while not ref_is_open(calendar, instant):
        instant += MINUTE
    return instant


# -- random calendars around DST changes --------------------------------------------------------

ZONES = [
    "Europe/Moscow",
    "Asia/Kamchatka",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",  # a 30-minute DST shift
    "UTC",
]
# DST changes (2026: US spring 03-08, EU spring 03-29, EU autumn 10-25, US autumn 11-01;
# Lord Howe 04-05 and 10-04), plus Kamchatka's last DST (2010) and Moscow's 2014 switch to +3.
DST_DAYS = [
    datetime(2026, 3, 8, tzinfo=UTC),
    datetime(2026, 3, 29, tzinfo=UTC),
    datetime(2026, 10, 25, tzinfo=UTC),
    datetime(2026, 11, 1, tzinfo=UTC),
    datetime(2026, 4, 4, 15, tzinfo=UTC),
    datetime(2026, 10, 3, 15, tzinfo=UTC),
    datetime(2010, 3, 27, 14, tzinfo=UTC),
    datetime(2010, 10, 30, 14, tzinfo=UTC),
    datetime(2014, 10, 25, 22, tzinfo=UTC),
]


@st.composite
def day_intervals(draw: st.DrawFn) -> tuple[tuple[time, time], ...]:
    """0–3 disjoint intervals; boundaries on half hours (so in and around DST gaps) or any
    minute; sometimes open to 24:00."""
    count = draw(st.integers(0, 3))
    boundary = st.one_of(st.integers(0, 48).map(lambda h: h * 30), st.integers(0, 1440))
    points = sorted(draw(st.sets(boundary, min_size=2 * count, max_size=2 * count)))
    intervals = []
    for start, end in zip(points[::2], points[1::2], strict=True):
        intervals.append(
            (
                time(start // 60, start % 60),
                time.max if end == 1440 else time(end // 60, end % 60),
            )
        )
    return tuple(intervals)


@st.composite
def calendars(draw: st.DrawFn, around: datetime) -> Calendar:
    zone = draw(st.sampled_from(ZONES))
    hours = {weekday: draw(day_intervals()) for weekday in range(7)}
    if not any(hours.values()):
        hours[draw(st.integers(0, 6))] = ((time(9), time(17)),)
    first = around.date() - timedelta(days=10)
    holidays = draw(
        st.frozensets(st.integers(0, 30).map(lambda n: first + timedelta(days=n)), max_size=6)
    )
    return Calendar(timezone=zone, weekly_hours=hours, holidays=holidays)


def _weekly_minutes(calendar: Calendar) -> int:
    return sum(
        _minute_of_day(end) - _minute_of_day(start)
        for intervals in calendar.weekly_hours.values()
        for start, end in intervals
    )


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Calendar, datetime]:
    """A calendar and a whole-minute instant within three days of a DST change or of a random
    day of 2026."""
    around = draw(
        st.one_of(
            st.sampled_from(DST_DAYS),
            st.integers(0, 364).map(lambda n: datetime(2026, 1, 1, tzinfo=UTC) + timedelta(n)),
        )
    )
    calendar = draw(calendars(around))
    instant = around + timedelta(minutes=draw(st.integers(-3 * 1440, 3 * 1440)))
    return calendar, instant


PROPERTY = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(scenarios(), st.data())
def test_add_business_minutes_matches_the_reference(
    scenario: tuple[Calendar, datetime], data: st.DataObject
) -> None:
    """The walk lands on the very minute the minute-by-minute count does."""
    calendar, start = scenario
    # Keep the reference's walk short: at most about two weeks of the calendar's hours.
    minutes = data.draw(st.integers(0, min(3000, 2 * _weekly_minutes(calendar))))
    assert add_business_minutes(calendar, start, minutes) == ref_add(calendar, start, minutes)


@PROPERTY
@given(scenarios(), st.integers(0, 6 * 1440))
def test_business_minutes_between_matches_the_reference(
    scenario: tuple[Calendar, datetime], length: int
) -> None:
    calendar, start = scenario
    end = start + timedelta(minutes=length)
    assert business_minutes_between(calendar, start, end) == ref_between(calendar, start, end)
    assert business_minutes_between(calendar, end, start) == -ref_between(calendar, start, end)


@PROPERTY
@given(scenarios())
def test_is_business_time_and_next_start_match_the_reference(
    scenario: tuple[Calendar, datetime],
) -> None:
    calendar, instant = scenario
    assert is_business_time(calendar, instant) == ref_is_open(calendar, instant)
    # Seconds inside the minute do not change the answer (boundaries are whole minutes).
    assert is_business_time(calendar, instant + timedelta(seconds=59)) == ref_is_open(
        calendar, instant
    )
    assert next_business_start(calendar, instant) == ref_next_start(calendar, instant)


@PROPERTY
@given(scenarios(), st.data())
def test_add_and_between_are_inverse(
    scenario: tuple[Calendar, datetime], data: st.DataObject
) -> None:
    """between(s, add(s, m)) = m, also from a start some µs into a minute; add(s, between(s, e))
    is never after e, and is e when both are whole minutes and the minute before e is business
    time."""
    calendar, start = scenario
    minutes = data.draw(st.integers(0, 20_000))
    odd_start = start + timedelta(microseconds=data.draw(st.integers(0, 59_999_999)))
    for begin in (start, odd_start):
        assert (
            business_minutes_between(
                calendar, begin, add_business_minutes(calendar, begin, minutes)
            )
            == minutes
        )

    length = timedelta(minutes=data.draw(st.integers(1, 20 * 1440)))
    for begin in (start, odd_start):
        end = begin + length
        counted = business_minutes_between(calendar, begin, end)
        back = add_business_minutes(calendar, begin, counted)
        assert back <= end
        assert business_minutes_between(calendar, begin, back) == counted
    end = start + length
    if is_business_time(calendar, end - MINUTE):
        assert (
            add_business_minutes(calendar, start, business_minutes_between(calendar, start, end))
            == end
        )


@PROPERTY
@given(scenarios(), st.lists(st.integers(0, 5000), min_size=1, max_size=5))
def test_adding_several_amounts_in_one_walk_agrees_with_one_at_a_time(
    scenario: tuple[Calendar, datetime], amounts: list[int]
) -> None:
    calendar, start = scenario
    assert add_business_minutes_many(calendar, start, amounts) == [
        add_business_minutes(calendar, start, m) for m in amounts
    ]


# -- DST, by hand -------------------------------------------------------------------------------

NIGHT = {6: ((time(1), time(4)),)}  # Sundays 01:00–04:00 (DST changes happen on Sundays)


def _local(zone: str, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone), fold=fold)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("zone", "day", "minutes"),
    [
        ("America/New_York", date(2026, 3, 8), 120),  # 02:00–02:59 never happens
        ("Europe/Berlin", date(2026, 3, 29), 120),
        ("Europe/Berlin", date(2026, 10, 25), 240),  # 02:00–02:59 happens twice
        ("America/New_York", date(2026, 11, 1), 240),
        ("Europe/Berlin", date(2026, 3, 22), 180),  # an ordinary Sunday
    ],
)
def test_a_night_interval_holds_the_real_minutes_of_a_dst_day(
    zone: str, day: date, minutes: int
) -> None:
    calendar = Calendar(timezone=zone, weekly_hours=NIGHT)
    start = datetime.combine(day, time(0), ZoneInfo(zone))
    end = datetime.combine(day + timedelta(days=1), time(0), ZoneInfo(zone))
    assert business_minutes_between(calendar, start, end) == minutes


def test_an_interval_inside_the_spring_gap_never_opens() -> None:
    """[02:15, 02:45) on the day New York skips 02:00–03:00 holds no time; the next opening is a
    week later."""
    calendar = Calendar(
        timezone="America/New_York", weekly_hours={6: ((time(2, 15), time(2, 45)),)}
    )
    saturday = _local("America/New_York", 2026, 3, 7, 12)
    assert next_business_start(calendar, saturday) == _local("America/New_York", 2026, 3, 15, 2, 15)
    day_start = _local("America/New_York", 2026, 3, 8, 0)
    assert business_minutes_between(calendar, day_start, day_start + timedelta(days=1)) == 0


def test_an_interval_starting_in_the_spring_gap_opens_when_the_clock_jumps() -> None:
    """[02:30, 04:00) on 2026-03-29 in Berlin: open from 03:00 CEST (01:00Z), 60 minutes."""
    calendar = Calendar(timezone="Europe/Berlin", weekly_hours={6: ((time(2, 30), time(4)),)})
    saturday = datetime(2026, 3, 28, 12, tzinfo=UTC)
    assert next_business_start(calendar, saturday) == datetime(2026, 3, 29, 1, tzinfo=UTC)
    assert add_business_minutes(calendar, saturday, 60) == datetime(2026, 3, 29, 2, tzinfo=UTC)
    assert add_business_minutes(calendar, saturday, 61) == datetime(
        2026, 4, 5, 0, 31, tzinfo=UTC
    )  # next Sunday, 02:31 CEST


def test_an_interval_inside_the_repeated_hour_counts_both_passes() -> None:
    """[01:30, 02:00) on 2026-11-01 in New York: 05:30–06:00Z (EDT) and 06:30–07:00Z (EST)."""
    calendar = Calendar(timezone="America/New_York", weekly_hours={6: ((time(1, 30), time(2)),)})
    first_pass = datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    assert add_business_minutes(calendar, first_pass, 30) == datetime(2026, 11, 1, 6, tzinfo=UTC)
    assert add_business_minutes(calendar, first_pass, 45) == datetime(
        2026, 11, 1, 6, 45, tzinfo=UTC
    )
    # 01:15 EST (the second 01:15) is outside; 01:45 EST is inside.
    assert not is_business_time(calendar, _local("America/New_York", 2026, 11, 1, 1, 15, fold=1))
    assert is_business_time(calendar, _local("America/New_York", 2026, 11, 1, 1, 45, fold=1))
    assert (
        business_minutes_between(
            calendar, datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC)
        )
        == 60
    )


def test_an_office_day_around_the_autumn_change_is_unchanged() -> None:
    """9–18 on Monday 2026-10-26 in Berlin (a day after the change) is 540 minutes, and a
    Friday 17:00 + 120 business minutes lands on Monday 10:00 local, whatever the offset did."""
    week = {d: ((time(9), time(18)),) for d in range(5)}
    calendar = Calendar(timezone="Europe/Berlin", weekly_hours=week)
    friday = _local("Europe/Berlin", 2026, 10, 23, 17)
    assert add_business_minutes(calendar, friday, 120) == _local("Europe/Berlin", 2026, 10, 26, 10)
    assert (
        business_minutes_between(calendar, friday, _local("Europe/Berlin", 2026, 10, 26, 10)) == 120
    )


# -- holidays -----------------------------------------------------------------------------------

OFFICE = {d: ((time(9), time(13)), (time(14), time(18))) for d in range(5)}


def _russian_office() -> Calendar:
    row = BusinessCalendar(
        name="Moscow office",
        timezone="Europe/Moscow",
        weekly_hours={
            key: [["09:00", "13:00"], ["14:00", "18:00"]]
            for key in ("mon", "tue", "wed", "thu", "fri")
        },
        holiday_country="RU",
        custom_holidays=["2026-02-24"],
    )
    return calendar_from_row(row)


def test_russian_new_year_holidays_are_closed() -> None:
    """RU: 2026-01-01…08 are holidays, 01-09 a substituted day off, 01-10/11 a weekend; a
    ticket at 17:30 on Tuesday 2025-12-30 gets its hour at 09:30 on Monday 2026-01-12."""
    calendar = _russian_office()
    for day in range(1, 9):
        assert date(2026, 1, day) in calendar.holidays
    moscow = "Europe/Moscow"
    start = _local(moscow, 2025, 12, 30, 17, 30)
    assert add_business_minutes(calendar, start, 60) == _local(moscow, 2026, 1, 12, 9, 30)
    assert not is_business_time(calendar, _local(moscow, 2026, 1, 5, 10))
    assert next_business_start(calendar, _local(moscow, 2026, 1, 1, 0)) == _local(
        moscow, 2026, 1, 12, 9
    )
    assert (
        business_minutes_between(
            calendar, _local(moscow, 2025, 12, 31, 0), _local(moscow, 2026, 1, 12, 0)
        )
        == 0
    )


def test_custom_holidays_and_the_lunch_break() -> None:
    """A custom date (2026-02-24) is closed like a country holiday (02-23, Defender's Day), and
    the 13:00–14:00 break holds no business time."""
    calendar = _russian_office()
    moscow = "Europe/Moscow"
    friday = _local(moscow, 2026, 2, 20, 12, 30)
    # 30 + 240 minutes on Friday, Monday 23rd and Tuesday 24th closed, then Wednesday 09:00–09:30.
    assert add_business_minutes(calendar, friday, 300) == _local(moscow, 2026, 2, 25, 9, 30)
    assert add_business_minutes(calendar, _local(moscow, 2026, 2, 25, 12, 30), 60) == _local(
        moscow, 2026, 2, 25, 14, 30
    )
    assert not is_business_time(calendar, _local(moscow, 2026, 2, 25, 13, 30))


def test_a_stored_calendar_without_a_row_is_always_open() -> None:
    calendar = calendar_from_row(None)
    start = datetime(2026, 1, 1, 3, 7, 11, 5, tzinfo=UTC)
    assert calendar.is_always_open
    assert add_business_minutes(calendar, start, 10_000) == start + timedelta(minutes=10_000)
    assert business_minutes_between(calendar, start, start + timedelta(hours=5, seconds=59)) == 300


# -- edges --------------------------------------------------------------------------------------


def test_minutes_running_out_at_closing_time_end_at_closing_time() -> None:
    calendar = Calendar(timezone="UTC", weekly_hours=OFFICE)
    monday = datetime(2026, 11, 23, 9, tzinfo=UTC)
    assert add_business_minutes(calendar, monday, 240) == datetime(2026, 11, 23, 13, tzinfo=UTC)
    assert add_business_minutes(calendar, monday, 241) == datetime(2026, 11, 23, 14, 1, tzinfo=UTC)
    assert add_business_minutes(calendar, monday, 0) == monday


def test_seconds_are_kept_exactly() -> None:
    calendar = Calendar(timezone="UTC", weekly_hours=OFFICE)
    start = datetime(2026, 11, 23, 12, 59, 30, 250_000, tzinfo=UTC)
    assert add_business_minutes(calendar, start, 1) == datetime(
        2026, 11, 23, 14, 0, 30, 250_000, tzinfo=UTC
    )
    # 29.75 s before the break and 29 s after it: 58.75 s, no whole minute.
    assert (
        business_minutes_between(calendar, start, datetime(2026, 11, 23, 14, 0, 29, tzinfo=UTC))
        == 0
    )


def test_a_calendar_with_no_hours_raises_instead_of_looping() -> None:
    calendar = Calendar(timezone="Europe/Moscow", weekly_hours={})
    start = datetime(2026, 5, 1, tzinfo=UTC)
    assert not calendar.has_hours
    assert not is_business_time(calendar, start)
    assert business_minutes_between(calendar, start, start + timedelta(days=30)) == 0
    with pytest.raises(NoBusinessTime):
        add_business_minutes(calendar, start, 1)
    with pytest.raises(NoBusinessTime):
        next_business_start(calendar, start)


def test_a_calendar_closed_by_holidays_for_over_the_search_limit_raises() -> None:
    first = date(2026, 1, 1)
    closed = frozenset(first + timedelta(days=n) for n in range(SEARCH_LIMIT_DAYS + 30))
    calendar = Calendar(timezone="UTC", weekly_hours=OFFICE, holidays=closed)
    started = clock.perf_counter()
    with pytest.raises(NoBusinessTime, match="no business time"):
        add_business_minutes(calendar, datetime(2026, 1, 1, tzinfo=UTC), 10)
    assert clock.perf_counter() - started < 1.0
    # Open again after the holidays: a start just before their end finds it.
    after = datetime.combine(first + timedelta(days=SEARCH_LIMIT_DAYS + 20), time(0), UTC)
    assert next_business_start(calendar, after).date() >= first + timedelta(
        days=SEARCH_LIMIT_DAYS + 30
    )


def test_naive_instants_and_negative_minutes_are_refused() -> None:
    calendar = Calendar(timezone="UTC", weekly_hours=OFFICE)
    with pytest.raises(ValueError, match="naive"):
        add_business_minutes(calendar, datetime(2026, 1, 1), 5)
    with pytest.raises(ValueError, match=">= 0"):
        add_business_minutes(calendar, datetime(2026, 1, 1, tzinfo=UTC), -5)


def test_bad_calendars_are_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        Calendar(timezone="Mars/Olympus", weekly_hours=OFFICE)
    with pytest.raises(ValueError, match="start before"):
        Calendar(timezone="UTC", weekly_hours={0: ((time(10), time(9)),)})


def test_adding_ten_thousand_business_minutes_takes_well_under_a_millisecond() -> None:
    """Median of 50 runs on a Moscow office calendar with Russian holidays (≈ 3.5 weeks)."""
    calendar = _russian_office()
    start = datetime(2026, 12, 15, 10, tzinfo=UTC)
    add_business_minutes(calendar, start, 10_000)
    timings = []
    for _ in range(50):
        began = clock.perf_counter()
        add_business_minutes(calendar, start, 10_000)
        timings.append(clock.perf_counter() - began)
    assert statistics.median(timings) < 0.001, statistics.median(timings)
