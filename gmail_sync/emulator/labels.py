"""Gmail's labels: the system ones, the rules for user labels' names, colours and visibility."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gmail_sync.emulator.errors import invalid_argument

# Gmail's system labels as users.labels.list shows them (id, list visibility, message visibility).
SYSTEM_LABELS: tuple[tuple[str, str | None, str | None], ...] = (
    ("CHAT", "labelHide", "hide"),
    ("SENT", None, None),
    ("INBOX", None, None),
    ("IMPORTANT", "labelShow", "hide"),
    ("TRASH", "labelHide", "hide"),
    ("DRAFT", "labelShow", "hide"),
    ("SPAM", "labelHide", "hide"),
    ("CATEGORY_FORUMS", "labelHide", "hide"),
    ("CATEGORY_UPDATES", "labelHide", "hide"),
    ("CATEGORY_PERSONAL", "labelHide", "hide"),
    ("CATEGORY_PROMOTIONS", "labelHide", "hide"),
    ("CATEGORY_SOCIAL", "labelHide", "hide"),
    ("STARRED", "labelShow", "hide"),
    ("UNREAD", "labelShow", "hide"),
)
SYSTEM_LABEL_IDS = frozenset(label_id for label_id, _, _ in SYSTEM_LABELS)
# Names a user label may not take (Gmail answers 400 "Invalid label name").
RESERVED_NAMES = frozenset(
    {label_id.casefold() for label_id in SYSTEM_LABEL_IDS}
    | {
        "inbox",
        "sent",
        "sent mail",
        "drafts",
        "trash",
        "bin",
        "spam",
        "starred",
        "important",
        "chats",
        "all mail",
        "scheduled",
        "snoozed",
        "unread",
    }
)
# The label palette of Label.color (LabelColor.backgroundColor in the discovery document).
_PALETTE_TEXT = """
#000000 #434343 #666666 #999999 #cccccc #efefef #f3f3f3 #ffffff #fb4c2f #ffad47 #fad165
#16a766 #43d692 #4a86e8 #a479e2 #f691b3 #f6c5be #ffe6c7 #fef1d1 #b9e4d0 #c6f3de #c9daf8
#e4d7f5 #fcdee8 #efa093 #ffd6a2 #fce8b3 #89d3b2 #a0eac9 #a4c2f4 #d0bcf1 #fbc8d9 #e66550
#ffbc6b #fcda83 #44b984 #68dfa9 #6d9eeb #b694e8 #f7a7c0 #cc3a21 #eaa041 #f2c960 #149e60
#3dc789 #3c78d8 #8e63ce #e07798 #ac2b16 #cf8933 #d5ae49 #0b804b #2a9c68 #285bac #653e9b
#b65775 #822111 #a46a21 #aa8831 #076239 #1a764d #1c4587 #41236d #83334c #464646 #e7e7e7
#0d3472 #b6cff5 #0d3b44 #98d7e4 #3d188e #e3d7ff #711a36 #fbd3e0 #8a1c0a #f2b2a8 #7a2e0b
#ffc8af #7a4706 #ffdeb5 #594c05 #fbe983 #684e07 #fdedc1 #0b4f30 #b3efd3 #04502e #a2dcc1
#c2c2c2 #4986e7 #2da2bb #b99aff #994a64 #f691b2 #ff7537 #ffad46 #662e37 #ebdbde #cca6ac
#094228 #42d692 #16a765 #757575 #1e53b8 #007286 #7858c3 #c2185b #d93025 #54240e #633e04
#521d28 #202124 #083018
"""
LABEL_PALETTE = frozenset(re.findall(r"#[0-9a-f]{6}", _PALETTE_TEXT))
# "users can apply and remove the INBOX and UNREAD labels ... but cannot apply or remove the
# DRAFTS or SENT labels" (Label.type in the discovery document).
FIXED_LABELS = frozenset({"DRAFT", "SENT"})


@dataclass
class Label:
    id: str
    name: str
    type: str
    label_list_visibility: str | None = None
    message_list_visibility: str | None = None
    color: dict[str, str] | None = None


def check_color(color: object) -> dict[str, str] | None:
    if color is None:
        return None
    if not isinstance(color, dict):
        raise invalid_argument("Invalid label color", location="label.color")
    out: dict[str, str] = {}
    for key in ("textColor", "backgroundColor"):
        value = color.get(key)
        if not isinstance(value, str) or value.lower() not in LABEL_PALETTE:
            raise invalid_argument(
                f"Label {key} {value} is not on the allowed color palette",
                location=f"label.color.{key}",
            )
        out[key] = value.lower()
    return out


def visibility(body: dict[str, Any], key: str, default: str) -> str:
    value = body.get(key, default)
    allowed = {
        "labelListVisibility": ("labelShow", "labelShowIfUnread", "labelHide"),
        "messageListVisibility": ("show", "hide"),
    }[key]
    if value not in allowed:
        raise invalid_argument(f"Invalid value for {key}: {value}", location=f"label.{key}")
    return str(value)
