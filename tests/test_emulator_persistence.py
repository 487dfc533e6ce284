"""The emulator's state file: what a restart must keep, kept; a bad file refused clearly.

Through the unmodified google-api-python-client against the emulator under uvicorn: a state is
built by Gmail calls, saved, loaded into a fresh ``EmulatorState`` and served again; every view a
client has of the mailbox is the same, and a history cursor taken before the save goes on
working after the load. Then ``inboxdesk emulator --state`` as an operator runs it.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from gmail_sync.emulator import EmulatorState, bearer_token
from gmail_sync.emulator.persistence import EmulatorStateError, StateSaver
from tests.conftest import CORPUS, free_port
from tests.emulator_fixtures import (  # noqa: F401
    MAILBOX,
    OTHER_MAILBOX,
    Emulator,
    b64,
    emulator_fixture,
    emulator_server_fixture,
    mail,
    unb64,
)
from tests.test_cli import INBOXDESK, cli_env

AUTOMATED = CORPUS / "automated"
# Bytes that are no text in any one charset: an 8-bit Latin-1 body under a UTF-8 header.
EIGHT_BIT = (
    b"From: Jos\xe9 <jose@customer.test>\r\nTo: support@shop.test\r\n"
    b"Subject: caf\xe9 order\r\nMessage-ID: <8bit@customer.test>\r\n"
    b"Date: Tue, 02 Jan 2024 10:00:00 +0300\r\n\r\nMerci, \xe9t\xe9 \xff\x00 fin\r\n"
)


def _views(emulator: Emulator, cursor: str) -> dict[str, Any]:
    """Everything a client can read about both mailboxes."""
    out: dict[str, Any] = {}
    for address in (MAILBOX, OTHER_MAILBOX):
        users = emulator.service(address).users()
        listed = users.messages().list(userId="me", includeSpamTrash=True).execute()
        ids = sorted(m["id"] for m in listed.get("messages", []))
        threads = users.threads().list(userId="me", includeSpamTrash=True).execute()
        out[address] = {
            "profile": users.getProfile(userId="me").execute(),
            "raw": {
                i: unb64(users.messages().get(userId="me", id=i, format="raw").execute()["raw"])
                for i in ids
            },
            "full": {
                i: users.messages().get(userId="me", id=i, format="full").execute() for i in ids
            },
            "threads": {
                t["id"]: users.threads().get(userId="me", id=t["id"], format="minimal").execute()
                for t in threads.get("threads", [])
            },
            "labels": users.labels().list(userId="me").execute()["labels"],
            "search": users.messages().list(userId="me", q="from:jose café").execute(),
        }
    out["history"] = (
        emulator.service(MAILBOX)
        .users()
        .history()
        .list(userId="me", startHistoryId=cursor, maxResults=500)
        .execute()
    )
    return out


def test_save_and_load_keep_what_clients_see(emulator: Emulator, tmp_path: Path) -> None:
    """Messages (raw bytes, 8-bit included), threads, labels with colours, drafts, deletions and
    history survive a save and a load; a pre-save history cursor continues after the load;
    new ids keep growing and a reply still joins its saved thread; call counters start afresh."""
    users = emulator.service().users()
    samples = sorted(AUTOMATED.glob("*.eml"))[:6]
    for path in samples:
        emulator.import_raw(path.read_bytes())
    emulator.import_raw(EIGHT_BIT)
    first = emulator.import_raw(mail("Order 17", message_id="o17@customer.test"))
    cursor = users.getProfile(userId="me").execute()["historyId"]
    reply = emulator.import_raw(
        mail("Re: Order 17", message_id="o17b@customer.test", references=("o17@customer.test",))
    )
    assert reply["threadId"] == first["threadId"]
    label = (
        users.labels()
        .create(
            userId="me",
            body={
                "name": "Support/Open",
                "color": {"backgroundColor": "#16a766", "textColor": "#ffffff"},
            },
        )
        .execute()
    )
    users.threads().modify(
        userId="me", id=first["threadId"], body={"addLabelIds": [label["id"]]}
    ).execute()
    doomed = emulator.import_raw(mail("Spam", message_id="spam@x.test"))
    users.messages().delete(userId="me", id=doomed["id"]).execute()
    draft = (
        users.drafts()
        .create(
            userId="me", body={"message": {"raw": b64(mail("Draft", message_id="d@shop.test"))}}
        )
        .execute()
    )
    emulator.import_raw(mail("Billing", message_id="b1@customer.test"), address=OTHER_MAILBOX)

    before = _views(emulator, cursor)
    assert emulator.state.stats()["calls"] > 0
    path = tmp_path / "state.json"
    emulator.state.save(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600, "the file holds mail: owner only"
    assert json.loads(path.read_text(encoding="utf-8"))["format"]
    loaded = emulator.use(EmulatorState.load(path, clock=emulator.clock))
    assert loaded.stats()["calls"] == 0, "counters are not part of the state"

    after = _views(emulator, cursor)
    assert after == before
    assert after[MAILBOX]["raw"][first["id"]] == mail("Order 17", message_id="o17@customer.test")
    assert EIGHT_BIT in after[MAILBOX]["raw"].values()
    assert doomed["id"] not in after[MAILBOX]["raw"]
    # The emulator serves drafts.create only: the draft is checked on the state itself.
    assert loaded.mailbox(MAILBOX).drafts == {draft["id"]: draft["message"]["id"]}
    history_types = {k for r in after["history"]["history"] for k in r if k.endswith("ed")}
    assert {"messagesAdded", "labelsAdded", "messagesDeleted"} <= history_types

    # The mailbox goes on: new ids above the saved ones, history continuing from the cursor.
    users = emulator.service().users()
    late = emulator.import_raw(
        mail(
            "RE: Order 17",
            message_id="o17c@customer.test",
            references=("o17@customer.test", "o17b@customer.test"),
        )
    )
    assert late["threadId"] == first["threadId"], "the threading index was rebuilt"
    assert int(late["id"], 16) > max(int(i, 16) for i in before[MAILBOX]["raw"])
    history = users.history().list(userId="me", startHistoryId=cursor).execute()
    assert int(history["historyId"]) > int(before[MAILBOX]["profile"]["historyId"])
    added = [m["message"]["id"] for r in history["history"] for m in r.get("messagesAdded", [])]
    assert added[-1] == late["id"]
    assert reply["id"] in added
    found = users.messages().list(userId="me", q=f"label:{label['name']}").execute()
    assert {m["threadId"] for m in found["messages"]} == {first["threadId"]}


def test_ids_handed_out_after_the_last_save_are_never_reused(tmp_path: Path) -> None:
    """A long-running emulator killed between two saves comes back without the latest changes;
    the ids it hands out then are above every id it had issued (messages and history alike), so
    a client never takes a new message for one it stored, nor skips changes below its cursor."""
    clock = [1_763_000_000.0]
    state = EmulatorState(start_ms=int(clock[0] * 1000), now=lambda: clock[0], mailboxes=[MAILBOX])
    state.import_raw(MAILBOX, mail("Saved", message_id="saved@x.test"))
    path = tmp_path / "state.json"
    state.save(path)
    clock[0] += 1.0
    lost = [
        state.import_raw(MAILBOX, mail(f"Lost {n}", message_id=f"lost{n}@x.test"))["id"]
        for n in range(3)
    ]
    state.mailbox(MAILBOX).modify_messages(lost, add=["STARRED"], remove=[])
    issued_history = state.mailbox(MAILBOX).history.current_id

    clock[0] += 2.0  # the restart, a moment after the kill
    restarted = EmulatorState.load(path, now=lambda: clock[0])
    assert len(restarted.mailbox(MAILBOX).messages) == 1, "the unsaved changes are gone"
    new = restarted.import_raw(MAILBOX, mail("After", message_id="after@x.test"))
    assert int(new["id"], 16) > max(int(i, 16) for i in lost)
    assert restarted.mailbox(MAILBOX).messages[new["id"]].history_id > issued_history


def test_saving_replaces_the_file_and_tracks_changes(emulator: Emulator, tmp_path: Path) -> None:
    """A save writes only after a change (a GET changes nothing, any other call may) and
    replaces the file by a rename (a reader never sees half a file); no temp file is left."""
    path = tmp_path / "state.json"
    state = emulator.state
    state.save(path)
    inode = path.stat().st_ino
    assert state.save_if_changed(path) is False

    with emulator.http() as http:
        assert http.get("/gmail/v1/users/me/labels").status_code == 200
        assert state.save_if_changed(path) is False, "a GET is not a change"
        created = http.post("/gmail/v1/users/me/labels", json={"name": "Kept"})
        assert created.status_code == 200, created.text
    assert state.save_if_changed(path) is True
    assert path.stat().st_ino != inode, "written in place rather than renamed over"
    assert state.save_if_changed(path) is False
    state.import_raw(MAILBOX, mail("Python import", message_id="p@x.test"))
    assert state.save_if_changed(path) is True
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]

    names = {label.name for label in EmulatorState.load(path).mailbox(MAILBOX).labels.values()}
    assert "Kept" in names


def test_the_saver_writes_changes_in_the_background_and_on_stop(tmp_path: Path) -> None:
    """StateSaver saves a change without being asked (so a killed emulator loses little) and
    saves the last change when stopped."""
    path = tmp_path / "state.json"
    state = EmulatorState(mailboxes=[MAILBOX])
    state.save(path)
    saver = StateSaver(state, path, interval=0.01).start()
    try:
        state.import_raw(MAILBOX, mail("One", message_id="one@x.test"))
        deadline = time.monotonic() + 10
        while len(EmulatorState.load(path).mailbox(MAILBOX).messages) != 1:
            assert time.monotonic() < deadline, "no background save within 10 s"
            time.sleep(0.01)
    finally:
        saver.stop()
    saver = StateSaver(state, path, interval=3600).start()
    state.import_raw(MAILBOX, mail("Two", message_id="two@x.test"))
    saver.stop()
    assert len(EmulatorState.load(path).mailbox(MAILBOX).messages) == 2


def _valid_document(tmp_path: Path) -> dict[str, Any]:
    state = EmulatorState(mailboxes=[MAILBOX])
    state.import_raw(MAILBOX, mail("Hi", message_id="hi@x.test"))
    path = tmp_path / "valid.json"
    state.save(path)
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _corrupt(kind: str, document: dict[str, Any]) -> bytes:
    box = document["mailboxes"][0]
    message = box["messages"][0]
    if kind == "truncated":
        return json.dumps(document).encode()[:300]
    if kind == "binary":
        return b"\x80\x81\x00garbage"
    if kind == "other_json":
        return b'{"hello": "world"}'
    if kind == "future_version":
        document["version"] = 99
    elif kind == "missing_key":
        del box["history"]
    elif kind == "bad_base64":
        message["raw"] = "not base64!"
    elif kind == "unknown_label":
        message["label_ids"] = ["INBOX", "Label_404"]
    elif kind == "history_backwards":
        records = box["history"]["records"]
        records.append(dict(records[0]))
    elif kind == "wrong_type":
        message["internal_date"] = "yesterday"
    elif kind == "bad_colour":
        box["labels"] = [{"id": "Label_1", "name": "X", "color": {"backgroundColor": "red"}}]
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    "kind",
    [
        "truncated",
        "binary",
        "other_json",
        "future_version",
        "missing_key",
        "bad_base64",
        "unknown_label",
        "history_backwards",
        "wrong_type",
        "bad_colour",
    ],
)
def test_a_bad_state_file_is_refused_with_a_clear_error(tmp_path: Path, kind: str) -> None:
    """Every kind of damage raises EmulatorStateError naming the file, never another error."""
    path = tmp_path / "emulator.json"
    path.write_bytes(_corrupt(kind, _valid_document(tmp_path)))
    with pytest.raises(EmulatorStateError) as error:
        EmulatorState.load(path)
    assert str(path) in str(error.value)


def _wait_serving(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            if httpx.get(f"{url}/emulator/stats", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"the emulator did not serve on {url}")


def _run_emulator(env: dict[str, str], *args: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    proc = subprocess.Popen(  # noqa: S603 - our own console script
        [str(INBOXDESK), "emulator", "--port", str(port), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, f"http://127.0.0.1:{port}"


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        assert proc.wait(timeout=15) == 0, proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _message_ids(url: str) -> list[str]:
    headers = {"Authorization": f"Bearer {bearer_token(MAILBOX)}"}
    listed = httpx.get(f"{url}/gmail/v1/users/me/messages", headers=headers, timeout=10)
    assert listed.status_code == 200, listed.text
    return sorted(m["id"] for m in listed.json().get("messages", []))


def test_emulator_command_keeps_its_mailbox_across_restarts(tmp_path: Path) -> None:
    """`inboxdesk emulator --state F --seed DIR`: seeded and saved at once on the first run; a
    message added over HTTP is saved on Ctrl-C; the restart loads it and does not seed again."""
    env = cli_env(tmp_path)
    seed = tmp_path / "seed"
    seed.mkdir()
    for path in sorted(AUTOMATED.glob("*.eml"))[:3]:
        (seed / path.name).write_bytes(path.read_bytes())
    state_file = tmp_path / "data" / "emulator.json"
    args = ("--state", str(state_file), "--seed", str(seed), "--mailbox", MAILBOX)

    proc, url = _run_emulator(env, *args)
    try:
        _wait_serving(url, proc)
        assert state_file.is_file(), "the seeded state is saved before serving"
        headers = {"Authorization": f"Bearer {bearer_token(MAILBOX)}"}
        added = httpx.post(
            f"{url}/gmail/v1/users/me/messages/import",
            headers=headers,
            json={"raw": b64(mail("Kept", message_id="kept@x.test")), "labelIds": ["INBOX"]},
            timeout=10,
        )
        assert added.status_code == 200, added.text
        first_ids = _message_ids(url)
        profile = httpx.get(f"{url}/gmail/v1/users/me/profile", headers=headers).json()
    finally:
        _stop(proc)
    assert len(first_ids) == 4

    proc, url = _run_emulator(env, *args)
    try:
        _wait_serving(url, proc)
        assert _message_ids(url) == first_ids
        again = httpx.get(f"{url}/gmail/v1/users/me/profile", headers=headers).json()
        assert int(again["historyId"]) >= int(profile["historyId"]), "history ids never go back"
    finally:
        _stop(proc)


def test_emulator_command_refuses_a_corrupt_state_file(tmp_path: Path) -> None:
    """A damaged state file stops `inboxdesk emulator` with one error line, no traceback, and the
    file is left as it was for the operator to look at."""
    state_file = tmp_path / "emulator.json"
    state_file.write_bytes(b'{"format": "inboxdesk-gmail-emulator-state", "version": 1')
    done = subprocess.run(  # noqa: S603 - our own console script
        [str(INBOXDESK), "emulator", "--port", str(free_port()), "--state", str(state_file)],
        env=cli_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    assert f"error: cannot read the emulator state {state_file}" in done.stderr
    assert state_file.read_bytes().endswith(b'"version": 1')
    assert os.listdir(tmp_path) == ["emulator.json"]


def test_raw_is_stored_as_base64_text(tmp_path: Path) -> None:
    """The file is plain JSON text (no pickle, no bytes): raw mail is standard base64."""
    state = EmulatorState(mailboxes=[MAILBOX])
    state.import_raw(MAILBOX, EIGHT_BIT)
    path = tmp_path / "s.json"
    state.save(path)
    document = json.loads(path.read_bytes().decode("utf-8"))
    (message,) = document["mailboxes"][0]["messages"]
    assert base64.b64decode(message["raw"], validate=True) == EIGHT_BIT
