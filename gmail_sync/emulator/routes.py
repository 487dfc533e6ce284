"""The Gmail REST routes: one per method of methods.py, each through the same admission.

Every route reads its request the way Google's front end does (path, query string, JSON body or a
media upload), admits the call (EmulatorState.begin_call: auth, userId, parameters, injected
fault, quota — nothing has changed yet when any of those fails), runs the handler under the state
lock and answers JSON, trimmed by ``fields``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request, Response
from starlette.datastructures import QueryParams

from gmail_sync.emulator import methods as m
from gmail_sync.emulator import mime, render
from gmail_sync.emulator.errors import bad_request, invalid_argument, not_found
from gmail_sync.emulator.fields import apply_fields, parse_fields
from gmail_sync.emulator.history import HISTORY_TYPES
from gmail_sync.emulator.mailbox import Mailbox
from gmail_sync.emulator.state import EmulatorState
from gmail_sync.emulator.uploads import parse_upload

_HEX_ID = re.compile(r"^[0-9a-fA-F]{1,16}$")
_MAX_PAGE = 500  # "The maximum allowed value for this field is 500" (maxResults)
# A watch lasts 7 days (developers.google.com/gmail/api/guides/push).
_WATCH_DAYS_MS = 7 * 86_400_000
_RAW_REQUIRED = (
    "'raw' RFC822 payload message string or uploading message via /upload/* URL required"
)


@dataclass
class GmailCall:
    state: EmulatorState
    mailbox: Mailbox
    method: m.GmailMethod
    path: dict[str, str]
    query: QueryParams
    body: bytes
    content_type: str
    upload: bool

    # --- query parameters ---------------------------------------------------------------------

    def param(self, name: str) -> str | None:
        values = self.query.getlist(name)
        return values[-1] if values else None

    def params(self, name: str) -> list[str]:
        return [v for v in self.query.getlist(name) if v != ""]

    def int_param(self, name: str, default: int, *, maximum: int | None = None) -> int:
        value = self.param(name)
        if value is None or value == "":
            return default
        try:
            number = int(value)
        except ValueError:
            raise invalid_argument(
                f"Invalid value at '{name}' (TYPE_UINT32), \"{value}\"", location=name
            ) from None
        if number < 0:
            raise invalid_argument(f"Invalid value at '{name}', \"{value}\"", location=name)
        if maximum is not None:
            number = min(number, maximum)
        return number or default

    def bool_param(self, name: str, default: bool = False) -> bool:
        value = self.param(name)
        if value is None:
            return default
        if value.lower() not in ("true", "false", "1", "0"):
            raise invalid_argument(f"Invalid value at '{name}' (TYPE_BOOL), \"{value}\"")
        return value.lower() in ("true", "1")

    def enum_param(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        value = self.param(name)
        if value is None:
            return default
        for option in allowed:
            # Google accepts enum values in any case (format=RAW and format=raw alike).
            if value.lower() == option.lower():
                return option
        raise invalid_argument(f"Invalid value at '{name}', \"{value}\"", location=name)

    def path_id(self, name: str = "id", *, hex_id: bool = True) -> str:
        value = self.path[name]
        if hex_id and not _HEX_ID.match(value):
            raise invalid_argument("Invalid id value", location="id")
        return value.lower() if hex_id else value

    # --- bodies -------------------------------------------------------------------------------

    def json_body(self) -> dict[str, Any]:
        if not self.body.strip():
            return {}
        try:
            data = json.loads(self.body)
        except ValueError:
            raise bad_request("Invalid JSON payload received.") from None
        if not isinstance(data, dict):
            raise bad_request("Invalid JSON payload received. Expected an object.")
        return data

    def message_input(self, *, nested: bool = False) -> tuple[bytes, dict[str, Any]]:
        """(raw RFC 822 bytes, the Message metadata) from a JSON body or a media upload."""
        if self.upload:
            metadata, raw = parse_upload(self.param("uploadType"), self.content_type, self.body)
            message = metadata.get("message", {}) if nested else metadata
        else:
            body = self.json_body()
            message = body.get("message", {}) if nested else body
            if not isinstance(message, dict):
                raise bad_request("Invalid JSON payload received.")
            encoded = message.get("raw")
            if not isinstance(encoded, str) or not encoded:
                raise invalid_argument(_RAW_REQUIRED)
            try:
                raw = mime.b64url_decode(encoded)
            except ValueError:
                raise invalid_argument("Invalid value for ByteString: raw") from None
        if not raw:
            raise invalid_argument(_RAW_REQUIRED)
        if not isinstance(message, dict):
            raise bad_request("Invalid JSON payload received.")
        return raw, message

    def label_lists(self, body: dict[str, Any]) -> tuple[list[Any], list[Any]]:
        add, remove = body.get("addLabelIds") or [], body.get("removeLabelIds") or []
        if not isinstance(add, list) or not isinstance(remove, list):
            raise bad_request("Invalid JSON payload received. addLabelIds must be a list.")
        return add, remove


Handler = Callable[[GmailCall], "dict[str, Any] | None"]


# --- users -------------------------------------------------------------------------------------


def get_profile(call: GmailCall) -> dict[str, Any]:
    return call.mailbox.profile()


def watch(call: GmailCall) -> dict[str, Any]:
    body = call.json_body()
    topic = body.get("topicName")
    if not isinstance(topic, str) or not re.match(r"^projects/[^/]+/topics/[^/]+$", topic):
        raise invalid_argument(
            "Invalid topicName does not match projects/SOME-PROJECT/topics/SOME-TOPIC"
        )
    return {
        "historyId": str(call.mailbox.history.current_id),
        "expiration": str(call.state.now_ms() + _WATCH_DAYS_MS),
    }


def stop(call: GmailCall) -> None:
    return None


# --- labels ------------------------------------------------------------------------------------


def labels_list(call: GmailCall) -> dict[str, Any]:
    return {"labels": [render.label_json(label) for label in call.mailbox.labels.values()]}


def labels_get(call: GmailCall) -> dict[str, Any]:
    label = call.mailbox.label(call.path_id(hex_id=False))
    return render.label_json(label, call.mailbox.label_counts(label.id))


def labels_create(call: GmailCall) -> dict[str, Any]:
    return render.label_json(call.mailbox.create_label(call.json_body()))


def labels_patch(call: GmailCall) -> dict[str, Any]:
    label = call.mailbox.change_label(call.path_id(hex_id=False), call.json_body(), replace=False)
    return render.label_json(label)


def labels_update(call: GmailCall) -> dict[str, Any]:
    label = call.mailbox.change_label(call.path_id(hex_id=False), call.json_body(), replace=True)
    return render.label_json(label)


def labels_delete(call: GmailCall) -> None:
    call.mailbox.delete_label(call.path_id(hex_id=False))


# --- messages ----------------------------------------------------------------------------------


def _search(call: GmailCall) -> list[Any]:
    return call.mailbox.search(
        q=call.param("q"),
        label_ids=call.params("labelIds"),
        include_spam_trash=call.bool_param("includeSpamTrash"),
        now_ms=call.state.now_ms(),
    )


def messages_list(call: GmailCall) -> dict[str, Any]:
    matches = _search(call)
    page, token = call.mailbox.page_messages(
        matches,
        token=call.param("pageToken"),
        size=call.int_param("maxResults", 100, maximum=_MAX_PAGE),
    )
    out: dict[str, Any] = {}
    if page:
        out["messages"] = [{"id": s.id, "threadId": s.thread_id} for s in page]
    if token:
        out["nextPageToken"] = token
    out["resultSizeEstimate"] = len(matches)
    return out


def _format(call: GmailCall) -> str:
    return call.enum_param("format", render.MESSAGE_FORMATS, "full")


def messages_get(call: GmailCall) -> dict[str, Any]:
    stored = call.mailbox.message(call.path_id())
    return render.message_json(stored, _format(call), call.params("metadataHeaders"))


def _thread_id(message: dict[str, Any]) -> str | None:
    value = message.get("threadId")
    return value.lower() if isinstance(value, str) and _HEX_ID.match(value) else None


def _label_ids(message: dict[str, Any]) -> list[Any]:
    value = message.get("labelIds") or []
    if not isinstance(value, list):
        raise bad_request("Invalid JSON payload received. labelIds must be a list.")
    return value


def _date_source(call: GmailCall, default: str) -> bool:
    source = call.enum_param("internalDateSource", ("receivedTime", "dateHeader"), default)
    return source == "dateHeader"


def _store_incoming(call: GmailCall, *, default_date_source: str) -> dict[str, Any]:
    raw, message = call.message_input()
    stored = call.state.insert(
        call.mailbox,
        raw,
        label_ids=_label_ids(message),
        thread_id=_thread_id(message),
        date_from_header=_date_source(call, default_date_source),
    )
    return render.message_short(stored)


def messages_import(call: GmailCall) -> dict[str, Any]:
    # messages.import dates by the Date header unless told otherwise (discovery default).
    return _store_incoming(call, default_date_source="dateHeader")


def messages_insert(call: GmailCall) -> dict[str, Any]:
    return _store_incoming(call, default_date_source="receivedTime")


def messages_send(call: GmailCall) -> dict[str, Any]:
    raw, message = call.message_input()
    stored = call.state.send(call.mailbox, raw, thread_id=_thread_id(message))
    return render.message_short(stored)


def messages_modify(call: GmailCall) -> dict[str, Any]:
    add, remove = call.label_lists(call.json_body())
    (stored,) = call.mailbox.modify_messages([call.path_id()], add=add, remove=remove)
    return render.message_short(stored)


def _ids(body: dict[str, Any]) -> list[str]:
    ids = body.get("ids") or []
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise bad_request("Invalid JSON payload received. ids must be a list of strings.")
    if len(ids) > 1000:
        raise invalid_argument("Too many ids: at most 1000 per request")
    for message_id in ids:
        if not _HEX_ID.match(message_id):
            raise invalid_argument("Invalid id value", location="ids")
    return [i.lower() for i in ids]


def messages_batch_modify(call: GmailCall) -> None:
    body = call.json_body()
    add, remove = call.label_lists(body)
    # Gmail skips ids it does not know in a batchModify instead of failing the whole request.
    ids = [i for i in _ids(body) if i in call.mailbox.messages]
    call.mailbox.modify_messages(ids, add=add, remove=remove)


def messages_batch_delete(call: GmailCall) -> None:
    ids = [i for i in _ids(call.json_body()) if i in call.mailbox.messages]
    call.mailbox.delete_messages(ids)


def messages_trash(call: GmailCall) -> dict[str, Any]:
    (stored,) = call.mailbox.trash([call.path_id()])
    return render.message_json(stored, "minimal")


def messages_untrash(call: GmailCall) -> dict[str, Any]:
    (stored,) = call.mailbox.trash([call.path_id()], undo=True)
    return render.message_json(stored, "minimal")


def messages_delete(call: GmailCall) -> None:
    call.mailbox.delete_messages([call.path_id()])


def attachments_get(call: GmailCall) -> dict[str, Any]:
    stored = call.mailbox.message(call.path_id("messageId"))
    found = mime.part_id_of(call.path["id"])
    if found is None or found[0] != stored.id:
        raise invalid_argument("Invalid attachment token")
    data = mime.find_part_bytes(stored.raw, found[1])
    if data is None:
        raise not_found()
    return {"size": len(data), "data": mime.b64url(data)}


# --- threads -----------------------------------------------------------------------------------


def threads_list(call: GmailCall) -> dict[str, Any]:
    matches = _search(call)
    page, token = call.mailbox.page_threads(
        matches,
        token=call.param("pageToken"),
        size=call.int_param("maxResults", 100, maximum=_MAX_PAGE),
    )
    out: dict[str, Any] = {}
    if page:
        out["threads"] = [render.thread_summary(call.mailbox, t) for t in page]
    if token:
        out["nextPageToken"] = token
    out["resultSizeEstimate"] = len({s.thread_id for s in matches})
    return out


def threads_get(call: GmailCall) -> dict[str, Any]:
    messages = call.mailbox.thread_messages(call.path_id())
    return render.thread_json(messages, _format(call), call.params("metadataHeaders"))


def threads_modify(call: GmailCall) -> dict[str, Any]:
    add, remove = call.label_lists(call.json_body())
    # "Modifies the labels applied to the thread. This applies to all messages in the thread."
    ids = [s.id for s in call.mailbox.thread_messages(call.path_id())]
    call.mailbox.modify_messages(ids, add=add, remove=remove)
    return render.thread_json(call.mailbox.thread_messages(call.path_id()), "minimal")


def threads_trash(call: GmailCall, *, undo: bool = False) -> dict[str, Any]:
    ids = [s.id for s in call.mailbox.thread_messages(call.path_id())]
    call.mailbox.trash(ids, undo=undo)
    return render.thread_json(call.mailbox.thread_messages(call.path_id()), "minimal")


def threads_untrash(call: GmailCall) -> dict[str, Any]:
    return threads_trash(call, undo=True)


def threads_delete(call: GmailCall) -> None:
    ids = [s.id for s in call.mailbox.thread_messages(call.path_id())]
    call.mailbox.delete_messages(ids)


# --- history, drafts ---------------------------------------------------------------------------


def history_list(call: GmailCall) -> dict[str, Any]:
    start_value = call.param("startHistoryId")
    if not start_value:
        raise invalid_argument("Missing required parameter: startHistoryId")
    try:
        start = int(start_value)
    except ValueError:
        raise invalid_argument(
            f"Invalid value at 'start_history_id' (TYPE_UINT64), \"{start_value}\"",
            location="startHistoryId",
        ) from None
    types = call.params("historyTypes")
    for kind in types:
        if kind not in HISTORY_TYPES:
            raise invalid_argument(f"Invalid value at 'history_types', \"{kind}\"")
    records, token = call.mailbox.history.page(
        start=start,
        types=frozenset(types or HISTORY_TYPES),
        label_id=call.param("labelId") or None,
        max_results=call.int_param("maxResults", 100, maximum=_MAX_PAGE),
        page_token=call.param("pageToken"),
    )
    out: dict[str, Any] = {}
    if records:
        out["history"] = records
    if token:
        out["nextPageToken"] = token
    out["historyId"] = str(call.mailbox.history.current_id)
    return out


def drafts_create(call: GmailCall) -> dict[str, Any]:
    raw, message = call.message_input(nested=True)
    stored = call.state.insert(
        call.mailbox,
        raw,
        label_ids=["DRAFT"],
        thread_id=_thread_id(message),
        date_from_header=False,
    )
    return {"id": call.mailbox.add_draft(stored), "message": render.message_short(stored)}


HANDLERS: dict[str, Handler] = {
    m.GET_PROFILE.id: get_profile,
    m.WATCH.id: watch,
    m.STOP.id: stop,
    m.LABELS_LIST.id: labels_list,
    m.LABELS_GET.id: labels_get,
    m.LABELS_CREATE.id: labels_create,
    m.LABELS_PATCH.id: labels_patch,
    m.LABELS_UPDATE.id: labels_update,
    m.LABELS_DELETE.id: labels_delete,
    m.MESSAGES_LIST.id: messages_list,
    m.MESSAGES_GET.id: messages_get,
    m.MESSAGES_IMPORT.id: messages_import,
    m.MESSAGES_INSERT.id: messages_insert,
    m.MESSAGES_SEND.id: messages_send,
    m.MESSAGES_MODIFY.id: messages_modify,
    m.MESSAGES_BATCH_MODIFY.id: messages_batch_modify,
    m.MESSAGES_BATCH_DELETE.id: messages_batch_delete,
    m.MESSAGES_TRASH.id: messages_trash,
    m.MESSAGES_UNTRASH.id: messages_untrash,
    m.MESSAGES_DELETE.id: messages_delete,
    m.ATTACHMENTS_GET.id: attachments_get,
    m.THREADS_LIST.id: threads_list,
    m.THREADS_GET.id: threads_get,
    m.THREADS_MODIFY.id: threads_modify,
    m.THREADS_TRASH.id: threads_trash,
    m.THREADS_UNTRASH.id: threads_untrash,
    m.THREADS_DELETE.id: threads_delete,
    m.HISTORY_LIST.id: history_list,
    m.DRAFTS_CREATE.id: drafts_create,
}


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query_params.get("access_token") or request.query_params.get("oauth_token")


def json_response(request: Request, data: dict[str, Any] | None, status: int = 200) -> Response:
    if data is None:
        return Response(status_code=204)
    selector = request.query_params.get("fields")
    if selector:
        data = apply_fields(data, parse_fields(selector))
    return Response(
        json.dumps(data, ensure_ascii=False).encode(),
        status_code=status,
        media_type="application/json; charset=UTF-8",
    )


def _endpoint(method: m.GmailMethod, handler: Handler, *, upload: bool):  # type: ignore[no-untyped-def]
    async def endpoint(request: Request) -> Response:
        state: EmulatorState = request.app.state.emulator
        body = await request.body()
        alt = request.query_params.get("alt")
        if alt not in (None, "json"):
            raise invalid_argument(f"Unsupported alt={alt}: the emulator answers JSON only")
        if request.query_params.get("fields"):
            parse_fields(request.query_params["fields"])  # a bad selector fails before any change
        mailbox = state.begin_call(
            method,
            token=_token(request),
            user_id=request.path_params["userId"],
            query_keys=request.query_params.keys(),
            in_batch=bool(request.scope.get("gmail_emulator.batch_part")),
        )
        call = GmailCall(
            state=state,
            mailbox=mailbox,
            method=method,
            path=dict(request.path_params),
            query=request.query_params,
            body=body,
            content_type=request.headers.get("content-type", ""),
            upload=upload,
        )
        with state.lock:
            try:
                result = handler(call)
            finally:
                # Every method but a GET may change the mailbox (a state file must be rewritten).
                if method.http_method != "GET":
                    state.mark_changed()
            state.end_call(method)
        return json_response(request, result)

    endpoint.__name__ = method.id.replace(".", "_")
    return endpoint


def add_gmail_routes(app: FastAPI) -> None:
    """One route per method (and per media upload path), on the app itself so that
    ``app.routes`` lists them (tests/test_emulator_conformance.py reads it)."""
    for method in m.ALL_METHODS:
        handler = HANDLERS[method.id]
        app.add_api_route(
            "/" + method.path,
            _endpoint(method, handler, upload=False),
            methods=[method.http_method],
            name=method.id,
            include_in_schema=False,
        )
        if method.upload_path:
            app.add_api_route(
                method.upload_path,
                _endpoint(method, handler, upload=True),
                methods=[method.http_method],
                name=method.id + ".upload",
                include_in_schema=False,
            )
