"""The add-on preview end to end, in a real browser: Debian's Chromium driven by Playwright.

The real app under uvicorn on 127.0.0.1 in demo mode, a mailbox on the Gmail emulator whose
threads the sync turned into tickets, a lead and an agent, the default reply templates. The
browser opens /preview, signs in as the lead, opens a thread, gives its ticket to the agent in the
sidebar's dropdown (checked in the database), adds a note, opens a reply and inserts a template
from the compose card (checked against the template rendered for that ticket), and leaves a
screenshot. Every click goes through the page's script, the preview's token-signing proxy and
the add-on endpoints' own verification — nothing is stubbed.

``make test`` installs Chromium first (scripts/ensure-chromium.sh); without /usr/bin/chromium
this test skips and says so. No browser is ever downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.agents import service as agents
from app.agents.models import Role
from app.config import reset_settings
from app.db.session import Database
from app.mailboxes import service as mailboxes
from app.mailboxes.models import MailboxAuthKind
from app.main import create_app
from app.server import ServerThread
from app.tickets.models import Note, Status, Ticket, TicketThread
from gmail_sync.client import GmailClient, RetryPolicy
from gmail_sync.sync import MailboxSync
from labels.taxonomy import Taxonomy
from templates_replies.library import seed_default_templates
from templates_replies.service import render_saved
from tests.conftest import free_port
from tests.emulator_fixtures import (  # noqa: F401
    MAILBOX,
    Emulator,
    emulator_fixture,
    emulator_server_fixture,
    mail,
)

CHROMIUM = Path(os.environ.get("INBOXDESK_TEST_CHROMIUM", "/usr/bin/chromium"))
# Chromium on a machine with a closed network: no background connections, no sandbox as root.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LEAD = ("lena.lead@team.test", "Lena Lead")
AGENT = ("alex.agent@team.test", "Alex Agent")
SUBJECT = "Order 5531 never arrived"
WAIT_MS = 15_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"{CHROMIUM} is missing: run scripts/ensure-chromium.sh as root "
    "(apt-get install chromium) to run the preview's browser test",
)


@dataclass
class Demo:
    url: str
    database: Database
    lead_id: int
    agent_id: int
    thread_id: str


def _environment(updates: dict[str, str]) -> Callable[[], None]:
    saved = {key: os.environ.get(key) for key in updates}
    os.environ.update(updates)
    reset_settings()

    def restore() -> None:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reset_settings()

    return restore


@pytest.fixture
def demo(committed_db: Database, emulator: Emulator) -> Iterator[Demo]:
    """What `inboxdesk demo` sets up, on a test database: demo mode, the emulator's mailbox
    synced into tickets, a lead and an agent, the default templates — and the web server."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    restore = _environment(
        {
            "INBOXDESK_ENV": "dev",
            "INBOXDESK_GMAIL_API_URL": emulator.url,
            "INBOXDESK_PUBLIC_URL": url,
        }
    )
    try:
        now = format_datetime(datetime.now(UTC))
        first = emulator.import_raw(
            mail(
                SUBJECT,
                message_id="e2e-1@customer.test",
                sender="Ann Smith <ann@customer.test>",
                date=now,
                body="Hello, I ordered a kettle two weeks ago and it never arrived.",
            )
        )
        emulator.import_raw(
            mail(
                "Invoice for March",
                message_id="e2e-2@customer.test",
                sender="Bob Stone <bob@customer.test>",
                date=now,
                body="Could you send me the invoice for March, please?",
            )
        )
        emulator.import_raw(
            mail(
                "Cannot log in",
                message_id="e2e-3@customer.test",
                sender="Cleo Park <cleo@customer.test>",
                date=now,
                body="The password reset mail never comes.",
            )
        )
        with committed_db.unit_of_work() as s:
            box = mailboxes.create_mailbox(
                s, email=MAILBOX, name="Shop Support", auth_kind=MailboxAuthKind.EMULATOR
            )
            lead = agents.create_agent(s, email=LEAD[0], name=LEAD[1], role=Role.LEAD)
            agent = agents.create_agent(s, email=AGENT[0], name=AGENT[1], role=Role.AGENT)
            seed_default_templates(s)
        client = GmailClient.for_emulator(
            MAILBOX, api_url=emulator.url, retry=RetryPolicy(sleep=lambda _s: None)
        )
        report = MailboxSync(committed_db, box.id, client, taxonomy=Taxonomy()).run()
        assert report.tickets_created == 3
        server = ServerThread(create_app(committed_db), port=port).start()
        try:
            yield Demo(
                url=url,
                database=committed_db,
                lead_id=lead.id,
                agent_id=agent.id,
                thread_id=first["threadId"],
            )
        finally:
            server.stop()
    finally:
        restore()


def _ticket(database: Database, thread_id: str) -> Ticket:
    with database.session() as s:
        return s.execute(
            select(Ticket)
            .join(TicketThread, TicketThread.ticket_id == Ticket.id)
            .where(TicketThread.gmail_thread_id == thread_id)
        ).scalar_one()


def _eventually(check: Callable[[], Any], *, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


def test_preview_assigns_and_inserts_a_template_in_chromium(demo: Demo, tmp_path: Path) -> None:
    """A lead, in the browser: homepage card, its row opens the thread → contextual card,
    assign to the agent, add a note, set Pending (each checked in the database), reply → compose
    card → Insert (draft text = the template rendered for the ticket); screenshots saved."""
    from playwright.sync_api import expect, sync_playwright

    ticket = _ticket(demo.database, demo.thread_id)
    assert ticket.assignee_id is None
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a new, empty profile
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            locale="en-US",
            timezone_id="Europe/Berlin",
            viewport={"width": 1440, "height": 900},
        )
        try:
            page = context.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on(
                "console",
                lambda msg: (
                    problems.append(f"console: {msg.text}") if msg.type == "error" else None
                ),
            )
            page.goto(f"{demo.url}/preview")
            sidebar = page.locator("#card-host")

            # Signed in as the lead: the homepage card, the thread list from Gmail.
            page.select_option("#agent", LEAD[0])
            expect(page.locator("#trigger-name")).to_have_text("homepage", timeout=WAIT_MS)
            expect(sidebar.locator(".card")).to_be_visible(timeout=WAIT_MS)
            expect(sidebar).to_contain_text(SUBJECT, timeout=WAIT_MS)

            # Open the thread from the homepage row (a Gmail link, opened here): its messages,
            # and the contextual card of its ticket.
            sidebar.locator(f'.decorated-text.clickable:has-text("{SUBJECT}")').first.click()
            expect(page.locator("a.thread-row.selected")).to_have_attribute(
                "data-thread-id", demo.thread_id, timeout=WAIT_MS
            )
            expect(page.locator(".thread-subject")).to_have_text(SUBJECT, timeout=WAIT_MS)
            expect(page.locator(".message .body")).to_contain_text("kettle")
            expect(page.locator("#trigger-name")).to_have_text("contextual", timeout=WAIT_MS)
            expect(sidebar.locator(".card-title")).to_contain_text(
                f"#{ticket.number}", timeout=WAIT_MS
            )
            assert page.locator("#agent").input_value() == LEAD[0]

            # Assign to the agent: the dropdown's change posts the "assign" action.
            assignee = sidebar.locator('select[name="assignee"]')
            expect(assignee).to_be_visible()
            assignee.select_option(str(demo.agent_id))
            expect(page.locator("#toast")).to_be_visible(timeout=WAIT_MS)
            assigned = _eventually(
                lambda: _ticket(demo.database, demo.thread_id).assignee_id == demo.agent_id
            )
            assert assigned, "the ticket was not assigned in the database"
            expect(sidebar.locator('select[name="assignee"]')).to_have_value(
                str(demo.agent_id), timeout=WAIT_MS
            )

            # An internal note, typed into the card's text input.
            note = sidebar.locator('textarea[name="note"], input[name="note"]').first
            note.fill("Checked with the courier: parcel lost.")
            sidebar.locator('button:has-text("Add note")').first.click()
            expect(sidebar).to_contain_text("parcel lost", timeout=WAIT_MS)
            with demo.database.session() as s:
                notes = s.scalars(select(Note.body).where(Note.ticket_id == ticket.id)).all()
            assert notes == ["Checked with the courier: parcel lost."]

            # A status button: the ticket waits for the customer.
            sidebar.locator('button:has-text("Pending")').first.click()
            expect(sidebar.locator(".card-title")).to_contain_text("Pending", timeout=WAIT_MS)
            assert _ticket(demo.database, demo.thread_id).status == Status.PENDING
            shots = [tmp_path / "preview-contextual.png"]
            sidebar.evaluate("host => { host.scrollTop = 0; }")
            page.screenshot(path=str(shots[0]))

            # Reply: the compose card; Insert puts the rendered template into the draft.
            page.click("#reply")
            expect(page.locator("#trigger-name")).to_have_text("compose", timeout=WAIT_MS)
            insert = sidebar.locator(
                '.decorated-text:has-text("Need more information") button:has-text("Insert")'
            ).first
            expect(insert).to_be_visible(timeout=WAIT_MS)
            parameters = json.loads(insert.get_attribute("data-onclick") or "{}")["action"][
                "parameters"
            ]
            template_id = int(next(p["value"] for p in parameters if p["key"] == "template_id"))
            insert.click()
            draft = page.locator("#draft-body")
            expect(draft).not_to_have_value("", timeout=WAIT_MS)
            with demo.database.session() as s:
                lead = agents.get_agent(s, demo.lead_id)
                expected = render_saved(s, template_id=template_id, ticket_id=ticket.id, agent=lead)
            assert not expected.is_html
            assert draft.input_value() == expected.body
            assert "Ann" in draft.input_value()

            shots.append(tmp_path / "preview-compose.png")
            page.screenshot(path=str(shots[1]))
            assert problems == []
        finally:
            context.close()
    for shot in shots:
        assert shot.stat().st_size > 10_000
        print(f"\npreview screenshot: {shot}")  # noqa: T201 - the path, for people to look at
        # For a look without digging in pytest's temporary directories.
        if os.environ.get("INBOXDESK_TEST_SCREENSHOT_DIR"):
            shutil.copy(shot, os.environ["INBOXDESK_TEST_SCREENSHOT_DIR"])
