"""Outbox rows as RFC 5322 messages, ready for Gmail's messages.send.

The message is built with the standard library's ``email`` package under its SMTP policy: CRLF
line ends, headers folded at 78 columns, non-ASCII header text as RFC 2047 encoded words (UTF-8),
the body in UTF-8 with the transfer encoding the package picks for it (7bit for short ASCII
lines, else the shorter of quoted-printable and base64, RFC 2045 §6). What we write ourselves:

- ``Message-ID`` is the row's, generated when the row was written: a retry after a crash sends
  the same id, which is what lets the sender find an earlier copy in Sent (``rfc822msgid:``).
- ``In-Reply-To`` / ``References`` (RFC 5322 §3.6.4) and the thread id put the reply in the
  customer's conversation, in Gmail and in the customer's client.
- ``Auto-Submitted: auto-replied`` (RFC 3834 §5) tells other robots not to answer, and
  ``X-Auto-Response-Suppress: All`` tells Exchange/Outlook not to send out-of-office replies or
  read receipts back ([MS-OXCMAIL] §2.2.3.2.20).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from app.outbox.models import OutboxMessage

# RFC 5322 §3.6.4 msg-id, as we store them: "<left@right>".
_MSG_ID = re.compile(r"<[^<>\s]+>")
# Header values come from the database (a customer's subject, a template's output): never let a
# line break or other control character through, or it would end the header (header injection).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
# 7bit: a body outside ASCII goes quoted-printable or base64, whichever is shorter, so the mail
# survives any relay (RFC 2045 §6; the package's default for SMTP would send raw 8bit).
_SMTP = policy.SMTP.clone(cte_type="7bit")
_SMTPUTF8 = policy.SMTPUTF8.clone(cte_type="7bit")


def _one_line(value: str) -> str:
    return " ".join(_CONTROL.sub(" ", value).split())


def message_ids(value: str | None) -> list[str]:
    """The ``<id>``s of an In-Reply-To / References value; bare ids get their angle brackets."""
    if not value:
        return []
    found = _MSG_ID.findall(value)
    if found:
        return list(dict.fromkeys(found))
    return list(dict.fromkeys(f"<{token.strip('<>')}>" for token in value.split() if token))


def _address(addr_spec: str, display_name: str = "") -> Address:
    """An Address whose domain is ASCII (IDNA, RFC 5891): ``support@магазин.рф`` is sent as
    ``support@xn--80aal0a.xn--p1ai``, which every server understands."""
    local, _, domain = _one_line(addr_spec).rpartition("@")
    if not local or not domain:
        raise ValueError(f"not an email address: {addr_spec!r}")
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError(f"not an email address: {addr_spec!r}") from exc
    return Address(display_name=_one_line(display_name), username=local, domain=domain)


def build_mime(
    row: OutboxMessage,
    *,
    from_address: str,
    from_name: str,
    date: datetime | None = None,
) -> bytes:
    """The row as the bytes messages.send takes (``raw``). ``date`` defaults to now: the Date of
    a message is when it is handed to the mail system (RFC 5322 §3.6.1), i.e. this attempt.

    Raises ValueError for an address no message can carry (the row is then failed, not retried).
    """
    sender = _address(from_address, from_name)
    recipient = _address(row.to_address)
    # A local part outside ASCII has no 7-bit form at all: such mail needs SMTPUTF8 (RFC 6531/
    # 6532, which Gmail speaks), i.e. UTF-8 header text instead of encoded words.
    ascii_only = all(a.username.isascii() for a in (sender, recipient))
    message = EmailMessage(policy=_SMTP if ascii_only else _SMTPUTF8)
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = _one_line(row.subject)
    message["Date"] = format_datetime((date or datetime.now(UTC)).astimezone(UTC))
    message["Message-ID"] = _one_line(row.rfc822_message_id)
    parent = message_ids(row.in_reply_to)
    if parent:
        message["In-Reply-To"] = parent[-1]
    references = message_ids(row.references)
    if parent and parent[-1] not in references:
        # RFC 5322 §3.6.4: References is the parent's References plus the parent's id.
        references.append(parent[-1])
    if references:
        message["References"] = " ".join(references)
    # RFC 3834 §5: "auto-replied" answers a message; a notice we start ourselves (an SLA
    # escalation to a lead) is "auto-generated".
    message["Auto-Submitted"] = "auto-replied" if parent else "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    body = row.body if row.body.endswith("\n") else row.body + "\n"
    message.set_content(body, subtype="html" if row.is_html else "plain", charset="utf-8")
    return message.as_bytes()
