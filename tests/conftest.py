"""Test fixtures: a database built by ``alembic upgrade head``; one rolled-back transaction a test.

``INBOXDESK_TEST_DATABASE_URL`` selects the database (``make test`` runs the suite on SQLite and
then on a throwaway PostgreSQL); unset, a SQLite file in a temporary directory is used.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from app.agents import service as agents
from app.agents.models import Agent, Role
from app.db import migrations
from app.db.registry import metadata
from app.db.session import Database, create_db_engine
from app.mailboxes import service as mailboxes
from app.mailboxes.models import Mailbox
from app.main import create_app
from app.server import ServerThread

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CORPUS = PROJECT_ROOT.parent / "shared" / "corpus"


def _test_database_url(tmp_root: Path) -> str:
    return os.environ.get("INBOXDESK_TEST_DATABASE_URL") or f"sqlite:///{tmp_root / 'test.db'}"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _test_database_url(tmp_path_factory.mktemp("db"))


@pytest.fixture(scope="session")
def is_postgres(database_url: str) -> bool:
    return make_url(database_url).get_backend_name() == "postgresql"


@pytest.fixture(scope="session", autouse=True)
def _isolated_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Nothing a test does touches the developer's ./.inboxdesk or configured database."""
    from app.config import reset_settings

    data_dir = tmp_path_factory.mktemp("data")
    old = {k: v for k, v in os.environ.items() if k.startswith("INBOXDESK_") and "TEST" not in k}
    for key in old:
        del os.environ[key]
    os.environ["INBOXDESK_DATA_DIR"] = str(data_dir)
    reset_settings()
    yield
    os.environ.pop("INBOXDESK_DATA_DIR", None)
    os.environ.update(old)
    reset_settings()


def _reset_schema(engine: Engine) -> None:
    """Start from an empty database: a leftover schema would hide a broken migration."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    else:
        path = make_url(str(engine.url)).database
        if path and path != ":memory:":
            engine.dispose()
            for suffix in ("", "-wal", "-shm"):
                Path(path + suffix).unlink(missing_ok=True)


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_db_engine(database_url)
    _reset_schema(engine)
    with engine.connect() as conn:
        migrations.upgrade(conn)
        conn.commit()
    yield engine
    engine.dispose()


@pytest.fixture
def db(engine: Engine) -> Iterator[Database]:
    """A database whose every commit is undone when the test ends (an outer transaction)."""
    connection = engine.connect()
    outer = connection.begin()
    try:
        yield Database(connection)
    finally:
        outer.rollback()
        connection.close()


@pytest.fixture
def session(db: Database) -> Iterator[Session]:
    with db.session() as s:
        yield s


@pytest.fixture
def committed_db(engine: Engine) -> Iterator[Database]:
    """A database that really commits (concurrency tests); emptied again afterwards."""
    database = Database(engine)
    try:
        yield database
    finally:
        truncate_all(engine)


def truncate_all(engine: Engine) -> None:
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            names = ", ".join(t.name for t in metadata.sorted_tables if t.name != "ticket_counters")
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(metadata.sorted_tables):
                if table.name != "ticket_counters":
                    conn.execute(table.delete())
        conn.execute(text("UPDATE ticket_counters SET value = 1000 WHERE name = 'ticket'"))


@pytest.fixture
def app(db: Database):  # type: ignore[no-untyped-def]
    return create_app(db)


@pytest.fixture
def client(app) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@dataclass
class Caller:
    agent: Agent
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


MakeCaller = Callable[..., Caller]


def _make_caller(database: Database) -> MakeCaller:
    def make(role: Role = Role.AGENT, email: str | None = None, name: str = "Test Agent") -> Caller:
        with database.unit_of_work() as s:
            agent = agents.create_agent(
                s,
                email=email or f"{role.value}-{uuid.uuid4().hex[:8]}@team.test",
                name=name,
                role=role,
            )
            _, token = agents.issue_token(s, agent=agent)
        return Caller(agent=agent, token=token)

    return make


@pytest.fixture
def make_caller(db: Database) -> MakeCaller:
    return _make_caller(db)


@pytest.fixture
def admin(make_caller: MakeCaller) -> Caller:
    return make_caller(Role.ADMIN, name="Ada Admin")


@pytest.fixture
def lead(make_caller: MakeCaller) -> Caller:
    return make_caller(Role.LEAD, name="Lee Lead")


@pytest.fixture
def agent(make_caller: MakeCaller) -> Caller:
    return make_caller(Role.AGENT, name="Alex Agent")


@pytest.fixture
def mailbox(db: Database) -> Mailbox:
    with db.unit_of_work() as s:
        return mailboxes.create_mailbox(s, email="support@shop.test", name="Shop Support")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    database: Database
    make_caller: MakeCaller


@pytest.fixture
def live_server(committed_db: Database) -> Iterator[LiveServer]:
    """The real app under a real uvicorn on 127.0.0.1, on a database that really commits."""
    server = ServerThread(create_app(committed_db), port=free_port()).start()
    try:
        yield LiveServer(
            url=server.url,
            database=committed_db,
            make_caller=_make_caller(committed_db),
        )
    finally:
        server.stop()
