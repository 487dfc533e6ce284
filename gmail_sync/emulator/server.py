"""``inboxdesk emulator``: the Gmail emulator under uvicorn; ``EmulatorThread`` for the demo.

With a state file the mailboxes outlive the process: the file is loaded if it exists (and then
not seeded again: the seed is already in it, under the ids a synced database knows), else the
state is built, seeded and saved; it is saved again every few seconds when it changed, and on
shutdown.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from app.server import ServerThread
from gmail_sync.emulator.app import create_emulator_app
from gmail_sync.emulator.faults import DEFAULT_STATUSES
from gmail_sync.emulator.persistence import DEFAULT_SAVE_INTERVAL, StateSaver
from gmail_sync.emulator.state import DEFAULT_HISTORY_RETENTION, EmulatorState

DEFAULT_MAILBOX = "support@shop.test"
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmulatorOptions:
    """What a new emulator serves: its mailboxes, the seed of the first, faults and limits."""

    mailboxes: Sequence[str] = ()
    seed_dir: Path | None = None
    # Move the seed mail's dates so that its newest message is ten minutes old (the demo).
    seed_recent: bool = False
    fault_rate: float = 0.0
    fault_statuses: Sequence[int] = DEFAULT_STATUSES
    fault_seed: int | None = None
    history_retention: int = DEFAULT_HISTORY_RETENTION
    quota_per_minute: int = 15_000


def build_state(options: EmulatorOptions) -> EmulatorState:
    """A long-running emulator's state: ids keep growing across restarts, as Gmail's do."""
    state = EmulatorState(
        history_retention=options.history_retention,
        quota_per_minute=options.quota_per_minute,
        start_ms=int(time.time() * 1000),
        mailboxes=list(options.mailboxes) or [DEFAULT_MAILBOX],
    )
    if options.seed_dir is not None:
        first = state.addresses[0]
        ids = state.import_eml_dir(first, options.seed_dir, recent=options.seed_recent)
        logger.info("seeded %d messages from %s into %s", len(ids), options.seed_dir, first)
    _apply_faults(state, options)
    return state


def _apply_faults(state: EmulatorState, options: EmulatorOptions) -> None:
    if options.fault_rate:
        state.set_faults(options.fault_rate, options.fault_statuses, options.fault_seed)


def open_state(options: EmulatorOptions, *, state_file: Path | None) -> tuple[EmulatorState, bool]:
    """The state to serve and whether it was loaded from ``state_file``.

    Loaded: ``seed_dir`` is ignored (seeding again would add every message a second time under
    new ids), mailboxes not in the file are added, and the file's history retention is kept.
    Not loaded: built and seeded as ``build_state`` does, then saved at once, so a crash before
    the first periodic save cannot lose the seed's ids. A bad file raises EmulatorStateError.
    """
    if state_file is not None and state_file.exists():
        state = EmulatorState.load(state_file, quota_per_minute=options.quota_per_minute)
        for address in options.mailboxes:
            state.add_mailbox(address)
        _apply_faults(state, options)
        logger.info("loaded %s (mailboxes: %s)", state_file, ", ".join(state.addresses))
        return state, True
    state = build_state(options)
    if state_file is not None:
        state.save(state_file)
    return state, False


def run_emulator(
    options: EmulatorOptions,
    *,
    host: str,
    port: int,
    log_level: str = "info",
    state_file: Path | None = None,
    save_interval: float = DEFAULT_SAVE_INTERVAL,
) -> None:
    """Serve the emulator until stopped. The first mailbox gets the seed folder's messages
    (unless ``state_file`` exists: then it is loaded instead; see ``open_state``)."""
    from app.server import run_server  # the one way to run uvicorn (GC tuning included)

    state, _ = open_state(options, state_file=state_file)
    saver = StateSaver(state, state_file, interval=save_interval) if state_file else None
    if saver is not None:
        saver.start()
    try:
        run_server(create_emulator_app(state), host=host, port=port, log_level=log_level)
    finally:
        if saver is not None:
            saver.stop()


class EmulatorThread:
    """The emulator served on a thread of this process (the demo's way), saving its state.

    The port is bound in the constructor, so a taken port fails (PortInUse) before anything
    starts; ``stop`` shuts uvicorn down, joins the thread and saves the state.
    """

    def __init__(
        self,
        state: EmulatorState,
        *,
        host: str = "127.0.0.1",
        port: int,
        state_file: Path | None = None,
        save_interval: float = DEFAULT_SAVE_INTERVAL,
        log_level: str = "warning",
        sock: socket.socket | None = None,
    ) -> None:
        """``sock``: a socket already bound to host:port (``bind_socket``), else one is bound."""
        self.state = state
        self.host = host
        self.port = port
        self.url = f"http://{host}:{port}/"
        self._server = ServerThread(
            create_emulator_app(state),
            host=host,
            port=port,
            name="gmail-emulator",
            log_level=log_level,
            sock=sock,
        )
        self._saver = StateSaver(state, state_file, interval=save_interval) if state_file else None

    def start(self, timeout: float = 15.0) -> EmulatorThread:
        self._server.start(timeout)
        if self._saver is not None:
            self._saver.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.stop(timeout)
        if self._saver is not None:
            self._saver.stop()
