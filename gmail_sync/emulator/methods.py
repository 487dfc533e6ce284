"""The Gmail API methods the emulator serves: id, HTTP method, path, query parameters, quota cost.

Ids and paths are the discovery document's (``gmail.v1.json`` bundled with
google-api-python-client: ``id``, ``httpMethod``, ``flatPath``; media uploads under
``mediaUpload.protocols.simple.path``). Quota units are Gmail's published per-method costs
(https://developers.google.com/gmail/api/reference/quota). ``params`` is every query parameter the
method accepts here; anything else is refused with 400 as Google does ("Cannot bind query
parameter"). tests/test_emulator_conformance.py checks all of this against the discovery document.
"""

from __future__ import annotations

from dataclasses import dataclass

# Accepted on every method: the discovery document's global "parameters". The emulator reads
# ``fields`` (partial response) and the tokens, and ignores the rest.
GLOBAL_PARAMS = frozenset(
    {
        "$.xgafv",
        "access_token",
        "alt",
        "callback",
        "fields",
        "key",
        "oauth_token",
        "prettyPrint",
        "quotaUser",
        "uploadType",
        "upload_protocol",
    }
)


@dataclass(frozen=True)
class GmailMethod:
    id: str
    http_method: str
    path: str  # the discovery flatPath, without the leading "/"
    units: int
    params: frozenset[str] = frozenset()
    upload_path: str | None = None  # mediaUpload.protocols.simple.path, with its leading "/"

    @property
    def short_name(self) -> str:
        """The name Gmail's quota table uses, e.g. ``messages.get``."""
        return self.id.removeprefix("gmail.users.")


def _m(
    id_: str,
    http_method: str,
    path: str,
    units: int,
    params: tuple[str, ...] = (),
    *,
    upload: bool = False,
) -> GmailMethod:
    return GmailMethod(
        id=id_,
        http_method=http_method,
        path=path,
        units=units,
        params=frozenset(params),
        upload_path=f"/upload/{path}" if upload else None,
    )


_LIST = ("includeSpamTrash", "labelIds", "maxResults", "pageToken", "q")
_U = "gmail/v1/users/{userId}"

GET_PROFILE = _m("gmail.users.getProfile", "GET", f"{_U}/profile", 1)
WATCH = _m("gmail.users.watch", "POST", f"{_U}/watch", 100)
STOP = _m("gmail.users.stop", "POST", f"{_U}/stop", 50)

LABELS_LIST = _m("gmail.users.labels.list", "GET", f"{_U}/labels", 1)
LABELS_GET = _m("gmail.users.labels.get", "GET", f"{_U}/labels/{{id}}", 1)
LABELS_CREATE = _m("gmail.users.labels.create", "POST", f"{_U}/labels", 5)
LABELS_PATCH = _m("gmail.users.labels.patch", "PATCH", f"{_U}/labels/{{id}}", 5)
LABELS_UPDATE = _m("gmail.users.labels.update", "PUT", f"{_U}/labels/{{id}}", 5)
LABELS_DELETE = _m("gmail.users.labels.delete", "DELETE", f"{_U}/labels/{{id}}", 5)

MESSAGES_LIST = _m("gmail.users.messages.list", "GET", f"{_U}/messages", 5, _LIST)
MESSAGES_GET = _m(
    "gmail.users.messages.get", "GET", f"{_U}/messages/{{id}}", 5, ("format", "metadataHeaders")
)
MESSAGES_IMPORT = _m(
    "gmail.users.messages.import",
    "POST",
    f"{_U}/messages/import",
    25,
    ("deleted", "internalDateSource", "neverMarkSpam", "processForCalendar"),
    upload=True,
)
MESSAGES_INSERT = _m(
    "gmail.users.messages.insert",
    "POST",
    f"{_U}/messages",
    25,
    ("deleted", "internalDateSource"),
    upload=True,
)
MESSAGES_SEND = _m("gmail.users.messages.send", "POST", f"{_U}/messages/send", 100, upload=True)
MESSAGES_MODIFY = _m("gmail.users.messages.modify", "POST", f"{_U}/messages/{{id}}/modify", 5)
MESSAGES_BATCH_MODIFY = _m(
    "gmail.users.messages.batchModify", "POST", f"{_U}/messages/batchModify", 50
)
MESSAGES_BATCH_DELETE = _m(
    "gmail.users.messages.batchDelete", "POST", f"{_U}/messages/batchDelete", 50
)
MESSAGES_TRASH = _m("gmail.users.messages.trash", "POST", f"{_U}/messages/{{id}}/trash", 5)
MESSAGES_UNTRASH = _m("gmail.users.messages.untrash", "POST", f"{_U}/messages/{{id}}/untrash", 5)
MESSAGES_DELETE = _m("gmail.users.messages.delete", "DELETE", f"{_U}/messages/{{id}}", 10)
ATTACHMENTS_GET = _m(
    "gmail.users.messages.attachments.get",
    "GET",
    f"{_U}/messages/{{messageId}}/attachments/{{id}}",
    5,
)

THREADS_LIST = _m("gmail.users.threads.list", "GET", f"{_U}/threads", 10, _LIST)
THREADS_GET = _m(
    "gmail.users.threads.get", "GET", f"{_U}/threads/{{id}}", 10, ("format", "metadataHeaders")
)
THREADS_MODIFY = _m("gmail.users.threads.modify", "POST", f"{_U}/threads/{{id}}/modify", 10)
THREADS_TRASH = _m("gmail.users.threads.trash", "POST", f"{_U}/threads/{{id}}/trash", 10)
THREADS_UNTRASH = _m("gmail.users.threads.untrash", "POST", f"{_U}/threads/{{id}}/untrash", 10)
THREADS_DELETE = _m("gmail.users.threads.delete", "DELETE", f"{_U}/threads/{{id}}", 20)

HISTORY_LIST = _m(
    "gmail.users.history.list",
    "GET",
    f"{_U}/history",
    2,
    ("historyTypes", "labelId", "maxResults", "pageToken", "startHistoryId"),
)

DRAFTS_CREATE = _m("gmail.users.drafts.create", "POST", f"{_U}/drafts", 10, upload=True)

ALL_METHODS: tuple[GmailMethod, ...] = (
    GET_PROFILE,
    WATCH,
    STOP,
    LABELS_LIST,
    LABELS_GET,
    LABELS_CREATE,
    LABELS_PATCH,
    LABELS_UPDATE,
    LABELS_DELETE,
    MESSAGES_LIST,
    MESSAGES_GET,
    MESSAGES_IMPORT,
    MESSAGES_INSERT,
    MESSAGES_SEND,
    MESSAGES_MODIFY,
    MESSAGES_BATCH_MODIFY,
    MESSAGES_BATCH_DELETE,
    MESSAGES_TRASH,
    MESSAGES_UNTRASH,
    MESSAGES_DELETE,
    ATTACHMENTS_GET,
    THREADS_LIST,
    THREADS_GET,
    THREADS_MODIFY,
    THREADS_TRASH,
    THREADS_UNTRASH,
    THREADS_DELETE,
    HISTORY_LIST,
    DRAFTS_CREATE,
)
