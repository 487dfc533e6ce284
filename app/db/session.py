"""Engines and sessions.

One ``Database`` per process and URL. A request (see ``app.api.deps``) or a worker's unit of work
opens a session, and only they commit; services flush at most.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from app.config import get_settings


def _configure_sqlite(engine: Engine) -> None:
    """Make SQLite behave like a server database for our purposes.

    pysqlite's own transaction handling begins transactions lazily and breaks SAVEPOINT; we take
    it over (SQLAlchemy docs, "Serializable isolation / Savepoints / Transactional DDL") and begin
    every transaction IMMEDIATE, so concurrent writers queue on the busy timeout instead of failing
    with "database is locked" when they upgrade a read lock.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA busy_timeout = 30000")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_db_engine(url: str, *, echo: bool = False) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            from pathlib import Path

            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, connect_args={"timeout": 30})
        _configure_sqlite(engine)
        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20)


class Database:
    """An engine (or, in tests, one connection) and the sessions made from it."""

    def __init__(self, bind: Engine | Connection) -> None:
        # Every model must be known before the first query, or relationships between modules
        # cannot resolve (CLI and worker processes import only what they use).
        from app.db import registry  # noqa: F401

        self.bind = bind
        # In tests ``bind`` is a connection inside an outer transaction: a session's commit then
        # releases a SAVEPOINT and the test rolls everything back at its end.
        self._sessionmaker = sessionmaker(
            bind=bind,
            expire_on_commit=False,
            join_transaction_mode="create_savepoint",
        )

    @classmethod
    def from_url(cls, url: str, *, echo: bool = False) -> Database:
        return cls(create_db_engine(url, echo=echo))

    @property
    def engine(self) -> Engine:
        return self.bind if isinstance(self.bind, Engine) else self.bind.engine

    @property
    def dialect_name(self) -> str:
        return self.bind.dialect.name

    def session(self) -> Session:
        return self._sessionmaker()

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        """A session that commits when the block ends normally and rolls back otherwise."""
        session = self.session()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        if isinstance(self.bind, Engine):
            self.bind.dispose()


@lru_cache(maxsize=4)
def _database_for(url: str, echo: bool) -> Database:
    return Database.from_url(url, echo=echo)


def get_database() -> Database:
    """The process-wide database of the current settings."""
    settings = get_settings()
    return _database_for(settings.database_url_resolved, settings.echo_sql)
