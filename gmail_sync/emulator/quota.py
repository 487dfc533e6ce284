"""Gmail's per-user rate limit: 15,000 quota units per user per minute, a moving window.

developers.google.com/gmail/api/reference/quota: "Per user rate limit — 15,000 quota units per
user per minute"; each method has a cost (methods.py). A call that would go over the limit is
refused with 429 and costs nothing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

DEFAULT_UNITS_PER_MINUTE = 15_000
WINDOW_SECONDS = 60.0


class RollingQuota:
    def __init__(
        self,
        *,
        limit: int = DEFAULT_UNITS_PER_MINUTE,
        window: float = WINDOW_SECONDS,
        clock: Callable[[], float],
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._spent: dict[str, deque[tuple[float, int]]] = {}
        self._totals: dict[str, int] = {}

    def _expire(self, key: str, now: float) -> deque[tuple[float, int]]:
        spent = self._spent.setdefault(key, deque())
        horizon = now - self.window
        while spent and spent[0][0] <= horizon:
            _, units = spent.popleft()
            self._totals[key] -= units
        return spent

    def try_spend(self, key: str, units: int) -> bool:
        """Spend ``units`` for ``key`` if the last minute's total stays within the limit."""
        now = self._clock()
        spent = self._expire(key, now)
        total = self._totals.get(key, 0)
        if total + units > self.limit:
            return False
        spent.append((now, units))
        self._totals[key] = total + units
        return True

    def used(self, key: str) -> int:
        self._expire(key, self._clock())
        return self._totals.get(key, 0)

    def reset(self) -> None:
        self._spent.clear()
        self._totals.clear()
