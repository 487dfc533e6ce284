"""gmail_sync.client against a tiny fake Gmail on 127.0.0.1: redirection, retries, batches, auth.

The fake (``FakeGmail``, also used by the credential and CLI tests) answers canned Gmail JSON and
multipart batch responses in the format googleapiclient parses, plays a token endpoint, records
every request (batch parts too) and serves scripted failures. The client under test is the real
google-api-python-client over real HTTP; only the injected sleep is a stand-in, so no test waits.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import google.auth.jwt
import pytest
from google.oauth2 import credentials as oauth2_credentials

from gmail_sync.client import (
    BATCH_LIMIT,
    GmailAuthError,
    GmailClient,
    GmailError,
    GmailNotFound,
    HistoryExpired,
    RetryPolicy,
)
from gmail_sync.credentials import emulator_credentials

MAILBOX = "support@shop.test"
EMULATOR_TOKEN = f"emulator:{MAILBOX}"
USERS = "/gmail/v1/users/me"

_REASON_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_DEFAULT_REASON = {
    400: "invalidArgument",
    401: "authError",
    403: "forbidden",
    404: "notFound",
    409: "duplicate",
    429: "rateLimitExceeded",
    500: "backendError",
    503: "backendError",
}


@dataclass(frozen=True)
class Fault:
    status: int
    reason: str | None = None

    def body(self) -> dict[str, Any]:
        """Google's error JSON (Gmail "Resolve errors" shows this shape)."""
        reason = self.reason or _DEFAULT_REASON.get(self.status, "unknown")
        return {
            "error": {
                "code": self.status,
                "message": f"scripted {self.status} {reason}",
                "errors": [{"message": "scripted", "domain": "global", "reason": reason}],
                "status": _REASON_STATUS.get(self.status, "UNKNOWN"),
            }
        }


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    authorization: str | None
    body: bytes
    in_batch: bool = False
    batch_parts: list[str] = field(default_factory=list)  # paths of the parts, for a batch


class FakeGmail:
    """Just enough Gmail (and Google's token endpoint) for the client's paths; see module doc."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.http: list[Seen] = []  # every HTTP request that reached the server
        self.calls: list[Seen] = []  # every Gmail call, batch parts included
        self.faults: dict[tuple[str, str], deque[Fault]] = defaultdict(deque)
        self.mailboxes: set[str] = {MAILBOX}
        # access token → the mailbox it opens
        self.tokens: dict[str, str] = {}
        # refresh token → the mailbox it opens
        self.refresh_tokens: dict[str, str] = {}
        # service-account client_email → its public key (PEM)
        self.service_accounts: dict[str, bytes] = {}
        self.token_requests: list[dict[str, str]] = []
        self.jwt_claims: list[dict[str, Any]] = []
        # authorization code → (mailbox, refresh token to issue for it)
        self.auth_codes: dict[str, tuple[str, str]] = {}
        self.messages: dict[str, dict[str, Any]] = {}
        self.labels: list[dict[str, Any]] = [
            {"id": "INBOX", "name": "INBOX", "type": "system"},
            {"id": "Label_1", "name": "Support/Open", "type": "user"},
        ]
        self.history_pages: list[dict[str, Any]] = []
        self.history_floor = 0  # startHistoryId below this → 404
        self.list_page_size = 3  # messages.list pages, small so paging shows
        self.url = ""

    # --- test controls ----------------------------------------------------------------------

    def fail(self, method: str, path: str, *faults: Fault | int) -> None:
        with self.lock:
            for fault in faults:
                self.faults[(method, path)].append(
                    fault if isinstance(fault, Fault) else Fault(fault)
                )

    def add_messages(self, count: int, prefix: str = "m") -> list[str]:
        ids = [f"{prefix}{i:04d}" for i in range(count)]
        for i, message_id in enumerate(ids):
            raw = f"Subject: {message_id}\r\n\r\nbody {i}\r\n".encode()
            self.messages[message_id] = {
                "id": message_id,
                "threadId": f"t{message_id}",
                "raw": base64.urlsafe_b64encode(raw).decode(),
            }
        return ids

    def gmail_calls(self, path: str, method: str = "GET") -> list[Seen]:
        return [c for c in self.calls if c.path == path and c.method == method]

    def batches(self) -> list[Seen]:
        return [r for r in self.http if r.path == "/batch"]

    # --- dispatch ---------------------------------------------------------------------------

    def handle(
        self, method: str, target: str, authorization: str | None, body: bytes, in_batch: bool
    ) -> tuple[int, dict[str, Any]]:
        parts = urlsplit(target)
        path, query = parts.path, parse_qs(parts.query)
        seen = Seen(method, path, query, authorization, body, in_batch)
        with self.lock:
            self.calls.append(seen)
            queue = self.faults.get((method, path))
            fault = queue.popleft() if queue else None
        if fault is not None:
            return fault.status, fault.body()
        address = self._authorize(authorization)
        if address is None:
            return 401, Fault(401).body()
        return self._route(method, path, query, body, address)

    def _authorize(self, authorization: str | None) -> str | None:
        if not authorization or not authorization.startswith("Bearer "):
            return None
        token = authorization.removeprefix("Bearer ")
        if token.startswith("emulator:"):
            address = token.removeprefix("emulator:")
            return address if address in self.mailboxes else None
        return self.tokens.get(token)

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes, address: str
    ) -> tuple[int, dict[str, Any]]:
        if (method, path) == ("GET", f"{USERS}/profile"):
            return 200, {
                "emailAddress": address,
                "messagesTotal": len(self.messages),
                "threadsTotal": len(self.messages),
                "historyId": "1000",
            }
        if (method, path) == ("GET", f"{USERS}/labels"):
            return 200, {"labels": self.labels}
        if (method, path) == ("POST", f"{USERS}/labels"):
            label = json.loads(body)
            if any(lb["name"].casefold() == label["name"].casefold() for lb in self.labels):
                return 409, Fault(409, "duplicate").body()
            label = {**label, "id": f"Label_{len(self.labels) + 1}", "type": "user"}
            self.labels.append(label)
            return 200, label
        if (method, path) == ("GET", f"{USERS}/messages"):
            ids = sorted(self.messages)
            size = min(int(query.get("maxResults", ["100"])[0]), self.list_page_size)
            start = int(query.get("pageToken", ["0"])[0])
            page: dict[str, Any] = {
                "messages": [
                    {"id": i, "threadId": self.messages[i]["threadId"]}
                    for i in ids[start : start + size]
                ],
                "resultSizeEstimate": len(ids),
            }
            if start + size < len(ids):
                page["nextPageToken"] = str(start + size)
            return 200, page
        if method == "GET" and path.startswith(f"{USERS}/messages/"):
            message = self.messages.get(path.rsplit("/", 1)[1])
            return (200, message) if message else (404, Fault(404).body())
        if (method, path) == ("GET", f"{USERS}/history"):
            if int(query["startHistoryId"][0]) < self.history_floor:
                return 404, Fault(404).body()
            index = int(query.get("pageToken", ["0"])[0])
            page = dict(self.history_pages[index]) if self.history_pages else {"historyId": "1"}
            if index + 1 < len(self.history_pages):
                page["nextPageToken"] = str(index + 1)
            return 200, page
        if method == "POST" and path.startswith(f"{USERS}/threads/") and path.endswith("/modify"):
            return 200, {"id": path.split("/")[-2], "echo": json.loads(body)}
        if (method, path) == ("POST", f"{USERS}/messages/send"):
            return 200, {"id": "sent1", "labelIds": ["SENT"], "echo": json.loads(body)}
        if (method, path) == ("POST", f"{USERS}/messages/import"):
            return 200, {"id": "imported1", "echo": json.loads(body)}
        return 404, Fault(404, "noSuchRoute").body()

    # --- token endpoint (RFC 6749 §4.1.3, §6; RFC 7523 §2.1) ---------------------------------

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.token_requests.append(form)
        grant = form.get("grant_type")
        if grant == "refresh_token":
            address = self.refresh_tokens.get(form.get("refresh_token", ""))
            if address is None:
                return 400, {"error": "invalid_grant", "error_description": "Token revoked."}
            return 200, self._issue(address)
        if grant == "authorization_code":
            issued = self.auth_codes.pop(form.get("code", ""), None)
            if issued is None:
                return 400, {"error": "invalid_grant", "error_description": "Bad code."}
            address, refresh_token = issued
            self.refresh_tokens[refresh_token] = address
            return 200, {**self._issue(address), "refresh_token": refresh_token}
        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            header = google.auth.jwt.decode_header(form["assertion"])
            unverified = google.auth.jwt.decode(form["assertion"], verify=False)
            key = self.service_accounts.get(unverified.get("iss", ""))
            if key is None:
                return 401, {"error": "invalid_client"}
            claims = google.auth.jwt.decode(form["assertion"], certs=key, verify=True)
            with self.lock:
                self.jwt_claims.append({**claims, "_kid": header.get("kid")})
            if claims.get("sub") not in self.mailboxes:
                return 401, {"error": "unauthorized_client", "error_description": "No DWD."}
            return 200, self._issue(claims["sub"])
        return 400, {"error": "unsupported_grant_type"}

    def _issue(self, address: str) -> dict[str, Any]:
        token = f"ya29.{uuid.uuid4().hex}"
        with self.lock:
            self.tokens[token] = address
        return {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}

    # --- batch (Gmail "Batching requests": multipart/mixed of application/http parts) --------

    def batch(self, content_type: str, body: bytes) -> tuple[bytes, str, list[str]]:
        message = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
        )
        boundary = f"batch_{uuid.uuid4().hex}"
        out: list[bytes] = []
        paths: list[str] = []
        for part in message.iter_parts():
            inner = part.get_payload(decode=False)
            head, _, part_body = inner.replace("\r\n", "\n").partition("\n\n")
            request_line, *header_lines = head.split("\n")
            method, target, _version = request_line.split(" ")
            headers = {
                k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)
            }
            paths.append(urlsplit(target).path)
            status, payload = self.handle(
                method, target, headers.get("authorization"), part_body.encode(), in_batch=True
            )
            content_id = part["Content-ID"].strip("<>")
            data = json.dumps(payload)
            out.append(
                (
                    f"--{boundary}\r\nContent-Type: application/http\r\n"
                    f"Content-ID: <response-{content_id}>\r\n\r\n"
                    f"HTTP/1.1 {status} X\r\nContent-Type: application/json; charset=UTF-8\r\n"
                    f"Content-Length: {len(data)}\r\n\r\n{data}\r\n"
                ).encode()
            )
        out.append(f"--{boundary}--\r\n".encode())
        return b"".join(out), f"multipart/mixed; boundary={boundary}", paths


def _handler(fake: FakeGmail) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            path = urlsplit(self.path).path
            authorization = self.headers.get("Authorization")
            seen = Seen(
                self.command, path, parse_qs(urlsplit(self.path).query), authorization, body
            )
            with fake.lock:
                fake.http.append(seen)
            content_type = "application/json"
            if path == "/token":
                form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
                status, payload = fake.token(form)
                data = json.dumps(payload).encode()
            elif path == "/batch" and self.command == "POST":
                with fake.lock:
                    queue = fake.faults.get(("POST", "/batch"))
                    fault = queue.popleft() if queue else None
                if fault is not None:
                    status, data = fault.status, json.dumps(fault.body()).encode()
                else:
                    data, content_type, seen.batch_parts = fake.batch(
                        self.headers["Content-Type"], body
                    )
                    status = 200
            else:
                status, payload = fake.handle(
                    self.command, self.path, authorization, body, in_batch=False
                )
                data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = _serve  # noqa: N815 - the names http.server dispatches to
        do_POST = _serve  # noqa: N815

    return Handler


@contextmanager
def running_fake_gmail() -> Iterator[FakeGmail]:
    """A FakeGmail served on 127.0.0.1, a free port; ``fake.url`` is its root."""
    fake = FakeGmail()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def guard_loopback(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every name resolution for a host other than 127.0.0.1 fails and is recorded: a call that
    tried Google (googleapis.com, oauth2.googleapis.com) shows up in the returned list."""
    attempted: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in ("127.0.0.1", "localhost"):
            attempted.append(name)
            raise socket.gaierror(socket.EAI_NONAME, f"test: no network to {name}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    return attempted


@pytest.fixture
def fake_gmail() -> Iterator[FakeGmail]:
    with running_fake_gmail() as fake:
        yield fake


@pytest.fixture
def only_loopback(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    return guard_loopback(monkeypatch)


@dataclass
class Sleeps:
    """The injected sleep: records each wait instead of waiting."""

    waits: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def policy(sleeps: Sleeps, rand: Callable[[], float] = lambda: 1.0, **kwargs: Any) -> RetryPolicy:
    return RetryPolicy(sleep=sleeps, rand=rand, **kwargs)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def client(fake_gmail: FakeGmail, sleeps: Sleeps, only_loopback: list[str]) -> GmailClient:
    return GmailClient.for_emulator(MAILBOX, api_url=fake_gmail.url, retry=policy(sleeps))


# --- redirection ----------------------------------------------------------------------------


def test_every_call_and_batch_goes_to_the_redirected_url(
    fake_gmail: FakeGmail, client: GmailClient, only_loopback: list[str]
) -> None:
    """Each method reaches the fake (batches at <api_url>/batch, not gmail.googleapis.com) with
    the emulator bearer token, in the request and in every batch part; nothing resolves Google."""
    ids = fake_gmail.add_messages(7)
    fake_gmail.history_pages = [
        {"history": [{"id": "1001"}], "historyId": "1002"},
        {"history": [{"id": "1002"}], "historyId": "1003"},
    ]

    assert client.get_profile()["emailAddress"] == MAILBOX
    assert [lb["id"] for lb in client.list_labels()] == ["INBOX", "Label_1"]
    assert client.create_label("Support/New", background="#16a766", text="#ffffff")["id"]
    listed = client.list_message_ids(query="in:inbox newer_than:30d", label_ids=["INBOX"])
    assert listed == [(i, f"t{i}") for i in ids]  # 3 pages of 3, 3, 1
    assert client.search_message_ids("rfc822msgid:x") == ids
    assert client.list_history(900) == ([{"id": "1001"}, {"id": "1002"}], 1003)
    fetched = client.get_messages(ids[:3])
    assert {k: v["id"] for k, v in fetched.items() if v} == {i: i for i in ids[:3]}
    assert client.modify_thread("t1", add=["Label_1"], remove=["INBOX"])["echo"] == {
        "addLabelIds": ["Label_1"],
        "removeLabelIds": ["INBOX"],
    }
    sent = client.send_raw(b"Subject: hi\r\n\r\nhello", thread_id="t1")
    assert base64.urlsafe_b64decode(sent["echo"]["raw"]) == b"Subject: hi\r\n\r\nhello"
    assert sent["echo"]["threadId"] == "t1"
    imported = client.import_raw(b"Subject: x\r\n\r\ny")
    assert imported["echo"]["labelIds"] == ["INBOX", "UNREAD"]

    assert client.batch_uri == fake_gmail.url + "batch"
    assert len(fake_gmail.batches()) == 1
    assert fake_gmail.batches()[0].batch_parts == [f"{USERS}/messages/{i}" for i in ids[:3]]
    list_calls = fake_gmail.gmail_calls(f"{USERS}/messages")
    assert len(list_calls) == 6  # two listings of three pages
    assert list_calls[0].query["q"] == ["in:inbox newer_than:30d"]
    assert list_calls[0].query["labelIds"] == ["INBOX"]
    history_call = fake_gmail.gmail_calls(f"{USERS}/history")[0]
    assert history_call.query["historyTypes"] == ["messageAdded", "labelAdded", "labelRemoved"]
    assert len(fake_gmail.calls) == 17  # 1+1+1+6+2+3 batch parts+1+1+1
    assert {c.authorization for c in fake_gmail.calls} == {f"Bearer {EMULATOR_TOKEN}"}
    assert only_loopback == []


def test_the_loopback_guard_catches_a_call_to_google(
    sleeps: Sleeps, only_loopback: list[str]
) -> None:
    """Without api_url the client targets gmail.googleapis.com, and the guard used above reports
    it: the empty list in the other tests means something."""
    google = GmailClient(emulator_credentials(MAILBOX), retry=policy(sleeps, max_attempts=2))
    with pytest.raises(GmailError, match=r"users\.getProfile"):
        google.get_profile()
    with pytest.raises(GmailError, match="batch"):
        google.get_messages(["m1"])
    assert google.batch_uri == "https://gmail.googleapis.com/batch"
    assert set(only_loopback) == {"gmail.googleapis.com"}


# --- retries --------------------------------------------------------------------------------


def test_429_then_200_is_retried_with_exponential_backoff(
    fake_gmail: FakeGmail, client: GmailClient, sleeps: Sleeps
) -> None:
    """Two 429s, then success: three requests, waits of base·2⁰ and base·2¹ (jitter pinned at 1)."""
    fake_gmail.fail("GET", f"{USERS}/profile", 429, 429)
    assert client.get_profile()["emailAddress"] == MAILBOX
    assert len(fake_gmail.gmail_calls(f"{USERS}/profile")) == 3
    assert sleeps.waits == [0.5, 1.0]


def test_backoff_is_full_jitter_under_a_capped_ceiling(
    fake_gmail: FakeGmail, sleeps: Sleeps, only_loopback: list[str]
) -> None:
    """With a real random source each wait lies in [0, min(max, base·2ⁿ)], the ceiling grows
    then stays at max_delay, and waits differ (jitter); after max_attempts the error surfaces."""
    import random

    rng = random.Random(7)
    retry = RetryPolicy(
        max_attempts=8, base_delay=0.5, max_delay=4.0, sleep=sleeps, rand=rng.random
    )
    client = GmailClient.for_emulator(MAILBOX, api_url=fake_gmail.url, retry=retry)
    fake_gmail.fail("GET", f"{USERS}/labels", *[503] * 8)

    with pytest.raises(GmailError) as caught:
        client.list_labels()

    assert caught.value.http_status == 503
    assert caught.value.retryable
    assert len(fake_gmail.gmail_calls(f"{USERS}/labels")) == 8
    ceilings = [retry.ceiling(n) for n in range(7)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert len(sleeps.waits) == 7
    assert all(0 <= w <= c for w, c in zip(sleeps.waits, ceilings, strict=True))
    assert len(set(sleeps.waits)) == 7
    assert any(w < c * 0.9 for w, c in zip(sleeps.waits, ceilings, strict=True))


@pytest.mark.parametrize("reason", ["rateLimitExceeded", "userRateLimitExceeded"])
def test_403_rate_limit_is_retried(
    fake_gmail: FakeGmail, client: GmailClient, sleeps: Sleeps, reason: str
) -> None:
    fake_gmail.fail("GET", f"{USERS}/labels", Fault(403, reason))
    assert client.list_labels()
    assert len(fake_gmail.gmail_calls(f"{USERS}/labels")) == 2
    assert sleeps.waits == [0.5]


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (Fault(403, "forbidden"), GmailError),
        (Fault(403, "dailyLimitExceeded"), GmailError),
        (Fault(403, "insufficientPermissions"), GmailAuthError),
        (Fault(400, "invalidArgument"), GmailError),
        (Fault(404, "notFound"), GmailNotFound),
    ],
)
def test_other_client_errors_are_not_retried(
    fake_gmail: FakeGmail, client: GmailClient, sleeps: Sleeps, fault: Fault, kind: type
) -> None:
    fake_gmail.fail("GET", f"{USERS}/labels", fault)
    with pytest.raises(kind) as caught:
        client.list_labels()
    assert type(caught.value) is kind
    assert caught.value.http_status == fault.status
    assert caught.value.reason == fault.reason
    assert not caught.value.retryable
    assert len(fake_gmail.gmail_calls(f"{USERS}/labels")) == 1
    assert sleeps.waits == []


def test_send_is_retried_after_429_but_not_after_5xx(
    fake_gmail: FakeGmail, client: GmailClient, sleeps: Sleeps
) -> None:
    """A 429 refused the send, so it is repeated; after a 503 the mail may be out, so the error
    goes to the caller (the outbox checks Sent before sending again)."""
    send = f"{USERS}/messages/send"
    fake_gmail.fail("POST", send, 429)
    assert client.send_raw(b"x")["id"] == "sent1"
    assert len(fake_gmail.gmail_calls(send, "POST")) == 2

    fake_gmail.fail("POST", send, 503)
    with pytest.raises(GmailError) as caught:
        client.send_raw(b"x")
    assert caught.value.http_status == 503
    assert not caught.value.retryable
    assert len(fake_gmail.gmail_calls(send, "POST")) == 3
    assert sleeps.waits == [0.5]


def test_modify_thread_is_retried_after_5xx(
    fake_gmail: FakeGmail, client: GmailClient, sleeps: Sleeps
) -> None:
    path = f"{USERS}/threads/t9/modify"
    fake_gmail.fail("POST", path, 500, 503)
    assert client.modify_thread("t9", add=["Label_1"])["id"] == "t9"
    assert len(fake_gmail.gmail_calls(path, "POST")) == 3
    assert sleeps.waits == [0.5, 1.0]


def test_connection_refused_is_retried_then_reported(sleeps: Sleeps) -> None:
    """Nothing listening: each attempt fails to connect; after max_attempts a GmailError."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody listens there
    client = GmailClient.for_emulator(
        MAILBOX, api_url=f"http://127.0.0.1:{port}/", retry=policy(sleeps, max_attempts=3)
    )
    with pytest.raises(GmailError, match="ConnectionRefusedError") as caught:
        client.get_profile()
    assert caught.value.retryable
    assert sleeps.waits == [0.5, 1.0]


# --- batches --------------------------------------------------------------------------------


def test_batch_retries_only_the_failed_parts_in_a_new_batch(
    fake_gmail: FakeGmail, client: GmailClient, sleeps: Sleeps
) -> None:
    """A 200 batch with parts 200 / 429 / 503 / 404 / 403-rate: the 429, 503 and rate-limited
    parts go again, alone, in a second batch; the 404 is None (gone), not an error."""
    ids = fake_gmail.add_messages(5)
    fake_gmail.fail("GET", f"{USERS}/messages/{ids[1]}", 429)
    fake_gmail.fail("GET", f"{USERS}/messages/{ids[2]}", 503)
    fake_gmail.fail("GET", f"{USERS}/messages/{ids[3]}", 404)
    fake_gmail.fail("GET", f"{USERS}/messages/{ids[4]}", Fault(403, "userRateLimitExceeded"))

    got = client.get_messages(ids)

    assert got[ids[3]] is None
    assert {k: v["id"] for k, v in got.items() if v} == {i: i for i in ids if i != ids[3]}
    batches = fake_gmail.batches()
    assert [b.batch_parts for b in batches] == [
        [f"{USERS}/messages/{i}" for i in ids],
        [f"{USERS}/messages/{i}" for i in (ids[1], ids[2], ids[4])],
    ]
    assert sleeps.waits == [0.5]
    assert all(c.in_batch for c in fake_gmail.calls)


def test_batch_part_failing_every_time_gives_up_after_max_attempts(
    fake_gmail: FakeGmail, sleeps: Sleeps, only_loopback: list[str]
) -> None:
    ids = fake_gmail.add_messages(3)
    client = GmailClient.for_emulator(
        MAILBOX, api_url=fake_gmail.url, retry=policy(sleeps, max_attempts=4)
    )
    fake_gmail.fail("GET", f"{USERS}/messages/{ids[0]}", *[500] * 4)
    with pytest.raises(GmailError) as caught:
        client.get_messages(ids)
    assert caught.value.http_status == 500
    assert [len(b.batch_parts) for b in fake_gmail.batches()] == [3, 1, 1, 1]
    assert sleeps.waits == [0.5, 1.0, 2.0]


def test_batch_part_with_a_permanent_error_is_raised_at_once(
    fake_gmail: FakeGmail, client: GmailClient, sleeps: Sleeps
) -> None:
    ids = fake_gmail.add_messages(2)
    fake_gmail.fail("GET", f"{USERS}/messages/{ids[1]}", Fault(403, "forbidden"))
    with pytest.raises(GmailError) as caught:
        client.get_messages(ids)
    assert caught.value.http_status == 403
    assert len(fake_gmail.batches()) == 1
    assert sleeps.waits == []


def test_thread_modifies_go_in_batches_with_per_part_outcomes(
    fake_gmail: FakeGmail, client: GmailClient, sleeps: Sleeps
) -> None:
    """Label writes for 60 threads: two batches (50 + 10); a 429 part is retried alone, a
    deleted thread (404) is None and a refused one (400) is its error — neither stops the
    others."""
    threads = [f"t{i}" for i in range(60)]
    modify = f"{USERS}/threads/{{}}/modify"
    fake_gmail.fail("POST", modify.format("t3"), 429)
    fake_gmail.fail("POST", modify.format("t7"), 404)
    fake_gmail.fail("POST", modify.format("t9"), Fault(400, "invalidArgument"))

    got = client.modify_threads({t: (["Label_1"], ["Label_2"]) for t in threads})

    assert got["t7"] is None
    refused = got["t9"]
    assert isinstance(refused, GmailError)
    assert refused.http_status == 400
    written = {t: v for t, v in got.items() if isinstance(v, dict)}
    assert set(written) == set(threads) - {"t7", "t9"}
    assert written["t3"]["echo"] == {"addLabelIds": ["Label_1"], "removeLabelIds": ["Label_2"]}
    assert [len(b.batch_parts) for b in fake_gmail.batches()] == [50, 1, 10]
    assert sleeps.waits == [0.5]


def test_a_failed_batch_request_is_sent_again_whole(
    fake_gmail: FakeGmail, client: GmailClient, sleeps: Sleeps
) -> None:
    """The batch POST itself answered 503, then 429: all parts again, with backoff."""
    ids = fake_gmail.add_messages(4)
    fake_gmail.fail("POST", "/batch", 503, 429)
    got = client.get_messages(ids)
    assert all(got[i] for i in ids)
    assert len(fake_gmail.batches()) == 3
    assert fake_gmail.batches()[-1].batch_parts == [f"{USERS}/messages/{i}" for i in ids]
    assert sleeps.waits == [0.5, 1.0]


def test_batches_hold_at_most_50_and_each_id_is_fetched_once(
    fake_gmail: FakeGmail, client: GmailClient
) -> None:
    ids = fake_gmail.add_messages(121)
    got = client.get_messages([*ids, *ids[:10]])  # duplicates asked twice, fetched once
    assert BATCH_LIMIT == 50
    assert [len(b.batch_parts) for b in fake_gmail.batches()] == [50, 50, 21]
    assert sorted(got) == ids
    assert all(got[i]["id"] == i for i in ids)
    assert len(fake_gmail.calls) == 121


def test_empty_get_messages_sends_nothing(fake_gmail: FakeGmail, client: GmailClient) -> None:
    assert client.get_messages([]) == {}
    assert fake_gmail.http == []


# --- history, labels ------------------------------------------------------------------------


def test_history_404_is_history_expired(
    fake_gmail: FakeGmail, client: GmailClient, sleeps: Sleeps
) -> None:
    fake_gmail.history_floor = 500
    with pytest.raises(HistoryExpired) as caught:
        client.list_history(499)
    assert caught.value.http_status == 404
    assert sleeps.waits == []
    fake_gmail.history_pages = [{"historyId": "777"}]
    assert client.list_history(500) == ([], 777)


def test_create_label_conflict_returns_the_existing_label(
    fake_gmail: FakeGmail, client: GmailClient
) -> None:
    """Gmail answers 409 for a name that exists (compared without case): we get that label."""
    label = client.create_label("support/open")
    assert label["id"] == "Label_1"
    assert len(fake_gmail.gmail_calls(f"{USERS}/labels", "POST")) == 1
    with pytest.raises(ValueError, match="both"):
        client.create_label("X", background="#000000")


# --- authentication -------------------------------------------------------------------------


def test_emulator_401_is_an_auth_error_without_retry(
    fake_gmail: FakeGmail, sleeps: Sleeps, only_loopback: list[str]
) -> None:
    """The emulator token cannot refresh: a 401 is final at once, for a call and in a batch."""
    client = GmailClient.for_emulator(
        "stranger@shop.test", api_url=fake_gmail.url, retry=policy(sleeps)
    )
    with pytest.raises(GmailAuthError):
        client.get_profile()
    assert len(fake_gmail.gmail_calls(f"{USERS}/profile")) == 1

    fake_gmail.add_messages(2)
    with pytest.raises(GmailAuthError):
        client.get_messages(["m0000", "m0001"])
    assert len(fake_gmail.batches()) == 1
    assert sleeps.waits == []


def _oauth(fake: FakeGmail, refresh_token: str) -> oauth2_credentials.Credentials:
    return oauth2_credentials.Credentials(
        token=None,
        refresh_token=refresh_token,
        token_uri=fake.url + "token",
        client_id="client-1.apps.googleusercontent.com",
        client_secret="client-secret-1",
        scopes=["https://www.googleapis.com/auth/gmail.modify"],
    )


def test_oauth_token_is_refreshed_and_a_401_after_refresh_is_an_auth_error(
    fake_gmail: FakeGmail, sleeps: Sleeps, only_loopback: list[str]
) -> None:
    """A valid refresh token yields an access token the fake accepts; once Gmail keeps answering
    401, the transport refreshes and re-sends, and the 401 after that is GmailAuthError."""
    fake_gmail.refresh_tokens["1//refresh-abc"] = MAILBOX
    client = GmailClient(
        _oauth(fake_gmail, "1//refresh-abc"), api_url=fake_gmail.url, retry=policy(sleeps)
    )
    assert client.get_profile()["emailAddress"] == MAILBOX
    assert [r["grant_type"] for r in fake_gmail.token_requests] == ["refresh_token"]
    assert fake_gmail.token_requests[0]["refresh_token"] == "1//refresh-abc"

    fake_gmail.fail("GET", f"{USERS}/labels", 401, 401, 401)
    with pytest.raises(GmailAuthError):
        client.list_labels()
    # google-auth-httplib2: the 401, then up to two refresh-and-resend rounds.
    assert len(fake_gmail.gmail_calls(f"{USERS}/labels")) == 3
    assert len(fake_gmail.token_requests) == 3
    assert sleeps.waits == []

    fake_gmail.fail("GET", f"{USERS}/labels", 401)
    assert client.list_labels()  # one 401, a refresh, then fine: no error
    assert only_loopback == []


def test_invalid_grant_is_an_auth_error_before_any_gmail_call(
    fake_gmail: FakeGmail, sleeps: Sleeps, only_loopback: list[str]
) -> None:
    client = GmailClient(
        _oauth(fake_gmail, "1//revoked"), api_url=fake_gmail.url, retry=policy(sleeps)
    )
    with pytest.raises(GmailAuthError, match="invalid_grant"):
        client.get_profile()
    with pytest.raises(GmailAuthError, match="invalid_grant"):
        client.get_messages(["m1"])
    assert fake_gmail.calls == []
    assert len(fake_gmail.token_requests) == 2
    assert sleeps.waits == []
