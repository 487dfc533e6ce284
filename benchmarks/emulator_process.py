"""The Gmail emulator in a child process, with a seeding endpoint for the sync benchmark.

A child process, not a thread: the emulator parses batches and renders messages in Python, and
sharing one interpreter lock with the sync being measured would slow both and blur the figures.
Seeding goes through ``POST /bench/seed``, which generates conversations with
``gmail_sync.corpus`` and stores them with ``EmulatorState.import_raw`` inside the emulator (no
HTTP per message, no quota, no history gap): the benchmark measures the sync, not the seeding.
Every imported message still gets its history record, so the sync sees it as Gmail would show it.

``python -m benchmarks.emulator_process PORT [--quota N] [--history-retention N]`` is the child.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from pydantic import BaseModel, Field

from benchmarks.server import free_port, wait_until_up

# gmail_sync.corpus spaces conversations 3-90 minutes apart (47 on average); starting this far
# back per conversation keeps every date in the past.
_MINUTES_PER_CONVERSATION = 91


class SeedIn(BaseModel):
    address: str
    messages: int = Field(ge=1)
    seed: int
    # Only each conversation's first message: every message opens a new conversation (ticket).
    # Otherwise whole conversations (1-4 messages: new tickets and replies joining them) in the
    # order they arrive, cut at ``messages``.
    first_only: bool = False


@dataclass(frozen=True)
class EmulatorHandle:
    url: str
    http: httpx.Client
    pid: int

    def cpu_seconds(self) -> float | None:
        """CPU time the emulator process has used (Linux /proc; None elsewhere)."""
        return process_cpu_seconds(self.pid)

    def add_mailbox(self, address: str) -> None:
        self.http.post("/emulator/mailboxes", json={"address": address}).raise_for_status()

    def seed(self, address: str, messages: int, *, seed: int, first_only: bool) -> dict[str, int]:
        """Import ``messages`` generated messages into ``address``; returns what was imported."""
        response = self.http.post(
            "/bench/seed",
            json={
                "address": address,
                "messages": messages,
                "seed": seed,
                "first_only": first_only,
            },
            timeout=600.0,
        )
        response.raise_for_status()
        return {k: int(v) for k, v in response.json().items()}

    def stats(self) -> dict[str, Any]:
        response = self.http.get("/emulator/stats")
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def reset_stats(self) -> None:
        self.http.post("/emulator/reset-stats").raise_for_status()


@contextmanager
def running_emulator(*, quota_per_minute: int, history_retention: int) -> Iterator[EmulatorHandle]:
    """Start the emulator child, wait until it answers, yield a handle, stop it."""
    port = free_port()
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "benchmarks.emulator_process",
            str(port),
            "--quota",
            str(quota_per_minute),
            "--history-retention",
            str(history_retention),
        ]
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(process, f"{url}/emulator/mailboxes", "the emulator")
        with httpx.Client(base_url=url, timeout=60.0) as http:
            yield EmulatorHandle(url=url, http=http, pid=process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def process_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (proc(5): fields 14 and 15 of /proc/PID/stat, in ticks)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # The command name (field 2) may hold spaces; the fields after it are fixed.
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def add_seed_route(app: FastAPI) -> None:
    from gmail_sync.corpus import arrival_order, generate_conversations
    from gmail_sync.emulator.state import EmulatorState

    @app.post("/bench/seed", include_in_schema=False)
    def seed(body: SeedIn) -> dict[str, Any]:
        state: EmulatorState = app.state.emulator
        # A conversation holds 1.9 messages on average; 1.5 leaves a margin for the draw.
        count = body.messages if body.first_only else -(-body.messages * 2 // 3) + 10
        start = datetime.now(UTC) - timedelta(minutes=_MINUTES_PER_CONVERSATION * count)
        conversations = generate_conversations(
            count, seed=body.seed, mailbox=body.address, start=start
        )
        if body.first_only:
            raws = [c.messages[0].raw for c in conversations]
        else:
            raws = [m.raw for m in arrival_order(conversations)][: body.messages]
        if len(raws) < body.messages:
            raise RuntimeError(f"generated {len(raws)} messages, fewer than {body.messages}")
        for raw in raws:
            state.import_raw(body.address, raw)
        kept = set(raws)
        # Conversations started within the cut: the tickets a correct sync opens.
        started = sum(1 for c in conversations if c.messages[0].raw in kept)
        return {"messages": len(raws), "conversations": started}


def main(argv: list[str] | None = None) -> None:
    from app.server import run_server
    from gmail_sync.emulator.app import create_emulator_app
    from gmail_sync.emulator.server import EmulatorOptions, build_state

    parser = argparse.ArgumentParser(prog="python -m benchmarks.emulator_process")
    parser.add_argument("port", type=int)
    parser.add_argument("--quota", type=int, required=True, help="units per user per minute")
    parser.add_argument("--history-retention", type=int, required=True)
    args = parser.parse_args(argv)
    state = build_state(
        EmulatorOptions(
            mailboxes=["bench@shop.test"],
            quota_per_minute=args.quota,
            history_retention=args.history_retention,
        )
    )
    app = create_emulator_app(state)
    add_seed_route(app)
    run_server(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
