"""The plans of the SQL a list request really sends, to find out why a query is slow.

The statements are captured, not rewritten by hand: a ``before_cursor_execute`` listener records
each one with its parameters while the app answers one request in-process, then each SELECT runs
again under ``EXPLAIN (ANALYZE, BUFFERS)``. What gets explained is thus exactly what the ORM
emitted for these query parameters (auth lookup, count, page, tags and threads).
"""

from __future__ import annotations

import sys
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event

from app.db.session import Database
from app.main import create_app
from benchmarks.ticket_list import LIST_PATH, Scenario, query_string


def captured_sql(database: Database, token: str, params: dict[str, str]) -> list[tuple[str, Any]]:
    """The statements (with parameters) that one ``GET /api/v1/tickets`` executes."""
    statements: list[tuple[str, Any]] = []

    def record(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool
    ) -> None:
        statements.append((statement, parameters))

    client = TestClient(create_app(database))
    client.get(LIST_PATH, params=params, headers={"Authorization": f"Bearer {token}"})
    event.listen(database.engine, "before_cursor_execute", record)
    try:
        response = client.get(
            LIST_PATH, params=params, headers={"Authorization": f"Bearer {token}"}
        )
    finally:
        event.remove(database.engine, "before_cursor_execute", record)
    response.raise_for_status()
    return statements


def print_plans(database: Database, token: str, scenario: Scenario) -> None:
    """EXPLAIN ANALYZE every SELECT of the scenario's request (PostgreSQL only)."""
    out = sys.stdout
    out.write(f"\n=== EXPLAIN ANALYZE: GET {LIST_PATH}?{query_string(scenario.params)}\n")
    if database.dialect_name != "postgresql":
        out.write("(plans are shown on PostgreSQL only)\n")
        return
    for statement, parameters in captured_sql(database, token, scenario.params):
        if not statement.lstrip().upper().startswith("SELECT"):
            continue
        shown = str(parameters)
        shown = shown if len(shown) <= 300 else shown[:300] + " …"
        out.write(f"\n-- {statement}\n-- parameters: {shown}\n")
        with database.engine.connect() as conn:
            rows = conn.exec_driver_sql(
                f"EXPLAIN (ANALYZE, BUFFERS) {statement}", parameters
            ).scalars()
            out.write("\n".join(rows) + "\n")
            conn.rollback()
    out.flush()
