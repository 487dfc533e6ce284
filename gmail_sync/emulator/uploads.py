"""Media uploads to ``/upload/gmail/v1/...`` (uploadType=media and uploadType=multipart).

Google's simple upload protocol (developers.google.com/gmail/api/guides/uploads): ``media`` sends
the RFC 822 message as the body (Content-Type message/rfc822); ``multipart`` sends a
multipart/related body whose first part is the JSON metadata and second part the message.
Resumable uploads are not emulated.
"""

from __future__ import annotations

import json
from email.message import Message
from typing import Any

from gmail_sync.emulator.errors import bad_request, invalid_argument


def parse_upload(
    upload_type: str | None, content_type: str, body: bytes
) -> tuple[dict[str, Any], bytes]:
    """(metadata, raw message) of an upload request."""
    kind = (upload_type or "").lower()
    if kind == "resumable":
        raise bad_request("Resumable uploads are not supported by the Gmail emulator.")
    if kind == "multipart" or (not kind and content_type.lower().startswith("multipart/related")):
        return _multipart(content_type, body)
    if kind in ("media", ""):
        return {}, body
    raise invalid_argument(f"Invalid upload type: {upload_type}", location="uploadType")


def _multipart(content_type: str, body: bytes) -> tuple[dict[str, Any], bytes]:
    # Split by hand (RFC 2046 §5.1.1): the email parser would re-serialise a message/rfc822
    # part, and the stored message must be byte for byte what was sent.
    boundary = Message()
    boundary["Content-Type"] = content_type
    marker = boundary.get_param("boundary")
    if not isinstance(marker, str) or not marker:
        raise bad_request("A multipart upload needs a boundary.")
    delimiter = b"--" + marker.encode()
    chunks = body.split(b"\r\n" + delimiter)
    first = chunks[0]
    if first.startswith(delimiter):
        chunks[0] = first[len(delimiter) :]
    parts = []
    for chunk in chunks:
        if chunk.startswith(b"--"):
            break  # the close delimiter
        head, sep, content = chunk.lstrip(b"\r\n").partition(b"\r\n\r\n")
        if sep:
            parts.append((head, content))
    if len(parts) != 2:
        raise bad_request("A multipart upload needs two parts: metadata and media.")
    meta_bytes, media = parts[0][1], parts[1][1]
    try:
        metadata = json.loads(meta_bytes) if meta_bytes.strip() else {}
    except ValueError:
        raise bad_request("Invalid JSON payload received in the metadata part.") from None
    if not isinstance(metadata, dict):
        raise bad_request("Invalid JSON payload received in the metadata part.")
    return metadata, media
