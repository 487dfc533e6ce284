"""The default template library: well-formed, valid, spelled right, ready for the system mails."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from templates_replies.defaults import default_templates
from templates_replies.sandbox import render_template, validate_template
from templates_replies.schemas import TemplateFields
from templates_replies.spelling import misspelled_words

KEYS = {"name", "subject", "body", "is_html", "language", "folder", "tags", "shortcut"}
TEMPLATES = default_templates()


def _label(template: dict[str, Any]) -> str:
    return f"{template['language']}:{template['shortcut']}"


def _context(language: str, *, first_name: str, due: str, signature: str) -> dict[str, Any]:
    return {
        "customer": {
            "name": f"{first_name} Ivanova".strip(),
            "first_name": first_name,
            "email": "anna@example.test",
            "segment": "",
        },
        "ticket": {
            "number": 1042,
            "subject": "Cannot log in",
            "status": "open",
            "priority": "normal",
            "due": due,
        },
        "agent": {"name": "Bob Lee", "first_name": "Bob", "signature": signature},
        "mailbox": {"name": "Shop support", "address": "support@shop.test"},
        "company": {"name": "Shop"},
        "greeting": "Доброе утро" if language == "ru" else "Good morning",
        "now": "3 June 2024",
    }


def test_library_size_shape_and_languages() -> None:
    """About fifteen answers, each in Russian and English, every record with the same keys."""
    assert 15 <= len(TEMPLATES) <= 30
    for template in TEMPLATES:
        assert set(template) == KEYS, _label(template)
        assert template["language"] in {"ru", "en"}
        assert template["name"].strip()
        assert template["body"].strip()
        assert template["shortcut"]
        assert isinstance(template["tags"], list)
        assert template["tags"]
        assert isinstance(template["is_html"], bool)
    shortcuts = Counter(t["shortcut"] for t in TEMPLATES)
    assert all(count == 2 for count in shortcuts.values()), "every answer in ru and en"
    assert any(t["is_html"] for t in TEMPLATES), "at least one simple HTML body"


def test_system_shortcuts_exist_in_both_languages() -> None:
    """The acknowledgement mails later issues send: ack and ack-ooh, in ru and en."""
    present = {(t["shortcut"], t["language"]) for t in TEMPLATES}
    for shortcut in ("ack", "ack-ooh"):
        for language in ("ru", "en"):
            assert (shortcut, language) in present


def test_names_and_shortcuts_are_unique_per_language() -> None:
    """Seeding is idempotent by (name, language); a shortcut picks one template per language."""
    names = Counter((t["name"], t["language"]) for t in TEMPLATES)
    assert max(names.values()) == 1
    shortcuts = Counter((t["shortcut"], t["language"]) for t in TEMPLATES)
    assert max(shortcuts.values()) == 1


@pytest.mark.parametrize("template", TEMPLATES, ids=_label)
def test_every_default_is_stored_exactly_as_shipped(template: dict[str, Any]) -> None:
    """The API's schema accepts each default and normalises nothing away (tags lower-case and
    sorted already), so a seeded library exports back to this file."""
    fields = TemplateFields.model_validate(template)
    assert fields.model_dump(exclude={"visibility"}) == template


@pytest.mark.parametrize("template", TEMPLATES, ids=_label)
def test_every_default_validates_in_the_sandbox(template: dict[str, Any]) -> None:
    """Known variables only, parses, within the size limit: save would accept it."""
    validate_template(
        body=template["body"], subject=template["subject"], is_html=template["is_html"]
    )


@pytest.mark.parametrize("template", TEMPLATES, ids=_label)
def test_every_default_passes_the_spelling_check(template: dict[str, Any]) -> None:
    """Name, subject and body raise no spelling warning in their own language."""
    for field in ("name", "subject", "body"):
        assert misspelled_words(template[field] or "", template["language"]) == [], field


def test_system_sent_acknowledgements_name_no_agent() -> None:
    """ack/ack-ooh go out before any agent touches the ticket: no agent variables; they sign
    with the company and carry the ticket number in the subject."""
    for template in TEMPLATES:
        if template["shortcut"] not in {"ack", "ack-ooh"}:
            continue
        source = template["body"] + (template["subject"] or "")
        assert "agent." not in source, _label(template)
        assert "{{ company.name }}" in template["body"]
        assert template["subject"] == "Re: {{ ticket.subject }} [#{{ ticket.number }}]"


@pytest.mark.parametrize("template", TEMPLATES, ids=_label)
def test_every_default_renders_cleanly_with_and_without_optional_values(
    template: dict[str, Any],
) -> None:
    """With a full context and with no first name, due time or signature, a default renders
    without warnings or leftover markup, and never greets "Good morning, !"."""
    language = template["language"]
    greeting = "Доброе утро" if language == "ru" else "Good morning"
    full = _context(language, first_name="Anna", due="3 June 2024, 14:00", signature="Bob, Shop")
    bare = _context(language, first_name="", due="", signature="")
    for context, hello in ((full, f"{greeting}, Anna!"), (bare, f"{greeting}!")):
        rendered = render_template(
            body=template["body"],
            subject=template["subject"],
            is_html=template["is_html"],
            context=context,
        )
        assert rendered.warnings == []
        assert hello in rendered.body
        assert ", !" not in rendered.body
        for leftover in ("{{", "{%", "}}", "%}"):
            assert leftover not in rendered.body
            assert leftover not in (rendered.subject or "")
        if "ticket.number" in template["body"]:
            assert "#1042" in rendered.body


def test_signature_replaces_the_default_sign_off() -> None:
    """An agent's own signature is used when set; otherwise name and company sign the reply."""
    info = next(t for t in TEMPLATES if (t["shortcut"], t["language"]) == ("info", "en"))
    signed = render_template(
        body=info["body"],
        subject=None,
        is_html=False,
        context=_context("en", first_name="Anna", due="", signature="Bob\nShop support"),
    )
    assert signed.body.rstrip().endswith("Bob\nShop support")
    assert "Best regards" not in signed.body
    unsigned = render_template(
        body=info["body"],
        subject=None,
        is_html=False,
        context=_context("en", first_name="Anna", due="", signature=""),
    )
    assert unsigned.body.rstrip().endswith("Best regards,\nBob Lee\nShop")


def test_default_templates_returns_fresh_copies() -> None:
    """Editing what one caller got (the seeder sets owners) leaves the next caller's intact."""
    first = default_templates()
    first[0]["tags"].append("edited")
    first[0]["name"] = "changed"
    second = default_templates()
    assert second[0]["name"] != "changed"
    assert "edited" not in second[0]["tags"]
