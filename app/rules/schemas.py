"""Request and response shapes of /api/v1/rules.

The shapes here check types (a known field, operator and action type, a string / boolean / list
value, an integer id); what depends on the combination — which operator a field takes, a regular
expression that compiles, a priority name, a tag's form — is checked by ``compile_rule``
(app/rules/engine.py), the one place that also guards rules stored by other paths; ids are
checked against the database by the service. Every failure is a 422 naming the condition or
action index, and nothing is stored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, model_validator

from app.api.validation import NO_NUL
from app.db.base import MAX_INTEGER

ConditionField = Literal[
    "from",
    "from_domain",
    "to",
    "cc",
    "subject",
    "body",
    "text",
    "language",
    "segment",
    "has_attachment",
    "business_hours",
    "automated",
]
ConditionOp = Literal[
    "is", "is_not", "in", "contains", "not_contains", "regex", "not_regex", "words", "not_words"
]
ActionType = Literal[
    "set_priority",
    "add_tag",
    "set_team",
    "assign_agent",
    "assign_team",
    "set_sla_policy",
    "skip_acknowledgement",
    "close_as_spam",
]
MatchMode = Literal["all", "any"]
RowIdValue = Annotated[StrictInt, Field(ge=1, le=MAX_INTEGER)]
Position = Annotated[int, Field(ge=-1_000_000, le=1_000_000)]
MAX_CONDITIONS = 50
MAX_ACTIONS = 20


class Condition(BaseModel):
    """``{"field": F, "op": O, "value": V}``. Strings: ``is``/``is_not``/``contains``/
    ``regex``/``not_regex``/``not_contains``; a list of strings: ``in``/``words``/
    ``not_words``; a boolean: ``is`` on has_attachment, business_hours, automated."""

    model_config = ConfigDict(extra="forbid")

    field: ConditionField
    op: ConditionOp
    value: StrictBool | StrictStr | list[StrictStr]


class Action(BaseModel):
    """``{"type": T, "value": V}``: set_priority (low|normal|high|urgent, ``only_raise``),
    add_tag (a tag), set_team / assign_team (a team id), assign_agent (an agent id),
    set_sla_policy (a policy id); skip_acknowledgement and close_as_spam take no value."""

    model_config = ConfigDict(extra="forbid")

    type: ActionType
    value: StrictStr | RowIdValue | None = None
    only_raise: StrictBool | None = None


class RuleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=NO_NUL)
    mailbox_id: RowIdValue | None = Field(default=None, description="null: every mailbox")
    position: Position = Field(default=0, description="ascending; ties by id")
    enabled: bool = True
    match: MatchMode = "all"
    conditions: list[Condition] = Field(default=[], max_length=MAX_CONDITIONS)
    actions: list[Action] = Field(min_length=1, max_length=MAX_ACTIONS)
    run_on_replies: bool = False
    stop_processing: bool = False


class RuleUpdate(BaseModel):
    """A partial change; ``conditions`` and ``actions`` are replaced whole."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=NO_NUL)
    mailbox_id: RowIdValue | None = None
    position: Position | None = None
    enabled: bool | None = None
    match: MatchMode | None = None
    conditions: list[Condition] | None = Field(default=None, max_length=MAX_CONDITIONS)
    actions: list[Action] | None = Field(default=None, min_length=1, max_length=MAX_ACTIONS)
    run_on_replies: bool | None = None
    stop_processing: bool | None = None

    @model_validator(mode="after")
    def _no_null_except_mailbox(self) -> RuleUpdate:
        for name in self.model_fields_set - {"mailbox_id"}:
            if getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null; leave it out to keep it unchanged")
        return self


class RuleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    mailbox_id: int | None
    name: str
    position: int
    enabled: bool
    match: str
    conditions: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    run_on_replies: bool
    stop_processing: bool
    created_at: datetime
    updated_at: datetime


class DryRunFields(BaseModel):
    """A message described field by field. ``segment`` None: the sender's stored segment (or
    "regular"); ``business_hours`` None: ``received_at`` (default now) against the mailbox's
    calendar; ``language`` None: detected from subject and body."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_address: str = Field(alias="from", min_length=1, max_length=320, pattern=NO_NUL)
    to: list[Annotated[str, Field(max_length=320, pattern=NO_NUL)]] = Field(
        default=[], max_length=100
    )
    cc: list[Annotated[str, Field(max_length=320, pattern=NO_NUL)]] = Field(
        default=[], max_length=100
    )
    subject: str = Field(default="", max_length=998, pattern=NO_NUL)
    body: str = Field(default="", max_length=1_000_000, pattern=NO_NUL)
    has_attachment: bool = False
    language: str | None = Field(default=None, max_length=8, pattern=NO_NUL)
    segment: str | None = Field(default=None, max_length=32, pattern=NO_NUL)
    automated: bool = False
    received_at: datetime | None = None
    business_hours: bool | None = None


class DryRunRequest(BaseModel):
    """Which rules would fire for a message, and what they would do; nothing is changed.
    Exactly one of ``raw`` (RFC 822 text), ``message_id`` (a stored message's row id) or
    ``fields``. ``reply``: evaluate as a customer's reply (only ``run_on_replies`` rules)."""

    model_config = ConfigDict(extra="forbid")

    mailbox_id: RowIdValue
    reply: bool = False
    raw: str | None = Field(default=None, min_length=1, max_length=5_000_000)
    message_id: RowIdValue | None = None
    fields: DryRunFields | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DryRunRequest:
        given = [n for n in ("raw", "message_id", "fields") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of raw, message_id or fields")
        return self


class FiringRead(BaseModel):
    rule_id: int | None
    name: str
    actions: list[dict[str, Any]]


class DryRunResult(BaseModel):
    facts: dict[str, Any]
    fired: list[FiringRead]
    effects: dict[str, Any] = Field(
        description="what the fired actions would change: priority, tags_added, team_id, "
        "assignee_id, assign_team_id, sla_policy_id, skip_acknowledgement, close_as_spam"
    )
