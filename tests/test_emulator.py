"""The Gmail emulator driven by the unmodified google-api-python-client over real HTTP.

Proves the behaviour Inboxdesk relies on: raw bytes survive import/get, Gmail-like threading,
send adds SENT, label rules (409 on a taken name), history records with paging and retention,
batches whose parts succeed and fail independently, quota units per method and the per-user
limit, deterministic injected faults that change nothing, and Google's auth answers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from base64 import b64encode
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime, formatdate, parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.auth.exceptions import RefreshError
from googleapiclient.errors import HttpError

from gmail_sync.emulator.mime import b64url_decode
from gmail_sync.emulator.state import shift_dates
from tests.conftest import CORPUS, free_port
from tests.emulator_fixtures import (  # noqa: F401 - the fixtures
    MAILBOX,
    OTHER_MAILBOX,
    Emulator,
    b64,
    emulator_fixture,
    emulator_server_fixture,
    mail,
    unb64,
)

AUTOMATED = CORPUS / "automated"


def error_of(exc: HttpError) -> dict[str, Any]:
    return json.loads(exc.content)["error"]  # type: ignore[no-any-return]


def run_batch(emulator: Emulator, requests: Sequence[Any]) -> list[tuple[Any, HttpError | None]]:
    """Run requests in batches of 50; (response, error) per request, in order."""
    out: list[tuple[Any, HttpError | None]] = []
    for start in range(0, len(requests), 50):
        answers: dict[str, tuple[Any, HttpError | None]] = {}

        def collect(
            request_id: str,
            response: Any,
            exception: Exception | None,
            answers: dict[str, tuple[Any, HttpError | None]] = answers,
        ) -> None:
            assert exception is None or isinstance(exception, HttpError)
            answers[request_id] = (response, exception)

        batch = emulator.batch(collect)
        chunk = requests[start : start + 50]
        for i, request in enumerate(chunk):
            batch.add(request, request_id=str(i))
        batch.execute()
        out += [answers[str(i)] for i in range(len(chunk))]
    return out


def import_many(emulator: Emulator, raws: Sequence[bytes], address: str = MAILBOX) -> list[dict]:
    messages = emulator.service(address).users().messages()
    requests = [
        messages.import_(userId="me", body={"raw": b64(raw), "labelIds": ["INBOX", "UNREAD"]})
        for raw in raws
    ]
    results = run_batch(emulator, requests)
    assert all(error is None for _, error in results)
    return [response for response, _ in results]


def profile(emulator: Emulator, address: str = MAILBOX) -> dict[str, Any]:
    return emulator.service(address).users().getProfile(userId="me").execute()  # type: ignore[no-any-return]


# --- messages ------------------------------------------------------------------------------------


def test_every_corpus_message_survives_import_and_raw_get_byte_for_byte(emulator: Emulator) -> None:
    """158 real automated messages: import → get(format=raw) gives the same bytes back."""
    files = sorted(AUTOMATED.glob("*.eml"))
    raws = [f.read_bytes() for f in files]
    imported = import_many(emulator, raws)
    ids = [m["id"] for m in imported]
    assert len(set(ids)) == len(files) == 158
    for message_id in ids:
        assert len(message_id) == 16
        int(message_id, 16)
    gets = run_batch(
        emulator,
        [emulator.service().users().messages().get(userId="me", id=i, format="raw") for i in ids],
    )
    for raw, (response, error) in zip(raws, gets, strict=True):
        assert error is None
        assert unb64(response["raw"]) == raw
        assert response["sizeEstimate"] == len(raw)
        assert response["labelIds"] == ["INBOX", "UNREAD"]
    assert profile(emulator)["messagesTotal"] == 158


def test_import_dates_by_the_date_header_and_insert_by_arrival(emulator: Emulator) -> None:
    raw = mail("Dated", message_id="dated@c.test", date="Mon, 01 Jan 2024 10:00:00 +0300")
    messages = emulator.service().users().messages()
    imported = messages.import_(userId="me", body={"raw": b64(raw)}).execute()
    got = messages.get(userId="me", id=imported["id"], format="minimal").execute()
    assert got["internalDate"] == "1704092400000"  # 2024-01-01T07:00:00Z
    assert "labelIds" not in got  # imported without labels: archived, as in Gmail
    before = int(time.time() * 1000)
    inserted = messages.insert(userId="me", body={"raw": b64(raw), "labelIds": ["INBOX"]}).execute()
    got = messages.get(userId="me", id=inserted["id"], format="minimal").execute()
    assert int(got["internalDate"]) >= before
    explicit = messages.import_(
        userId="me", body={"raw": b64(raw)}, internalDateSource="receivedTime"
    ).execute()
    got = messages.get(userId="me", id=explicit["id"], format="minimal").execute()
    assert int(got["internalDate"]) >= before


def test_full_and_metadata_formats_decode_headers_parts_and_attachments(emulator: Emulator) -> None:
    # RFC 2047 "B" encoding is standard base64, not the URL-safe alphabet.
    subject = "=?koi8-r?B?" + b64encode("Заказ не пришёл".encode("koi8-r")).decode() + "?="
    name = "=?utf-8?B?" + b64encode("Иван Петров".encode()).decode() + "?="
    raw = (
        (
            f"From: {name} <ivan@customer.test>\r\n"
            f"To: {MAILBOX}\r\nSubject: {subject}\r\nMessage-ID: <mp@c.test>\r\n"
            "Date: Tue, 02 Jan 2024 10:00:00 +0300\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
            '--outer\r\nContent-Type: multipart/alternative; boundary="inner"\r\n\r\n'
            "--inner\r\nContent-Type: text/plain; charset=koi8-r\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n"
        ).encode()
        + "Где мой заказ? It's late.\r\n".encode("koi8-r")
        + (
            "--inner\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Где мой заказ?</p>\r\n"
            "--inner--\r\n"
            "--outer\r\nContent-Type: application/pdf; name=invoice.pdf\r\n"
            'Content-Disposition: attachment; filename="invoice.pdf"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJcfs\r\n--outer--\r\n"
        ).encode()
    )
    message_id = emulator.import_raw(raw)["id"]
    messages = emulator.service().users().messages()

    full = messages.get(userId="me", id=message_id).execute()  # format defaults to full
    assert "raw" not in full
    payload = full["payload"]
    headers = {h["name"]: h["value"] for h in payload["headers"]}
    assert headers["Subject"] == "Заказ не пришёл"
    assert headers["From"] == "Иван Петров <ivan@customer.test>"
    assert payload["partId"] == ""
    assert payload["mimeType"] == "multipart/mixed"
    alternative, attachment = payload["parts"]
    assert [p["partId"] for p in alternative["parts"]] == ["0.0", "0.1"]
    plain = alternative["parts"][0]
    # The line break before a boundary belongs to the boundary (RFC 2046 §5.1.1).
    assert unb64(plain["body"]["data"]) == "Где мой заказ? It's late.".encode("koi8-r")
    assert plain["body"]["size"] == len(unb64(plain["body"]["data"]))
    assert attachment["filename"] == "invoice.pdf"
    assert "data" not in attachment["body"]
    fetched = (
        messages.attachments()
        .get(userId="me", messageId=message_id, id=attachment["body"]["attachmentId"])
        .execute()
    )
    assert unb64(fetched["data"]) == b"%PDF-1.4\n%\xc7\xec"
    assert fetched["size"] == attachment["body"]["size"] == 12
    assert full["snippet"] == "Где мой заказ? It&#39;s late."

    metadata = messages.get(
        userId="me", id=message_id, format="metadata", metadataHeaders=["Subject", "message-id"]
    ).execute()
    assert [h["name"] for h in metadata["payload"]["headers"]] == ["Subject", "Message-ID"]
    assert "parts" not in metadata["payload"]
    minimal = messages.get(userId="me", id=message_id, format="minimal").execute()
    assert "payload" not in minimal
    assert "raw" not in minimal
    assert minimal["snippet"] == full["snippet"]

    with pytest.raises(HttpError) as missing:
        messages.get(userId="me", id="0123456789abcdef").execute()
    assert missing.value.resp.status == 404
    assert error_of(missing.value) == {
        "code": 404,
        "message": "Requested entity was not found.",
        "errors": [
            {"message": "Requested entity was not found.", "domain": "global", "reason": "notFound"}
        ],
        "status": "NOT_FOUND",
    }
    with pytest.raises(HttpError) as invalid:
        messages.get(userId="me", id="not-a-gmail-id").execute()
    assert invalid.value.resp.status == 400


# --- threading -----------------------------------------------------------------------------------


def test_threading_needs_a_reference_and_the_same_subject(emulator: Emulator) -> None:
    first = emulator.import_raw(mail("Order 17 is late", message_id="a@c.test"))
    reply = emulator.import_raw(
        mail("Re: Order 17 is late", message_id="b@c.test", references=("a@c.test",))
    )
    again = emulator.import_raw(
        mail(
            "RE: Fwd: Order 17   is LATE",
            message_id="c@c.test",
            references=("a@c.test", "b@c.test"),
        )
    )
    other_subject = emulator.import_raw(
        mail("Something else", message_id="d@c.test", references=("a@c.test",))
    )
    no_reference = emulator.import_raw(mail("Order 17 is late", message_id="e@c.test"))
    assert first["threadId"] == first["id"]  # a thread is named after its first message
    assert reply["threadId"] == again["threadId"] == first["threadId"]
    assert other_subject["threadId"] == other_subject["id"]
    assert no_reference["threadId"] == no_reference["id"]

    # A reply that arrives before the message it answers: the late original joins its thread.
    early_reply = emulator.import_raw(
        mail("Re: Parcel", message_id="r@c.test", references=("orig@c.test",))
    )
    original = emulator.import_raw(
        mail("Parcel", message_id="orig@c.test", date="Mon, 01 Jan 2024 09:00:00 +0000")
    )
    assert original["threadId"] == early_reply["threadId"]

    thread = emulator.service().users().threads().get(userId="me", id=first["threadId"]).execute()
    assert [m["id"] for m in thread["messages"]] == [first["id"], reply["id"], again["id"]]
    assert int(thread["historyId"]) == max(int(m["historyId"]) for m in thread["messages"])
    listed = emulator.service().users().threads().list(userId="me").execute()
    assert {t["id"] for t in listed["threads"]} == {
        first["threadId"],
        other_subject["threadId"],
        no_reference["threadId"],
        original["threadId"],
    }


def test_a_given_thread_id_is_honoured_when_the_thread_exists(emulator: Emulator) -> None:
    first = emulator.import_raw(mail("Refund", message_id="f1@c.test"))
    joined = emulator.import_raw(
        mail("Totally different", message_id="f2@c.test"), thread_id=first["threadId"]
    )
    assert joined["threadId"] == first["threadId"]
    unknown = emulator.import_raw(
        mail("Refund", message_id="f3@c.test"), thread_id="18f0aaaabbbbcccc"
    )
    assert unknown["threadId"] == unknown["id"]
    # Gmail's documented rule for a threadId also wants the same subject: strict mode applies it.
    emulator.new_state(strict_thread_id=True)
    first = emulator.import_raw(mail("Refund", message_id="s1@c.test"))
    other = emulator.import_raw(mail("Other", message_id="s2@c.test"), thread_id=first["threadId"])
    same = emulator.import_raw(
        mail("Re: Refund", message_id="s3@c.test"), thread_id=first["threadId"]
    )
    assert other["threadId"] != first["threadId"]
    assert same["threadId"] == first["threadId"]


def test_send_adds_sent_joins_the_thread_and_reaches_emulated_recipients(
    emulator: Emulator,
) -> None:
    question = emulator.import_raw(mail("Where is my parcel", message_id="q@c.test"))
    reply = (
        f"From: {MAILBOX}\r\nTo: ann@customer.test\r\nBcc: {OTHER_MAILBOX}\r\n"
        "Subject: Re: Where is my parcel\r\nIn-Reply-To: <q@c.test>\r\n"
        "References: <q@c.test>\r\n\r\nIt ships today.\r\n"
    ).encode()
    messages = emulator.service().users().messages()
    sent = messages.send(
        userId="me", body={"raw": b64(reply), "threadId": question["threadId"]}
    ).execute()
    assert sent["labelIds"] == ["SENT"]
    assert sent["threadId"] == question["threadId"]
    stored = unb64(messages.get(userId="me", id=sent["id"], format="raw").execute()["raw"])
    # Gmail completes what the sender left out: a Message-ID and a Date.
    assert stored.endswith(reply)
    header_lines = stored[: -len(reply)].decode().splitlines()
    assert [line.split(":")[0] for line in header_lines] == ["Message-ID", "Date"]
    message_id = header_lines[0].split(":", 1)[1].strip()
    found = messages.list(userId="me", q=f"rfc822msgid:{message_id} in:sent").execute()
    assert found["messages"] == [{"id": sent["id"], "threadId": question["threadId"]}]

    # The Bcc'd mailbox of the same emulator receives it in INBOX, without the Bcc header.
    theirs = emulator.service(OTHER_MAILBOX).users().messages()
    delivered = theirs.list(userId="me", labelIds=["INBOX"]).execute()["messages"]
    assert len(delivered) == 1
    copy = theirs.get(userId="me", id=delivered[0]["id"], format="raw").execute()
    assert copy["labelIds"] == ["INBOX", "UNREAD"]
    assert b"Bcc:" not in unb64(copy["raw"])
    assert b"Bcc:" in stored


# --- labels --------------------------------------------------------------------------------------


def test_labels_create_conflict_list_get_patch_delete(emulator: Emulator) -> None:
    labels = emulator.service().users().labels()
    created = labels.create(
        userId="me",
        body={
            "name": "Support/New",
            "color": {"textColor": "#ffffff", "backgroundColor": "#fb4c2f"},
        },
    ).execute()
    assert created["id"] == "Label_1"
    assert created["type"] == "user"
    for taken in ("Support/New", "support/NEW"):
        with pytest.raises(HttpError) as conflict:
            labels.create(userId="me", body={"name": taken}).execute()
        assert conflict.value.resp.status == 409
        error = error_of(conflict.value)
        assert error["message"] == "Label name exists or conflicts"
        assert error["errors"][0]["reason"] == "duplicate"
    for bad in (
        {"name": "INBOX"},
        {"name": ""},
        {"name": "X", "color": {"textColor": "#123456", "backgroundColor": "#000000"}},
    ):
        with pytest.raises(HttpError) as refused:
            labels.create(userId="me", body=bad).execute()
        assert refused.value.resp.status == 400
    second = labels.create(userId="me", body={"name": "Support/Open"}).execute()
    assert second["id"] == "Label_2"

    listed = {label["id"]: label for label in labels.list(userId="me").execute()["labels"]}
    for system in (
        "INBOX",
        "SENT",
        "UNREAD",
        "STARRED",
        "IMPORTANT",
        "TRASH",
        "SPAM",
        "DRAFT",
        "CATEGORY_PERSONAL",
        "CATEGORY_SOCIAL",
        "CATEGORY_PROMOTIONS",
        "CATEGORY_UPDATES",
        "CATEGORY_FORUMS",
    ):
        assert listed[system]["type"] == "system"
    assert listed["Label_1"]["color"] == {"textColor": "#ffffff", "backgroundColor": "#fb4c2f"}

    message = emulator.import_raw(
        mail("Label me", message_id="l@c.test"), labels=("INBOX", "Label_1")
    )
    got = labels.get(userId="me", id="Label_1").execute()
    assert (got["messagesTotal"], got["threadsTotal"], got["messagesUnread"]) == (1, 1, 0)

    renamed = labels.patch(userId="me", id="Label_2", body={"name": "Support/Pending"}).execute()
    assert renamed["name"] == "Support/Pending"
    with pytest.raises(HttpError) as clash:
        labels.patch(userId="me", id="Label_2", body={"name": "support/new"}).execute()
    assert clash.value.resp.status == 409
    with pytest.raises(HttpError) as system_patch:
        labels.patch(userId="me", id="INBOX", body={"name": "Box"}).execute()
    assert system_patch.value.resp.status == 400

    start = profile(emulator)["historyId"]
    labels.delete(userId="me", id="Label_1").execute()
    after = emulator.service().users().messages().get(userId="me", id=message["id"]).execute()
    assert after["labelIds"] == ["INBOX"]
    history = emulator.service().users().history().list(userId="me", startHistoryId=start).execute()
    assert history["history"][0]["labelsRemoved"][0]["labelIds"] == ["Label_1"]
    with pytest.raises(HttpError) as gone:
        labels.get(userId="me", id="Label_1").execute()
    assert gone.value.resp.status == 404


# --- history -------------------------------------------------------------------------------------


def test_changes_become_history_records_read_across_pages(emulator: Emulator) -> None:
    users = emulator.service().users()
    start = int(profile(emulator)["historyId"])
    ids = [
        m["id"]
        for m in import_many(emulator, [mail(f"Q{i}", message_id=f"h{i}@c.test") for i in range(5)])
    ]
    label = users.labels().create(userId="me", body={"name": "Support/Open"}).execute()["id"]
    modified = (
        users.messages()
        .modify(userId="me", id=ids[0], body={"addLabelIds": [label], "removeLabelIds": ["UNREAD"]})
        .execute()
    )
    assert modified["labelIds"] == ["INBOX", label]
    thread = (
        users.threads().modify(userId="me", id=ids[1], body={"addLabelIds": ["STARRED"]}).execute()
    )
    assert thread["messages"][0]["labelIds"] == ["INBOX", "UNREAD", "STARRED"]
    users.messages().batchModify(
        userId="me", body={"ids": [ids[2], ids[3]], "removeLabelIds": ["INBOX"]}
    ).execute()
    # Adding a label a message already has changes nothing and records nothing.
    users.messages().modify(userId="me", id=ids[0], body={"addLabelIds": [label]}).execute()

    current = profile(emulator)["historyId"]
    records: list[dict[str, Any]] = []
    pages = 0
    request = users.history().list(userId="me", startHistoryId=str(start), maxResults=2)
    while request is not None:
        page = request.execute()
        pages += 1
        assert page["historyId"] == current
        records += page.get("history", [])
        request = users.history().list_next(request, page)
    assert pages == 4
    record_ids = [int(r["id"]) for r in records]
    assert record_ids == sorted(set(record_ids))
    assert record_ids[0] > start
    assert record_ids[-1] == int(current)
    assert len(records) == 8
    added = [r["messagesAdded"][0]["message"]["id"] for r in records[:5]]
    assert added == ids
    assert records[0]["messages"] == [{"id": ids[0], "threadId": ids[0]}]
    change = records[5]
    assert change["labelsAdded"] == [
        {
            "message": {"id": ids[0], "threadId": ids[0], "labelIds": ["INBOX", label]},
            "labelIds": [label],
        }
    ]
    assert change["labelsRemoved"][0]["labelIds"] == ["UNREAD"]
    assert records[6]["labelsAdded"][0]["labelIds"] == ["STARRED"]
    assert {e["message"]["id"] for e in records[7]["labelsRemoved"]} == {ids[2], ids[3]}
    got = users.messages().get(userId="me", id=ids[0], format="minimal").execute()
    assert got["historyId"] == change["id"]

    only_added = (
        users.history()
        .list(userId="me", startHistoryId=str(start), historyTypes=["labelAdded"])
        .execute()["history"]
    )
    assert [r["id"] for r in only_added] == [records[5]["id"], records[6]["id"]]
    assert all(set(r) == {"id", "messages", "labelsAdded"} for r in only_added)
    with_label = (
        users.history()
        .list(userId="me", startHistoryId=str(start), labelId=label)
        .execute()["history"]
    )
    assert [r["id"] for r in with_label] == [change["id"]]
    nothing_new = users.history().list(userId="me", startHistoryId=current).execute()
    assert nothing_new == {"historyId": current}


def test_history_older_than_retention_answers_404(emulator: Emulator) -> None:
    state = emulator.new_state(history_retention=5)
    history = emulator.service().users().history()
    start = int(profile(emulator)["historyId"])
    import_many(emulator, [mail(f"R{i}", message_id=f"r{i}@c.test") for i in range(3)])
    assert len(history.list(userId="me", startHistoryId=str(start)).execute()["history"]) == 3
    import_many(emulator, [mail(f"S{i}", message_id=f"s{i}@c.test") for i in range(5)])
    # Records start+4 .. start+8 are kept: start+3 still sees them all, start+2 lost one.
    assert len(history.list(userId="me", startHistoryId=str(start + 3)).execute()["history"]) == 5
    for stale in (start, start + 2, start - 50):
        with pytest.raises(HttpError) as expired:
            history.list(userId="me", startHistoryId=str(stale)).execute()
        assert expired.value.resp.status == 404
        assert error_of(expired.value)["errors"][0]["reason"] == "notFound"

    state.expire_history(MAILBOX)
    with pytest.raises(HttpError) as forced:
        history.list(userId="me", startHistoryId=str(start + 3)).execute()
    assert forced.value.resp.status == 404
    assert "history" in history.list(userId="me", startHistoryId=str(start + 3)).execute()


# --- batches, quota, faults ----------------------------------------------------------------------


def test_batch_of_50_gets_answers_each_part_on_its_own(emulator: Emulator) -> None:
    imported = import_many(emulator, [mail(f"B{i}", message_id=f"b{i}@c.test") for i in range(30)])
    emulator.state.reset_stats()
    ids = [m["id"] for m in imported]
    missing = [f"{0xABC0000000000000 + i:016x}" for i in range(20)]
    wanted = [x for pair in zip(ids[:20], missing, strict=True) for x in pair] + ids[20:]
    messages = emulator.service().users().messages()
    answers = run_batch(
        emulator,
        [
            messages.get(userId="me", id=i, format="metadata", metadataHeaders=["Subject"])
            for i in wanted
        ],
    )
    assert len(answers) == 50
    for message_id, (response, error) in zip(wanted, answers, strict=True):
        if message_id in missing:
            assert response is None
            assert error is not None
            assert error.resp.status == 404
            assert error_of(error)["errors"][0]["reason"] == "notFound"
        else:
            assert error is None
            assert response["id"] == message_id
            subject = response["payload"]["headers"][0]["value"]
            assert subject == f"B{ids.index(message_id)}"
    stats = emulator.state.stats()
    assert stats["methods"]["gmail.users.messages.get"] == {
        "calls": 50,
        "units": 250,
        "faults": 0,
        "rate_limited": 0,
    }
    assert (stats["batches"], stats["batch_parts"]) == (1, 50)
    # The legacy path /batch serves the same protocol.
    legacy = emulator.batch(lambda *_: None)
    legacy._batch_uri = emulator.url + "/batch"
    seen: list[str] = []
    legacy._callback = lambda rid, response, exc: seen.append(response["id"])
    legacy.add(messages.get(userId="me", id=ids[0], format="minimal"))
    legacy.execute()
    assert seen == [ids[0]]


# Gmail's published costs (developers.google.com/gmail/api/reference/quota).
GMAIL_COSTS = {
    "gmail.users.getProfile": 1,
    "gmail.users.labels.list": 1,
    "gmail.users.labels.create": 5,
    "gmail.users.messages.list": 5,
    "gmail.users.messages.get": 5,
    "gmail.users.messages.import": 25,
    "gmail.users.messages.insert": 25,
    "gmail.users.messages.send": 100,
    "gmail.users.messages.modify": 5,
    "gmail.users.messages.batchModify": 50,
    "gmail.users.history.list": 2,
    "gmail.users.threads.get": 10,
    "gmail.users.threads.modify": 10,
    "gmail.users.drafts.create": 10,
    "gmail.users.watch": 100,
}


def test_stats_count_calls_and_units_per_method_at_gmail_costs(emulator: Emulator) -> None:
    users = emulator.service().users()
    raw = mail("Quota", message_id="quota@c.test")
    message = users.messages().import_(userId="me", body={"raw": b64(raw)}).execute()
    users.messages().insert(userId="me", body={"raw": b64(raw)}).execute()
    users.getProfile(userId="me").execute()
    users.labels().list(userId="me").execute()
    users.labels().create(userId="me", body={"name": "Q"}).execute()
    users.messages().list(userId="me").execute()
    users.messages().get(userId="me", id=message["id"]).execute()
    users.messages().send(userId="me", body={"raw": b64(raw)}).execute()
    users.messages().modify(
        userId="me", id=message["id"], body={"addLabelIds": ["INBOX"]}
    ).execute()
    users.messages().batchModify(userId="me", body={"ids": [message["id"]]}).execute()
    users.history().list(userId="me", startHistoryId="1000").execute()
    users.threads().get(userId="me", id=message["threadId"]).execute()
    users.threads().modify(userId="me", id=message["threadId"], body={}).execute()
    users.drafts().create(userId="me", body={"message": {"raw": b64(raw)}}).execute()
    users.watch(userId="me", body={"topicName": "projects/p/topics/t"}).execute()
    users.messages().get(userId="me", id=message["id"]).execute()

    stats = emulator.state.stats()
    assert {k: v["units"] for k, v in stats["methods"].items()} == {
        k: cost * (2 if k == "gmail.users.messages.get" else 1) for k, cost in GMAIL_COSTS.items()
    }
    assert stats["methods"]["gmail.users.messages.get"]["calls"] == 2
    total = sum(GMAIL_COSTS.values()) + 5
    assert stats["units"] == stats["mailboxes"][MAILBOX]["units"] == total
    assert stats["mailboxes"][MAILBOX]["units_last_minute"] == total
    with emulator.http(None) as http:
        assert http.get("/emulator/stats").json() == json.loads(json.dumps(stats))
        assert http.post("/emulator/reset-stats").status_code == 204
        assert http.get("/emulator/stats").json()["units"] == 0


def test_per_user_limit_of_15000_units_a_minute_answers_429(emulator: Emulator) -> None:
    users = emulator.service().users()
    watch = {"topicName": "projects/p/topics/t"}
    # 150 watch calls at 100 units: exactly the limit, in three batches of 50 parts.
    answers = run_batch(emulator, [users.watch(userId="me", body=watch) for _ in range(150)])
    assert all(error is None for _, error in answers)
    assert emulator.state.stats()["units"] == 15_000
    with pytest.raises(HttpError) as limited:
        users.getProfile(userId="me").execute()
    assert limited.value.resp.status == 429
    error = error_of(limited.value)
    assert error["status"] == "RESOURCE_EXHAUSTED"
    assert error["errors"][0]["reason"] == "rateLimitExceeded"
    assert error["errors"][0]["domain"] == "usageLimits"
    # Per user: the other mailbox is not limited.
    assert profile(emulator, OTHER_MAILBOX)["emailAddress"] == OTHER_MAILBOX
    stats = emulator.state.stats()
    assert stats["rate_limited"] == 1
    assert stats["units"] == 15_001
    emulator.clock.advance(59.0)
    with pytest.raises(HttpError):
        users.getProfile(userId="me").execute()
    emulator.clock.advance(1.0)  # the minute of the first batch is over
    assert profile(emulator)["emailAddress"] == MAILBOX


def _faulted_gets(emulator: Emulator, seed: int) -> list[int | None]:
    imported = import_many(emulator, [mail(f"F{i}", message_id=f"f{i}@c.test") for i in range(50)])
    emulator.state.set_faults(0.3, [429, 500, 503], seed=seed)
    messages = emulator.service().users().messages()
    answers = run_batch(
        emulator, [messages.get(userId="me", id=m["id"], format="minimal") for m in imported]
    )
    out: list[int | None] = []
    for message, (response, error) in zip(imported, answers, strict=True):
        if error is None:
            assert response["id"] == message["id"]
            out.append(None)
        else:
            out.append(error.resp.status)
    return out


def test_faults_inside_a_batch_are_per_part_and_deterministic_under_a_seed(
    emulator: Emulator,
) -> None:
    first = _faulted_gets(emulator, seed=11)
    failed = [s for s in first if s is not None]
    assert 5 <= len(failed) <= 25  # about 30 % of 50
    assert set(failed) <= {429, 500, 503}
    assert len(set(failed)) >= 2
    assert emulator.state.stats()["faults_injected"] == len(failed)
    emulator.new_state()
    assert _faulted_gets(emulator, seed=11) == first
    emulator.new_state()
    assert _faulted_gets(emulator, seed=12) != first


def test_a_faulted_call_changes_nothing(emulator: Emulator) -> None:
    users = emulator.service().users()
    message = emulator.import_raw(mail("Stable", message_id="st@c.test"))
    before = profile(emulator)
    units = emulator.state.stats()["units"]
    emulator.state.set_faults(1.0, [503])
    raw = mail("Lost", message_id="lost@c.test")
    for request in (
        users.messages().import_(userId="me", body={"raw": b64(raw)}),
        users.messages().modify(userId="me", id=message["id"], body={"addLabelIds": ["STARRED"]}),
        users.labels().create(userId="me", body={"name": "Never"}),
    ):
        with pytest.raises(HttpError) as failed:
            request.execute()
        assert failed.value.resp.status == 503
        assert error_of(failed.value)["errors"][0]["reason"] == "backendError"
    # Inside a batch the outer answer is still 200; each part carries its own 503.
    parts = b"".join(
        b"--P\r\nContent-Type: application/http\r\nContent-ID: <" + str(i).encode() + b">\r\n\r\n"
        b"GET /gmail/v1/users/me/profile HTTP/1.1\n\n\r\n"
        for i in range(3)
    )
    with emulator.http() as http:
        answer = http.post(
            "/batch",
            content=parts + b"--P--\r\n",
            headers={"Content-Type": "multipart/mixed; boundary=P"},
        )
    assert answer.status_code == 200
    assert answer.content.count(b"HTTP/1.1 503 Service Unavailable") == 3
    assert emulator.state.stats()["units"] == units  # refused calls cost nothing
    emulator.state.clear_faults()
    assert profile(emulator) == before
    got = users.messages().get(userId="me", id=message["id"], format="minimal").execute()
    assert got["labelIds"] == ["INBOX", "UNREAD"]
    assert [
        label["name"]
        for label in users.labels().list(userId="me").execute()["labels"]
        if label["type"] == "user"
    ] == []


# --- auth ----------------------------------------------------------------------------------------


def test_user_id_is_me_or_the_mailbox_address(emulator: Emulator) -> None:
    users = emulator.service().users()
    assert users.getProfile(userId=MAILBOX).execute()["emailAddress"] == MAILBOX
    assert users.getProfile(userId="Support@Shop.Test").execute()["emailAddress"] == MAILBOX
    imported = (
        users.messages()
        .import_(userId=MAILBOX, body={"raw": b64(mail("By address", message_id="ba@c.test"))})
        .execute()
    )
    assert users.messages().get(userId=MAILBOX, id=imported["id"]).execute()["id"] == imported["id"]
    with pytest.raises(HttpError) as denied:
        users.getProfile(userId=OTHER_MAILBOX).execute()
    assert denied.value.resp.status == 403
    assert error_of(denied.value)["message"] == f"Delegation denied for {OTHER_MAILBOX}"
    # The other mailbox's token opens the other mailbox only.
    assert profile(emulator, OTHER_MAILBOX)["messagesTotal"] == 0


def test_an_unknown_or_missing_token_is_401_in_googles_shape(emulator: Emulator) -> None:
    stranger = emulator.service(token="emulator:nobody@shop.test")
    # google-auth sees the 401 and tries to refresh a token it cannot refresh.
    with pytest.raises(RefreshError):
        stranger.users().getProfile(userId="me").execute()
    for headers in (
        {},
        {"Authorization": "Bearer ya29.real-looking"},
        {"Authorization": "Bearer emulator:nobody@shop.test"},
    ):
        answer = httpx.get(f"{emulator.url}/gmail/v1/users/me/profile", headers=headers)
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"].startswith("Bearer")
        error = answer.json()["error"]
        assert error["status"] == "UNAUTHENTICATED"
        assert error["errors"][0]["reason"] == "authError"
    assert emulator.state.stats()["calls"] == 0


# --- search --------------------------------------------------------------------------------------


def test_messages_list_searches_and_pages(emulator: Emulator) -> None:
    users = emulator.service().users()
    recent = formatdate(time.time() - 2 * 86400)
    old = emulator.import_raw(
        mail("Old", message_id="old@c.test", date="Wed, 01 Jan 2020 12:00:00 +0000")
    )
    new = [
        emulator.import_raw(mail(f"New {i}", message_id=f"n{i}@c.test", date=recent))
        for i in range(6)
    ]
    archived = emulator.import_raw(mail("Archived", message_id="arch@c.test"), labels=())
    trashed = emulator.import_raw(mail("Bin", message_id="bin@c.test"))
    users.messages().trash(userId="me", id=trashed["id"]).execute()
    sent = (
        users.messages()
        .send(userId="me", body={"raw": b64(mail("Out", message_id="out@c.test"))})
        .execute()
    )
    label = users.labels().create(userId="me", body={"name": "Support/Open"}).execute()["id"]
    users.messages().modify(userId="me", id=new[0]["id"], body={"addLabelIds": [label]}).execute()

    def ids(**kwargs: Any) -> list[str]:
        found = users.messages().list(userId="me", **kwargs).execute()
        return [m["id"] for m in found.get("messages", [])]

    assert ids(q="in:sent") == [sent["id"]]
    assert set(ids(q="in:inbox")) == {old["id"]} | {m["id"] for m in new}
    assert set(ids(q="newer_than:7d in:inbox")) == {m["id"] for m in new}
    assert ids(q="before:2021/01/01") == [old["id"]]
    assert set(ids(q="after:2021/01/01 -in:sent")) == {m["id"] for m in new} | {archived["id"]}
    assert ids(q="label:support-open") == [new[0]["id"]]
    assert ids(labelIds=[label]) == [new[0]["id"]]
    assert ids(q="rfc822msgid:<n3@c.test>") == [new[3]["id"]]
    assert ids(q="subject:archived") == [archived["id"]]
    assert trashed["id"] not in ids()
    assert trashed["id"] in ids(includeSpamTrash=True)
    assert ids(q="in:trash") == [trashed["id"]]

    # Newest first, across pages, each message once.
    seen: list[str] = []
    request = users.messages().list(userId="me", q="in:inbox", maxResults=3)
    while request is not None:
        page = request.execute()
        assert page["resultSizeEstimate"] == 7
        seen += [m["id"] for m in page["messages"]]
        request = users.messages().list_next(request, page)
    assert len(seen) == len(set(seen)) == 7
    assert seen[-1] == old["id"]
    empty = users.messages().list(userId="me", q="rfc822msgid:nothing@c.test").execute()
    assert empty == {"resultSizeEstimate": 0}


def test_fields_selects_parts_of_the_answer(emulator: Emulator) -> None:
    message = emulator.import_raw(mail("Fields", message_id="fi@c.test"))
    messages = emulator.service().users().messages()
    listed = messages.list(userId="me", fields="messages(id),resultSizeEstimate").execute()
    assert listed == {"messages": [{"id": message["id"]}], "resultSizeEstimate": 1}
    got = messages.get(userId="me", id=message["id"], fields="id,payload/mimeType").execute()
    assert got == {"id": message["id"], "payload": {"mimeType": "text/plain"}}


# --- uploads, drafts, watch ----------------------------------------------------------------------


def test_media_and_multipart_uploads(emulator: Emulator) -> None:
    # The Python client cannot upload to a plain-http emulator: it builds the upload URL from the
    # discovery rootUrl (https://gmail.googleapis.com/upload/...) and swaps only the host
    # (discovery._fix_up_media_path_base_url), keeping https. So JSON ``raw`` is the way for it;
    # other clients may upload, which these raw requests prove.
    raw = mail("Uploaded", message_id="up@c.test")
    with emulator.http() as http:
        media = http.post(
            "/upload/gmail/v1/users/me/messages/import",
            params={"uploadType": "media"},
            content=raw,
            headers={"Content-Type": "message/rfc822"},
        )
        assert media.status_code == 200, media.text
        related = (
            b"--b\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n"
            b'{"labelIds": ["INBOX"]}\r\n'
            b"--b\r\nContent-Type: message/rfc822\r\n\r\n" + raw + b"\r\n--b--\r\n"
        )
        multipart = http.post(
            "/upload/gmail/v1/users/me/messages",
            params={"uploadType": "multipart"},
            content=related,
            headers={"Content-Type": 'multipart/related; boundary="b"'},
        )
        assert multipart.status_code == 200, multipart.text
        assert multipart.json()["labelIds"] == ["INBOX"]
        resumable = http.post(
            "/upload/gmail/v1/users/me/messages/send", params={"uploadType": "resumable"}
        )
        assert resumable.status_code == 400
    messages = emulator.service().users().messages()
    for answer in (media, multipart):
        got = messages.get(userId="me", id=answer.json()["id"], format="raw").execute()
        assert unb64(got["raw"]) == raw
    with pytest.raises(HttpError) as no_raw:
        messages.import_(userId="me", body={"labelIds": ["INBOX"]}).execute()
    assert no_raw.value.resp.status == 400


def test_drafts_watch_and_stop(emulator: Emulator) -> None:
    users = emulator.service().users()
    question = emulator.import_raw(mail("Draft me", message_id="dq@c.test"))
    draft = (
        users.drafts()
        .create(
            userId="me",
            body={
                "message": {
                    "raw": b64(
                        mail("Re: Draft me", message_id="dr@c.test", references=("dq@c.test",))
                    ),
                    "threadId": question["threadId"],
                }
            },
        )
        .execute()
    )
    assert draft["id"].startswith("r")
    assert draft["message"]["labelIds"] == ["DRAFT"]
    assert draft["message"]["threadId"] == question["threadId"]
    watched = users.watch(userId="me", body={"topicName": "projects/p/topics/gmail"}).execute()
    assert watched["historyId"] == profile(emulator)["historyId"]
    assert int(watched["expiration"]) > time.time() * 1000 + 6 * 86_400_000
    with pytest.raises(HttpError) as bad_topic:
        users.watch(userId="me", body={"topicName": "gmail"}).execute()
    assert bad_topic.value.resp.status == 400
    assert users.stop(userId="me").execute() == ""  # 204, no body


# --- control endpoints and the server ------------------------------------------------------------


def test_control_endpoints_add_mailboxes_and_inject_faults(emulator: Emulator) -> None:
    with emulator.http(None) as control:
        assert (
            control.post("/emulator/mailboxes", json={"address": "sales@shop.test"}).status_code
            == 201
        )
        assert "sales@shop.test" in control.get("/emulator/mailboxes").json()["mailboxes"]
        assert profile(emulator, "sales@shop.test")["messagesTotal"] == 0
        answer = control.post("/emulator/faults", json={"rate": 1.0, "statuses": [500], "seed": 3})
        assert answer.json() == {"rate": 1.0, "statuses": [500], "seed": 3}
        with pytest.raises(HttpError) as failed:
            profile(emulator)
        assert failed.value.resp.status == 500
        assert control.post("/emulator/faults", json={"rate": 2}).status_code == 422
        assert (
            control.post("/emulator/faults", json={"rate": 0.5, "statuses": [404]}).status_code
            == 422
        )
        control.post("/emulator/faults", json={"rate": 0})
        start = profile(emulator)["historyId"]
        expired = control.post("/emulator/faults/history-expired", json={"address": MAILBOX})
        assert expired.status_code == 200
        history = emulator.service().users().history()
        with pytest.raises(HttpError) as gone:
            history.list(userId="me", startHistoryId=start).execute()
        assert gone.value.resp.status == 404
        assert history.list(userId="me", startHistoryId=start).execute() == {"historyId": start}
        assert (
            control.post(
                "/emulator/faults/history-expired", json={"address": "x@nowhere.test"}
            ).status_code
            == 404
        )


def test_run_emulator_serves_a_seeded_mailbox(tmp_path: Path) -> None:
    """The real entry point in its own process: --seed imports the folder into the first mailbox."""
    for name in ("b.eml", "a.eml", "c.eml"):
        (tmp_path / name).write_bytes(mail(f"Seed {name}", message_id=f"{name}@c.test"))
    (tmp_path / "notes.txt").write_text("not mail")
    port = free_port()
    code = (
        "from pathlib import Path\n"
        "from gmail_sync.emulator.server import EmulatorOptions, run_emulator\n"
        f"run_emulator(EmulatorOptions(seed_dir=Path({str(tmp_path)!r}),"
        f" mailboxes=['{MAILBOX}', '{OTHER_MAILBOX}']),"
        f" host='127.0.0.1', port={port}, log_level='warning')\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code])  # noqa: S603 - our own interpreter
    try:
        url = f"http://127.0.0.1:{port}/gmail/v1/users/me/messages"
        headers = {"Authorization": f"Bearer emulator:{MAILBOX}"}
        deadline = time.monotonic() + 20
        while True:
            try:
                listed = httpx.get(url, headers=headers, params={"q": "in:inbox"})
                break
            except httpx.TransportError:
                assert process.poll() is None
                assert time.monotonic() < deadline
                time.sleep(0.05)
        messages = listed.json()["messages"]
        assert len(messages) == 3
        # Sorted by file name on import; ids grow with arrival, like Gmail's.
        ids = [m["id"] for m in reversed(messages)]
        assert ids == sorted(ids)
        assert all(len(i) == 16 for i in ids)
        first = httpx.get(
            f"{url}/{ids[0]}",
            headers=headers,
            params={"format": "metadata", "metadataHeaders": "Subject"},
        )
        assert first.json()["payload"]["headers"] == [{"name": "Subject", "value": "Seed a.eml"}]
        # Long-running emulators derive ids from the clock, so they keep growing across restarts.
        assert int(ids[0], 16) >> 20 > (time.time() - 3600) * 1000
        other = httpx.get(
            f"http://127.0.0.1:{port}/gmail/v1/users/me/profile",
            headers={"Authorization": f"Bearer emulator:{OTHER_MAILBOX}"},
        )
        assert other.json()["messagesTotal"] == 0
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_b64url_decoding_accepts_what_gmail_accepts() -> None:
    assert b64url_decode("aGk") == b"hi"
    assert b64url_decode("aGk=") == b"hi"
    assert b64url_decode("-_8") == b"\xfb\xff"
    assert b64url_decode("+/8=") == b"\xfb\xff"


def test_batch_wire_format_as_google_documents_it(emulator: Emulator) -> None:
    """Raw multipart/mixed in and out: Content-ID <response-…>, CRLF framing, in order."""
    message = emulator.import_raw(mail("Wire", message_id="wire@c.test"))
    label_body = json.dumps({"name": "Поддержка/Новые"}, ensure_ascii=False).encode()

    def part(content_id: str, request: bytes) -> bytes:
        return (
            b"--XYZ\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
            b"Content-ID: <" + content_id.encode() + b">\r\n\r\n" + request + b"\r\n"
        )

    body = (
        part(
            "item1:abc",
            f"GET /gmail/v1/users/me/messages/{message['id']}?format=minimal HTTP/1.1\n\n".encode(),
        )
        + part("item2:abc", b"GET /gmail/v1/users/me/messages/0000000000000001 HTTP/1.1\n\n")
        + part(
            "item3:abc",
            b"POST /gmail/v1/users/me/labels HTTP/1.1\nContent-Type: application/json\n"
            b"Content-Length: " + str(len(label_body)).encode() + b"\n\n" + label_body,
        )
        + part("item4:abc", b"POST /batch/gmail/v1 HTTP/1.1\n\n")
        + b"--XYZ--\r\n"
    )
    with emulator.http() as http:  # the outer request's Authorization applies to every part
        answer = http.post(
            "/batch/gmail/v1",
            content=body,
            headers={"Content-Type": "multipart/mixed; boundary=XYZ"},
        )
        assert answer.status_code == 200
        content_type = answer.headers["content-type"]
        assert content_type.startswith("multipart/mixed; boundary=")
        boundary = content_type.split("boundary=")[1].encode()
        chunks = answer.content.split(b"--" + boundary)
        assert chunks[0] == b""
        assert chunks[-1] == b"--\r\n"
        answers = [c.removeprefix(b"\r\n").removesuffix(b"\r\n") for c in chunks[1:-1]]
        assert len(answers) == 4
        parsed = []
        for raw_part, wanted_id in zip(answers, ("item1", "item2", "item3", "item4"), strict=True):
            head, inner = raw_part.split(b"\r\n\r\n", 1)
            assert b"Content-Type: application/http" in head
            assert f"Content-ID: <response-{wanted_id}:abc>".encode() in head
            status_line, rest = inner.split(b"\r\n", 1)
            _, inner_body = rest.split(b"\r\n\r\n", 1)
            parsed.append((status_line, inner_body))
        assert parsed[0][0] == b"HTTP/1.1 200 OK"
        assert json.loads(parsed[0][1])["id"] == message["id"]
        assert parsed[1][0] == b"HTTP/1.1 404 Not Found"
        assert json.loads(parsed[2][1])["name"] == "Поддержка/Новые"
        assert parsed[3][0].startswith(b"HTTP/1.1 400")

        too_many = (
            b"".join(
                part(f"p{i}", b"GET /gmail/v1/users/me/profile HTTP/1.1\n\n") for i in range(101)
            )
            + b"--XYZ--\r\n"
        )
        refused = http.post(
            "/batch", content=too_many, headers={"Content-Type": "multipart/mixed; boundary=XYZ"}
        )
        assert refused.status_code == 400
        assert (
            http.post(
                "/batch", content=b"{}", headers={"Content-Type": "application/json"}
            ).status_code
            == 400
        )
    labels = emulator.service().users().labels().list(userId="me").execute()["labels"]
    assert "Поддержка/Новые" in [label["name"] for label in labels]


def test_demo_seed_dates_are_moved_into_the_last_day_in_order() -> None:
    """`recent` seeding (the demo) moves the Date headers into [now - 20 h, now - 10 min] keeping
    their order and each message's own UTC offset, compressing a longer span; undated mail is
    left alone."""
    moscow = timezone(timedelta(hours=3))
    originals = [
        datetime(2025, 11, 17, 9, 0, tzinfo=moscow),
        datetime(2025, 11, 18, 12, 30, tzinfo=UTC),
        datetime(2025, 11, 20, 6, 0, tzinfo=moscow),
    ]
    raws = [
        (
            f"From: a@b.test\r\nDate: {format_datetime(d)}\r\nSubject: s{n}\r\n\r\n"
            "Date: not a header\r\n"
        ).encode()
        for n, d in enumerate(originals)
    ]
    undated = b"From: a@b.test\r\nSubject: none\r\n\r\nbody\r\n"
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    moved = shift_dates(
        [*raws, undated], newest=now - timedelta(minutes=10), oldest=now - timedelta(hours=20)
    )
    assert moved[-1] == undated
    dates = []
    for raw in moved[:-1]:
        header, _, body = raw.partition(b"\r\n\r\n")
        assert body == b"Date: not a header\r\n"
        dates.append(parsedate_to_datetime(header.split(b"Date: ")[1].split(b"\r\n")[0].decode()))
    assert dates == sorted(dates)
    assert dates[-1] == now - timedelta(minutes=10)
    assert dates[0] >= now - timedelta(hours=20)
    assert [d.utcoffset() for d in dates] == [o.utcoffset() for o in originals]
