"""What a delivery failure notice says went wrong: the failed recipient and its status.

Read from the machine-readable part of a DSN (RFC 3464 ``message/delivery-status``, RFC 6533
``message/global-delivery-status``: a per-recipient block with ``Final-Recipient``, ``Action:
failed``, ``Status: 5.1.1``, ``Diagnostic-Code``), else from Exim's ``X-Failed-Recipients``
header. Pure and never raising, like the parser; only the few bounces of our own mail are read.
"""

from __future__ import annotations

import contextlib
import re
from email import policy as email_policy
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser

__all__ = ["failure_summary"]

_DSN_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})
_STATUS = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}")
_MAX_CHARS = 300


def _field(block: Message, name: str) -> str:
    value = block.get(name)
    return " ".join(str(value).split()) if value is not None else ""


def _address(value: str) -> str:
    # "rfc822; ann@example.com" (RFC 3464 §2.3.2: address-type ";" generic-address)
    return value.split(";", 1)[-1].strip().strip("<>")


def _recipient_blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        blocks = [b for b in payload if isinstance(b, Message)]
    else:
        # Not parsed into blocks (an unusual transfer encoding): the groups of header lines.
        data = part.get_payload(decode=True) or b""
        parser = BytesHeaderParser(policy=email_policy.compat32)
        blocks = [parser.parsebytes(chunk) for chunk in re.split(rb"\r?\n\r?\n", data) if chunk]
    # The first block describes the message (Reporting-MTA …), the others one recipient each.
    return [b for b in blocks if b.get("final-recipient") or b.get("original-recipient")]


def _describe(block: Message) -> str:
    recipient = _address(_field(block, "final-recipient") or _field(block, "original-recipient"))
    status = _field(block, "status")
    status = (_STATUS.match(status) or [""])[0] if status else ""
    diagnostic = _field(block, "diagnostic-code")
    text = recipient
    if status:
        text = f"{text}: {status}" if text else status
    if diagnostic:
        text = f"{text} ({diagnostic})" if text else diagnostic
    return text


def failure_summary(raw: bytes) -> str | None:
    """ "ann@example.com: 5.1.1 (smtp; 550 5.1.1 user unknown)" for the first failed recipient
    of this notice (the first recipient when none says ``Action: failed``), or None."""
    try:
        msg = BytesParser(policy=email_policy.compat32).parsebytes(raw)
    except Exception:
        return None
    with contextlib.suppress(Exception):
        for part in msg.walk():
            if part.get_content_type() not in _DSN_TYPES:
                continue
            blocks = _recipient_blocks(part)
            failed = [b for b in blocks if _field(b, "action").lower() == "failed"] or blocks
            for block in failed:
                text = _describe(block)
                if text:
                    return text[:_MAX_CHARS]
    with contextlib.suppress(Exception):
        header = msg.get("x-failed-recipients")
        if header:
            return " ".join(str(header).split())[:_MAX_CHARS] or None
    return _from_text(raw)


_FINAL_RECIPIENT = re.compile(rb"(?im)^final-recipient:[ \t]*(?:[^;\r\n]*;)?[ \t]*<?([^\s<>]+)>?")
_STATUS_LINE = re.compile(rb"(?im)^status:[ \t]*([245]\.\d{1,3}\.\d{1,3})")


def _from_text(raw: bytes) -> str | None:
    """The DSN fields where the MIME structure is broken (a boundary indented, a part's
    header block run into the previous one): the first Final-Recipient and Status lines."""
    head = raw[:200_000]
    recipient = _FINAL_RECIPIENT.search(head)
    status = _STATUS_LINE.search(head)
    parts = [m.group(1).decode("utf-8", "replace") for m in (recipient, status) if m]
    return ": ".join(parts)[:_MAX_CHARS] or None
