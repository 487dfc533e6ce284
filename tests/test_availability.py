"""Availability over an agent's rota, time off and switches: pure functions, no database.

Times are wall-clock times in the agent's zone; the daylight-saving cases check that a 09:00
shift starts at 09:00 local on both sides of a clock change (and what a skipped time means)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import pytest

from app.agents.models import Agent, AgentShift, AgentTimeOff
from app.assignment.availability import Availability, availability, is_available


def _agent(
    tz: str = "UTC",
    shifts: Sequence[tuple[int, str, str]] = (),
    time_off: Sequence[tuple[date, date]] = (),
    *,
    away: bool = False,
    active: bool = True,
) -> Agent:
    def minute(text: str) -> int:
        hours, mins = text.split(":")
        return int(hours) * 60 + int(mins)

    return Agent(
        email="a@team.test",
        name="A",
        timezone=tz,
        away=away,
        is_active=active,
        shifts=[
            AgentShift(weekday=d, start_minute=minute(s), end_minute=minute(e))
            for d, s, e in shifts
        ],
        time_off=[AgentTimeOff(starts_on=s, ends_on=e) for s, e in time_off],
    )


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


WEEKDAYS_9_TO_18 = [(d, "09:00", "18:00") for d in range(5)]


def _check(agent: Agent, now: datetime, expected: Availability) -> None:
    got = availability(agent, now=now)
    assert got == expected
    # The quick check the assignment uses agrees with the full one.
    assert is_available(agent, now=now) is expected.available


def test_no_rota_means_always_on_shift() -> None:
    _check(_agent(), _utc(2024, 3, 2, 3), Availability(True, None, None))


def test_switches_come_before_the_rota() -> None:
    now = _utc(2024, 3, 4, 12)
    _check(_agent(shifts=WEEKDAYS_9_TO_18, away=True), now, Availability(False, "away", None))
    _check(_agent(active=False, away=True), now, Availability(False, "inactive", None))


def test_on_shift_until_the_shift_ends_in_the_agent_s_zone() -> None:
    moscow = _agent("Europe/Moscow", WEEKDAYS_9_TO_18)  # UTC+3 all year
    # Monday 10:00 in Moscow.
    _check(moscow, _utc(2024, 3, 4, 7), Availability(True, None, _utc(2024, 3, 4, 15)))
    # Monday 08:59 in Moscow: one minute early.
    _check(moscow, _utc(2024, 3, 4, 5, 59), Availability(False, "off_shift", _utc(2024, 3, 4, 6)))
    # Friday 19:00 in Moscow: back on Monday at 09:00.
    _check(moscow, _utc(2024, 3, 8, 16), Availability(False, "off_shift", _utc(2024, 3, 11, 6)))
    # The end is exclusive: 18:00 sharp is off shift.
    assert not is_available(moscow, now=_utc(2024, 3, 4, 15))
    assert is_available(moscow, now=_utc(2024, 3, 4, 14, 59, 59))


def test_a_shift_keeps_its_local_hours_across_spring_forward() -> None:
    new_york = _agent("America/New_York", WEEKDAYS_9_TO_18)
    # Friday 2024-03-08 18:30 EST (UTC-5); clocks go forward on Sunday 2024-03-10; Monday 09:00
    # is then EDT (UTC-4): 13:00 UTC, not the 14:00 UTC it was a week earlier.
    _check(
        new_york,
        _utc(2024, 3, 8, 23, 30),
        Availability(False, "off_shift", _utc(2024, 3, 11, 13)),
    )
    assert is_available(new_york, now=_utc(2024, 3, 11, 13, 30))
    assert not is_available(new_york, now=_utc(2024, 3, 4, 13, 30))  # 08:30 EST
    assert is_available(new_york, now=_utc(2024, 3, 4, 14, 30))


def test_a_shift_keeps_its_local_hours_across_fall_back() -> None:
    berlin = _agent("Europe/Berlin", WEEKDAYS_9_TO_18)
    # Friday 2024-10-25 12:00 CEST (UTC+2): the shift ends at 16:00 UTC.
    _check(berlin, _utc(2024, 10, 25, 10), Availability(True, None, _utc(2024, 10, 25, 16)))
    # Clocks go back on Sunday 2024-10-27: Monday 09:00 CET is 08:00 UTC.
    _check(berlin, _utc(2024, 10, 25, 17), Availability(False, "off_shift", _utc(2024, 10, 28, 8)))


def test_a_shift_starting_in_the_skipped_hour_starts_at_the_jump() -> None:
    # 02:30 does not exist in New York on 2024-03-10: at 07:00 UTC the clock jumps from 02:00
    # EST to 03:00 EDT, and that is the first moment the clock reads 02:30 or later.
    night = _agent("America/New_York", [(6, "02:30", "05:00")])
    _check(
        night,
        _utc(2024, 3, 9, 17),
        Availability(False, "off_shift", _utc(2024, 3, 10, 7)),
    )
    assert not is_available(night, now=_utc(2024, 3, 10, 6, 59, 59))
    assert is_available(night, now=_utc(2024, 3, 10, 7))


def test_a_night_shift_over_the_week_s_edge_is_one_stretch() -> None:
    night = _agent(shifts=[(6, "22:00", "24:00"), (0, "00:00", "06:00")])
    # Sunday 2024-03-10 23:00: on until Monday 06:00, not until midnight.
    _check(night, _utc(2024, 3, 10, 23), Availability(True, None, _utc(2024, 3, 11, 6)))
    _check(night, _utc(2024, 3, 11, 2), Availability(True, None, _utc(2024, 3, 11, 6)))
    _check(night, _utc(2024, 3, 11, 7), Availability(False, "off_shift", _utc(2024, 3, 17, 22)))


def test_a_full_week_rota_never_ends() -> None:
    always = _agent(shifts=[(d, "00:00", "24:00") for d in range(7)])
    _check(always, _utc(2024, 3, 11, 7), Availability(True, None, None))


def test_time_off_is_whole_days_in_the_agent_s_zone() -> None:
    tokyo = _agent("Asia/Tokyo", WEEKDAYS_9_TO_18, [(date(2024, 5, 1), date(2024, 5, 3))])
    # 2024-04-30 16:00 UTC is already Wednesday 1 May 01:00 in Tokyo.
    now = _utc(2024, 4, 30, 16)
    got = availability(tokyo, now=now)
    # Back after the time off and the weekend: Monday 6 May 09:00 JST.
    assert got == Availability(False, "time_off", _utc(2024, 5, 6, 0))
    # The day before, Tuesday 30 April 17:00 JST: on shift until 18:00 JST as usual.
    assert availability(tokyo, now=_utc(2024, 4, 30, 8)) == Availability(
        True, None, _utc(2024, 4, 30, 9)
    )


def test_time_off_ahead_ends_an_always_on_agent_s_availability() -> None:
    agent = _agent("Europe/Paris", [], [(date(2024, 7, 1), date(2024, 7, 14))])
    # Until midnight of 1 July in Paris (UTC+2 in summer).
    _check(agent, _utc(2024, 6, 20, 12), Availability(True, None, _utc(2024, 6, 30, 22)))
    _check(agent, _utc(2024, 7, 5, 12), Availability(False, "time_off", _utc(2024, 7, 14, 22)))


def test_adjacent_time_off_ranges_join() -> None:
    agent = _agent(
        time_off=[(date(2024, 7, 1), date(2024, 7, 7)), (date(2024, 7, 8), date(2024, 7, 10))]
    )
    got = availability(agent, now=_utc(2024, 7, 3))
    assert got == Availability(False, "time_off", _utc(2024, 7, 11))


@pytest.mark.parametrize("tz", ["UTC", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"])
def test_until_is_where_the_quick_check_flips(tz: str) -> None:
    """Walk a year in uneven steps: at every instant, ``until`` is the first moment where
    ``is_available`` says otherwise (sampled every 10 minutes before it, exact at it)."""
    agent = _agent(
        tz,
        [
            (0, "02:30", "11:00"),
            (2, "00:00", "24:00"),
            (3, "00:00", "01:15"),
            (6, "23:00", "24:00"),
        ],
        [(date(2024, 4, 2), date(2024, 4, 4))],
    )
    now = _utc(2024, 1, 1, 0, 7)
    while now < _utc(2025, 1, 1):
        got = availability(agent, now=now)
        assert got.until is not None
        assert got.until > now
        assert is_available(agent, now=got.until) is not got.available
        assert is_available(agent, now=got.until - timedelta(seconds=1)) is got.available
        probe = now
        while probe < got.until:
            assert is_available(agent, now=probe) is got.available, probe
            probe += timedelta(minutes=10)
        now += timedelta(hours=37, minutes=11)
