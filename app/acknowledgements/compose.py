"""One acknowledgement, fully rendered: recipient, subject, threading headers, Message-ID, body.

The text comes from the mailbox's acknowledgement template (the shared templates with shortcut
``ack``, or ``ack-ooh`` outside business hours, unless the mailbox names its own), in the
customer's language (``app.languages.detect_language``: Cyrillic → ``ru``, else the mailbox's
language), falling back to the mailbox's language, then English. A library without any
acknowledgement template (never seeded, or deleted) still acknowledges, with the built-in texts
below. A template problem never blocks an acknowledgement: the sandbox renders what it can and its
warnings are logged at debug level.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, or_, select
from sqlalchemy.orm import Session

from app.acknowledgements.signing import (
    SigningKeyNotLoaded,
    ack_message_id,
    load_signing_key,
    ticket_of_message_id,
)
from app.languages import detect_language
from app.mailboxes.models import Mailbox
from app.tickets.models import Ticket
from templates_replies.context import build_context
from templates_replies.greeting import base_language
from templates_replies.models import ReplyTemplate, Visibility
from templates_replies.sandbox import render_template

__all__ = [
    "ACK_KIND",
    "AckTemplate",
    "AckTemplates",
    "Acknowledgement",
    "CustomerMessage",
    "SigningKeyNotLoaded",
    "ack_message_id",
    "ack_subject",
    "compose_ack",
    "load_signing_key",
    "threading_headers",
    "ticket_of_message_id",
]

log = logging.getLogger(__name__)

ACK_KIND = "ack"
ACK_SHORTCUT = "ack"
ACK_OOH_SHORTCUT = "ack-ooh"
FALLBACK_LANGUAGE = "en"

# References grows with every message of a thread; RFC 5322 §3.6.4 lets a reply keep the first
# id and the latest ones. A header line longer than 998 characters is illegal (§2.1.1).
_MAX_REFERENCES = 20
_MAX_ID_CHARS = 900

# Reply prefixes of the mail clients our customers use ("Re:", Outlook's "RE:", German "AW:",
# Nordic "SV:", Russian Outlook's "Ответ:" / "Отв:"), optionally numbered ("Re[2]:").
_REPLY_PREFIX = re.compile(
    r"^\s*(?:re|aw|sv|vs|antw|ответ|отв)\s*(?:\[\d+\]|\(\d+\))?\s*:\s*", re.IGNORECASE
)
_TICKET_TAG = re.compile(r"\s*\[#(\d{1,12})\]")


@dataclass(frozen=True)
class CustomerMessage:
    """What an acknowledgement needs of the message that opened the ticket (ids bare, without
    angle brackets, as the sync parses them)."""

    from_address: str
    subject: str
    text: str
    message_id: str | None
    references: Sequence[str] = ()
    gmail_thread_id: str | None = None


@dataclass(frozen=True)
class AckTemplate:
    template_id: int | None  # None: a built-in text
    language: str
    subject: str | None
    body: str
    is_html: bool


@dataclass(frozen=True)
class Acknowledgement:
    to_address: str
    subject: str
    body: str
    is_html: bool
    in_reply_to: str | None
    references: str | None
    rfc822_message_id: str
    gmail_thread_id: str | None
    language: str
    template_id: int | None
    out_of_hours: bool
    warnings: tuple[str, ...] = ()


# -- built-in texts (no acknowledgement template in the library) -------------------------------

_BUILTIN_SUBJECT = "Re: {{ ticket.subject }} [#{{ ticket.number }}]"
_BUILTIN_BODY = {
    ("en", False): (
        "Hello{% if customer.first_name %}, {{ customer.first_name }}{% endif %}!\n\n"
        "We have received your message and registered it as ticket #{{ ticket.number }}. "
        "{% if ticket.due %}We will reply by {{ ticket.due }}."
        "{% else %}We will reply as soon as possible.{% endif %}\n\n"
        "To add anything, simply reply to this email.\n\n"
        "{{ company.name }}\n"
    ),
    ("en", True): (
        "Hello{% if customer.first_name %}, {{ customer.first_name }}{% endif %}!\n\n"
        "Your message reached us outside our business hours. It is registered as ticket "
        "#{{ ticket.number }}, and we will reply "
        "{% if ticket.due %}by {{ ticket.due }}{% else %}on the next working day{% endif %}.\n\n"
        "To add anything, simply reply to this email.\n\n"
        "{{ company.name }}\n"
    ),
    ("ru", False): (
        "Здравствуйте{% if customer.first_name %}, {{ customer.first_name }}{% endif %}!\n\n"
        "Мы получили ваше письмо и зарегистрировали обращение под номером #{{ ticket.number }}. "
        "{% if ticket.due %}Ответим до {{ ticket.due }}."
        "{% else %}Ответим в ближайшее время.{% endif %}\n\n"
        "Чтобы что-то добавить, просто ответьте на это письмо.\n\n"
        "{{ company.name }}\n"
    ),
    ("ru", True): (
        "Здравствуйте{% if customer.first_name %}, {{ customer.first_name }}{% endif %}!\n\n"
        "Ваше письмо пришло в нерабочее время. Мы зарегистрировали обращение под номером "
        "#{{ ticket.number }} и ответим "
        "{% if ticket.due %}до {{ ticket.due }}{% else %}в следующий рабочий день{% endif %}.\n\n"
        "Чтобы что-то добавить, просто ответьте на это письмо.\n\n"
        "{{ company.name }}\n"
    ),
}


def builtin_template(language: str, *, out_of_hours: bool) -> AckTemplate:
    """The built-in text in Russian or English (other languages: English)."""
    lang = language if (language, out_of_hours) in _BUILTIN_BODY else FALLBACK_LANGUAGE
    return AckTemplate(
        template_id=None,
        language=lang,
        subject=_BUILTIN_SUBJECT,
        body=_BUILTIN_BODY[(lang, out_of_hours)],
        is_html=False,
    )


# -- the templates of a mailbox ----------------------------------------------------------------


# The shared acknowledgement templates and a mailbox's own ones (``overrides``), built once.
_ACK_TEMPLATES = select(
    ReplyTemplate.id,
    ReplyTemplate.shortcut,
    ReplyTemplate.language,
    ReplyTemplate.visibility,
    ReplyTemplate.subject,
    ReplyTemplate.body,
    ReplyTemplate.is_html,
).where(
    or_(
        (ReplyTemplate.visibility == Visibility.SHARED)
        & ReplyTemplate.shortcut.in_([ACK_SHORTCUT, ACK_OOH_SHORTCUT]),
        ReplyTemplate.id.in_(bindparam("overrides", expanding=True)),
    )
)


class AckTemplates:
    """The acknowledgement templates one mailbox can use, read once (per sync chunk)."""

    def __init__(
        self,
        shared: dict[tuple[str, str], AckTemplate],
        *,
        ack_override: AckTemplate | None = None,
        ooh_override: AckTemplate | None = None,
    ) -> None:
        self.shared = shared  # (shortcut, language) → template
        self.ack_override = ack_override
        self.ooh_override = ooh_override

    @classmethod
    def load(cls, session: Session, *, mailbox: Mailbox) -> AckTemplates:
        overrides = [i for i in (mailbox.ack_template_id, mailbox.ack_ooh_template_id) if i]
        rows = session.execute(_ACK_TEMPLATES, {"overrides": overrides}).all()
        shared: dict[tuple[str, str], AckTemplate] = {}
        by_id: dict[int, AckTemplate] = {}
        for row in rows:
            template = AckTemplate(
                template_id=row.id,
                language=base_language(row.language),
                subject=row.subject,
                body=row.body,
                is_html=row.is_html,
            )
            by_id[row.id] = template
            if row.visibility == Visibility.SHARED and row.shortcut:
                shared[(row.shortcut, template.language)] = template
        return cls(
            shared,
            ack_override=by_id.get(mailbox.ack_template_id or 0),
            ooh_override=by_id.get(mailbox.ack_ooh_template_id or 0),
        )

    def choose(self, *, language: str, mailbox_language: str, out_of_hours: bool) -> AckTemplate:
        """The mailbox's own template (the out-of-hours one outside business hours, else its
        acknowledgement template) if it names one; else the shared ``ack-ooh`` / ``ack`` template
        in the customer's language, the mailbox's, then English — the language first: a Russian
        ``ack`` serves a Russian customer better out of hours than an English ``ack-ooh``; else
        the built-in text."""
        if out_of_hours and self.ooh_override is not None:
            return self.ooh_override
        if self.ack_override is not None:
            return self.ack_override
        shortcuts = (ACK_OOH_SHORTCUT, ACK_SHORTCUT) if out_of_hours else (ACK_SHORTCUT,)
        languages = _unique(base_language(x) for x in (language, mailbox_language, "en"))
        for lang in languages:
            for shortcut in shortcuts:
                found = self.shared.get((shortcut, lang))
                if found is not None:
                    return found
        return builtin_template(languages[0], out_of_hours=out_of_hours)


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


# -- headers -----------------------------------------------------------------------------------


def ack_subject(rendered: str | None, *, original: str, number: int) -> str:
    """The acknowledgement's subject: the template's (else ``Re: <original>``) with one reply
    prefix at most and exactly one ``[#number]`` — other ``[#n]`` tags are dropped, or a reply
    could be taken for a reply to another ticket (gmail_sync/ingest.py reads them)."""
    subject = " ".join((rendered or "").split()) or f"Re: {original}"
    tag = f"[#{number}]"
    kept = False

    def keep_first_own(match: re.Match[str]) -> str:
        nonlocal kept
        if match.group(1) == str(number) and not kept:
            kept = True
            return match.group(0)
        return ""

    subject = _TICKET_TAG.sub(keep_first_own, subject).strip()
    prefix = _REPLY_PREFIX.match(subject)
    if prefix is not None:
        rest = subject[prefix.end() :]
        while (again := _REPLY_PREFIX.match(rest)) is not None:
            rest = rest[again.end() :]
        subject = f"Re: {rest}"
    if not kept:
        subject = f"{subject} {tag}"
    return " ".join(subject.split())[:998]


def threading_headers(
    message_id: str | None, references: Sequence[str]
) -> tuple[str | None, str | None]:
    """``In-Reply-To`` and ``References`` of a reply to this message (RFC 5322 §3.6.4): its id;
    its references followed by its id (the first and the latest ones if there are many)."""
    ids = [i for i in (*references, message_id) if i and len(i) <= _MAX_ID_CHARS]
    ids = _unique(ids)
    if len(ids) > _MAX_REFERENCES:
        ids = [ids[0], *ids[-(_MAX_REFERENCES - 1) :]]
    in_reply_to = f"<{message_id}>" if message_id and len(message_id) <= _MAX_ID_CHARS else None
    chain = " ".join(f"<{i}>" for i in ids) or None
    return in_reply_to, chain


# -- composing ---------------------------------------------------------------------------------


def compose_ack(
    session: Session,
    *,
    ticket: Ticket,
    mailbox: Mailbox,
    message: CustomerMessage,
    templates: AckTemplates,
    out_of_hours: bool,
    now: datetime,
) -> Acknowledgement:
    """Render the acknowledgement of ``ticket`` opened by ``message``. The signing key must be
    loaded (``load_signing_key``) unless ``INBOXDESK_SECRET_KEY`` is set."""
    language = detect_language(
        f"{message.subject}\n{message.text}", default=base_language(mailbox.language)
    )
    template = templates.choose(
        language=language, mailbox_language=mailbox.language, out_of_hours=out_of_hours
    )
    # The context speaks the template's language: an English fallback shows an English date.
    context = build_context(session, ticket=ticket, agent=None, language=template.language, now=now)
    rendered = render_template(
        body=template.body, subject=template.subject, is_html=template.is_html, context=context
    )
    if rendered.warnings:
        log.debug(
            "acknowledgement of ticket %s, template %s: %s",
            ticket.id,
            template.template_id or "built-in",
            "; ".join(rendered.warnings),
        )
    body = rendered.body
    if not body.strip():
        # The template rendered to nothing (a broken template): the built-in text says it.
        body = render_template(
            body=builtin_template(template.language, out_of_hours=out_of_hours).body,
            subject=None,
            is_html=False,
            context=context,
        ).body
        template = builtin_template(template.language, out_of_hours=out_of_hours)
    in_reply_to, references = threading_headers(message.message_id, message.references)
    domain = mailbox.email.rsplit("@", 1)[-1]
    return Acknowledgement(
        to_address=message.from_address.strip().lower(),
        subject=ack_subject(rendered.subject, original=ticket.subject, number=ticket.number),
        body=body,
        is_html=template.is_html,
        in_reply_to=in_reply_to,
        references=references,
        rfc822_message_id=ack_message_id(ticket_id=ticket.id, domain=domain),
        gmail_thread_id=message.gmail_thread_id,
        language=template.language,
        template_id=template.template_id,
        out_of_hours=out_of_hours,
        warnings=tuple(rendered.warnings),
    )
