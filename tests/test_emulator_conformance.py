"""The emulator against the Gmail discovery document bundled with google-api-python-client.

Every Gmail route the emulator serves is a discovery method (path template and HTTP method, media
upload paths included); every query parameter it accepts is declared for that method (or is one
of the API's global parameters) and anything else is refused; every answer fits the method's
response schema — no field Gmail does not have, the right JSON types, uint64/int64 as strings.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import googleapiclient
import httpx
import pytest
from fastapi.routing import APIRoute
from googleapiclient.errors import HttpError

from gmail_sync.emulator import methods
from gmail_sync.emulator.methods import GLOBAL_PARAMS, GmailMethod
from tests.emulator_fixtures import (  # noqa: F401 - the fixtures
    MAILBOX,
    Emulator,
    b64,
    emulator_fixture,
    emulator_server_fixture,
    mail,
)

DISCOVERY = json.loads(
    (
        Path(googleapiclient.__file__).parent / "discovery_cache" / "documents" / "gmail.v1.json"
    ).read_text()
)
SCHEMAS: dict[str, Any] = DISCOVERY["schemas"]
NOT_GMAIL = ("/emulator", "/batch", "/docs", "/redoc", "/openapi.json")
# The subset DESIGN.md §4 requires.
REQUIRED = {
    "gmail.users.getProfile",
    "gmail.users.labels.list",
    "gmail.users.labels.get",
    "gmail.users.labels.create",
    "gmail.users.labels.patch",
    "gmail.users.labels.delete",
    "gmail.users.messages.list",
    "gmail.users.messages.get",
    "gmail.users.messages.import",
    "gmail.users.messages.insert",
    "gmail.users.messages.send",
    "gmail.users.messages.modify",
    "gmail.users.messages.batchModify",
    "gmail.users.messages.trash",
    "gmail.users.threads.list",
    "gmail.users.threads.get",
    "gmail.users.threads.modify",
    "gmail.users.history.list",
    "gmail.users.drafts.create",
    "gmail.users.watch",
    "gmail.users.stop",
}


def _walk(resource: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from resource.get("methods", {}).values()
    for child in resource.get("resources", {}).values():
        yield from _walk(child)


DISCOVERY_METHODS = {method["id"]: method for method in _walk(DISCOVERY)}


def _route_index() -> dict[tuple[str, str], dict[str, Any]]:
    index = {}
    for method in DISCOVERY_METHODS.values():
        index[(method["httpMethod"], "/" + method["flatPath"])] = method
        simple = method.get("mediaUpload", {}).get("protocols", {}).get("simple")
        if simple:
            index[(method["httpMethod"], simple["path"])] = method
    return index


def _gmail_routes(emulator: Emulator) -> list[APIRoute]:
    return [
        route
        for route in emulator.app.routes
        if isinstance(route, APIRoute) and not route.path.startswith(NOT_GMAIL)
    ]


def test_every_gmail_route_is_a_discovery_method(emulator: Emulator) -> None:
    index = _route_index()
    routes = _gmail_routes(emulator)
    served = set()
    for route in routes:
        for http_method in route.methods:
            found = index.get((http_method, route.path))
            assert found is not None, f"{http_method} {route.path} is not in the discovery document"
            assert route.name.removesuffix(".upload") == found["id"]
            served.add(found["id"])
    assert served == {m.id for m in methods.ALL_METHODS}
    assert served >= REQUIRED
    # Uploads are served where the discovery document puts them.
    uploads = {r.path for r in routes if r.name.endswith(".upload")}
    assert uploads == {m.upload_path for m in methods.ALL_METHODS if m.upload_path}
    # The batch endpoint is the discovery document's batchPath under the root.
    batch_paths = {r.path for r in emulator.app.routes if isinstance(r, APIRoute)}
    assert "/" + DISCOVERY["batchPath"] in batch_paths
    assert "/batch/gmail/v1" in batch_paths


@pytest.mark.parametrize("method", methods.ALL_METHODS, ids=lambda m: m.id)
def test_each_method_matches_its_discovery_entry(method: GmailMethod) -> None:
    entry = DISCOVERY_METHODS[method.id]
    assert entry["httpMethod"] == method.http_method
    assert entry["flatPath"] == method.path
    declared = {
        name for name, p in entry.get("parameters", {}).items() if p.get("location") == "query"
    }
    assert method.params <= declared, method.params - declared
    simple = entry.get("mediaUpload", {}).get("protocols", {}).get("simple", {})
    assert method.upload_path == simple.get("path")


def test_global_parameters_are_the_discovery_documents() -> None:
    assert set(DISCOVERY["parameters"]) == GLOBAL_PARAMS


def test_undeclared_query_parameters_are_refused_before_anything_happens(
    emulator: Emulator,
) -> None:
    with emulator.http() as http:
        for method in methods.ALL_METHODS:
            path = "/" + method.path.replace("{userId}", "me")
            path = path.replace("{messageId}", "18f0000000001003").replace("{id}", "Label_1")
            answer = http.request(method.http_method, path, params={"notAGmailParameter": "1"})
            assert answer.status_code == 400, (method.id, answer.text)
            error = answer.json()["error"]
            assert error["status"] == "INVALID_ARGUMENT"
            assert error["errors"][0]["location"] == "notAGmailParameter"
            # A declared parameter of another method is just as unknown here.
            if "q" not in method.params:
                assert http.request(method.http_method, path, params={"q": "x"}).status_code == 400
        # Global parameters are accepted everywhere.
        assert (
            http.get(
                "/gmail/v1/users/me/profile", params={"prettyPrint": "false", "quotaUser": "x"}
            ).status_code
            == 200
        )
    assert emulator.state.stats()["calls"] == 1


def _check(value: Any, schema: dict[str, Any], where: str) -> None:
    if "$ref" in schema:
        _check(value, SCHEMAS[schema["$ref"]], where)
        return
    kind = schema.get("type")
    if kind == "object":
        assert isinstance(value, dict), where
        properties = schema.get("properties")
        if properties is None:
            return
        unknown = set(value) - set(properties)
        assert not unknown, f"{where}: fields {unknown} are not in the schema"
        for key, item in value.items():
            _check(item, properties[key], f"{where}.{key}")
    elif kind == "array":
        assert isinstance(value, list), where
        for i, item in enumerate(value):
            _check(item, schema["items"], f"{where}[{i}]")
    elif kind == "string":
        assert isinstance(value, str), where
        if schema.get("format") in ("int64", "uint64"):
            assert value.isdigit(), f"{where}: {value!r} is not a {schema['format']}"
        if schema.get("format") == "byte":
            base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        if "enum" in schema:
            assert value in schema["enum"], where
    elif kind == "integer":
        assert isinstance(value, int), where
        assert not isinstance(value, bool), where
    elif kind == "boolean":
        assert isinstance(value, bool), where


def test_answers_fit_the_discovery_response_schemas(emulator: Emulator) -> None:
    users = emulator.service().users()
    seen: dict[str, int] = {}

    def run(method_id: str, request: Any) -> Any:
        answer = request.execute()
        schema = DISCOVERY_METHODS[method_id].get("response")
        if schema is None:
            assert answer == ""
        else:
            _check(answer, schema, method_id)
        seen[method_id] = seen.get(method_id, 0) + 1
        return answer

    attachment_mail = (
        f"From: ann@customer.test\r\nTo: {MAILBOX}\r\nSubject: Files\r\n"
        "Message-ID: <files@c.test>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="x"\r\n\r\n'
        "--x\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n"
        '--x\r\nContent-Type: text/csv\r\nContent-Disposition: attachment; filename="a.csv"\r\n'
        "\r\na,b\r\n--x--\r\n"
    ).encode()
    start = run("gmail.users.getProfile", users.getProfile(userId="me"))["historyId"]
    first = run(
        "gmail.users.messages.import",
        users.messages().import_(
            userId="me", body={"raw": b64(attachment_mail), "labelIds": ["INBOX", "UNREAD"]}
        ),
    )
    run(
        "gmail.users.messages.insert",
        users.messages().insert(userId="me", body={"raw": b64(mail("I", message_id="i@c.test"))}),
    )
    sent = run(
        "gmail.users.messages.send",
        users.messages().send(
            userId="me",
            body={
                "raw": b64(mail("Re: Files", message_id="r@c.test", references=("files@c.test",)))
            },
        ),
    )
    label = run(
        "gmail.users.labels.create",
        users.labels().create(
            userId="me",
            body={
                "name": "Support/New",
                "color": {"textColor": "#000000", "backgroundColor": "#16a766"},
            },
        ),
    )
    run("gmail.users.labels.list", users.labels().list(userId="me"))
    run("gmail.users.labels.get", users.labels().get(userId="me", id=label["id"]))
    run("gmail.users.labels.get", users.labels().get(userId="me", id="INBOX"))
    run("gmail.users.labels.patch", users.labels().patch(userId="me", id=label["id"], body={}))
    run(
        "gmail.users.labels.update",
        users.labels().update(userId="me", id=label["id"], body={"name": "Support/Open"}),
    )
    run(
        "gmail.users.messages.modify",
        users.messages().modify(userId="me", id=first["id"], body={"addLabelIds": [label["id"]]}),
    )
    run(
        "gmail.users.messages.batchModify",
        users.messages().batchModify(
            userId="me", body={"ids": [first["id"]], "removeLabelIds": ["UNREAD"]}
        ),
    )
    for fmt in ("minimal", "metadata", "full", "raw"):
        last = run(
            "gmail.users.messages.get",
            users.messages().get(userId="me", id=first["id"], format=fmt),
        )
    run("gmail.users.messages.list", users.messages().list(userId="me", maxResults=1))
    run("gmail.users.messages.list", users.messages().list(userId="me", q="nothing-matches"))
    attachment = run("gmail.users.messages.get", users.messages().get(userId="me", id=first["id"]))[
        "payload"
    ]["parts"][1]
    assert attachment["filename"] == "a.csv"
    run(
        "gmail.users.messages.attachments.get",
        users.messages()
        .attachments()
        .get(userId="me", messageId=first["id"], id=attachment["body"]["attachmentId"]),
    )
    for fmt in ("minimal", "metadata", "full"):
        run(
            "gmail.users.threads.get",
            users.threads().get(userId="me", id=first["threadId"], format=fmt),
        )
    run("gmail.users.threads.list", users.threads().list(userId="me", maxResults=1))
    run(
        "gmail.users.threads.modify",
        users.threads().modify(userId="me", id=sent["threadId"], body={"addLabelIds": ["STARRED"]}),
    )
    run("gmail.users.messages.trash", users.messages().trash(userId="me", id=sent["id"]))
    run("gmail.users.messages.untrash", users.messages().untrash(userId="me", id=sent["id"]))
    run("gmail.users.threads.trash", users.threads().trash(userId="me", id=sent["threadId"]))
    run("gmail.users.threads.untrash", users.threads().untrash(userId="me", id=sent["threadId"]))
    draft = run(
        "gmail.users.drafts.create",
        users.drafts().create(
            userId="me", body={"message": {"raw": b64(mail("D", message_id="d@c.test"))}}
        ),
    )
    run(
        "gmail.users.messages.delete",
        users.messages().delete(userId="me", id=draft["message"]["id"]),
    )
    inserted = users.messages().list(userId="me", q="subject:I").execute()["messages"][0]
    run(
        "gmail.users.messages.batchDelete",
        users.messages().batchDelete(userId="me", body={"ids": [inserted["id"]]}),
    )
    other = emulator.import_raw(mail("Gone", message_id="gone@c.test"))
    run("gmail.users.threads.delete", users.threads().delete(userId="me", id=other["threadId"]))
    history = run(
        "gmail.users.history.list", users.history().list(userId="me", startHistoryId=start)
    )
    kinds = {key for record in history["history"] for key in record} - {"id", "messages"}
    assert kinds == {"messagesAdded", "messagesDeleted", "labelsAdded", "labelsRemoved"}
    run(
        "gmail.users.history.list",
        users.history().list(userId="me", startHistoryId=start, maxResults=1),
    )
    run("gmail.users.watch", users.watch(userId="me", body={"topicName": "projects/p/topics/t"}))
    run("gmail.users.stop", users.stop(userId="me"))
    run("gmail.users.labels.delete", users.labels().delete(userId="me", id=label["id"]))
    assert set(seen) == {m.id for m in methods.ALL_METHODS}
    assert last["raw"]


def test_error_answers_have_googles_shape(emulator: Emulator) -> None:
    users = emulator.service().users()
    failures: list[HttpError] = []
    for request in (
        users.messages().get(userId="me", id="0000000000000001"),
        users.labels().create(userId="me", body={"name": "INBOX"}),
        users.history().list(userId="me", startHistoryId="1"),
    ):
        with pytest.raises(HttpError) as failed:
            request.execute()
        failures.append(failed.value)
    for failure in failures:
        body = json.loads(failure.content)
        assert set(body) == {"error"}
        error = body["error"]
        assert set(error) == {"code", "message", "errors", "status"}
        assert error["code"] == failure.resp.status
        assert {"message", "domain", "reason"} <= set(error["errors"][0])
        assert failure.resp["content-type"].startswith("application/json")
    unknown = httpx.get(emulator.url + "/gmail/v1/users/me/nothing-here")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == 404
