"""The real ``inboxdesk`` console script, run in subprocesses the way an operator runs it."""

from __future__ import annotations

import os
import queue
import re
import signal
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


class Demo:
    """A running ``inboxdesk demo``; its stdout is read on a thread so waits can time out."""

    def __init__(self, env: dict[str, str], port: int, stderr_path: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._stderr = stderr_path.open("w")
        self.proc = subprocess.Popen(  # noqa: S603 - our own console script
            [str(INBOXDESK), "demo", "--port", str(port)],
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

    def wait_for_line(self, marker: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(f"demo exited before printing {marker!r}: {self.stdout}")
            self.stdout.append(line)
            if marker in line:
                return line
        raise AssertionError(f"no {marker!r} line within {timeout} s: {self.stdout}")

    def wait_until_serving(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"demo died with exit code {self.proc.returncode}"
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"demo not serving on {self.url} within {timeout} s")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._stderr.close()


@contextmanager
def running_demo(env: dict[str, str], tmp_path: Path, run: int) -> Iterator[Demo]:
    demo = Demo(env, free_port(), tmp_path / f"demo-{run}.stderr")
    try:
        yield demo
    finally:
        demo.kill()  # whatever happened, leave no server behind


def _check_demo(demo: Demo) -> tuple[int, str]:
    """The demo serves docs and its tickets to its token only; return the total and the token."""
    line = demo.wait_for_line("API token:")
    token = line.split("API token:", 1)[1].strip()
    assert TOKEN.fullmatch(token), line
    demo.wait_until_serving()
    with httpx.Client(base_url=demo.url, timeout=30) as client:
        docs = client.get("/docs")
        assert docs.status_code == 200
        assert docs.headers["content-type"].startswith("text/html")
        assert "swagger" in docs.text.lower()

        listed = client.get("/api/v1/tickets", headers={"Authorization": f"Bearer {token}"})
        assert listed.status_code == 200, listed.text
        page = listed.json()
        assert page["total"] >= 4
        numbers = [t["number"] for t in page["items"]]
        assert len(numbers) == len(set(numbers)) == page["total"]

        anonymous = client.get("/api/v1/tickets")
        assert anonymous.status_code == 401
    return int(page["total"]), token


def _stop_with_ctrl_c(demo: Demo) -> None:
    demo.proc.send_signal(signal.SIGINT)
    try:
        code = demo.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("the demo did not stop within 10 s of Ctrl-C")
    assert code == 0, f"demo exited with {code}"


def test_demo_serves_and_restarts_without_duplicating_data(tmp_path: Path) -> None:
    """`inboxdesk demo` twice on one data dir: docs, tickets for the printed token, 401 without;
    Ctrl-C stops it; the second run finds the same tickets and prints a new working token."""
    env = cli_env(tmp_path)
    with running_demo(env, tmp_path, run=1) as demo:
        first_total, first_token = _check_demo(demo)
        _stop_with_ctrl_c(demo)
    assert (tmp_path / "inboxdesk.db").is_file()

    # The demo insists on SQLite in its data dir, whatever database URL is configured.
    elsewhere = tmp_path / "elsewhere.db"
    env = cli_env(tmp_path, f"sqlite:///{elsewhere}")
    with running_demo(env, tmp_path, run=2) as demo:
        second_total, second_token = _check_demo(demo)
        _stop_with_ctrl_c(demo)
    assert second_total == first_total
    assert second_token != first_token
    assert not elsewhere.exists()
