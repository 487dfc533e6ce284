"""Property-based fuzzing of every operation in /openapi.json (schemathesis over the ASGI app).

Whatever a client sends — valid, invalid, odd unicode, out-of-range numbers — the API answers below
500, and every 4xx carries the error envelope ``{"error": {"code", "message"}}``. Requests carry a
valid admin token and hit a database holding a mailbox and a few tickets, so generated ids and
filters reach real rows and the deeper code paths. Bounded and seeded, so CI runs are reproducible.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from sqlalchemy import create_engine, select

from app.agents import service as agents
from app.agents.models import Agent
from app.db.session import Database
from app.mailboxes.models import Mailbox
from app.main import create_app
from app.tickets import service as tickets
from app.tickets.events import Actor
from app.tickets.models import Priority
from templates_replies.library import seed_default_templates
from templates_replies.models import ReplyTemplate
from tests.conftest import Caller

MAX_EXAMPLES = 30
SEED = 20240601


# The schema is read once from a module-level app; each test points that app at its own rolled-back
# database (the app looks the database up in ``app.state`` on every request). Not
# ``schemathesis.pytest.from_fixture``: with pytest 9.2 it fails on ``request.node._nodeid``.
_PLACEHOLDER = Database(create_engine("sqlite://"))
_APP = create_app(_PLACEHOLDER)
schema = schemathesis.openapi.from_asgi(
    "/openapi.json",
    _APP,
    config=SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
                # The admin's real token is sent instead of generated Authorization headers.
                "with-security-parameters": False,
            },
        }
    ),
)


MAILBOX = "support@shop.test"
# Real rows of the running test (filled by the ``fuzz_db`` fixture): path parameter → id, and
# query parameter → a value that matches something.
_REAL_PATH: dict[str, int] = {}
_REAL_QUERY: dict[str, Any] = {}


def _with_real_values(body: dict[str, Any]) -> dict[str, Any]:
    """The same body with addresses that resolve and the tickets' current version, so creations
    and updates get past the first check and exercise the code behind it."""
    real = dict(body)
    tag = zlib.crc32(repr(sorted(body.items(), key=repr)).encode())  # stable across runs
    if "mailbox" in real:
        real["mailbox"] = MAILBOX
    for key in ("customer_email", "email"):
        if key in real:
            real[key] = f"fuzz-{tag}@example.com"
    if "version" in real:
        real["version"] = 1
    return real


def _half_real(value: Any, real: dict[str, Any]) -> st.SearchStrategy[Any]:
    """The generated value, or the same with the keys ``real`` knows replaced by real values."""
    if not isinstance(value, dict) or not real.keys() & value.keys():
        return st.just(value)
    return st.sampled_from([value, {k: real.get(k, v) for k, v in value.items()}])


@schema.hook
def flatmap_body(_context: Any, body: Any) -> st.SearchStrategy[Any]:
    if not isinstance(body, dict):
        return st.just(body)
    return st.sampled_from([body, _with_real_values(body)])


@schema.hook
def flatmap_path_parameters(_context: Any, path_parameters: Any) -> st.SearchStrategy[Any]:
    return _half_real(path_parameters, _REAL_PATH)


@schema.hook
def flatmap_query(_context: Any, query: Any) -> st.SearchStrategy[Any]:
    return _half_real(query, _REAL_QUERY)


@pytest.fixture
def fuzz_db(db: Database, mailbox: Mailbox, admin: Caller) -> Iterator[Database]:
    """The module's app on this test's database, with a mailbox, a few tickets and a spare token
    of the admin's (revoking it leaves the admin's working token alone)."""
    with db.unit_of_work() as s:
        created = [
            tickets.create_ticket(
                s,
                mailbox=mailbox,
                customer_email=f"fuzz{n}@example.com",
                subject=f"Fuzz {n}",
                priority=priority,
                tags=["fuzz"],
                actor=Actor.system(),
                gmail_thread_id=f"thread{n}",
            )
            for n, priority in enumerate(Priority)
        ]
        spare, _ = agents.issue_token(s, agent=s.get(Agent, admin.agent.id), name="spare")
        seed_default_templates(s)
        template_id = s.scalars(select(ReplyTemplate.id).order_by(ReplyTemplate.id)).first()
        ticket = created[0]
        _REAL_PATH.update(
            ticket_id=ticket.id,
            customer_id=ticket.customer_id,
            agent_id=admin.agent.id,
            token_id=spare.id,
            template_id=template_id,
        )
        _REAL_QUERY.update(
            number=ticket.number,
            mailbox=MAILBOX,
            customer=ticket.customer.email,
            assignee="me",
            tag="fuzz",
        )
    _APP.state.database = db
    try:
        yield db
    finally:
        _APP.state.database = _PLACEHOLDER
        _REAL_PATH.clear()
        _REAL_QUERY.clear()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_operation_answers_a_server_error(case: Any, fuzz_db: Database, admin: Caller) -> None:
    """No generated request makes any operation fail with 5xx; every 4xx is the error envelope."""
    response = case.call(headers=admin.headers)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} → {response.status_code}: {response.text[:500]}\n"
        f"query={case.query!r} body={case.body!r}"
    )
    if 400 <= response.status_code < 500:
        error = response.json()["error"]
        assert isinstance(error["code"], str)
        assert isinstance(error["message"], str)
