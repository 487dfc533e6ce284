"""The real app under uvicorn, in a child process, for the benchmark to call over HTTP.

A child process rather than a thread: the client's own Python work (sending, parsing JSON,
timing) would otherwise compete with the server for one interpreter lock and show up in the
server's timings. The child gets the database URL through the environment, not its command line,
so a password in the URL does not appear in ``ps``.

``python -m benchmarks.server PORT`` is the child's entry point.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

URL_VARIABLE = "INBOXDESK_BENCH_DATABASE_URL"
START_TIMEOUT_S = 30.0


def free_port() -> int:
    """A port free right now on 127.0.0.1 (the child binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_server(
    database_url: str, *, port: int | None = None, env: dict[str, str] | None = None
) -> Iterator[str]:
    """Start the app, wait until it answers ``/healthz``, yield its base URL, stop it.
    ``env``: more settings for the app (the add-on's, for one)."""
    port = port or free_port()
    env = {**os.environ, **(env or {}), URL_VARIABLE: database_url}
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "benchmarks.server", str(port)], env=env
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(process, f"{base_url}/healthz", "the app")
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_up(process: subprocess.Popen[bytes], health_url: str, what: str) -> None:
    """Poll ``health_url`` until it answers 200; fail if the child exits or takes too long."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} while starting")
        try:
            if httpx.get(health_url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer {health_url} within {START_TIMEOUT_S:.0f} s")


def main() -> None:
    """Serve ``create_app`` on the given port, as ``inboxdesk serve`` would, minus access logs."""
    from app.db.session import Database
    from app.main import create_app
    from app.server import run_server

    port = int(sys.argv[1])
    app = create_app(Database.from_url(os.environ[URL_VARIABLE]))
    run_server(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
