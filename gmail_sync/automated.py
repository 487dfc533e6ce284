"""Is a message written by a machine? The verdict that keeps us from answering robots.

Replying to bounces, auto-replies and mailing lists is how helpdesks start mail loops
(RFC 3834 §2: "automatic responses SHOULD NOT be issued in response to" automatic messages). The
verdict looks only at headers and MIME structure — never at wording — and names every signal it
found, so an agent can see why a message was not acknowledged. Headers ordinary mail clients
send (``Auto-Submitted: no``, ``X-Mailer``, ``X-Priority``, ``Importance``, the sender's own
``Return-Path``) are not signals.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from app.acknowledgements.signing import signed_by_us
from gmail_sync.parse import ParsedMessage

__all__ = ["Verdict", "automated_verdict"]


@dataclass(frozen=True)
class Verdict:
    automated: bool
    reasons: tuple[str, ...]


# RFC 2076 / RFC 3834 §3.1.8: de-facto Precedence values set by list servers and vacation programs.
_PRECEDENCE = frozenset({"bulk", "list", "junk", "auto_reply"})

# Headers whose mere presence marks machine mail.
_PRESENCE_HEADERS = (
    "list-id",  # RFC 2919: mail from a mailing list
    "list-unsubscribe",  # RFC 2369: lists and bulk senders
    "x-auto-response-suppress",  # Microsoft: set on auto-replies and other automatic mail
    "x-autoreply",
    "x-mail-autoreply",
    "x-loop",  # set by list managers and autoresponders to detect loops
    "x-failed-recipients",  # Exim's bounces name the failed addresses here
)
_PRESENCE_PREFIXES = ("x-autorespond",)  # X-Autorespond, X-Autoresponder, X-AutoRespond-…

# Report parts (RFC 3464 DSN, RFC 6533 i18n DSN, RFC 5965 ARF, RFC 8098 MDN) anywhere in the tree.
_REPORT_PARTS = (
    "multipart/report",
    "message/delivery-status",
    "message/global-delivery-status",
    "message/feedback-report",
    "message/disposition-notification",
    "message/global-disposition-notification",
)

# Local parts of sender addresses only machines use (RFC 2142 role mailboxes and list software
# conventions). Matched on the whole local part, sub-address ("+tag") removed.
_ROLE_LOCAL_PARTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("mailer-daemon", re.compile(r"^mailer[-_.]?daemon$")),
    ("postmaster", re.compile(r"^postmaster$")),
    ("no-reply", re.compile(r"^(?:no[-_.]?reply|do[-_.]?not[-_.]?reply)(?:[-_.].*)?$")),
    ("bounce", re.compile(r"(?:^|[-_.=])bounces?(?:$|[-_.=])")),
    ("*-admin", re.compile(r".+-admin$")),
    ("*-owner", re.compile(r".+-owner$|^owner-.+")),
    ("*-request", re.compile(r".+-request$")),
)


def _local_part(address: str) -> str:
    local = address.rsplit("@", 1)[0] if "@" in address else address
    return local.split("+", 1)[0].strip().strip('"').lower()


def _first_token(value: str) -> str:
    return value.split(";", 1)[0].split("(", 1)[0].strip().lower()


def _bracketed_addresses(values: Iterable[str]) -> list[str]:
    found: list[str] = []
    for value in values:
        inner = re.findall(r"<([^<>]*)>", value)
        found.extend(inner if inner else [value])
    return [a.strip().lower() for a in found]


def automated_verdict(
    msg: ParsedMessage,
    *,
    own_addresses: Collection[str] = (),
    own_message_ids: Collection[str] = (),
    label_ids: Collection[str] = (),
) -> Verdict:
    """The automated-mail verdict of one parsed message, with every reason found (stable short
    strings such as ``auto-submitted:auto-replied``, ``precedence:bulk``, ``list-id``,
    ``multipart/report``, ``sender:mailer-daemon``, ``own-address``, ``own-message-id``,
    ``sent-label``).

    Signed ids are recognised once the signing key is available (``INBOXDESK_SECRET_KEY``, or
    ``load_signing_key``, which the sync calls for every chunk)."""
    headers = msg.headers
    reasons: list[str] = []

    def add(reason: str) -> None:
        if reason not in reasons:
            reasons.append(reason)

    # RFC 3834 §5: any value other than "no" means the message was generated automatically.
    for value in headers.get("auto-submitted", ()):
        keyword = _first_token(value)
        if keyword != "no":
            add(f"auto-submitted:{keyword}" if keyword else "auto-submitted")

    for name in ("precedence", "x-precedence"):
        for value in headers.get(name, ()):
            keyword = _first_token(value).replace("-", "_")
            if keyword in _PRECEDENCE:
                add(f"precedence:{keyword}")

    for name in _PRESENCE_HEADERS:
        if name in headers:
            add(name)
    for name in headers:
        if name.startswith(_PRESENCE_PREFIXES):
            add(name)

    # RFC 5321 §4.5.5: notifications are sent with a null reverse-path, which Gmail records as
    # "Return-Path: <>". A customer's mail carries their own address there.
    if any(a == "" for a in _bracketed_addresses(headers.get("return-path", ()))):
        add("return-path:<>")

    for part_type in _REPORT_PARTS:
        if part_type in msg.part_types:
            add(part_type)

    senders: list[str] = []
    if msg.from_address:
        senders.append(msg.from_address)
    elif "" in _bracketed_addresses(headers.get("from", ())):
        # "From: MAILER-DAEMON <>": RFC 5322 requires an address; only MTAs write a null one.
        add("from:<>")
        if msg.from_name:
            senders.append(msg.from_name.replace(" ", "-"))
    senders.extend(a for a in _bracketed_addresses(headers.get("sender", ())) if a)
    senders.extend(a for a in _bracketed_addresses(headers.get("return-path", ())) if a)
    for address in senders:
        local = _local_part(address)
        for kind, pattern in _ROLE_LOCAL_PARTS:
            if pattern.search(local):
                add(f"sender:{kind}")

    # Microsoft's Junk Mail Reporting Program (the Outlook.com/Hotmail feedback loop, not ARF):
    # the complaint is the reported message attached, stamped X-HmXmrOriginalRecipient.
    if any("x-hmxmroriginalrecipient" in h for h in msg.embedded_headers):
        add("feedback-loop:jmrp")

    own = {a.strip().lower() for a in own_addresses}
    if msg.from_address and msg.from_address in own:
        add("own-address")
    # Ours by the outbox (``own_message_ids``), or by the HMAC our acknowledgements' ids carry
    # (app/acknowledgements/signing.py): also when another of our mailboxes sent it, so two
    # Inboxdesk mailboxes writing to each other stop after one acknowledgement each way.
    if msg.message_id and (msg.message_id in set(own_message_ids) or signed_by_us(msg.message_id)):
        add("own-message-id")
    if "SENT" in label_ids:
        add("sent-label")

    return Verdict(automated=bool(reasons), reasons=tuple(reasons))
