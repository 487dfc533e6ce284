"""A throwaway database next to the session one, for tests that must start from nothing.

SQLite: a new file. PostgreSQL: ``CREATE DATABASE inboxdesk_mig_<uuid>`` on the server of
``INBOXDESK_TEST_DATABASE_URL``, dropped again (even if the test fails).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


@contextmanager
def scratch_database_url(
    base_url: str, tmp_dir: Path, prefix: str = "inboxdesk_mig"
) -> Iterator[str]:
    """Yield the URL of an empty database on the same backend (and server) as ``base_url``."""
    url = make_url(base_url)
    if url.get_backend_name() != "postgresql":
        yield f"sqlite:///{tmp_dir / f'{prefix}_{uuid.uuid4().hex[:8]}.db'}"
        return
    name = f"{prefix}_{uuid.uuid4().hex}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                # FORCE (PostgreSQL 13+) ends connections a failed test may have left open.
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
