"""Request and response shapes of the reply-template API and of the library file."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from app.api.validation import NO_NUL
from app.db.base import MAX_INTEGER
from templates_replies.models import MAX_TAG_CHARS, MAX_TAGS, Visibility

LIBRARY_FORMAT = "inboxdesk-templates"
LIBRARY_VERSION = 1
# The sandbox refuses sources over sandbox.MAX_TEMPLATE_CHARS with a precise 422 (template_invalid,
# problem too_large); this bound only keeps absurd request bodies out of the process.
MAX_SOURCE_CHARS = 200_000
MAX_LIBRARY_TEMPLATES = 5_000

LANGUAGE = r"^[a-z]{2,8}$"
SHORTCUT = r"^[a-z0-9-]{1,64}$"
# "|" separates tags in reply_templates.tag_index; control characters have no place in a label.
_BAD_TAG_CHARS = re.compile(r"[\x00-\x1f\x7f|]")


def _normalize_tag(value: str) -> str:
    tag = value.strip().lower()
    if not 1 <= len(tag) <= MAX_TAG_CHARS or _BAD_TAG_CHARS.search(tag):
        raise ValueError(f"a tag has 1–{MAX_TAG_CHARS} characters, no '|' or control characters")
    return tag


def _dedupe(tags: list[str]) -> list[str]:
    return sorted(set(tags))


def _strip_name(value: str) -> str:
    name = value.strip()
    if not name:
        raise ValueError("a template needs a name")
    return name


Tag = Annotated[str, AfterValidator(_normalize_tag)]
Tags = Annotated[list[Tag], AfterValidator(_dedupe)]
Name = Annotated[str, AfterValidator(_strip_name)]


class TemplateFields(BaseModel):
    """A template as authored: what the API creates and the library file holds."""

    model_config = ConfigDict(extra="forbid")

    name: Name = Field(min_length=1, max_length=200, pattern=NO_NUL)
    subject: str | None = Field(default=None, max_length=998, pattern=NO_NUL)
    body: str = Field(
        min_length=1,
        max_length=MAX_SOURCE_CHARS,
        pattern=NO_NUL,
        description="Jinja2 source: plain text, or the simple HTML Gmail drafts accept",
    )
    is_html: bool = False
    language: str = Field(default="en", pattern=LANGUAGE, description="ru, en, …")
    folder: str | None = Field(default=None, min_length=1, max_length=200, pattern=NO_NUL)
    tags: Tags = Field(default=[], max_length=MAX_TAGS)
    shortcut: str | None = Field(default=None, pattern=SHORTCUT)
    visibility: Visibility = Field(
        default=Visibility.SHARED,
        description="shared (leads and admins edit) or personal (its author's alone)",
    )


class TemplateCreate(TemplateFields):
    pass


class TemplateUpdate(BaseModel):
    """A change to a template made from ``version`` (optimistic locking). Absent fields are kept;
    ``subject``, ``folder`` and ``shortcut`` are cleared with ``null``."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, le=MAX_INTEGER)
    name: Name | None = Field(default=None, min_length=1, max_length=200, pattern=NO_NUL)
    subject: str | None = Field(default=None, max_length=998, pattern=NO_NUL)
    body: str | None = Field(
        default=None, min_length=1, max_length=MAX_SOURCE_CHARS, pattern=NO_NUL
    )
    is_html: bool | None = None
    language: str | None = Field(default=None, pattern=LANGUAGE)
    folder: str | None = Field(default=None, min_length=1, max_length=200, pattern=NO_NUL)
    tags: Tags | None = Field(default=None, max_length=MAX_TAGS)
    shortcut: str | None = Field(default=None, pattern=SHORTCUT)
    visibility: Visibility | None = None

    @model_validator(mode="after")
    def _no_null_for_required(self) -> TemplateUpdate:
        for name in ("name", "body", "is_html", "language", "tags", "visibility"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null; leave it out to keep it unchanged")
        return self


class TemplateRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    subject: str | None
    body: str
    is_html: bool
    language: str
    folder: str | None
    tags: list[str]
    shortcut: str | None
    visibility: Visibility
    owner_id: int | None = Field(description="the agent a personal template belongs to")
    author_id: int | None
    usage_count: int
    last_used_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime


class SpellingWarning(BaseModel):
    code: Literal["spelling"] = "spelling"
    words: list[str] = Field(description="suspicious words of the subject and body, sorted")


class TemplateSaved(BaseModel):
    """A saved template; spelling problems are warnings, never a reason to refuse the save."""

    template: TemplateRead
    warnings: list[SpellingWarning]


class TemplatePage(BaseModel):
    items: list[TemplateRead]
    total: int
    limit: int
    offset: int


class RenderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ticket_id: int | None = Field(
        default=None, ge=1, le=MAX_INTEGER, description="without one: sample values"
    )


class PreviewRequest(BaseModel):
    """An unsaved template, checked like a save and rendered."""

    model_config = ConfigDict(extra="forbid")

    body: str = Field(min_length=1, max_length=MAX_SOURCE_CHARS, pattern=NO_NUL)
    subject: str | None = Field(default=None, max_length=998, pattern=NO_NUL)
    is_html: bool = False
    language: str = Field(default="en", pattern=LANGUAGE)
    ticket_id: int | None = Field(default=None, ge=1, le=MAX_INTEGER)


class RenderedRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    body: str
    subject: str | None
    is_html: bool
    warnings: list[str] = Field(
        description="what went wrong while rendering (the value was left empty), or truncation"
    )


class UseCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ticket_id: int = Field(ge=1, le=MAX_INTEGER, description="the ticket the template answered")


class UseRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    template_id: int
    ticket_id: int | None
    agent_id: int | None
    message_excerpt: str
    used_at: datetime


class SuggestionRead(BaseModel):
    template: TemplateRead
    score: float = Field(description="the blend the list is ordered by, in [0, 1]")
    text_score: float
    usage_score: float


class SuggestionList(BaseModel):
    items: list[SuggestionRead]


class LibraryRead(BaseModel):
    """The whole library as one JSON document (``GET /templates/export``)."""

    format: Literal["inboxdesk-templates"] = LIBRARY_FORMAT
    version: Literal[1] = LIBRARY_VERSION
    templates: list[TemplateFields]


class LibraryImport(BaseModel):
    """A library document. Each template is checked by the import itself, so that a bad one is
    reported with its position (``details.index``) rather than as a bare schema error."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["inboxdesk-templates"]
    version: Literal[1]
    templates: list[Any] = Field(max_length=MAX_LIBRARY_TEMPLATES)


class ImportWarning(SpellingWarning):
    index: int
    name: str


class ImportResult(BaseModel):
    created: int
    updated: int
    unchanged: int = Field(description="templates matched and already identical")
    warnings: list[ImportWarning]
