"""Gmail's conversation grouping, as far as it is documented and observable.

Gmail puts a new message in an existing thread when it references a message of that thread
(``References`` / ``In-Reply-To``, RFC 5322 §3.6.4) AND its subject, with reply and forward
prefixes removed, is the same; a matching reference with a different subject starts a new
thread. For messages.insert / import / send / drafts.create a given ``threadId`` is honoured when
the thread exists in the mailbox (Gmail's "Managing threads" guide adds that the subject must match
too; ``strict`` applies that rule).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

# The same comparison the sync uses (reply/forward prefixes in the languages our customers write,
# Outlook's counters, whitespace, case); gmail_sync.parse is pure, so the emulator may share it.
from gmail_sync.parse import normalize_subject

__all__ = ["choose_thread", "normalize_subject"]


def choose_thread(
    *,
    requested: str | None,
    subject: str,
    references: Iterable[str],
    own_message_id: str | None,
    thread_exists: Callable[[str], bool],
    thread_subjects: Callable[[str], Iterable[str]],
    messages_with_id: Callable[[str], Iterable[tuple[str, str]]],
    messages_referencing: Callable[[str], Iterable[tuple[str, str]]],
    strict: bool = False,
) -> str | None:
    """The thread a new message joins, or None for a new thread.

    ``messages_with_id(rfc822_id)`` and ``messages_referencing(rfc822_id)`` give (thread id,
    subject) of the mailbox's messages with that Message-ID / naming it in their references; the
    second lets a message that arrives after its reply join the reply's thread.
    """
    wanted = normalize_subject(subject)
    if (
        requested
        and thread_exists(requested)
        and (not strict or any(normalize_subject(s) == wanted for s in thread_subjects(requested)))
    ):
        return requested
    # The newest reference first: In-Reply-To, then References from the end (RFC 5322 §3.6.4).
    refs = list(references)
    ordered = refs[:1] + list(reversed(refs[1:]))
    for ref in ordered:
        for thread_id, other_subject in messages_with_id(ref):
            if normalize_subject(other_subject) == wanted:
                return thread_id
    if own_message_id:
        for thread_id, other_subject in messages_referencing(own_message_id):
            if normalize_subject(other_subject) == wanted:
                return thread_id
    return None
