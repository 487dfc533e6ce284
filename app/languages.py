"""Which language a customer wrote in, as far as the texts we ship care.

Only the script is looked at: Cyrillic is Russian (the one Cyrillic language our templates and
greetings are written in); for everything else the caller's default stands — Latin letters alone
cannot tell English from German, and a mailbox set to German should not answer in English.
"""

from __future__ import annotations

import re

__all__ = ["detect_language"]

# Enough of a message to decide; a long thread quoted below the text must not cost time.
_SAMPLE_CHARS = 4000
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")


def detect_language(text: str, default: str) -> str:
    """``"ru"`` when Cyrillic letters outnumber Latin ones in ``text``, else ``default``."""
    sample = text[:_SAMPLE_CHARS]
    cyrillic = len(_CYRILLIC.findall(sample))
    if cyrillic and cyrillic > len(_LATIN.findall(sample)):
        return "ru"
    return default
