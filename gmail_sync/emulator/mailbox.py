"""One Gmail mailbox in memory: messages, threads, labels, drafts and the change history.

Gmail's model (developers.google.com/gmail/api/guides/labels): labels live on messages; a
thread's labels are the union of its messages' labels; every change is a history record with a
new, larger id; the message and the thread carry the id of the last record that touched them.
Not thread-safe on its own: EmulatorState holds one lock around every use.
"""

from __future__ import annotations

import base64
import binascii
import bisect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gmail_sync.emulator import mime
from gmail_sync.emulator.conversations import choose_thread
from gmail_sync.emulator.errors import invalid_argument, label_conflict, not_found
from gmail_sync.emulator.history import (
    HistoryLog,
    HistoryRecord,
    LabelChange,
    MessageRef,
)
from gmail_sync.emulator.labels import (
    FIXED_LABELS,
    RESERVED_NAMES,
    SYSTEM_LABELS,
    Label,
    check_color,
    visibility,
)
from gmail_sync.emulator.search import (
    SearchTarget,
    compile_query,
    label_query_name,
    mentions_spam_or_trash,
    parse_query,
)


@dataclass
class StoredMessage:
    id: str
    thread_id: str
    raw: bytes
    label_ids: list[str]
    internal_date: int
    history_id: int
    facts: mime.MessageFacts = field(repr=False)

    def ref(self) -> MessageRef:
        return MessageRef(self.id, self.thread_id, tuple(self.label_ids))

    @property
    def sort_key(self) -> tuple[int, str]:
        return (self.internal_date, self.id)


def _token(key: tuple[int, str]) -> str:
    # Opaque to clients, as Gmail's numeric page tokens are.
    return f"{key[0]:015d}{int(key[1], 16):020d}"


def _untoken(token: str) -> tuple[int, str]:
    if len(token) != 35 or not token.isdigit():
        raise invalid_argument("Invalid pageToken", location="pageToken")
    return int(token[:15]), format(int(token[15:]), "016x")


def _page(items: list[Any], keys: list[tuple[int, str]], token: str | None, size: int):  # type: ignore[no-untyped-def]
    """A page of ``items`` sorted newest first; continues strictly after the token's key."""
    start = 0
    if token:
        last = _untoken(token)
        # keys are descending; find the first key strictly below ``last``.
        negated = [(-k[0], _neg_hex(k[1])) for k in keys]
        start = bisect.bisect_right(negated, (-last[0], _neg_hex(last[1])))
    chunk = items[start : start + size]
    more = start + size < len(items)
    return chunk, (_token(keys[start + size - 1]) if more and chunk else None)


def _neg_hex(value: str) -> int:
    return -int(value, 16)


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, not {value!r}")
    return value


def _nonnegative(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"expected a non-negative integer, not {value!r}")
    return value


class Mailbox:
    def __init__(
        self,
        address: str,
        *,
        new_message_id: Callable[[], str],
        history_retention: int,
        first_history_id: int,
        strict_thread_id: bool = False,
    ) -> None:
        self.address = address
        self._new_message_id = new_message_id
        self.history = HistoryLog(retention=history_retention, first_id=first_history_id)
        self.strict_thread_id = strict_thread_id
        self.messages: dict[str, StoredMessage] = {}
        self.threads: dict[str, list[str]] = {}
        self._by_rfc_id: dict[str, list[str]] = {}
        self._by_reference: dict[str, list[str]] = {}
        self.drafts: dict[str, str] = {}
        self.labels: dict[str, Label] = {}
        for label_id, list_vis, message_vis in SYSTEM_LABELS:
            self.labels[label_id] = Label(label_id, label_id, "system", list_vis, message_vis)
        self._next_label = 1

    # --- labels -------------------------------------------------------------------------------

    def label(self, label_id: str) -> Label:
        found = self.labels.get(label_id)
        if found is None:
            raise not_found()
        return found

    def _check_name(self, name: object, *, exclude: str | None = None) -> str:
        if not isinstance(name, str) or not name.strip() or len(name) > 225:
            raise invalid_argument("Invalid label name", location="label.name")
        clean = name.strip()
        if clean.casefold() in RESERVED_NAMES:
            raise invalid_argument("Invalid label name", location="label.name")
        for label in self.labels.values():
            if label.id != exclude and label.name.casefold() == clean.casefold():
                raise label_conflict()
        return clean

    def create_label(self, body: dict[str, Any]) -> Label:
        name = self._check_name(body.get("name"))
        color = check_color(body.get("color"))
        label = Label(
            id=f"Label_{self._next_label}",
            name=name,
            type="user",
            label_list_visibility=visibility(body, "labelListVisibility", "labelShow"),
            message_list_visibility=visibility(body, "messageListVisibility", "show"),
            color=color,
        )
        self._next_label += 1
        self.labels[label.id] = label
        return label

    def change_label(self, label_id: str, body: dict[str, Any], *, replace: bool) -> Label:
        label = self.label(label_id)
        if label.type == "system":
            raise invalid_argument("Invalid update request")
        if replace or "name" in body:
            label.name = self._check_name(body.get("name"), exclude=label.id)
        if replace or "color" in body:
            label.color = check_color(body.get("color"))
        if replace or "labelListVisibility" in body:
            label.label_list_visibility = visibility(body, "labelListVisibility", "labelShow")
        if replace or "messageListVisibility" in body:
            label.message_list_visibility = visibility(body, "messageListVisibility", "show")
        return label

    def delete_label(self, label_id: str) -> None:
        label = self.label(label_id)
        if label.type == "system":
            raise invalid_argument("Invalid delete request")
        # Deleting a label takes it off every message: that is a labelRemoved change each.
        carrying = [m.id for m in self.messages.values() if label_id in m.label_ids]
        self._change_labels(carrying, add=(), remove=(label_id,), check=False)
        del self.labels[label_id]

    def label_counts(self, label_id: str) -> dict[str, int]:
        messages = [m for m in self.messages.values() if label_id in m.label_ids]
        unread = [m for m in messages if "UNREAD" in m.label_ids]
        return {
            "messagesTotal": len(messages),
            "messagesUnread": len(unread),
            "threadsTotal": len({m.thread_id for m in messages}),
            "threadsUnread": len({m.thread_id for m in unread}),
        }

    def _check_label_ids(self, label_ids: Iterable[Any], *, changing: bool) -> list[str]:
        out: list[str] = []
        for label_id in label_ids:
            if not isinstance(label_id, str) or label_id not in self.labels:
                raise invalid_argument(f"Invalid label: {label_id}")
            if changing and label_id in FIXED_LABELS:
                raise invalid_argument(f"Invalid label: {label_id}")
            if label_id not in out:
                out.append(label_id)
        return out

    # --- messages -----------------------------------------------------------------------------

    def message(self, message_id: str) -> StoredMessage:
        found = self.messages.get(message_id)
        if found is None:
            raise not_found()
        return found

    def add_message(
        self,
        raw: bytes,
        *,
        label_ids: Sequence[Any],
        thread_id: str | None,
        internal_date: int | None,
        now_ms: int,
        message_id: str | None = None,
        facts: mime.MessageFacts | None = None,
    ) -> StoredMessage:
        labels = self._check_label_ids(label_ids, changing=False)
        facts = facts or mime.facts_of(raw)
        chosen = choose_thread(
            requested=thread_id,
            subject=facts.subject,
            references=facts.references,
            own_message_id=facts.message_id,
            thread_exists=lambda t: t in self.threads,
            thread_subjects=lambda t: [self.messages[m].facts.subject for m in self.threads[t]],
            messages_with_id=lambda ref: self._lookup(self._by_rfc_id, ref),
            messages_referencing=lambda ref: self._lookup(self._by_reference, ref),
            strict=self.strict_thread_id,
        )
        new_id = message_id or self._new_message_id()
        thread = chosen or new_id
        record_id = self.history.next_id()
        stored = StoredMessage(
            id=new_id,
            thread_id=thread,
            raw=raw,
            label_ids=labels,
            internal_date=max(0, internal_date if internal_date is not None else now_ms),
            history_id=record_id,
            facts=facts,
        )
        self.messages[new_id] = stored
        self.threads.setdefault(thread, []).append(new_id)
        if facts.message_id:
            self._by_rfc_id.setdefault(facts.message_id.casefold(), []).append(new_id)
        for ref in facts.references:
            self._by_reference.setdefault(ref.casefold(), []).append(new_id)
        self.history.append(HistoryRecord(id=record_id, added=(stored.ref(),)))
        return stored

    def _lookup(self, index: dict[str, list[str]], rfc_id: str) -> list[tuple[str, str]]:
        out = []
        for message_id in index.get(rfc_id.casefold(), ()):
            found = self.messages.get(message_id)
            if found is not None:
                out.append((found.thread_id, found.facts.subject))
        return out

    def modify_messages(
        self, ids: Sequence[str], *, add: Sequence[Any], remove: Sequence[Any]
    ) -> list[StoredMessage]:
        targets = [self.message(i) for i in ids]
        self._change_labels([m.id for m in targets], add=add, remove=remove, check=True)
        return targets

    def _change_labels(
        self, ids: Sequence[str], *, add: Sequence[Any], remove: Sequence[Any], check: bool
    ) -> None:
        """One history record for the whole change, one entry per message that really changed."""
        if check:
            add = self._check_label_ids(add, changing=True)
            remove = self._check_label_ids(remove, changing=True)
        added: list[tuple[StoredMessage, tuple[str, ...]]] = []
        removed: list[tuple[StoredMessage, tuple[str, ...]]] = []
        for message_id in ids:
            stored = self.messages[message_id]
            new_labels = [label for label in add if label not in stored.label_ids]
            gone = [label for label in remove if label in stored.label_ids or label in new_labels]
            stored.label_ids = [
                label for label in stored.label_ids + new_labels if label not in gone
            ]
            really_added = tuple(label for label in new_labels if label not in gone)
            if really_added:
                added.append((stored, really_added))
            really_removed = tuple(label for label in gone if label not in new_labels)
            if really_removed:
                removed.append((stored, really_removed))
        if not added and not removed:
            return
        record_id = self.history.next_id()
        for stored, _ in added + removed:
            stored.history_id = record_id
        self.history.append(
            HistoryRecord(
                id=record_id,
                labels_added=tuple(LabelChange(m.ref(), labels) for m, labels in added),
                labels_removed=tuple(LabelChange(m.ref(), labels) for m, labels in removed),
            )
        )

    def delete_messages(self, ids: Sequence[str]) -> None:
        targets = [self.message(i) for i in dict.fromkeys(ids)]
        if not targets:
            return
        record_id = self.history.next_id()
        for stored in targets:
            del self.messages[stored.id]
            thread = self.threads[stored.thread_id]
            thread.remove(stored.id)
            if not thread:
                del self.threads[stored.thread_id]
            for draft_id, message_id in list(self.drafts.items()):
                if message_id == stored.id:
                    del self.drafts[draft_id]
        self.history.append(HistoryRecord(id=record_id, deleted=tuple(m.ref() for m in targets)))

    # --- threads ------------------------------------------------------------------------------

    def thread_messages(self, thread_id: str) -> list[StoredMessage]:
        ids = self.threads.get(thread_id)
        if not ids:
            raise not_found()
        return sorted((self.messages[i] for i in ids), key=lambda m: m.sort_key)

    # --- search -------------------------------------------------------------------------------

    def search(
        self,
        *,
        q: str | None,
        label_ids: Sequence[str],
        include_spam_trash: bool,
        now_ms: int,
    ) -> list[StoredMessage]:
        """Matching messages, newest first (Gmail lists by internalDate, descending)."""
        query = parse_query(q)
        match = compile_query(query, now_ms)
        hide = set()
        if not include_spam_trash and not mentions_spam_or_trash(query):
            hide = {"SPAM", "TRASH"} - set(label_ids)
        wanted = set(label_ids)
        names = {label.id: label_query_name(label.name) for label in self.labels.values()}
        candidates: Iterable[StoredMessage] = self.messages.values()
        # rfc822msgid: is how clients find a message they sent; answer it from the index.
        for clause in query:
            if len(clause) == 1 and clause[0].key == "rfc822msgid" and not clause[0].negated:
                rfc_id = clause[0].value.strip().strip("<>").casefold()
                candidates = [self.messages[i] for i in self._by_rfc_id.get(rfc_id, ())]
                break
        out = []
        for stored in candidates:
            labels = set(stored.label_ids)
            if not wanted <= labels or labels & hide:
                continue
            target = SearchTarget(
                label_ids=frozenset(labels),
                label_names=frozenset(names[label] for label in labels if label in names),
                internal_date=stored.internal_date,
                size=len(stored.raw),
                facts=stored.facts,
            )
            if match(target):
                out.append(stored)
        out.sort(key=lambda m: m.sort_key, reverse=True)
        return out

    def page_messages(
        self, matches: list[StoredMessage], *, token: str | None, size: int
    ) -> tuple[list[StoredMessage], str | None]:
        return _page(matches, [m.sort_key for m in matches], token, size)  # type: ignore[no-any-return]

    def page_threads(
        self, matches: list[StoredMessage], *, token: str | None, size: int
    ) -> tuple[list[str], str | None]:
        latest: dict[str, tuple[int, str]] = {}
        for stored in matches:
            if stored.thread_id not in latest:
                newest = max(self.messages[i].sort_key for i in self.threads[stored.thread_id])
                latest[stored.thread_id] = (newest[0], stored.thread_id)
        ordered = sorted(latest.values(), reverse=True)
        return _page([key[1] for key in ordered], ordered, token, size)  # type: ignore[no-any-return]

    # --- drafts -------------------------------------------------------------------------------

    def trash(self, ids: Sequence[str], *, undo: bool = False) -> list[StoredMessage]:
        # messages.trash adds TRASH (the other labels stay, so untrash restores the message).
        targets = [self.message(i) for i in ids]
        change = ("TRASH",)
        self._change_labels(
            [m.id for m in targets],
            add=() if undo else change,
            remove=change if undo else (),
            check=False,
        )
        return targets

    def add_draft(self, stored: StoredMessage) -> str:
        draft_id = f"r{int(stored.id, 16)}"
        self.drafts[draft_id] = stored.id
        return draft_id

    # --- persistence (EmulatorState.save / load) ------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """Everything a restart must keep; derived data (MIME facts, indexes) is rebuilt on load.

        Messages in insertion order (a thread lists its messages in that order); raw bytes as
        base64, since mail need not be text in any charset.
        """
        return {
            "address": self.address,
            "next_label": self._next_label,
            "labels": [
                {
                    "id": label.id,
                    "name": label.name,
                    "labelListVisibility": label.label_list_visibility,
                    "messageListVisibility": label.message_list_visibility,
                    "color": dict(label.color) if label.color else None,
                }
                for label in self.labels.values()
                if label.type == "user"  # system labels are fixed and made by the constructor
            ],
            "messages": [
                {
                    "id": m.id,
                    "thread_id": m.thread_id,
                    "raw": base64.b64encode(m.raw).decode("ascii"),
                    "label_ids": list(m.label_ids),
                    "internal_date": m.internal_date,
                    "history_id": m.history_id,
                }
                for m in self.messages.values()
            ],
            "drafts": dict(self.drafts),
            "history": self.history.to_json(),
        }

    @classmethod
    def from_json(
        cls,
        data: dict[str, Any],
        *,
        new_message_id: Callable[[], str],
        history_retention: int,
        strict_thread_id: bool = False,
    ) -> Mailbox:
        """A mailbox from ``to_json``; raises ValueError/TypeError/KeyError on a bad document."""
        address = data["address"]
        if not isinstance(address, str) or "@" not in address:
            raise ValueError(f"not a mailbox address: {address!r}")
        history = HistoryLog.from_json(data["history"], retention=history_retention)
        mailbox = cls(
            address,
            new_message_id=new_message_id,
            history_retention=history_retention,
            first_history_id=0,
            strict_thread_id=strict_thread_id,
        )
        mailbox.history = history
        next_label = data["next_label"]
        if not isinstance(next_label, int) or next_label < 1:
            raise ValueError(f"bad next label number {next_label!r}")
        mailbox._next_label = next_label
        for item in data["labels"]:
            label = Label(
                id=_str(item["id"]),
                name=_str(item["name"]),
                type="user",
                label_list_visibility=visibility(item, "labelListVisibility", "labelShow"),
                message_list_visibility=visibility(item, "messageListVisibility", "show"),
                color=check_color(item.get("color")),
            )
            if label.id in mailbox.labels:
                raise ValueError(f"label {label.id} twice")
            mailbox.labels[label.id] = label
        for item in data["messages"]:
            message_id = _str(item["id"])
            if message_id in mailbox.messages:
                raise ValueError(f"message {message_id} twice")
            int(message_id, 16)  # ids are hex: routes and page tokens rely on it
            try:
                raw = base64.b64decode(_str(item["raw"]), validate=True)
            except binascii.Error as exc:
                raise ValueError(f"message {message_id}: raw is not base64 ({exc})") from None
            label_ids = [_str(x) for x in item["label_ids"]]
            unknown = [x for x in label_ids if x not in mailbox.labels]
            if unknown:
                raise ValueError(f"message {message_id} has unknown labels {unknown}")
            facts = mime.facts_of(raw)
            stored = StoredMessage(
                id=message_id,
                thread_id=_str(item["thread_id"]),
                raw=raw,
                label_ids=label_ids,
                internal_date=_nonnegative(item["internal_date"]),
                history_id=_nonnegative(item["history_id"]),
                facts=facts,
            )
            mailbox.messages[message_id] = stored
            mailbox.threads.setdefault(stored.thread_id, []).append(message_id)
            if facts.message_id:
                mailbox._by_rfc_id.setdefault(facts.message_id.casefold(), []).append(message_id)
            for ref in facts.references:
                mailbox._by_reference.setdefault(ref.casefold(), []).append(message_id)
        for draft_id, message_id in dict(data["drafts"]).items():
            if message_id not in mailbox.messages:
                raise ValueError(f"draft {draft_id} names no message")
            mailbox.drafts[_str(draft_id)] = message_id
        return mailbox

    def profile(self) -> dict[str, Any]:
        return {
            "emailAddress": self.address,
            "messagesTotal": len(self.messages),
            "threadsTotal": len(self.threads),
            "historyId": str(self.history.current_id),
        }
