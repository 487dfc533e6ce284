"""The real ``inboxdesk`` console script, run in subprocesses the way an operator runs it."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from app.agents import service as agents
from app.agents.models import Role
from app.db.session import Database
from app.demo import DEMO_TEAM
from gmail_sync.emulator import EmulatorState
from tests.conftest import free_port
from tests.scratch_db import scratch_database_url

INBOXDESK = Path(sys.executable).parent / "inboxdesk"
TOKEN = re.compile(r"ibx_[A-Za-z0-9_-]{20,}")


def cli_env(data_dir: Path, database_url: str | None = None) -> dict[str, str]:
    """The caller's environment without any INBOXDESK_* setting, plus the ones given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INBOXDESK_")}
    env["INBOXDESK_DATA_DIR"] = str(data_dir)
    if database_url is not None:
        env["INBOXDESK_DATABASE_URL"] = database_url
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own console script, fixed arguments
        [str(INBOXDESK), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(params=["sqlite", "server"])
def cli_database_url(
    request: pytest.FixtureRequest, database_url: str, is_postgres: bool, tmp_path: Path
) -> Iterator[str]:
    """A fresh empty database for the CLI: a SQLite file, and on the PG run a scratch PG one."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cli.db'}"
        return
    if not is_postgres:
        pytest.skip("the server-database variant needs INBOXDESK_TEST_DATABASE_URL=postgresql…")
    with scratch_database_url(database_url, tmp_path, prefix="inboxdesk_cli") as url:
        yield url


def test_console_script_is_installed() -> None:
    assert INBOXDESK.is_file(), f"no console script next to {sys.executable}"


def test_upgrade_then_add_agent_with_token(cli_database_url: str, tmp_path: Path) -> None:
    """`db upgrade`, then `agent add --token` prints a token (last line, alone) that logs in;
    a duplicate or an unknown role fails cleanly, without a traceback, and changes nothing."""
    env = cli_env(tmp_path, cli_database_url)

    upgraded = run_cli(env, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "head" in upgraded.stdout

    added = run_cli(
        env, "agent", "add", "Ann@Example.com", "--name", "Ann", "--role", "lead", "--token"
    )
    assert added.returncode == 0, added.stderr
    last_line = added.stdout.rstrip("\n").splitlines()[-1]
    assert TOKEN.fullmatch(last_line), added.stdout
    token = last_line

    again = run_cli(env, "agent", "add", "ann@example.com", "--name", "Ann 2", "--token")
    assert again.returncode == 1
    assert again.stderr.startswith("error:"), again.stderr
    assert "ann@example.com already exists" in again.stderr
    assert "Traceback" not in again.stderr + again.stdout
    assert not TOKEN.search(again.stdout), "a failed add must not print a token"

    bad_role = run_cli(env, "agent", "add", "bob@example.com", "--name", "Bob", "--role", "boss")
    assert bad_role.returncode != 0
    assert "--role" in bad_role.stderr
    assert "Traceback" not in bad_role.stderr + bad_role.stdout

    database = Database.from_url(cli_database_url)
    try:
        with database.unit_of_work() as s:
            agent = agents.authenticate(s, token)
            assert (agent.email, agent.name, agent.role) == ("ann@example.com", "Ann", Role.LEAD)
            assert [a.email for a in agents.list_agents(s)] == ["ann@example.com"]
            assert len(agents.list_tokens(s, agent_id=agent.id)) == 1
    finally:
        database.dispose()
    if cli_database_url.startswith("sqlite"):
        assert not (tmp_path / "inboxdesk.db").exists(), "the configured URL was not used"


DEMO_MAIL = Path(__file__).resolve().parents[1] / "gmail_sync" / "demo_mail"
DEMO_MAILBOX = "support@demo.inboxdesk.test"


def demo_conversations() -> int:
    """How many Gmail threads the demo mail makes: imported as the demo seeds it."""
    state = EmulatorState(mailboxes=[DEMO_MAILBOX])
    state.import_eml_dir(DEMO_MAILBOX, DEMO_MAIL)
    return len(state.mailbox(DEMO_MAILBOX).threads)


class Demo:
    """A running ``inboxdesk demo``; its stdout is read on a thread so waits can time out."""

    def __init__(self, env: dict[str, str], stderr_path: Path) -> None:
        self.port = free_port()
        self.emulator_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.emulator_url = f"http://127.0.0.1:{self.emulator_port}"
        self._stderr = stderr_path.open("w")
        self.stderr_path = stderr_path
        self.proc = subprocess.Popen(  # noqa: S603 - our own console script
            [
                str(INBOXDESK),
                "demo",
                "--port",
                str(self.port),
                "--emulator-port",
                str(self.emulator_port),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stdout: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for_line(self, marker: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(
                    f"demo exited before printing {marker!r}: {self.stdout}\n"
                    + self.stderr_path.read_text()
                )
            self.stdout.append(line)
            if marker in line:
                return line
        raise AssertionError(f"no {marker!r} line within {timeout} s: {self.stdout}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._stderr.close()


@contextmanager
def running_demo(env: dict[str, str], tmp_path: Path, run: int) -> Iterator[Demo]:
    demo = Demo(env, tmp_path / f"demo-{run}.stderr")
    try:
        yield demo
    finally:
        demo.kill()  # whatever happened, leave no server behind


def _check_demo(demo: Demo) -> tuple[dict[int, list[str]], str]:
    """The demo serves docs, and the tickets synced from its emulator to its token only; the
    emulator holds the ticket labels. Returns {ticket number: Gmail thread ids} and the token."""
    line = demo.wait_for_line("API token:")
    token = line.split("API token:", 1)[1].strip()
    assert TOKEN.fullmatch(token), line
    ready = demo.wait_for_line("demo ready:")
    synced = int(re.fullmatch(r"demo ready: (\d+) tickets\s*", ready)[1])  # type: ignore[index]
    with httpx.Client(base_url=demo.url, timeout=30) as client:
        docs = client.get("/docs")
        assert docs.status_code == 200
        assert docs.headers["content-type"].startswith("text/html")
        assert "swagger" in docs.text.lower()

        auth = {"Authorization": f"Bearer {token}"}
        listed = client.get("/api/v1/tickets", params={"limit": 200}, headers=auth)
        assert listed.status_code == 200, listed.text
        page = listed.json()
        assert page["total"] == synced == len(page["items"])
        threads = {t["number"]: t["gmail_thread_ids"] for t in page["items"]}
        assert all(len(ids) == 1 for ids in threads.values()), threads
        assert len({ids[0] for ids in threads.values()}) == len(threads), "a thread twice"
        assert {t["mailbox"]["email"] for t in page["items"]} == {DEMO_MAILBOX}
        # The demo's round-robin team shares the tickets between its lead and agent, and the
        # default urgency rules raised the outage reports.
        per_agent: dict[str, int] = {}
        for t in page["items"]:
            assignee = (t["assignee"] or {}).get("email")
            per_agent[assignee] = per_agent.get(assignee, 0) + 1
        assert set(per_agent) == {email for email, _name, _role in DEMO_TEAM}, per_agent
        assert max(per_agent.values()) - min(per_agent.values()) <= 1, per_agent
        assert any(t["priority"] == "urgent" for t in page["items"])

        assert client.get("/api/v1/tickets").status_code == 401

    emulator_auth = {"Authorization": f"Bearer emulator:{DEMO_MAILBOX}"}
    labels = httpx.get(
        f"{demo.emulator_url}/gmail/v1/users/me/labels", headers=emulator_auth, timeout=10
    )
    assert labels.status_code == 200, labels.text
    ids = {label["name"]: label["id"] for label in labels.json()["labels"]}
    assert {"Support/New", "Support/Unassigned"} <= ids.keys(), ids
    labelled = httpx.get(
        f"{demo.emulator_url}/gmail/v1/users/me/threads",
        params={"labelIds": ids["Support/New"], "maxResults": 500},
        headers=emulator_auth,
        timeout=10,
    )
    assert {t["id"] for t in labelled.json()["threads"]} == {i[0] for i in threads.values()}
    assert httpx.get(f"{demo.emulator_url}/emulator/stats", timeout=10).status_code == 200
    return threads, token


def _stop_with_ctrl_c(demo: Demo) -> None:
    demo.proc.send_signal(signal.SIGINT)
    try:
        code = demo.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("the demo did not stop within 10 s of Ctrl-C")
    assert code == 0, f"demo exited with {code}: {demo.stderr_path.read_text()}"


def test_demo_syncs_the_emulator_and_restarts_without_duplicating(tmp_path: Path) -> None:
    """`inboxdesk demo` twice on one data dir: the emulator's demo mail becomes one ticket per
    conversation, served to the printed token only, with labels in the emulator; Ctrl-C stops
    everything; the second run finds the same mailbox and tickets (no duplicates) and prints a
    new working token."""
    expected = demo_conversations()
    assert expected == 30, "gmail_sync/demo_mail is 30 conversations (write_demo_corpus)"
    env = cli_env(tmp_path)
    with running_demo(env, tmp_path, run=1) as demo:
        first, first_token = _check_demo(demo)
        _stop_with_ctrl_c(demo)
    assert len(first) == expected
    assert (tmp_path / "inboxdesk.db").is_file()
    assert (tmp_path / "emulator.json").is_file()

    # The demo insists on SQLite in its data dir, whatever database URL is configured.
    elsewhere = tmp_path / "elsewhere.db"
    env = cli_env(tmp_path, f"sqlite:///{elsewhere}")
    with running_demo(env, tmp_path, run=2) as demo:
        second, second_token = _check_demo(demo)
        _stop_with_ctrl_c(demo)
    assert second == first, "the same tickets on the same Gmail threads"
    assert second_token != first_token
    assert not elsewhere.exists()

    # Without its emulator state the synced database would get every ticket twice: refused.
    state_file = tmp_path / "emulator.json"
    state_file.write_bytes(state_file.read_bytes()[:100])
    corrupt = _demo_refused(env)
    assert f"cannot read the emulator state {state_file}" in corrupt.stderr
    state_file.unlink()
    gone = _demo_refused(env)
    assert f"({state_file}) is gone" in gone.stderr
    assert not state_file.exists(), "nothing was seeded"


def _demo_refused(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(  # noqa: S603 - our own console script
        [str(INBOXDESK), "demo", "--port", str(free_port()), "--emulator-port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.startswith("error:") or "\nerror:" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert not TOKEN.search(done.stdout), "refused before anything started"
    return done


def test_demo_refuses_a_taken_emulator_port(tmp_path: Path) -> None:
    """With the emulator's port taken the demo stops at once with a clear error, having
    started and created nothing."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        done = subprocess.run(  # noqa: S603 - our own console script
            [str(INBOXDESK), "demo", "--port", str(free_port()), "--emulator-port", str(taken)],
            env=cli_env(tmp_path / "data"),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    assert f"127.0.0.1:{taken}" in done.stderr
    assert "--emulator-port" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert not (tmp_path / "data").exists()
