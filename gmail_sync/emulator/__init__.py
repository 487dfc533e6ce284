"""A local Gmail API v1 emulator that the unmodified google-api-python-client talks to.

``create_emulator_app(state)`` is the ASGI app; ``EmulatorState`` holds the mailboxes;
``run_emulator`` (server.py) serves it under uvicorn. Token for a mailbox:
``Authorization: Bearer emulator:<address>``.
"""

from __future__ import annotations

from gmail_sync.emulator.app import create_emulator_app
from gmail_sync.emulator.state import EmulatorState, bearer_token

__all__ = ["EmulatorState", "bearer_token", "create_emulator_app"]
