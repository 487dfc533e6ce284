"""The batch endpoint: many Gmail calls in one multipart/mixed HTTP request.

Google's batch protocol (developers.google.com/gmail/api/guides/batch): each part is
``Content-Type: application/http`` holding one HTTP request; the answer is multipart/mixed with
one ``application/http`` part per request, in order, whose ``Content-ID`` is ``<response-`` +
the request part's Content-ID + ``>`` (googleapiclient.http.BatchHttpRequest pairs answers to
requests by it). The outer request's headers apply to every part unless the part overrides them.
Each part is its own call — routed through the same app, admitted, counted, faulted and charged
on its own — so a batch answers 200 even when parts fail. At most 100 parts (Gmail's limit).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from email.parser import BytesParser
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request, Response
from starlette.types import ASGIApp, Message

from gmail_sync.emulator.errors import GmailApiError, bad_request, invalid_argument

MAX_PARTS = 100
_SKIP_OUTER = {"content-type", "content-length", "transfer-encoding", "host"}


@dataclass
class BatchPart:
    content_id: str | None
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class PartAnswer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def parse_batch(content_type: str, body: bytes) -> list[BatchPart]:
    if not content_type.lower().startswith("multipart/mixed") or "boundary" not in content_type:
        raise bad_request("Batch requests must be multipart/mixed with a boundary.")
    tree = BytesParser().parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    payload = tree.get_payload()
    if not tree.is_multipart() or not isinstance(payload, list) or not payload:
        raise bad_request("A batch request needs at least one part.")
    if len(payload) > MAX_PARTS:
        raise invalid_argument(f"Too many requests in batch: at most {MAX_PARTS}.")
    parts = []
    for part in payload:
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):
            raise bad_request("A batch part must hold one HTTP request.")
        parts.append(_parse_http(part.get("Content-ID"), data))
    return parts


def _parse_http(content_id: str | None, data: bytes) -> BatchPart:
    # An HTTP/1.1 request (RFC 9112 §2): request line, header fields, empty line, body. The Python
    # client writes bare LF line ends; accept both.
    head, sep, body = data.partition(b"\r\n\r\n")
    lf_head, lf_sep, lf_body = data.partition(b"\n\n")
    if not sep or (lf_sep and len(lf_head) < len(head)):
        head, body = lf_head, lf_body
    lines = head.decode("utf-8", "replace").replace("\r\n", "\n").split("\n")
    request_line = lines[0].strip().split()
    if len(request_line) < 2:
        raise bad_request("A batch part must start with a request line.")
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon and name.strip():
            headers.append((name.strip().lower(), value.strip()))
    length = next((v for k, v in headers if k == "content-length"), None)
    if length is not None and length.isdigit():
        body = body[: int(length)]
    elif body.endswith(b"\r\n"):
        body = body[:-2]
    return BatchPart(
        content_id=content_id.strip() if content_id else None,
        method=request_line[0].upper(),
        target=request_line[1],
        headers=headers,
        body=body,
    )


async def dispatch(app: ASGIApp, request: Request, part: BatchPart) -> PartAnswer:
    """Run one part through the app, in process, as if it had come alone."""
    split = urlsplit(part.target)
    if split.path.rstrip("/") in ("/batch", "/batch/gmail/v1"):
        return _error_answer(bad_request("A batch request cannot contain a batch request."))
    own = {k for k, _ in part.headers}
    headers = [
        (k.encode("latin-1"), v.encode("latin-1"))
        for k, v in request.headers.items()
        if k not in _SKIP_OUTER and k not in own
    ]
    headers += [
        (k.encode("latin-1"), v.encode("latin-1", "replace"))
        for k, v in part.headers
        if k not in ("content-length", "host")
    ]
    headers.append((b"content-length", str(len(part.body)).encode()))
    headers.append((b"host", request.headers.get("host", "localhost").encode("latin-1")))
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": part.method,
        "scheme": request.url.scheme,
        "path": split.path,
        "raw_path": split.path.encode(),
        "root_path": "",
        "query_string": split.query.encode(),
        "headers": headers,
        "client": request.client and (request.client.host, request.client.port),
        "server": request.scope.get("server"),
        "gmail_emulator.batch_part": True,
    }
    body_sent = False

    async def receive() -> Message:
        nonlocal body_sent
        if body_sent:
            return {"type": "http.disconnect"}
        body_sent = True
        return {"type": "http.request", "body": part.body, "more_body": False}

    answer = PartAnswer(status=500, headers=[], body=b"")
    chunks: list[bytes] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = [
                (k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", [])
            ]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    try:
        await app(scope, receive, send)
    except Exception:  # the app has answered 500 for this part already, if it could
        if not chunks:
            return _error_answer(
                GmailApiError(500, "Internal error encountered.", reason="backendError")
            )
    answer.body = b"".join(chunks)
    return answer


def _error_answer(error: GmailApiError) -> PartAnswer:
    return PartAnswer(
        status=error.code,
        headers=[("content-type", "application/json; charset=UTF-8")],
        body=json.dumps(error.body()).encode(),
    )


def render_batch(parts: list[BatchPart], answers: list[PartAnswer]) -> tuple[str, bytes]:
    """(Content-Type, body) of the multipart/mixed answer, CRLF throughout (RFC 2046 §5.1.1).

    googleapiclient splits each part's HTTP head from its body at the first CRLF CRLF, so the
    inner response must use CRLF too.
    """
    boundary = f"batch_{uuid.uuid4().hex}"
    out = bytearray()
    for part, answer in zip(parts, answers, strict=True):
        out += f"--{boundary}\r\n".encode()
        out += b"Content-Type: application/http\r\n"
        if part.content_id:
            inner = part.content_id.strip()
            inner = inner[1:-1] if inner.startswith("<") and inner.endswith(">") else inner
            out += f"Content-ID: <response-{inner}>\r\n".encode()
        out += b"\r\n"
        try:
            reason = HTTPStatus(answer.status).phrase
        except ValueError:
            reason = ""
        out += f"HTTP/1.1 {answer.status} {reason}\r\n".encode()
        for name, value in answer.headers:
            if name.lower() in ("content-length", "date", "server"):
                continue
            out += f"{name}: {value}\r\n".encode("latin-1")
        out += f"Content-Length: {len(answer.body)}\r\n\r\n".encode()
        out += answer.body
        out += b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return f"multipart/mixed; boundary={boundary}", bytes(out)


async def handle_batch(request: Request) -> Response:
    parts = parse_batch(request.headers.get("content-type", ""), await request.body())
    request.app.state.emulator.count_batch()
    answers = [await dispatch(request.app, request, part) for part in parts]
    content_type, body = render_batch(parts, answers)
    return Response(body, status_code=200, media_type=content_type)
