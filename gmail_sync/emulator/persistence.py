"""Keeping the emulator's mailboxes across restarts: a JSON state file, written atomically.

JSON, never pickle: the file lives in a data dir, and loading it must not be able to run code.
A write goes to a temporary file in the same folder, is flushed to disk, then renamed over the
old one (``os.replace`` is atomic on POSIX and Windows), so a crash leaves the old or the new
state, never half of one. ``StateSaver`` saves every few seconds when something changed, so a
killed emulator loses at most that much.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gmail_sync.emulator.state import EmulatorState

FORMAT = "inboxdesk-gmail-emulator-state"
VERSION = 1
DEFAULT_SAVE_INTERVAL = 5.0
log = logging.getLogger(__name__)


class EmulatorStateError(ValueError):
    """A state file that cannot be read back (not JSON, another format, inconsistent data)."""


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one step; the file is readable by its owner only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file with mode 0600: the state holds people's mail.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    # The rename itself is durable only once the folder is synced (POSIX); best effort.
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class StateSaver:
    """Saves ``state`` to ``path`` every ``interval`` seconds when it changed, and on ``stop``."""

    def __init__(
        self, state: EmulatorState, path: Path, *, interval: float = DEFAULT_SAVE_INTERVAL
    ) -> None:
        self.state = state
        self.path = Path(path)
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="emulator-saver", daemon=True)

    def start(self) -> StateSaver:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.state.save_if_changed(self.path)
            except OSError:  # a full disk must not kill the emulator; the next tick retries
                log.exception("could not save the emulator state to %s", self.path)

    def stop(self) -> None:
        """Stop the timer and write what changed since the last save."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.state.save_if_changed(self.path)
