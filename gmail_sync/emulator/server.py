"""``inboxdesk emulator``: the Gmail emulator under uvicorn."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from gmail_sync.emulator.app import create_emulator_app
from gmail_sync.emulator.faults import DEFAULT_STATUSES
from gmail_sync.emulator.state import DEFAULT_HISTORY_RETENTION, EmulatorState

DEFAULT_MAILBOX = "support@shop.test"
logger = logging.getLogger(__name__)


def build_state(
    *,
    seed_dir: Path | None = None,
    mailboxes: Sequence[str] = (),
    fault_rate: float = 0.0,
    fault_statuses: Sequence[int] = DEFAULT_STATUSES,
    fault_seed: int | None = None,
    history_retention: int = DEFAULT_HISTORY_RETENTION,
    quota_per_minute: int = 15_000,
) -> EmulatorState:
    """A long-running emulator's state: ids keep growing across restarts, as Gmail's do."""
    state = EmulatorState(
        history_retention=history_retention,
        quota_per_minute=quota_per_minute,
        start_ms=int(time.time() * 1000),
        mailboxes=list(mailboxes) or [DEFAULT_MAILBOX],
    )
    if seed_dir is not None:
        first = state.addresses[0]
        ids = state.import_eml_dir(first, seed_dir)
        logger.info("seeded %d messages from %s into %s", len(ids), seed_dir, first)
    if fault_rate:
        state.set_faults(fault_rate, fault_statuses, fault_seed)
    return state


def run_emulator(
    *,
    host: str,
    port: int,
    seed_dir: Path | None = None,
    mailboxes: Sequence[str] = (),
    fault_rate: float = 0.0,
    fault_statuses: Sequence[int] = DEFAULT_STATUSES,
    fault_seed: int | None = None,
    history_retention: int = DEFAULT_HISTORY_RETENTION,
    quota_per_minute: int = 15_000,
    log_level: str = "info",
) -> None:
    """Serve the emulator until stopped. The first mailbox gets the seed folder's messages."""
    from app.server import run_server  # the one way to run uvicorn (GC tuning included)

    state = build_state(
        seed_dir=seed_dir,
        mailboxes=mailboxes,
        fault_rate=fault_rate,
        fault_statuses=fault_statuses,
        fault_seed=fault_seed,
        history_retention=history_retention,
        quota_per_minute=quota_per_minute,
    )
    run_server(create_emulator_app(state), host=host, port=port, log_level=log_level)
