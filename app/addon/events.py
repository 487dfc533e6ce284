"""Google's add-on event object, as Gmail POSTs it to the HTTP endpoints.

Reference: "EventObject" (https://developers.google.com/workspace/add-ons/reference/event-object)
and the HTTP endpoint interface
(https://developers.google.com/workspace/add-ons/reference/callback-contract): a
``commonEventObject`` (locale, host app, time zone, ``formInputs``, ``parameters``), an
``authorizationEventObject`` (only for HTTP endpoints: ``userOAuthToken``, ``userIdToken``,
``systemIdToken``) and one host object — for Gmail ``gmail`` (``messageId``, ``threadId``,
``accessToken``, recipients in compose). Google adds fields over time, so unknown fields are kept
(``extra="allow"``), never rejected. The field names are Google's camelCase on purpose.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _EventPart(BaseModel):
    model_config = ConfigDict(extra="allow")


class StringInputs(_EventPart):
    value: list[str] = Field(default_factory=list)


class FormInput(_EventPart):
    """One widget's value: ``stringInputs`` for text inputs and selections; date/time pickers
    send ``dateInput`` / ``timeInput`` / ``dateTimeInput`` (kept as they come)."""

    stringInputs: StringInputs | None = None  # noqa: N815 - Google's name
    dateInput: dict[str, Any] | None = None  # noqa: N815
    timeInput: dict[str, Any] | None = None  # noqa: N815
    dateTimeInput: dict[str, Any] | None = None  # noqa: N815


class TimeZone(_EventPart):
    id: str | None = None
    offset: int | None = None


class CommonEventObject(_EventPart):
    hostApp: str | None = None  # noqa: N815 - GMAIL, CALENDAR, …
    platform: str | None = None  # WEB, IOS, ANDROID
    userLocale: str | None = None  # noqa: N815 - e.g. "en" or "ru-RU"
    timeZone: TimeZone | None = None  # noqa: N815
    formInputs: dict[str, FormInput] = Field(default_factory=dict)  # noqa: N815
    # The action's parameters as the card set them (string to string).
    parameters: dict[str, str] = Field(default_factory=dict)
    invokedFunction: str | None = None  # noqa: N815


class AuthorizationEventObject(_EventPart):
    # Credentials: kept out of repr() so a logged event never carries them.
    userOAuthToken: str | None = Field(default=None, repr=False)  # noqa: N815
    userIdToken: str | None = Field(default=None, repr=False)  # noqa: N815
    systemIdToken: str | None = Field(default=None, repr=False)  # noqa: N815


class GmailEventObject(_EventPart):
    messageId: str | None = None  # noqa: N815
    threadId: str | None = None  # noqa: N815
    # A short-lived token for reading the open message (gmail.addons.current.message.* scopes).
    accessToken: str | None = Field(default=None, repr=False)  # noqa: N815
    toRecipients: list[str] = Field(default_factory=list)  # noqa: N815
    ccRecipients: list[str] = Field(default_factory=list)  # noqa: N815
    bccRecipients: list[str] = Field(default_factory=list)  # noqa: N815


class AddonEvent(_EventPart):
    commonEventObject: CommonEventObject | None = None  # noqa: N815
    authorizationEventObject: AuthorizationEventObject | None = None  # noqa: N815
    gmail: GmailEventObject | None = None

    @property
    def thread_id(self) -> str | None:
        return self.gmail.threadId if self.gmail else None

    @property
    def message_id(self) -> str | None:
        return self.gmail.messageId if self.gmail else None

    @property
    def locale(self) -> str | None:
        return self.commonEventObject.userLocale if self.commonEventObject else None

    @property
    def time_zone(self) -> str | None:
        common = self.commonEventObject
        return common.timeZone.id if common and common.timeZone else None

    def parameter(self, name: str) -> str | None:
        """``commonEventObject.parameters[name]``: what the card's action carried."""
        if self.commonEventObject is None:
            return None
        return self.commonEventObject.parameters.get(name)

    def form_values(self, name: str) -> list[str]:
        """Every string value of the widget ``name`` (multi-select lists send several)."""
        if self.commonEventObject is None:
            return []
        entry = self.commonEventObject.formInputs.get(name)
        if entry is None or entry.stringInputs is None:
            return []
        return list(entry.stringInputs.value)

    def form_value(self, name: str) -> str | None:
        """The widget's first string value (``formInputs[name].stringInputs.value[0]``)."""
        values = self.form_values(name)
        return values[0] if values else None
