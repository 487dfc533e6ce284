"""A mailbox's change history, as users.history.list reports it.

Every change (a message added or deleted, labels added or removed) is one record with a new id;
ids only grow. Only the newest ``retention`` records are kept: a ``startHistoryId`` older than
the oldest kept record answers 404, and the client must do a full sync (Gmail's sync guide,
developers.google.com/gmail/api/guides/sync#limitations).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from itertools import islice, pairwise
from typing import Any

from gmail_sync.emulator.errors import invalid_argument, not_found

HISTORY_TYPES = ("messageAdded", "messageDeleted", "labelAdded", "labelRemoved")


@dataclass(frozen=True)
class MessageRef:
    """A message as a history record shows it: the state right after the change."""

    id: str
    thread_id: str
    label_ids: tuple[str, ...]

    def short(self) -> dict[str, Any]:
        return {"id": self.id, "threadId": self.thread_id}

    def full(self) -> dict[str, Any]:
        out = self.short()
        if self.label_ids:
            out["labelIds"] = list(self.label_ids)
        return out

    def to_json(self) -> list[Any]:
        return [self.id, self.thread_id, list(self.label_ids)]

    @classmethod
    def from_json(cls, data: Any) -> MessageRef:
        message_id, thread_id, label_ids = data
        return cls(_text(message_id), _text(thread_id), tuple(_text(x) for x in label_ids))


@dataclass(frozen=True)
class LabelChange:
    message: MessageRef
    label_ids: tuple[str, ...]

    def to_json(self) -> list[Any]:
        return [self.message.to_json(), list(self.label_ids)]

    @classmethod
    def from_json(cls, data: Any) -> LabelChange:
        message, label_ids = data
        return cls(MessageRef.from_json(message), tuple(_text(x) for x in label_ids))


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, not {type(value).__name__}")
    return value


def _int(value: Any) -> int:
    # bool is an int subclass; a saved id never is one.
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, not {type(value).__name__}")
    return value


@dataclass(frozen=True)
class HistoryRecord:
    id: int
    added: tuple[MessageRef, ...] = ()
    deleted: tuple[MessageRef, ...] = ()
    labels_added: tuple[LabelChange, ...] = ()
    labels_removed: tuple[LabelChange, ...] = ()

    def render(self, types: frozenset[str], label_id: str | None) -> dict[str, Any] | None:
        """The record as Gmail answers it, with only the wanted types; None if nothing is left."""

        def keep_ref(ref: MessageRef) -> bool:
            return label_id is None or label_id in ref.label_ids

        def keep_change(change: LabelChange) -> bool:
            return keep_ref(change.message) or label_id in change.label_ids

        out: dict[str, Any] = {"id": str(self.id)}
        touched: list[MessageRef] = []
        if "messageAdded" in types:
            refs = [r for r in self.added if keep_ref(r)]
            if refs:
                out["messagesAdded"] = [{"message": r.full()} for r in refs]
                touched += refs
        if "messageDeleted" in types:
            refs = [r for r in self.deleted if keep_ref(r)]
            if refs:
                out["messagesDeleted"] = [{"message": r.full()} for r in refs]
                touched += refs
        for kind, field, changes in (
            ("labelAdded", "labelsAdded", self.labels_added),
            ("labelRemoved", "labelsRemoved", self.labels_removed),
        ):
            if kind not in types:
                continue
            kept = [c for c in changes if keep_change(c)]
            if kept:
                out[field] = [
                    {"message": c.message.full(), "labelIds": list(c.label_ids)} for c in kept
                ]
                touched += [c.message for c in kept]
        if not touched:
            return None
        seen: dict[str, MessageRef] = {}
        for ref in touched:
            seen.setdefault(ref.id, ref)
        # Gmail's order: id, messages, then the change lists.
        return {"id": out.pop("id"), "messages": [r.short() for r in seen.values()], **out}

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id}
        for key, refs in (("added", self.added), ("deleted", self.deleted)):
            if refs:
                out[key] = [r.to_json() for r in refs]
        for key, changes in (
            ("labels_added", self.labels_added),
            ("labels_removed", self.labels_removed),
        ):
            if changes:
                out[key] = [c.to_json() for c in changes]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HistoryRecord:
        return cls(
            id=_int(data["id"]),
            added=tuple(MessageRef.from_json(r) for r in data.get("added", ())),
            deleted=tuple(MessageRef.from_json(r) for r in data.get("deleted", ())),
            labels_added=tuple(LabelChange.from_json(c) for c in data.get("labels_added", ())),
            labels_removed=tuple(LabelChange.from_json(c) for c in data.get("labels_removed", ())),
        )


class HistoryLog:
    def __init__(self, *, retention: int, first_id: int) -> None:
        if retention < 1:
            raise ValueError("history retention must be at least one record")
        self._records: deque[HistoryRecord] = deque(maxlen=retention)
        self._current = first_id
        # Every id at or below the floor may have been dropped: a start id below it is unusable.
        # Ids from before the mailbox existed were never issued, so the floor starts there.
        self._floor = first_id
        self._expire_next = False

    @property
    def current_id(self) -> int:
        return self._current

    def next_id(self) -> int:
        self._current += 1
        return self._current

    def append(self, record: HistoryRecord) -> None:
        if len(self._records) == self._records.maxlen:
            self._floor = self._records[0].id
        self._records.append(record)

    def to_json(self) -> dict[str, Any]:
        """The log for a state file; a pending forced expiry is a test fault and is not kept."""
        return {
            "current": self._current,
            "floor": self._floor,
            "records": [r.to_json() for r in self._records],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], *, retention: int) -> HistoryLog:
        log = cls(retention=retention, first_id=_int(data["floor"]))
        records = [HistoryRecord.from_json(r) for r in data["records"]]
        if any(b.id <= a.id for a, b in pairwise(records)):
            raise ValueError("history record ids are not increasing")
        current = _int(data["current"])
        if records and current < records[-1].id:
            raise ValueError("the current history id is below the newest record's")
        # A smaller retention than the file's keeps the newest records, as the live log would.
        for record in records:
            log.append(record)
        log._current = current
        return log

    def skip_to(self, history_id: int) -> None:
        """The next id is above ``history_id`` (ids only grow; they need not be contiguous)."""
        self._current = max(self._current, history_id)

    def expire_next_list(self) -> None:
        """The next list answers 404 (a forced "history too old"), as after a long outage."""
        self._expire_next = True

    def clear_expiry(self) -> bool:
        was, self._expire_next = self._expire_next, False
        return was

    def page(
        self,
        *,
        start: int,
        types: frozenset[str],
        label_id: str | None,
        max_results: int,
        page_token: str | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        if self.clear_expiry() or start < self._floor:
            raise not_found()
        after = start
        if page_token is not None:
            try:
                after = int(page_token)
            except ValueError:
                raise invalid_argument("Invalid pageToken", location="pageToken") from None
            if after < start:
                raise invalid_argument("Invalid pageToken", location="pageToken")
            if after < self._floor:
                raise not_found()
        out: list[dict[str, Any]] = []
        last = after
        for record in self._iter_after(after):
            rendered = record.render(types, label_id)
            if rendered is None:
                continue
            if len(out) == max_results:
                return out, str(last)
            out.append(rendered)
            last = record.id
        return out, None

    def _iter_after(self, after: int) -> list[HistoryRecord]:
        records = self._records
        if not records or records[-1].id <= after:
            return []
        # Ids are increasing: bisect for the first record past ``after``.
        lo, hi = 0, len(records)
        while lo < hi:
            mid = (lo + hi) // 2
            if records[mid].id <= after:
                lo = mid + 1
            else:
                hi = mid
        return list(islice(records, lo, None))
