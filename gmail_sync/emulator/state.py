"""The emulator's whole state: mailboxes, auth, quota, faults and counters, behind one lock.

Every Gmail call goes through ``begin_call`` (auth → userId → parameters → injected fault →
quota) before its handler runs, so a faulted or rate-limited call changes nothing; batch parts
are calls of their own. Python methods here do what the control endpoints do, for tests.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from email.message import Message as EmailMessage
from email.utils import format_datetime, formatdate, getaddresses, parsedate_to_datetime
from pathlib import Path
from typing import Any

from gmail_sync.emulator import mime, persistence
from gmail_sync.emulator.errors import (
    GmailApiError,
    delegation_denied,
    injected,
    invalid_argument,
    quota_exceeded,
    unauthenticated,
)
from gmail_sync.emulator.faults import DEFAULT_STATUSES, FaultConfig, FaultInjector
from gmail_sync.emulator.mailbox import Mailbox, StoredMessage
from gmail_sync.emulator.methods import GLOBAL_PARAMS, GmailMethod
from gmail_sync.emulator.persistence import EmulatorStateError
from gmail_sync.emulator.quota import DEFAULT_UNITS_PER_MINUTE, RollingQuota
from gmail_sync.emulator.render import message_short

TOKEN_PREFIX = "emulator:"  # noqa: S105 - a fixed scheme for local tokens, not a secret
DEFAULT_HISTORY_RETENTION = 10_000
_TEST_MESSAGE_ID_BASE = 0x18F0_0000_0000_0000
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_BCC = re.compile(rb"^bcc:.*(?:\r?\n[ \t].*)*\r?\n", re.IGNORECASE | re.MULTILINE)


def bearer_token(address: str) -> str:
    """The access token the emulator accepts for a mailbox."""
    return f"{TOKEN_PREFIX}{address}"


class EmulatorState:
    def __init__(
        self,
        *,
        history_retention: int = DEFAULT_HISTORY_RETENTION,
        quota_per_minute: int = DEFAULT_UNITS_PER_MINUTE,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], float] = time.time,
        start_ms: int | None = None,
        strict_thread_id: bool = False,
        mailboxes: Iterable[str] = (),
    ) -> None:
        """``clock`` measures the quota minute; ``now`` (epoch seconds) dates received mail.

        ``start_ms``: with it (a long-running emulator), message and history ids are derived
        from the start time so they keep growing across restarts, as Gmail's do; without it
        (tests) they are small and the same on every run.
        """
        self.lock = threading.RLock()
        self.history_retention = history_retention
        self.strict_thread_id = strict_thread_id
        self.quota = RollingQuota(limit=quota_per_minute, clock=clock)
        self.faults = FaultInjector()
        self._now = now
        self._mailboxes: dict[str, Mailbox] = {}
        self._message_counter = 0
        self._clock_ids = start_ms is not None
        if start_ms is None:
            self._message_id_base, self._id_step, self._first_history_id = (
                _TEST_MESSAGE_ID_BASE,
                0x1003,
                1000,
            )
        else:
            # Gmail's ids are a millisecond time shifted left with a counter below it.
            self._message_id_base, self._id_step, self._first_history_id = (
                start_ms << 20,
                1,
                # A thousand history ids a millisecond of uptime before a restart could reuse one.
                start_ms * 1000,
            )
        # Bumped by every change to the mailboxes; a save records the revision it wrote.
        self._revision = 0
        self._saved_revision: int | None = None
        self._save_lock = threading.Lock()
        self._reset_counters()
        for address in mailboxes:
            self.add_mailbox(address)

    # --- mailboxes ----------------------------------------------------------------------------

    def add_mailbox(self, address: str) -> Mailbox:
        key = address.strip().casefold()
        if "@" not in key:
            raise ValueError(f"not an email address: {address!r}")
        with self.lock:
            existing = self._mailboxes.get(key)
            if existing is not None:
                return existing
            mailbox = Mailbox(
                address.strip(),
                new_message_id=self._new_message_id,
                history_retention=self.history_retention,
                first_history_id=self._first_history_id,
                strict_thread_id=self.strict_thread_id,
            )
            self._mailboxes[key] = mailbox
            self.mark_changed()
            return mailbox

    def mailbox(self, address: str) -> Mailbox:
        with self.lock:
            found = self._mailboxes.get(address.strip().casefold())
        if found is None:
            raise KeyError(address)
        return found

    @property
    def addresses(self) -> list[str]:
        with self.lock:
            return [m.address for m in self._mailboxes.values()]

    def _new_message_id(self) -> str:
        self._message_counter += 1
        return format(self._message_id_base + self._message_counter * self._id_step, "016x")

    def now_ms(self) -> int:
        return int(self._now() * 1000)

    # --- every Gmail call ---------------------------------------------------------------------

    def begin_call(
        self,
        method: GmailMethod,
        *,
        token: str | None,
        user_id: str,
        query_keys: Iterable[str],
        in_batch: bool,
    ) -> Mailbox:
        """Admit a call or raise the error Gmail would answer; charges the quota on success."""
        with self.lock:
            mailbox = self._authenticate(token)
            if user_id != "me" and user_id.casefold() != mailbox.address.casefold():
                raise delegation_denied(user_id)
            for key in query_keys:
                if key not in method.params and key not in GLOBAL_PARAMS:
                    raise invalid_argument(
                        f'Invalid JSON payload received. Unknown name "{key}": Cannot bind '
                        "query parameter. Field '" + key + "' could not be found in request "
                        "message.",
                        location=key,
                    )
            stats = self._method_stats(method.id)
            box = self._mailbox_stats(mailbox.address)
            stats["calls"] += 1
            box["calls"] += 1
            if in_batch:
                self._batch_parts += 1
            status = self.faults.take_scripted(method.id, after_work=False)
            if status is None:
                status = self.faults.decide()
            if status is not None:
                stats["faults"] += 1
                raise injected(status)
            if not self.quota.try_spend(mailbox.address.casefold(), method.units):
                stats["rate_limited"] += 1
                self._rate_limited += 1
                raise quota_exceeded()
            stats["units"] += method.units
            box["units"] += method.units
            return mailbox

    def end_call(self, method: GmailMethod) -> None:
        """After the handler did its work: a scripted "after the work" failure, if one is due
        (the change stays; only the answer is lost, as with a 5xx from Gmail after a send)."""
        with self.lock:
            status = self.faults.take_scripted(method.id, after_work=True)
            if status is not None:
                self._method_stats(method.id)["faults"] += 1
                raise injected(status)

    def _authenticate(self, token: str | None) -> Mailbox:
        if not token or not token.startswith(TOKEN_PREFIX):
            raise unauthenticated()
        found = self._mailboxes.get(token[len(TOKEN_PREFIX) :].strip().casefold())
        if found is None:
            raise unauthenticated()
        return found

    # --- operations that need more than one mailbox or the clock ------------------------------

    def insert(
        self,
        mailbox: Mailbox,
        raw: bytes,
        *,
        label_ids: Sequence[Any] = (),
        thread_id: str | None = None,
        date_from_header: bool,
    ) -> StoredMessage:
        with self.lock:
            facts = mime.facts_of(raw)
            date = facts.date_ms if date_from_header else None
            self.mark_changed()
            return mailbox.add_message(
                raw,
                label_ids=label_ids,
                thread_id=thread_id,
                internal_date=date,
                now_ms=self.now_ms(),
                facts=facts,
            )

    def send(self, mailbox: Mailbox, raw: bytes, *, thread_id: str | None) -> StoredMessage:
        """messages.send: the sender's copy gets SENT; emulated recipients get it in INBOX."""
        with self.lock:
            _check_recipients(mime.parse_tree(raw))
            self.mark_changed()
            message_id = self._new_message_id()
            raw = self._complete_outgoing(raw, address=mailbox.address, message_id=message_id)
            stored = mailbox.add_message(
                raw,
                label_ids=["SENT"],
                thread_id=thread_id,
                internal_date=None,
                now_ms=self.now_ms(),
                message_id=message_id,
            )
            # Recipients never see the Bcc header (RFC 5322 §3.6.3); the sender's copy keeps it.
            end = _header_end(raw)
            delivered = _BCC.sub(b"", raw[:end]) + raw[end:]
            for address in self._recipients(stored):
                other = self._mailboxes.get(address)
                if other is not None and other is not mailbox:
                    other.add_message(
                        delivered,
                        label_ids=["INBOX", "UNREAD"],
                        thread_id=None,
                        internal_date=None,
                        now_ms=self.now_ms(),
                    )
            return stored

    @staticmethod
    def _recipients(stored: StoredMessage) -> list[str]:
        values = [v for k, v in stored.facts.headers if k.lower() in ("to", "cc", "bcc")]
        return list(dict.fromkeys(addr.casefold() for _, addr in getaddresses(values) if addr))

    def _complete_outgoing(self, raw: bytes, *, address: str, message_id: str) -> bytes:
        # Gmail fills in what a sent message lacks: Message-ID, Date, From (RFC 5322 §3.6).
        tree = mime.parse_tree(raw)
        extra: list[str] = []
        if tree.get("Message-ID") is None:
            extra.append(f"Message-ID: <CAEMU{message_id}@mail.gmail.com>")
        if tree.get("Date") is None:
            extra.append(f"Date: {formatdate(self._now())}")
        if tree.get("From") is None:
            extra.append(f"From: {address}")
        if not extra:
            return raw
        newline = "\r\n" if b"\r\n" in raw[: _header_end(raw)] else "\n"
        return "".join(line + newline for line in extra).encode() + raw

    # --- persistence ---------------------------------------------------------------------------

    def mark_changed(self) -> None:
        """Something a restart must keep has changed (every Gmail call but GET calls this)."""
        with self.lock:
            self._revision += 1

    def to_json(self) -> dict[str, Any]:
        """The mailboxes and id counters; quota, faults and call counters are not kept."""
        with self.lock:
            return {
                "format": persistence.FORMAT,
                "version": persistence.VERSION,
                "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "history_retention": self.history_retention,
                "strict_thread_id": self.strict_thread_id,
                "ids": {
                    "message_base": self._message_id_base,
                    "step": self._id_step,
                    "counter": self._message_counter,
                    "first_history_id": self._first_history_id,
                    "from_clock": self._clock_ids,
                },
                "mailboxes": [m.to_json() for m in self._mailboxes.values()],
            }

    def save(self, path: Path) -> None:
        """Write the state to ``path`` as JSON, atomically (temp file + rename)."""
        with self._save_lock:
            with self.lock:
                revision = self._revision
                document = self.to_json()
            data = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
            persistence.write_atomically(Path(path), data)
            self._saved_revision = revision

    def save_if_changed(self, path: Path) -> bool:
        """Save unless nothing changed since the last save; True if it wrote."""
        with self.lock:
            if self._saved_revision == self._revision:
                return False
        self.save(path)
        return True

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        quota_per_minute: int = DEFAULT_UNITS_PER_MINUTE,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], float] = time.time,
    ) -> EmulatorState:
        """A state saved by ``save``; ids and history ids continue where they stopped.

        A file that is not such a state raises ``EmulatorStateError`` naming the file and what is
        wrong with it (never a half-loaded state).
        """
        path = Path(path)
        try:
            document = json.loads(path.read_bytes())
        except (OSError, UnicodeDecodeError, RecursionError, json.JSONDecodeError) as exc:
            raise EmulatorStateError(f"cannot read the emulator state {path}: {exc}") from None
        try:
            return cls._from_json(document, quota_per_minute=quota_per_minute, clock=clock, now=now)
        except EmulatorStateError as exc:
            raise EmulatorStateError(f"{path} is not an emulator state: {exc}") from None
        except (GmailApiError, KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, GmailApiError):  # a label check (name, colour, visibility)
                what = exc.message
            elif isinstance(exc, KeyError):
                what = f"missing {exc}"
            else:
                what = str(exc)
            raise EmulatorStateError(f"{path} is not a valid emulator state: {what}") from None

    @classmethod
    def _from_json(
        cls,
        document: Any,
        *,
        quota_per_minute: int,
        clock: Callable[[], float],
        now: Callable[[], float],
    ) -> EmulatorState:
        if not isinstance(document, dict) or document.get("format") != persistence.FORMAT:
            raise EmulatorStateError(f"no {persistence.FORMAT!r} format marker")
        if document.get("version") != persistence.VERSION:
            raise EmulatorStateError(f"unsupported version {document.get('version')!r}")
        retention = document["history_retention"]
        if not isinstance(retention, int) or retention < 1:
            raise ValueError(f"bad history retention {retention!r}")
        state = cls(
            history_retention=retention,
            quota_per_minute=quota_per_minute,
            clock=clock,
            now=now,
            strict_thread_id=bool(document["strict_thread_id"]),
        )
        ids = document["ids"]
        for key in ("message_base", "step", "counter", "first_history_id"):
            if not isinstance(ids[key], int) or ids[key] < 0:
                raise ValueError(f"bad id counter {key}={ids[key]!r}")
        state._message_id_base = ids["message_base"]
        state._id_step = ids["step"]
        state._message_counter = ids["counter"]
        state._first_history_id = ids["first_history_id"]
        state._clock_ids = bool(ids["from_clock"])
        for data in document["mailboxes"]:
            mailbox = Mailbox.from_json(
                data,
                new_message_id=state._new_message_id,
                history_retention=retention,
                strict_thread_id=state.strict_thread_id,
            )
            key = mailbox.address.strip().casefold()
            if key in state._mailboxes:
                raise ValueError(f"mailbox {mailbox.address} twice")
            state._mailboxes[key] = mailbox
        # Ids handed out after the load must not collide with saved ones.
        highest = max(
            (int(i, 16) for m in state._mailboxes.values() for i in m.messages), default=0
        )
        if highest > state._message_id_base + state._message_counter * state._id_step:
            raise ValueError("a saved message id is beyond the saved id counter")
        if state._clock_ids:
            state._restart_clock_ids()
        state._saved_revision = state._revision
        return state

    def _restart_clock_ids(self) -> None:
        """Move clock-derived ids past the present, as a fresh start would.

        A process killed between two saves may have handed out ids (messages a client has
        stored, history it has read past) that the file lacks; reusing them would make a client
        take a new message for one it already has, or skip changes below its cursor. Ids issued
        before now are below ``now << 20`` / ``now * 1000`` (see __init__), so starting there
        reuses none. History ids may skip, as Gmail's do.
        """
        now_ms = self.now_ms()
        if now_ms << 20 > self._message_id_base + self._message_counter * self._id_step:
            self._message_id_base, self._message_counter, self._id_step = now_ms << 20, 0, 1
        self._first_history_id = max(self._first_history_id, now_ms * 1000)
        for mailbox in self._mailboxes.values():
            mailbox.history.skip_to(now_ms * 1000)

    # --- Python conveniences (the control endpoints call these) -------------------------------

    def import_raw(
        self,
        address: str,
        raw: bytes,
        *,
        label_ids: Sequence[str] = ("INBOX", "UNREAD"),
        thread_id: str | None = None,
        date_from_header: bool = True,
    ) -> dict[str, Any]:
        """What messages.import does, without a call (no quota, no faults, no counters)."""
        with self.lock:
            stored = self.insert(
                self.mailbox(address),
                raw,
                label_ids=label_ids,
                thread_id=thread_id,
                date_from_header=date_from_header,
            )
            return message_short(stored)

    def import_eml_dir(self, address: str, path: Path, *, recent: bool = False) -> list[str]:
        """Import every ``*.eml`` of a folder, sorted by name, into INBOX (unread).

        ``recent``: move the Date headers into the last 20 hours, in the same order (the newest
        ten minutes ago) — the demo mail then looks like a mailbox's last day whenever it is run,
        new enough to be acknowledged."""
        raws = [file.read_bytes() for file in sorted(Path(path).glob("*.eml"))]
        if recent:
            now = datetime.now(UTC)
            raws = shift_dates(
                raws, newest=now - timedelta(minutes=10), oldest=now - timedelta(hours=20)
            )
        return [self.import_raw(address, raw)["id"] for raw in raws]

    def set_faults(
        self, rate: float, statuses: Sequence[int] = DEFAULT_STATUSES, seed: int | None = None
    ) -> FaultConfig:
        with self.lock:
            return self.faults.configure(rate=rate, statuses=statuses, seed=seed)

    def clear_faults(self) -> None:
        self.set_faults(0.0)
        with self.lock:
            self.faults.clear_scripted()

    def fail_method(
        self, method_id: str, status: int, *, times: int = 1, after_work: bool = False
    ) -> None:
        """The next ``times`` calls of one method answer ``status`` (``faults.script``)."""
        with self.lock:
            self.faults.script(method_id, status, times=times, after_work=after_work)

    def expire_history(self, address: str) -> None:
        """The next history.list of this mailbox answers 404 (once)."""
        with self.lock:
            self.mailbox(address).history.expire_next_list()

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "methods": {k: dict(v) for k, v in sorted(self._methods.items())},
                "mailboxes": {
                    k: {**v, "units_last_minute": self.quota.used(k.casefold())}
                    for k, v in sorted(self._boxes.items())
                },
                "calls": sum(v["calls"] for v in self._methods.values()),
                "units": sum(v["units"] for v in self._methods.values()),
                "faults_injected": self.faults.injected,
                "rate_limited": self._rate_limited,
                "batches": self._batches,
                "batch_parts": self._batch_parts,
            }

    def reset_stats(self, *, quota: bool = True) -> None:
        """Zero the counters (and, by default, the quota window)."""
        with self.lock:
            self._reset_counters()
            if quota:
                self.quota.reset()

    def count_batch(self) -> None:
        with self.lock:
            self._batches += 1

    def _reset_counters(self) -> None:
        self._methods: dict[str, dict[str, int]] = {}
        self._boxes: dict[str, dict[str, int]] = {}
        self._rate_limited = 0
        self._batches = 0
        self._batch_parts = 0
        self.faults.injected = 0

    def _method_stats(self, method_id: str) -> dict[str, int]:
        return self._methods.setdefault(
            method_id, {"calls": 0, "units": 0, "faults": 0, "rate_limited": 0}
        )

    def _mailbox_stats(self, address: str) -> dict[str, int]:
        return self._boxes.setdefault(address, {"calls": 0, "units": 0})


def _check_recipients(tree: EmailMessage) -> None:
    """What Gmail answers a send it cannot deliver: no recipient at all, or one that is not an
    address (400 invalidArgument, nothing sent). Read from the undecoded headers: a decoded
    display name may hold a comma."""
    found = False
    for name in ("To", "Cc", "Bcc"):
        values = [str(v) for v in tree.get_all(name, [])]
        for _display, address in getaddresses(values):
            local, _, domain = address.rpartition("@")
            if not local or not domain or " " in address:
                raise invalid_argument(f"Invalid {name} header")
            found = True
    if not found:
        raise invalid_argument("Recipient address required")


def _header_end(raw: bytes) -> int:
    """Where the header section ends, its last line break included."""
    match = _HEADER_END.search(raw)
    if match is None:
        return len(raw)
    return match.start() + (2 if raw[match.start() : match.start() + 1] == b"\r" else 1)


_DATE_HEADER = re.compile(rb"^Date:[ \t]*([^\r\n]*)", re.IGNORECASE | re.MULTILINE)


def shift_dates(raws: list[bytes], *, newest: datetime, oldest: datetime) -> list[bytes]:
    """The messages with their Date headers moved, in order, into [``oldest``, ``newest``]: the
    newest lands on ``newest``, and the span is compressed if it is longer than the window (each
    keeps its own UTC offset); a message without a readable Date is left as it is."""

    def date_of(raw: bytes) -> datetime | None:
        head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        match = _DATE_HEADER.search(head)
        if match is None:
            return None
        try:
            return parsedate_to_datetime(match.group(1).decode("ascii", "replace"))
        except (TypeError, ValueError):
            return None

    dates = [date_of(raw) for raw in raws]
    known = [d for d in dates if d is not None and d.tzinfo is not None]
    if not known:
        return raws
    latest, span = max(known), max(known) - min(known)
    scale = min(1.0, (newest - oldest) / span) if span else 1.0
    shifted = []
    for raw, date in zip(raws, dates, strict=True):
        if date is None or date.tzinfo is None:
            shifted.append(raw)
            continue
        moved = (newest - (latest - date) * scale).astimezone(date.tzinfo)
        value = format_datetime(moved.replace(microsecond=0)).encode()
        shifted.append(_DATE_HEADER.sub(lambda _m, v=value: b"Date: " + v, raw, count=1))
    return shifted
