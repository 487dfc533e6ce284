"""Running ASGI apps under uvicorn: in the foreground (``serve``, ``demo``, the benchmark) or on
a thread of this process (the demo's emulator, tests)."""

from __future__ import annotations

import gc
import socket
import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI


def run_server(app: FastAPI, *, host: str, port: int, log_level: str = "info") -> None:
    # Move the objects of startup (modules, the app, SQLAlchemy's mappers) out of the collector's
    # sight: otherwise every full GC pass walks ~100k of them, a 40–50 ms stall in about 2 % of
    # requests (measured by benchmarks/). Only in long-lived servers: frozen objects are never
    # freed, so tests that build many apps must not do this.
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)


class PortInUse(OSError):
    """The port cannot be listened on (another process has it); ``strerror`` says why."""


def bind_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` the way uvicorn binds one, or PortInUse."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    # As uvicorn does: a port whose old connections linger in TIME_WAIT is free; on Linux a port
    # another socket listens on still fails to bind.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PortInUse(exc.errno, exc.strerror or str(exc)) from None
    return sock


class ServerThread:
    """An ASGI app served by uvicorn on a thread of this process.

    The port is bound in the constructor, so a taken port fails (PortInUse) before anything
    starts. uvicorn installs no signal handlers off the main thread, so Ctrl-C stays the main
    thread's to handle; ``stop`` asks uvicorn to finish and joins the thread.
    """

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int,
        name: str = "uvicorn",
        log_level: str = "warning",
        sock: socket.socket | None = None,
    ) -> None:
        self.url = f"http://{host}:{port}"
        self._socket = sock or bind_socket(host, port)
        config = uvicorn.Config(
            app, host=host, port=port, log_level=log_level, access_log=False, lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name=name, daemon=True
        )

    def start(self, timeout: float = 15.0) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._socket.close()
                raise RuntimeError(f"the server did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._socket.close()
