"""What the emulator needs to know about a raw RFC 5322 message, with the stdlib ``email`` only.

Separate from gmail_sync.parse, which is the product's reading of a message: this is Gmail's view
(the payload tree with part ids, snippets, search fields). Never raises on malformed mail — Gmail
accepts anything.
"""

from __future__ import annotations

import base64
import email
import html
import re
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

_MSGID = re.compile(r"<([^<>\s]+)>")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_WS = re.compile(r"\s+")
_TAG = re.compile(r"<[^>]*>")
_SCRIPT_STYLE = re.compile(r"<(script|style)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_BREAKS = re.compile(r"<\s*(br|/p|/div|/tr|/li|/h\d)\b[^>]*>", re.IGNORECASE)

SNIPPET_LENGTH = 200  # Gmail's snippets are "a short part of the message text", about this long


@dataclass(frozen=True)
class MessageFacts:
    headers: tuple[tuple[str, str], ...]  # (name as written, decoded value), in order
    message_id: str | None  # without <>
    references: tuple[str, ...]  # In-Reply-To then References, ids without <>, no repeats
    subject: str
    date_ms: int | None
    snippet: str
    from_text: str  # casefolded, for the from: operator
    to_text: str
    cc_text: str
    body_text: str  # casefolded plain text, for free-text search
    attachment_names: tuple[str, ...]

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None


def parse_tree(raw: bytes) -> Message:
    # compat32 keeps going on every defect; the "default" policy raises on some bad headers.
    return email.message_from_bytes(raw)


def _unsurrogate(value: str) -> str:
    # Raw 8-bit header bytes come back from the bytes parser as surrogate escapes: most are UTF-8.
    try:
        return value.encode("ascii", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return value


def decode_words(value: Any) -> str:
    """A header value with RFC 2047 encoded words decoded and folding undone (RFC 5322 §2.2.3)."""
    text = _FOLD.sub("", _unsurrogate(str(value)))
    if "=?" not in text:
        return text.strip()
    try:
        return str(make_header(decode_header(text))).strip()
    except (LookupError, UnicodeError, ValueError, AssertionError, HeaderParseError):
        chunks: list[str] = []
        try:
            for chunk, charset in decode_header(text):
                if isinstance(chunk, str):
                    chunks.append(chunk)
                else:
                    chunks.append(_decode_bytes(chunk, charset))
        except (ValueError, AssertionError, HeaderParseError):
            return text.strip()
        return "".join(chunks).strip()


def _decode_bytes(data: bytes, charset: str | None) -> str:
    for candidate in (charset, "utf-8"):
        if not candidate:
            continue
        try:
            return data.decode(candidate)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("latin-1")


def part_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    return _decode_bytes(payload, part.get_content_charset())


def html_to_text(markup: str) -> str:
    markup = _SCRIPT_STYLE.sub(" ", markup)
    markup = _BREAKS.sub("\n", markup)
    return html.unescape(_TAG.sub(" ", markup))


def is_attachment(part: Message) -> bool:
    disposition = (part.get("Content-Disposition") or "").split(";")[0].strip().lower()
    return disposition == "attachment" or bool(part.get_filename())


def body_text(tree: Message) -> str:
    """The text a reader sees: the first text/plain part, else the first text/html as text."""
    html_part: Message | None = None
    for part in tree.walk():
        if part.is_multipart() or is_attachment(part):
            continue
        ctype = part.get_content_type()
        if ctype == "text/plain":
            return part_text(part)
        if ctype == "text/html" and html_part is None:
            html_part = part
        if ctype == "message/rfc822":
            break  # an embedded message's text is not this message's text
    return html_to_text(part_text(html_part)) if html_part is not None else ""


def _ids(value: str | None) -> list[str]:
    if not value:
        return []
    found = _MSGID.findall(value)
    if found:
        return found
    stripped = value.strip()
    return [stripped] if stripped and " " not in stripped else []


def snippet_of(text: str) -> str:
    # Gmail's snippets are whitespace-collapsed and HTML-escaped (an apostrophe comes as &#39;).
    short = _WS.sub(" ", text).strip()[:SNIPPET_LENGTH]
    return (
        short.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#39;")
    )


def _addresses(values: list[str]) -> str:
    pairs = getaddresses(values)
    return " ".join(f"{name} {addr}" for name, addr in pairs).casefold()


def facts_of(raw: bytes) -> MessageFacts:
    tree = parse_tree(raw)
    headers = tuple((str(name), decode_words(value)) for name, value in tree.items())

    def first(name: str) -> str | None:
        value = tree.get(name)
        return decode_words(value) if value is not None else None

    def every(name: str) -> list[str]:
        return [decode_words(v) for v in tree.get_all(name) or []]

    ids = _ids(first("Message-ID"))
    refs: list[str] = []
    for ref in _ids(first("In-Reply-To")) + _ids(" ".join(every("References"))):
        if ref not in refs:
            refs.append(ref)
    date_ms: int | None = None
    date_value = first("Date")
    if date_value:
        try:
            parsed = parsedate_to_datetime(date_value)
            date_ms = int(parsed.timestamp() * 1000)
        except (TypeError, ValueError, IndexError, OverflowError):
            date_ms = None
    try:
        text = body_text(tree)
    except (LookupError, ValueError, AssertionError):
        text = ""
    names = tuple(
        decode_words(part.get_filename())
        for part in tree.walk()
        if not part.is_multipart() and part.get_filename()
    )
    return MessageFacts(
        headers=headers,
        message_id=ids[0] if ids else None,
        references=tuple(refs),
        subject=first("Subject") or "",
        date_ms=date_ms,
        snippet=snippet_of(text),
        from_text=_addresses(every("From")),
        to_text=_addresses(every("To")),
        cc_text=_addresses(every("Cc")),
        body_text=text.casefold(),
        attachment_names=names,
    )


def b64url(data: bytes) -> str:
    # Gmail's ``raw`` and ``body.data`` are URL-safe base64 with padding (RFC 4648 §5).
    return base64.urlsafe_b64encode(data).decode("ascii")


def b64url_decode(value: str) -> bytes:
    """Lenient: Gmail accepts padded or unpadded, URL-safe or standard alphabet."""
    cleaned = "".join(value.split()).replace("+", "-").replace("/", "_").rstrip("=")
    return base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))


def _children(part: Message) -> list[Message]:
    if part.get_content_type() == "message/rfc822" or not part.is_multipart():
        return []
    payload = part.get_payload()
    return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []


def _leaf_bytes(part: Message) -> bytes:
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            return inner[0].as_bytes()
        return b""
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def attachment_id(message_id: str, part_id: str) -> str:
    # Opaque to clients, as Gmail's are; ours names the part so attachments.get can find it.
    return "ANGjdJ" + b64url(f"{message_id}:{part_id}".encode()).rstrip("=")


def part_id_of(attachment: str) -> tuple[str, str] | None:
    if not attachment.startswith("ANGjdJ"):
        return None
    try:
        message_id, _, part_id = b64url_decode(attachment[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return message_id, part_id


def payload_tree(
    raw: bytes, message_id: str, *, headers_only: bool = False, keep: set[str] | None = None
) -> dict[str, Any]:
    """The Message.payload of format=full (headers_only: of format=metadata).

    Part ids as Gmail numbers them: "" for the top, "0", "1" for its children, "1.0" below.
    Leaves carry ``body.data`` unless they are attachments, which get an ``attachmentId`` to
    fetch with messages.attachments.get; containers have ``body.size`` 0.
    """
    tree = parse_tree(raw)

    def headers_of(part: Message) -> list[dict[str, str]]:
        out = []
        for name, value in part.items():
            if keep is not None and str(name).lower() not in keep:
                continue
            out.append({"name": str(name), "value": decode_words(value)})
        return out

    if headers_only:
        return {"mimeType": tree.get_content_type(), "headers": headers_of(tree)}

    def build(part: Message, part_id: str) -> dict[str, Any]:
        node: dict[str, Any] = {
            "partId": part_id,
            "mimeType": part.get_content_type(),
            "filename": decode_words(part.get_filename() or ""),
            "headers": headers_of(part),
        }
        children = _children(part)
        if children or (part.is_multipart() and part.get_content_type() != "message/rfc822"):
            node["body"] = {"size": 0}
            node["parts"] = [
                build(child, f"{part_id}.{i}" if part_id else str(i))
                for i, child in enumerate(children)
            ]
            return node
        data = _leaf_bytes(part)
        if is_attachment(part) or part.get_content_type() == "message/rfc822":
            node["body"] = {"attachmentId": attachment_id(message_id, part_id), "size": len(data)}
        else:
            node["body"] = {"size": len(data), "data": b64url(data)} if data else {"size": 0}
        return node

    return build(tree, "")


def find_part_bytes(raw: bytes, part_id: str) -> bytes | None:
    part: Message = parse_tree(raw)
    if part_id:
        for index in part_id.split("."):
            children = _children(part)
            if not index.isdigit() or int(index) >= len(children):
                return None
            part = children[int(index)]
    if _children(part):
        return None
    return _leaf_bytes(part)
