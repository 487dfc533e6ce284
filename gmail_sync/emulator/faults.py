"""Injected failures: a share of Gmail calls answers 429 / 5xx before anything happens.

Decided per call (each part of a batch is a call) from one seeded random stream, so a test run
with a seed sees the same failures in the same places every time it sends the same calls in the
same order.
"""

from __future__ import annotations

import random
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
