"""Injected failures: a share of Gmail calls answers 429 / 5xx before anything happens.

Decided per call (each part of a batch is a call) from one seeded random stream, so a test run
with a seed sees the same failures in the same places every time it sends the same calls in the
same order.

Scripted failures aim at one method instead: its next calls answer a given status, either before
anything happens or — ``after_work`` — after the call did its work, as when Gmail sends a message
and then answers 500 (the reason a client must not simply repeat a messages.send).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from gmail_sync.emulator.errors import INJECTABLE_STATUSES

DEFAULT_STATUSES = (429, 500, 503)


@dataclass(frozen=True)
class FaultConfig:
    rate: float = 0.0
    statuses: tuple[int, ...] = DEFAULT_STATUSES
    seed: int | None = None

    def as_json(self) -> dict[str, object]:
        return {"rate": self.rate, "statuses": list(self.statuses), "seed": self.seed}


class FaultInjector:
    def __init__(self) -> None:
        self.config = FaultConfig()
        self._rng = random.Random()  # noqa: S311 - test infrastructure, not cryptography
        self.injected = 0
        # method id → the statuses its next calls answer, each with "after the work" or not.
        self._scripted: dict[str, deque[tuple[int, bool]]] = {}

    def configure(
        self, *, rate: float, statuses: Sequence[int] = DEFAULT_STATUSES, seed: int | None = None
    ) -> FaultConfig:
        if not 0.0 <= rate <= 1.0:
            raise ValueError("fault rate must be between 0 and 1")
        chosen = tuple(int(s) for s in statuses)
        if not chosen or any(s not in INJECTABLE_STATUSES for s in chosen):
            allowed = ", ".join(str(s) for s in sorted(INJECTABLE_STATUSES))
            raise ValueError(f"fault statuses must be some of {allowed}")
        self.config = FaultConfig(rate=rate, statuses=chosen, seed=seed)
        self._rng = random.Random(seed)  # noqa: S311
        return self.config

    def decide(self) -> int | None:
        """The status this call fails with, or None."""
        if self.config.rate <= 0.0:
            return None
        if self._rng.random() >= self.config.rate:
            return None
        self.injected += 1
        return self._rng.choice(self.config.statuses)

    def script(
        self, method_id: str, status: int, *, times: int = 1, after_work: bool = False
    ) -> None:
        """The next ``times`` calls of ``method_id`` (e.g. ``gmail.users.messages.send``) answer
        ``status``, before or after doing their work; added after any already scripted."""
        if status not in INJECTABLE_STATUSES:
            allowed = ", ".join(str(s) for s in sorted(INJECTABLE_STATUSES))
            raise ValueError(f"fault statuses must be some of {allowed}")
        if times < 1:
            raise ValueError("times must be at least 1")
        self._scripted.setdefault(method_id, deque()).extend([(int(status), after_work)] * times)

    def take_scripted(self, method_id: str, *, after_work: bool) -> int | None:
        """The status this call of ``method_id`` fails with at this stage, or None."""
        queue = self._scripted.get(method_id)
        if not queue or queue[0][1] != after_work:
            return None
        status, _ = queue.popleft()
        self.injected += 1
        return status

    def clear_scripted(self) -> None:
        self._scripted.clear()
