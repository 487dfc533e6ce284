"""The Gmail emulator under a real uvicorn on 127.0.0.1, for the real google-api-python-client.

One server per test session; each test gets a fresh ``EmulatorState`` swapped into the app (so
state never leaks between tests) with a hand-driven quota clock. A test module gets the
``emulator`` fixture with
``from tests.emulator_fixtures import emulator_fixture, emulator_server_fixture  # noqa: F401``
(the functions have other names than the fixtures so ruff sees no redefinition).

Batches: ``service.new_batch_http_request()`` posts to the discovery document's
rootUrl + batchPath (https://gmail.googleapis.com/batch) whatever ``api_endpoint`` says — it is
not redirected — so a batch for the emulator must be built as
``BatchHttpRequest(batch_uri=url + "/batch/gmail/v1")`` (``Emulator.batch`` does that).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.http import BatchHttpRequest

from app.server import ServerThread
from gmail_sync.emulator import EmulatorState, bearer_token, create_emulator_app
from tests.conftest import free_port

MAILBOX = "support@shop.test"
OTHER_MAILBOX = "billing@shop.test"


class ManualClock:
    """The quota window's clock, moved by the test instead of by waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class EmulatorServer:
    url: str
    app: FastAPI


@dataclass
class Emulator:
    url: str
    app: FastAPI
    state: EmulatorState
    clock: ManualClock
    _services: dict[str, Any] = field(default_factory=dict)

    def service(self, address: str = MAILBOX, *, token: str | None = None) -> Any:
        """A googleapiclient Gmail service for the mailbox, aimed at the emulator."""
        key = token or address
        if key not in self._services:
            credentials = Credentials(token=token or bearer_token(address))
            self._services[key] = build(
                "gmail",
                "v1",
                credentials=credentials,
                static_discovery=True,
                cache_discovery=False,
                client_options={"api_endpoint": self.url},
            )
        return self._services[key]

    def batch(self, callback: Callable[[str, Any, Exception | None], None]) -> BatchHttpRequest:
        # Not service.new_batch_http_request(): that one posts to gmail.googleapis.com.
        return BatchHttpRequest(callback=callback, batch_uri=self.url + "/batch/gmail/v1")

    def use(self, state: EmulatorState) -> EmulatorState:
        """Serve another state from now on (e.g. one with a short history retention)."""
        self.state = state
        self.app.state.emulator = state
        self._services.clear()
        return state

    def new_state(self, **kwargs: Any) -> EmulatorState:
        kwargs.setdefault("clock", self.clock)
        kwargs.setdefault("mailboxes", [MAILBOX, OTHER_MAILBOX])
        return self.use(EmulatorState(**kwargs))

    def import_raw(
        self,
        raw: bytes,
        *,
        labels: tuple[str, ...] = ("INBOX", "UNREAD"),
        thread_id: str | None = None,
        address: str = MAILBOX,
    ) -> dict[str, Any]:
        """messages.import through the client (JSON ``raw``, as the Python client sends it)."""
        body: dict[str, Any] = {"raw": b64(raw), "labelIds": list(labels)}
        if thread_id:
            body["threadId"] = thread_id
        request = self.service(address).users().messages().import_(userId="me", body=body)
        return request.execute()  # type: ignore[no-any-return]

    def http(self, token_for: str | None = MAILBOX) -> httpx.Client:
        headers = {"Authorization": f"Bearer {bearer_token(token_for)}"} if token_for else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


def unb64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def mail(
    subject: str,
    *,
    message_id: str,
    sender: str = "ann@customer.test",
    to: str = MAILBOX,
    references: tuple[str, ...] = (),
    date: str = "Tue, 02 Jan 2024 10:00:00 +0300",
    body: str = "Hello, I need help with my order.",
    extra: str = "",
) -> bytes:
    """A small RFC 5322 message (CRLF line ends, as on the wire)."""
    lines = [
        f"From: {sender}",
        f"To: {to}",
        f"Subject: {subject}",
        f"Message-ID: <{message_id}>",
        f"Date: {date}",
    ]
    if references:
        lines.append(f"In-Reply-To: <{references[-1]}>")
        lines.append("References: " + " ".join(f"<{r}>" for r in references))
    if extra:
        lines.append(extra)
    lines += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "", body, ""]
    return "\r\n".join(lines).encode()


@pytest.fixture(scope="session", name="emulator_server")
def emulator_server_fixture() -> Iterator[EmulatorServer]:
    app = create_emulator_app(EmulatorState(mailboxes=[MAILBOX]))
    server = ServerThread(app, port=free_port(), name="gmail-emulator").start()
    try:
        yield EmulatorServer(url=server.url, app=app)
    finally:
        server.stop()


@pytest.fixture(name="emulator")
def emulator_fixture(emulator_server: EmulatorServer) -> Emulator:
    """A fresh emulator state (mailboxes support@ and billing@shop.test) behind the server."""
    clock = ManualClock()
    state = EmulatorState(clock=clock, mailboxes=[MAILBOX, OTHER_MAILBOX])
    emulator_server.app.state.emulator = state
    return Emulator(url=emulator_server.url, app=emulator_server.app, state=state, clock=clock)
