"""Timing the Gmail add-on's cards on 100,000 tickets: the homepage (an agent's and a lead's
queues) and the contextual card of an open thread, as Gmail calls them — real event objects
POSTed to the real endpoints of the app under uvicorn, with verified tokens — and the server's
time read from its ``Server-Timing`` header.

The tokens are signed with a local key whose certificates a small server on 127.0.0.1 serves in
Google's format; the app is configured to trust that URL (``INBOXDESK_GOOGLE_CERTS_URL``), as an
air-gapped deployment would be: the verification code is the production one.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO

import httpx
from sqlalchemy import func, insert, select

from app.addon.devkeys import DevKeys, generate
from app.agents.models import Agent, Role
from app.db.session import Database
from app.tickets.models import Status, Ticket, TicketThread
from benchmarks import seed as bench_seed
from benchmarks.server import free_port, running_server
from benchmarks.sync_speed import Verdict
from benchmarks.ticket_list import SERVER_TIMING, percentile
from templates_replies.library import seed_default_templates

CONTEXTUAL_BUDGET_MS = 50.0
HOMEPAGE_BUDGET_MS = 80.0
SERVICE_ACCOUNT = "addon-bench@inboxdesk.test"
CLIENT_ID = "addon-bench.apps.inboxdesk.test"


@dataclass
class Series:
    name: str
    server_ms: list[float] = field(default_factory=list)


def prepare(database: Database, out: TextIO) -> None:
    """Gmail threads for the seeded tickets (the contextual card finds its ticket by thread) and
    the default templates (its suggestions), once."""
    with database.unit_of_work() as session:
        if not session.scalar(select(func.count()).select_from(TicketThread)):
            ids = session.execute(select(Ticket.id, Ticket.mailbox_id).order_by(Ticket.id)).all()
            for start in range(0, len(ids), 10_000):
                session.execute(
                    insert(TicketThread),
                    [
                        {
                            "ticket_id": ticket_id,
                            "mailbox_id": mailbox_id,
                            "gmail_thread_id": f"{ticket_id:016x}",
                            "labels_applied": [],
                            "labels_dirty": False,
                        }
                        for ticket_id, mailbox_id in ids[start : start + 10_000]
                    ],
                )
            out.write(f"  {len(ids):,} Gmail threads for the tickets\n")
        seed_default_templates(session)
    bench_seed.analyze(database)


@contextmanager
def certificates(keys: DevKeys) -> Iterator[str]:
    """Google's v1/certs document for ``keys``, served on 127.0.0.1; yields its URL."""
    body = json.dumps(keys.certs_json()).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "public, max-age=3600")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/certs"
    finally:
        server.shutdown()
        server.server_close()


def _event(user_token: str, thread_id: str | None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "commonEventObject": {"hostApp": "GMAIL", "timeZone": {"id": "Europe/Berlin"}},
        "authorizationEventObject": {"userIdToken": user_token},
    }
    if thread_id:
        event["gmail"] = {"threadId": thread_id, "messageId": "bench-message"}
    return event


def _post(
    client: httpx.Client, keys: DevKeys, base_url: str, path: str, event: dict[str, Any]
) -> float:
    token = keys.system_token(audience=base_url + path, email=SERVICE_ACCOUNT)
    response = client.post(path, json=event, headers={"Authorization": f"Bearer {token}"})
    if response.status_code != 200:
        raise RuntimeError(f"POST {path}: HTTP {response.status_code}: {response.text[:300]}")
    match = SERVER_TIMING.search(response.headers.get("server-timing", ""))
    if match is None:
        raise RuntimeError(f"POST {path}: no server-timing header")
    return float(match.group(1))


def run(database: Database, url: str, *, requests: int, warmup: int, out: TextIO) -> list[Verdict]:
    prepare(database, out)
    with database.session() as session:
        agent = session.scalars(select(Agent).where(Agent.email == bench_seed.CALLER_EMAIL)).one()
        lead = session.scalars(select(Agent).where(Agent.role == Role.LEAD)).first()
        if lead is None:
            raise RuntimeError("the seed has no lead")
        open_threads = [
            f"{ticket_id:016x}"
            for ticket_id in session.scalars(
                select(Ticket.id).where(Ticket.status == Status.OPEN).limit(2_000)
            )
        ]
    keys = generate()
    rng = random.Random(11)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    series = {
        "home_agent": Series("homepage, agent (my queue, unassigned, at risk)"),
        "home_lead": Series("homepage, lead (plus breached and the team queues)"),
        "contextual": Series("contextual card of an open ticket's thread"),
    }
    with certificates(keys) as certs_url:
        env = {
            "INBOXDESK_PUBLIC_URL": base_url,
            "INBOXDESK_ADDON_SERVICE_ACCOUNT": SERVICE_ACCOUNT,
            "INBOXDESK_OAUTH_CLIENT_ID": CLIENT_ID,
            "INBOXDESK_GOOGLE_CERTS_URL": certs_url,
        }
        with (
            running_server(url, port=port, env=env) as served,
            httpx.Client(base_url=served, timeout=60.0) as client,
        ):
            users = {
                who: keys.user_token(email=person.email, audience=CLIENT_ID)
                for who, person in (("agent", agent), ("lead", lead))
            }
            plan = [
                ("home_agent", "/addon/homepage", lambda: _event(users["agent"], None)),
                ("home_lead", "/addon/homepage", lambda: _event(users["lead"], None)),
                (
                    "contextual",
                    "/addon/contextual",
                    lambda: _event(users["agent"], rng.choice(open_threads)),
                ),
            ]
            for key, path, event in plan:
                out.write(f"  {series[key].name}: {warmup} warm-up + {requests} timed ...\n")
                out.flush()
                for index in range(warmup + requests):
                    elapsed = _post(client, keys, served, path, event())
                    if index >= warmup:
                        series[key].server_ms.append(elapsed)

    out.write(f"\n  {'card':<52} {'n':>4} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7}\n")
    for s in series.values():
        out.write(
            f"  {s.name:<52} {len(s.server_ms):>4} {percentile(s.server_ms, 50):>7.2f} "
            f"{percentile(s.server_ms, 95):>7.2f} {percentile(s.server_ms, 99):>7.2f} "
            f"{max(s.server_ms):>7.2f}\n"
        )
    out.write("  (server time, ms, from Server-Timing; tokens verified on every request)\n")
    verdicts = []
    for key, what, budget in (
        ("contextual", "add-on contextual card", CONTEXTUAL_BUDGET_MS),
        ("home_lead", "add-on homepage (lead)", HOMEPAGE_BUDGET_MS),
        ("home_agent", "add-on homepage (agent)", HOMEPAGE_BUDGET_MS),
    ):
        p95 = percentile(series[key].server_ms, 95)
        passed = p95 <= budget
        verdicts.append(
            Verdict(
                what,
                passed,
                f"p95 server time {p95:.2f} ms {'<=' if passed else '>'} {budget:g} ms "
                f"({len(series[key].server_ms)} requests, 100,000 tickets)",
            )
        )
    return verdicts
