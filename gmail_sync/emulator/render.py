"""Gmail's JSON resources (Message, Thread, Label) from the mailbox's records.

Field names and formats follow the discovery document's schemas: ids and history ids as strings
(uint64 is a JSON string in Google APIs), internalDate as a string of epoch milliseconds, empty
repeated fields left out as Gmail leaves them out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gmail_sync.emulator import mime
from gmail_sync.emulator.labels import Label
from gmail_sync.emulator.mailbox import Mailbox, StoredMessage

MESSAGE_FORMATS = ("minimal", "full", "raw", "metadata")


def message_json(
    stored: StoredMessage, fmt: str = "full", metadata_headers: Sequence[str] = ()
) -> dict[str, Any]:
    out: dict[str, Any] = {"id": stored.id, "threadId": stored.thread_id}
    if stored.label_ids:
        out["labelIds"] = list(stored.label_ids)
    out["snippet"] = stored.facts.snippet
    if fmt == "full":
        out["payload"] = mime.payload_tree(stored.raw, stored.id)
    elif fmt == "metadata":
        keep = {h.lower() for h in metadata_headers} or None
        out["payload"] = mime.payload_tree(stored.raw, stored.id, headers_only=True, keep=keep)
    elif fmt == "raw":
        out["raw"] = mime.b64url(stored.raw)
    out["sizeEstimate"] = len(stored.raw)
    out["historyId"] = str(stored.history_id)
    out["internalDate"] = str(stored.internal_date)
    return out


def message_short(stored: StoredMessage) -> dict[str, Any]:
    """What insert/import/send/modify answer: id, threadId, labelIds."""
    out: dict[str, Any] = {"id": stored.id, "threadId": stored.thread_id}
    if stored.label_ids:
        out["labelIds"] = list(stored.label_ids)
    return out


def thread_json(
    messages: Sequence[StoredMessage], fmt: str = "full", metadata_headers: Sequence[str] = ()
) -> dict[str, Any]:
    return {
        "id": messages[0].thread_id,
        "historyId": str(max(m.history_id for m in messages)),
        "messages": [message_json(m, fmt, metadata_headers) for m in messages],
    }


def thread_summary(mailbox: Mailbox, thread_id: str) -> dict[str, Any]:
    messages = mailbox.thread_messages(thread_id)
    return {
        "id": thread_id,
        "snippet": messages[-1].facts.snippet,
        "historyId": str(max(m.history_id for m in messages)),
    }


def label_json(label: Label, counts: dict[str, int] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": label.id, "name": label.name}
    if label.message_list_visibility:
        out["messageListVisibility"] = label.message_list_visibility
    if label.label_list_visibility:
        out["labelListVisibility"] = label.label_list_visibility
    out["type"] = label.type
    if counts:
        out.update(counts)
    if label.color:
        out["color"] = dict(label.color)
    return out
