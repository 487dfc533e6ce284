"""What the triage rules may look at in one message: a plain, immutable snapshot.

Built once per message (by the sync from the parsed message, by the dry-run from a stored message
or a form) and handed to ``RuleSet.evaluate``; the derived forms the conditions compare against
(lower-cased text, word stems, the sender's domain and its parents) are computed on first use and
kept, so fifty rules reading the subject stem it once.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from app.languages import detect_language
from app.rules.words import text_stems

if TYPE_CHECKING:
    from gmail_sync.parse import ParsedMessage

__all__ = ["MAX_BODY_CHARS", "MessageFacts"]

# Rules read the first 100,000 characters of a body: a pasted log or a long quoted thread must not
# cost the sync (stemming, a regex under its time limit) more than the message is worth to triage.
MAX_BODY_CHARS = 100_000


@dataclass(frozen=True)
class MessageFacts:
    """One message as the conditions see it. Addresses are lower-case."""

    from_address: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject: str
    body: str
    language: str | None
    segment: str | None
    has_attachment: bool
    business_hours: bool
    automated: bool

    @classmethod
    def from_parsed(
        cls,
        parsed: ParsedMessage,
        *,
        segment: str | None,
        business_hours: bool,
        automated: bool,
        language: str | None = None,
        default_language: str = "en",
    ) -> MessageFacts:
        """The facts of a parsed message; ``language`` detected from its text when None
        (``app.languages``: Cyrillic → "ru", else ``default_language``, the mailbox's)."""
        return cls.build(
            from_address=parsed.from_address or "",
            to=parsed.to,
            cc=parsed.cc,
            subject=parsed.subject,
            body=parsed.text,
            language=language,
            segment=segment,
            has_attachment=bool(parsed.attachments),
            business_hours=business_hours,
            automated=automated,
            default_language=default_language,
        )

    @classmethod
    def build(
        cls,
        *,
        from_address: str,
        to: tuple[str, ...] | list[str] = (),
        cc: tuple[str, ...] | list[str] = (),
        subject: str = "",
        body: str = "",
        language: str | None = None,
        segment: str | None = None,
        has_attachment: bool = False,
        business_hours: bool = True,
        automated: bool = False,
        default_language: str = "en",
    ) -> MessageFacts:
        """Normalised facts: addresses lower-cased, the body cut at ``MAX_BODY_CHARS``, the
        language detected when not given."""
        body = body[:MAX_BODY_CHARS]
        if language is None:
            language = detect_language(f"{subject}\n{body}", default=default_language)
        return cls(
            from_address=from_address.strip().lower(),
            to=tuple(a.strip().lower() for a in to),
            cc=tuple(a.strip().lower() for a in cc),
            subject=subject,
            body=body,
            language=language.lower() if language else None,
            segment=segment.lower() if segment else None,
            has_attachment=has_attachment,
            business_hours=business_hours,
            automated=automated,
        )

    # -- derived forms, computed on first use -----------------------------------------------
    @cached_property
    def text(self) -> str:
        return f"{self.subject}\n{self.body}"

    @cached_property
    def subject_folded(self) -> str:
        return self.subject.casefold()

    @cached_property
    def body_folded(self) -> str:
        return self.body.casefold()

    @cached_property
    def text_folded(self) -> str:
        return f"{self.subject_folded}\n{self.body_folded}"

    @cached_property
    def subject_stems(self) -> tuple[str, ...]:
        return text_stems(self.subject)

    @cached_property
    def body_stems(self) -> tuple[str, ...]:
        return text_stems(self.body)

    @cached_property
    def text_stems(self) -> tuple[str, ...]:
        # The subject's stems then the body's: a phrase may run on from the subject line into
        # the body, as it does in ``text``.
        return self.subject_stems + self.body_stems

    @cached_property
    def from_domain(self) -> str:
        return self.from_address.rpartition("@")[2]

    @cached_property
    def from_domains(self) -> frozenset[str]:
        """The sender's domain and each parent of it: "eu.shop.test" → itself, "shop.test",
        "test" (a ``from_domain`` condition on "shop.test" covers its subdomains)."""
        labels = self.from_domain.split(".")
        return frozenset(".".join(labels[i:]) for i in range(len(labels)) if labels[i])

    @cached_property
    def recipients(self) -> tuple[str, ...]:
        """To and Cc: the alias the customer wrote to may be in either."""
        return self.to + self.cc

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": self.from_address,
            "from_domain": self.from_domain,
            "to": list(self.to),
            "cc": list(self.cc),
            "subject": self.subject,
            "body": self.body,
            "language": self.language,
            "segment": self.segment,
            "has_attachment": self.has_attachment,
            "business_hours": self.business_hours,
            "automated": self.automated,
        }
