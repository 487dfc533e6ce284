"""``inboxdesk demo``: the whole product on one machine, with the local Gmail emulator for Gmail.

One process: the emulator (uvicorn on a thread, its mailbox kept in ``<data dir>/emulator.json``),
the sync worker (a thread), the web app (the main thread), SQLite in the data dir. The tickets are
not made up here: the emulator is seeded once with the demo customer mail of
``gmail_sync/demo_mail`` and the sync turns it into tickets, exactly as with a real mailbox.
A restart finds the same mailbox (same Gmail ids, history continuing), so nothing is imported
twice.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

import gmail_sync
from app.agents import service as agents
from app.agents.models import Role, Team
from app.assignment.service import Strategy
from app.assignment.teams import create_team
from app.config import get_settings, reset_settings
from app.db.session import get_database
from app.mailboxes.models import Mailbox, MailboxAuthKind
from app.mailboxes.service import connect_mailbox
from app.rules.defaults import seed_default_rules
from app.rules.models import Rule
from app.server import PortInUse, bind_socket
from app.tickets.models import Ticket
from gmail_sync.emulator.persistence import EmulatorStateError
from gmail_sync.emulator.server import EmulatorOptions, EmulatorThread, open_state
from gmail_sync.worker import Worker
from templates_replies.library import seed_default_templates

DEMO_MAILBOX = "support@demo.inboxdesk.test"
# Besides the admin, a lead and an agent to sign in as in the add-on preview (/preview).
DEMO_TEAM = (
    ("lead@demo.inboxdesk.test", "Lena Lead", Role.LEAD),
    ("agent@demo.inboxdesk.test", "Alex Agent", Role.AGENT),
)
DEMO_TEAM_NAME = "Demo support team"
DEMO_MAIL_DIR = Path(gmail_sync.__file__).resolve().parent / "demo_mail"
EMULATOR_HOST = "127.0.0.1"
EMULATOR_STATE_FILE = "emulator.json"
# The demo mail is dated November 2025 (gmail_sync.corpus.DEMO_START) and the first sync reads
# only `in:inbox newer_than:{full_sync_days}d` (30 days by default): ten years keeps the demo
# mailbox inside that window for a long while.
DEMO_FULL_SYNC_DAYS = 3650
# Short, so that a label changed in the emulator shows up on the ticket almost at once.
DEMO_SYNC_INTERVAL = 2.0
READY_MARKER = "demo ready:"

log = logging.getLogger(__name__)


class DemoError(Exception):
    """The demo cannot start; the message says why and what to do."""


def prepare_demo(*, admin_email: str) -> str:
    """Create the demo admin (and a lead and an agent), connect the demo mailbox to the emulator
    and seed the default reply templates (each once), and return a fresh API token for the admin.

    Tokens are stored hashed and cannot be shown again, so each run issues a new one.
    """
    settings = get_settings()
    with get_database().unit_of_work() as session:
        admin = agents.find_agent(session, admin_email) or agents.create_agent(
            session, email=admin_email, name="Demo Admin", role=Role.ADMIN
        )
        _, token = agents.issue_token(session, agent=admin, name="demo")
        for email, name, role in DEMO_TEAM:
            if agents.find_agent(session, email) is None:
                agents.create_agent(session, email=email, name=name, role=role)
        mailbox = connect_mailbox(
            session,
            email=DEMO_MAILBOX,
            name="Demo Support",
            auth_kind=MailboxAuthKind.EMULATOR,
            credentials=None,
            secret_key=settings.secret_key,
        )
        mailbox.full_sync_days = DEMO_FULL_SYNC_DAYS
        # The default reply templates, once: later runs keep what the demo user changed.
        seed_default_templates(session)
        _prepare_triage(session, mailbox_id=mailbox.id)
        # A demo killed without Ctrl-C (SIGKILL, a closed terminal) left its lease behind; this
        # data dir has no other worker, so the new one need not wait for it to expire.
        session.execute(
            update(Mailbox)
            .where(Mailbox.id == mailbox.id)
            .values(lease_owner=None, lease_until=None)
        )
    return token


def _prepare_triage(session: Session, *, mailbox_id: int) -> None:
    """The default triage rules (urgency, VIP) and a round-robin team of the demo lead and agent
    for the demo mailbox, on the first run only: later runs keep what the demo user changed."""
    if session.execute(select(Rule.id).limit(1)).first() is None:
        seed_default_rules(session)
    if session.execute(select(Team.id).where(Team.name == DEMO_TEAM_NAME)).first() is None:
        members = [agents.find_agent(session, email) for email, _name, _role in DEMO_TEAM]
        create_team(
            session,
            name=DEMO_TEAM_NAME,
            mailbox_id=mailbox_id,
            assignment_strategy=Strategy.ROUND_ROBIN,
            member_ids=[m.id for m in members if m is not None],
        )


def _loopback_address(host: str) -> str | None:
    """Where this machine's browser reaches a server listening on ``host``, if /preview answers
    there (it answers loopback callers only): None for another machine's address."""
    if host in ("", "0.0.0.0"):  # noqa: S104 - reading the setting, not binding
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    if host == "localhost":
        return host
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if not address.is_loopback:
        return None
    return f"[{address}]" if address.version == 6 else str(address)


def _demo_mailbox_synced() -> bool:
    with get_database().unit_of_work() as session:
        cursor = session.execute(
            select(Mailbox.history_id).where(Mailbox.email == DEMO_MAILBOX)
        ).scalar_one_or_none()
    return cursor is not None


def _ticket_total() -> tuple[int, str | None]:
    with get_database().unit_of_work() as session:
        total = session.execute(select(func.count(Ticket.id))).scalar_one()
        error = session.execute(
            select(Mailbox.last_error).where(Mailbox.email == DEMO_MAILBOX)
        ).scalar_one_or_none()
    return int(total), error


def _wait_for_port(host: str, port: int, *, stop: threading.Event, timeout: float) -> None:
    """Until the web server accepts connections (so "ready" is true when printed)."""
    target = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host  # noqa: S104
    deadline = time.monotonic() + timeout
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            with socket.create_connection((target, port), timeout=0.5):
                return
        except OSError:
            stop.wait(0.05)


def _sync_loop(worker: Worker, *, host: str, port: int, echo: Callable[[str], None]) -> None:
    """The first pass, the "ready" line with the ticket count, then poll until stopped."""
    try:
        reports = worker.run_once(release=False)
    except Exception:  # the web app stays up to show what is there; the log says what failed
        log.exception("the first sync pass failed")
        reports = []
    total, error = _ticket_total()
    _wait_for_port(host, port, stop=worker.stop_event, timeout=10)
    problem = f" (the first sync failed: {error}; see the log)" if not reports and error else ""
    echo(f"{READY_MARKER} {total} tickets{problem}")
    if worker.stop_event.wait(worker.interval):
        worker.release()
        return
    try:
        worker.run_forever()
    except Exception:
        log.exception("the sync worker stopped")


def run_demo(
    *,
    host: str,
    port: int,
    emulator_port: int,
    admin_email: str,
    echo: Callable[[str], None] = print,
) -> None:
    """Run the demo until Ctrl-C (SIGINT), then stop everything and save the emulator's state.

    Raises DemoError, before anything has started, when a port is taken or the emulator's state
    file cannot be read.
    """
    from app.db import migrations
    from app.main import create_app
    from app.server import run_server
    from gmail_sync.runner import build_worker

    emulator_url = f"http://{EMULATOR_HOST}:{emulator_port}/"
    # The demo runs on SQLite in the data dir even if a database URL is configured elsewhere, and
    # on the emulator even if another Gmail API URL is.
    os.environ["INBOXDESK_DATABASE_URL"] = ""
    os.environ["INBOXDESK_GMAIL_API_URL"] = emulator_url
    # Demo mode: the add-on preview (/preview) is served, and the add-on endpoints trust the local
    # signing key (<data dir>/addon-dev-key.pem) and the development service account and OAuth
    # client id (app/addon/devkeys.py) unless others are configured; see app/addon/auth.py.
    os.environ["INBOXDESK_ENV"] = "dev"
    preview_host = _loopback_address(host)
    if "INBOXDESK_PUBLIC_URL" not in os.environ and preview_host:
        # The endpoints' URLs (the add-on's token audience, card actions) are this server's.
        os.environ["INBOXDESK_PUBLIC_URL"] = f"http://{preview_host}:{port}"
    reset_settings()
    settings = get_settings()
    data_dir = Path(settings.data_dir).resolve()
    state_file = data_dir / EMULATOR_STATE_FILE

    try:
        emulator_socket = bind_socket(EMULATOR_HOST, emulator_port)
    except PortInUse as exc:
        raise DemoError(
            f"the Gmail emulator cannot listen on {EMULATOR_HOST}:{emulator_port} "
            f"({exc.strerror}); choose another port with --emulator-port"
        ) from None
    try:
        try:
            bind_socket(host, port).close()
        except PortInUse as exc:
            raise DemoError(
                f"the web server cannot listen on {host}:{port} ({exc.strerror}); "
                "choose another port with --port"
            ) from None
        data_dir.mkdir(parents=True, exist_ok=True)
        migrations.upgrade(url=settings.database_url_resolved)
        if not state_file.exists() and _demo_mailbox_synced():
            # A new emulator would hold the same mail under new Gmail ids: every ticket twice.
            raise DemoError(
                f"the database in {data_dir} was synced from a Gmail emulator whose state "
                f"({state_file}) is gone; remove the data dir {data_dir} to start the demo afresh"
            )
        try:
            state, loaded = open_state(
                EmulatorOptions(mailboxes=[DEMO_MAILBOX], seed_dir=DEMO_MAIL_DIR, seed_recent=True),
                state_file=state_file,
            )
        except EmulatorStateError as exc:
            raise DemoError(
                f"{exc}. Remove the data dir {data_dir} to start the demo afresh (with the "
                "database kept, a new mailbox's mail would be imported a second time)"
            ) from None
    except BaseException:
        emulator_socket.close()
        raise

    emulator = EmulatorThread(
        state,
        host=EMULATOR_HOST,
        port=emulator_port,
        state_file=state_file,
        sock=emulator_socket,
    )
    worker: Worker | None = None
    sync_thread: threading.Thread | None = None
    try:
        token = prepare_demo(admin_email=admin_email)
        emulator.start()
        base = f"http://{host}:{port}"
        mailbox_url = f"{emulator_url}gmail/v1/users/me"
        emulator_token = f"emulator:{DEMO_MAILBOX}"
        echo(
            "\n".join(
                [
                    "Inboxdesk demo",
                    f"  database:  {data_dir / 'inboxdesk.db'}",
                    f"  API docs:  {base}/docs",
                    f"  tickets:   {base}/api/v1/tickets",
                    f"  admin:     {admin_email}",
                    f"  API token: {token}",
                    f"  Gmail emulator: {emulator_url} (mailbox {DEMO_MAILBOX}, "
                    f"{'kept from the last run' if loaded else 'seeded with the demo mail'}, "
                    f"saved in {state_file})",
                    f"  emulator stats: {emulator_url}emulator/stats",
                    (
                        f"  add-on preview: http://{preview_host}:{port}/preview (the Gmail "
                        "sidebar, played locally; sign in as any demo agent)"
                        if preview_host
                        else f"  add-on preview: only on a loopback address (the demo listens on "
                        f"{host}; start it with --host 127.0.0.1)"
                    ),
                    "",
                    f'  tickets: curl -H "Authorization: Bearer {token}" {base}/api/v1/tickets',
                    f'  labels:  curl -H "Authorization: Bearer {emulator_token}" '
                    f"{mailbox_url}/labels",
                    "  Ctrl-C stops the demo.",
                    f"Syncing {DEMO_MAILBOX} (every {DEMO_SYNC_INTERVAL:g} s)…",
                ]
            )
        )
        worker = build_worker(interval=DEMO_SYNC_INTERVAL)
        sync_thread = threading.Thread(
            target=_sync_loop,
            args=(worker,),
            kwargs={"host": host, "port": port, "echo": echo},
            name="sync-worker",
            daemon=True,
        )
        sync_thread.start()
        # uvicorn re-raises the Ctrl-C it handled once it has stopped: we are stopping anyway.
        with contextlib.suppress(KeyboardInterrupt):
            run_server(create_app(), host=host, port=port, log_level="warning")
    finally:
        if worker is not None:
            worker.stop()
        if sync_thread is not None:
            sync_thread.join(timeout=60)
        emulator.stop()
    echo(f"demo stopped; the mailbox is saved in {state_file}")
