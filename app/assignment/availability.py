"""Is an agent available for new work right now, and until when.

Pure functions over rows already loaded (``Agent.shifts`` and ``Agent.time_off``): the assignment
decision evaluates every member of a team and must not issue a query per member.

Shifts and time off are wall-clock times in the agent's own time zone (``Agent.timezone``), so a
09:00-18:00 shift stays 09:00-18:00 across a daylight-saving change: the instant ``now`` is turned
into the agent's local wall time with ``zoneinfo`` and compared with the rota.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from app.agents.models import Agent, AgentShift, AgentTimeOff

MINUTES_PER_DAY = 1440
MINUTES_PER_WEEK = 7 * MINUTES_PER_DAY
# How far ahead ``until`` is looked for: beyond this it is reported as unknown (None).
_UNTIL_HORIZON = timedelta(days=400)
_UNTIL_STEPS = 64


@dataclass(frozen=True)
class Availability:
    available: bool
    # Why not: "inactive" | "away" | "time_off" | "off_shift" (None when available).
    reason: str | None
    # When ``available`` next flips (UTC), if it can be foreseen from the rota and the time off;
    # None for an open-ended state (away, inactive, always on shift, no time off ahead).
    until: datetime | None


def availability(agent: Agent, *, now: datetime) -> Availability:
    """The agent's availability at ``now`` (an aware datetime). Needs shifts and time off loaded."""
    if not agent.is_active:
        return Availability(False, "inactive", None)
    if agent.away:
        return Availability(False, "away", None)
    tz = ZoneInfo(agent.timezone)
    shifts = _weekly_intervals(agent.shifts)
    time_off = _merged_days(agent.time_off)
    state = _state(now, tz, shifts, time_off)
    until: datetime | None = None
    step_at = state.next_change
    for _ in range(_UNTIL_STEPS):
        if step_at is None or step_at - now > _UNTIL_HORIZON:
            break
        later = _state(step_at, tz, shifts, time_off)
        if later.available != state.available:
            until = step_at
            break
        step_at = later.next_change
    return Availability(state.available, state.reason, until)


def is_available(agent: Agent, *, now: datetime) -> bool:
    if not agent.is_active or agent.away:
        return False
    return on_duty(
        timezone=agent.timezone,
        shifts=[(s.weekday, s.start_minute, s.end_minute) for s in agent.shifts],
        time_off=[(t.starts_on, t.ends_on) for t in agent.time_off],
        now=now,
    )


def on_duty(
    *,
    timezone: str,
    shifts: Collection[tuple[int, int, int]],
    time_off: Iterable[tuple[date, date]],
    now: datetime,
) -> bool:
    """On shift and not on time off at ``now``: the rota as plain (weekday, start minute, end
    minute) and (first day, last day) tuples, for callers that read them without building ORM
    objects (the assignment decision reads a whole team's rota per ticket)."""
    local = now.astimezone(ZoneInfo(timezone))
    today = local.date()
    if any(starts_on <= today <= ends_on for starts_on, ends_on in time_off):
        return False
    if not shifts:
        return True
    minute = local.hour * 60 + local.minute
    weekday = local.weekday()
    return any(day == weekday and start <= minute < end for day, start, end in shifts)


# -- internals ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _State:
    available: bool
    reason: str | None
    # The next instant at which the reason may change (a shift or time-off boundary).
    next_change: datetime | None


def _weekly_intervals(shifts: Sequence[AgentShift]) -> list[tuple[int, int]]:
    """The rota as merged [start, end) minutes of the week (Monday 00:00 = 0); a stretch running
    over Sunday midnight into Monday is one interval ending beyond MINUTES_PER_WEEK."""
    raw = sorted(
        (s.weekday * MINUTES_PER_DAY + s.start_minute, s.weekday * MINUTES_PER_DAY + s.end_minute)
        for s in shifts
    )
    merged: list[list[int]] = []
    for start, end in raw:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    if len(merged) > 1 and merged[0][0] == 0 and merged[-1][1] == MINUTES_PER_WEEK:
        # Sunday night joins Monday morning: one stretch over the week's edge.
        first = merged.pop(0)
        merged[-1][1] = MINUTES_PER_WEEK + first[1]
    return [(start, end) for start, end in merged]


def _merged_days(rows: Sequence[AgentTimeOff]) -> list[tuple[date, date]]:
    """Time off as merged inclusive date ranges (adjacent ranges join)."""
    merged: list[list[date]] = []
    for start, end in sorted((r.starts_on, r.ends_on) for r in rows):
        if merged and start <= merged[-1][1] + timedelta(days=1):
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def _state(
    at: datetime,
    tz: ZoneInfo,
    shifts: Sequence[tuple[int, int]],
    time_off: Sequence[tuple[date, date]],
) -> _State:
    local = at.astimezone(tz)
    today = local.date()
    next_off: datetime | None = None
    for start, end in time_off:
        if start <= today <= end:
            return _State(False, "time_off", _local_instant(end + timedelta(days=1), 0, tz))
        if start > today:
            next_off = _local_instant(start, 0, tz)
            break
    on_shift, shift_change = _shift_state(local, tz, shifts)
    change = _earliest(shift_change, next_off)
    if on_shift:
        return _State(True, None, change)
    return _State(False, "off_shift", change)


def _shift_state(
    local: datetime, tz: ZoneInfo, shifts: Sequence[tuple[int, int]]
) -> tuple[bool, datetime | None]:
    """(on shift, the next instant that changes) for a local wall time."""
    if not shifts:
        return True, None
    if len(shifts) == 1 and shifts[0][1] - shifts[0][0] >= MINUTES_PER_WEEK:
        return True, None
    minute = local.weekday() * MINUTES_PER_DAY + local.hour * 60 + local.minute
    # The wall-clock minute that starts the current one: boundaries are counted from there.
    base = local.replace(tzinfo=None, second=0, microsecond=0)
    for start, end in shifts:
        for offset in (0, -MINUTES_PER_WEEK):  # the stretch over the week's edge, seen on Monday
            if start + offset <= minute < end + offset:
                return True, _wall_to_instant(base + timedelta(minutes=end + offset - minute), tz)
    later = [start for start, _ in shifts if start > minute]
    next_start = later[0] if later else shifts[0][0] + MINUTES_PER_WEEK
    return False, _wall_to_instant(base + timedelta(minutes=next_start - minute), tz)


def _local_instant(day: date, minute: int, tz: ZoneInfo) -> datetime:
    return _wall_to_instant(datetime.combine(day, time()) + timedelta(minutes=minute), tz)


def _wall_to_instant(wall: datetime, tz: ZoneInfo) -> datetime:
    """The first instant at which the agent's clock reads ``wall`` or later.

    An ambiguous wall time (the repeated hour when clocks go back) is its first occurrence; a
    wall time skipped when clocks go forward is the moment of the jump, when the clock first
    reads a later time (PEP 495: fold=0 and fold=1 then bracket that moment).
    """
    early = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    late = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if early >= late:  # an ordinary or an ambiguous wall time
        return late
    if early.astimezone(tz).replace(tzinfo=None) >= wall:
        return early
    # Skipped: find the jump between the two readings, to the second.
    low, high = 0, int((late - early).total_seconds())
    while high - low > 1:
        middle = (low + high) // 2
        if (early + timedelta(seconds=middle)).astimezone(tz).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return early + timedelta(seconds=high)


def _earliest(*instants: datetime | None) -> datetime | None:
    known = [i for i in instants if i is not None]
    return min(known) if known else None
