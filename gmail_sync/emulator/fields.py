"""Partial responses: the ``fields`` system parameter of every Google API.

Syntax (developers.google.com/gmail/api/guides/performance#partial): a comma-separated list of
field paths, ``a/b`` to select a sub-field, ``a(b,c)`` to select several sub-fields of ``a``;
selections apply to every element of an array. E.g. ``messages(id,threadId),nextPageToken``.
"""

from __future__ import annotations

from typing import Any

from gmail_sync.emulator.errors import invalid_argument

Selection = dict[str, "Selection | None"]  # None: the whole value


def parse_fields(spec: str) -> Selection:
    pos = 0

    def fail() -> None:
        raise invalid_argument(f"Invalid field selection {spec}", location="fields")

    def parse_list(closing: str | None) -> Selection:
        nonlocal pos
        out: Selection = {}
        while True:
            start = pos
            while pos < len(spec) and spec[pos] not in ",()/":
                pos += 1
            name = spec[start:pos].strip()
            if not name:
                fail()
            sub: Selection | None = None
            if pos < len(spec) and spec[pos] == "/":
                pos += 1
                sub = parse_path_rest()
            elif pos < len(spec) and spec[pos] == "(":
                pos += 1
                sub = parse_list(")")
            _merge(out, name, sub)
            if pos < len(spec) and spec[pos] == ",":
                pos += 1
                continue
            if closing is None:
                if pos != len(spec):
                    fail()
                return out
            if pos < len(spec) and spec[pos] == closing:
                pos += 1
                return out
            fail()

    def parse_path_rest() -> Selection:
        nonlocal pos
        start = pos
        while pos < len(spec) and spec[pos] not in ",()/":
            pos += 1
        name = spec[start:pos].strip()
        if not name:
            fail()
        sub: Selection | None = None
        if pos < len(spec) and spec[pos] == "/":
            pos += 1
            sub = parse_path_rest()
        elif pos < len(spec) and spec[pos] == "(":
            pos += 1
            sub = parse_list(")")
        return {name: sub}

    return parse_list(None)


def _merge(out: Selection, name: str, sub: Selection | None) -> None:
    if name not in out:
        out[name] = sub
        return
    existing = out[name]
    if existing is None or sub is None:
        out[name] = None
        return
    for key, value in sub.items():
        _merge(existing, key, value)


def apply_fields(value: Any, selection: Selection) -> Any:
    if isinstance(value, list):
        return [apply_fields(item, selection) for item in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for name, sub in selection.items():
        if name in value:
            out[name] = value[name] if sub is None else apply_fields(value[name], sub)
    return out
