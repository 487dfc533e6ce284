"""The default template library shipped as seed data (``inboxdesk templates seed``, the demo)."""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from importlib import resources
from typing import Any

DEFAULT_TEMPLATES_RESOURCE = "seed_data/default_templates.json"


@lru_cache(maxsize=1)
def _load() -> tuple[dict[str, Any], ...]:
    source = resources.files("templates_replies").joinpath(DEFAULT_TEMPLATES_RESOURCE)
    return tuple(json.loads(source.read_text(encoding="utf-8")))


def default_templates() -> list[dict[str, Any]]:
    """The default templates, Russian and English, as fresh dicts with the keys name, subject,
    body, is_html, language, folder, tags and shortcut.

    Deep copies, so a caller editing one (the seeder sets owner and author) cannot change what
    the next caller gets.
    """
    return copy.deepcopy(list(_load()))
