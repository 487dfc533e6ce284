"""The add-on preview without a browser: who may reach it, what its proxy signs, how cards draw.

``/preview`` signs Google's tokens with the local development key, so it must exist only in demo
mode and only for this machine: these tests prove every other caller gets the same 404 as a route
that does not exist, and that nothing reaches the add-on endpoints through the proxy then.
"""

from __future__ import annotations

import html
import json
import os
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from google.auth.transport import Response as TransportResponse
from google.oauth2 import id_token

from app import demo as demo_module
from app.addon import devkeys
from app.addon.preview_render import card_text, render_card, render_navigations
from app.agents.models import Role
from app.config import get_settings, reset_settings
from app.db.session import Database
from app.mailboxes import service as mailboxes
from app.mailboxes.models import MailboxAuthKind
from app.main import create_app
from tests.conftest import MakeCaller
from tests.emulator_fixtures import (  # noqa: F401
    MAILBOX,
    Emulator,
    emulator_fixture,
    emulator_server_fixture,
    mail,
)
from tests.test_cli import cli_env, running_demo

LOOPBACK = ("127.0.0.1", 50000)
NOW = format_datetime(datetime.now(UTC))


@pytest.fixture
def dev_mode() -> Iterator[None]:
    """INBOXDESK_ENV=dev (what `inboxdesk demo` sets), restored afterwards."""
    saved = os.environ.get("INBOXDESK_ENV")
    os.environ["INBOXDESK_ENV"] = "dev"
    reset_settings()
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("INBOXDESK_ENV", None)
        else:
            os.environ["INBOXDESK_ENV"] = saved
        reset_settings()


def _client(app: FastAPI, *, client: tuple[str, int] = LOOPBACK, host: str = "127.0.0.1"):  # type: ignore[no-untyped-def]
    return TestClient(app, base_url=f"http://{host}", client=client, raise_server_exceptions=False)


@pytest.fixture
def dev_app(db: Database, dev_mode: None) -> FastAPI:
    return create_app(db)


def _proxy_post(client: TestClient, path: str, body: Any, **headers: str):  # type: ignore[no-untyped-def]
    return client.post(
        f"/preview/api/{path}",
        content=json.dumps(body),
        headers={"Content-Type": "application/json", **headers},
    )


HOMEPAGE = {"agent": "nobody@team.test", "event": {"commonEventObject": {"hostApp": "GMAIL"}}}


# --- who may reach it --------------------------------------------------------------------------


def test_preview_does_not_exist_outside_demo_mode(db: Database) -> None:
    """In production (the default) the router is not mounted: /preview, its certificates and its
    proxy answer 404 even from loopback."""
    assert get_settings().env == "prod"
    with _client(create_app(db)) as client:
        assert client.get("/preview").status_code == 404
        assert client.get("/preview/certs").status_code == 404
        assert _proxy_post(client, "addon/homepage", HOMEPAGE).status_code == 404
        assert all(
            not str(getattr(r, "path", "")).startswith("/preview") for r in client.app.routes
        )


def test_preview_refuses_everyone_but_this_machine(dev_app: FastAPI) -> None:
    """In demo mode the page answers a loopback caller only, naming a loopback host (no DNS
    rebinding) and with no proxy in between; everyone else gets the not-found answer."""
    with _client(dev_app) as client:
        assert client.get("/preview").status_code == 200
        assert client.get("/preview/certs").status_code == 200
        forwarded = client.get("/preview", headers={"X-Forwarded-For": "203.0.113.9"})
        assert forwarded.status_code == 404
        assert client.get("/preview", headers={"Forwarded": "for=203.0.113.9"}).status_code == 404
    with _client(dev_app, client=("203.0.113.9", 4000)) as outsider:
        answer = outsider.get("/preview")
        assert answer.status_code == 404
        assert answer.json() == {"error": {"code": "not_found", "message": "Not Found"}}
        assert outsider.get("/preview/certs").status_code == 404
        # Refused before the query is even read: no validation error tells the route exists.
        assert outsider.get("/preview", params={"mailbox": "x"}).status_code == 404
        assert _proxy_post(outsider, "addon/homepage", HOMEPAGE).status_code == 404
    with _client(dev_app, client=("192.168.1.20", 4000)) as neighbour:
        assert neighbour.get("/preview").status_code == 404
    with _client(dev_app, host="rebound.attacker.test") as rebinding:
        assert rebinding.get("/preview").status_code == 404
        assert _proxy_post(rebinding, "addon/homepage", HOMEPAGE).status_code == 404
    with _client(dev_app, client=("::1", 4000), host="[::1]:8000") as ipv6:
        assert ipv6.get("/preview").status_code == 200


def test_proxy_stops_working_when_demo_mode_ends(dev_app: FastAPI) -> None:
    """Mounted in demo mode, the proxy still checks the mode on every request: switched to
    production, it answers 404 and signs nothing."""
    with _client(dev_app) as client:
        assert _proxy_post(client, "addon/homepage", HOMEPAGE).status_code == 200
        os.environ["INBOXDESK_ENV"] = "prod"
        reset_settings()
        refused = _proxy_post(client, "addon/homepage", HOMEPAGE)
        assert refused.status_code == 404
        assert "status" not in refused.json()
        assert client.get("/preview").status_code == 404


def test_proxy_refuses_other_sites_and_other_endpoints(dev_app: FastAPI) -> None:
    """Only a same-origin JSON POST reaches the proxy (a form on another site cannot send JSON
    without a CORS preflight nobody answers), and it forwards to /addon/* only."""
    with _client(dev_app) as client:
        cross = _proxy_post(client, "addon/homepage", HOMEPAGE, Origin="https://evil.test")
        assert cross.status_code == 404
        form = client.post(
            "/preview/api/addon/homepage",
            content=json.dumps(HOMEPAGE),
            headers={"Content-Type": "text/plain"},
        )
        assert form.status_code == 404
        same = _proxy_post(client, "addon/homepage", HOMEPAGE, Origin="http://127.0.0.1")
        assert same.status_code == 200
        for path in ("api/v1/tickets", "addon/../api/v1/agents", "preview/certs", "addon"):
            assert _proxy_post(client, path, HOMEPAGE).status_code == 404, path
        bad = _proxy_post(client, "addon/homepage", {"event": {}})
        assert bad.status_code == 400


def test_proxy_signs_what_the_endpoints_verify(
    dev_app: FastAPI, db: Database, make_caller: MakeCaller
) -> None:
    """The proxy's tokens pass the add-on's own verification (a 401 otherwise): the endpoint
    answers the chosen agent's homepage, relayed with its card drawn; a Google user who is no
    agent gets the endpoint's "ask an admin" card. The tokens never come back to the page."""
    lead = make_caller(Role.LEAD, email="lee.lead@team.test", name="Lee Lead")
    with _client(dev_app) as client:
        answer = _proxy_post(client, "addon/homepage", {**HOMEPAGE, "agent": lead.agent.email})
        outsider = _proxy_post(client, "addon/homepage", HOMEPAGE).json()
    assert answer.status_code == 200
    relayed = answer.json()
    assert relayed["status"] == 200, relayed["body"]
    card = relayed["body"]["action"]["navigations"][0]["pushCard"]
    assert len(relayed["rendered"]) == 1
    assert html.escape(card["header"]["title"], quote=False) in relayed["rendered"][0]
    assert relayed["sent"]["path"] == "/addon/homepage"
    assert relayed["sent"]["event"]["authorizationEventObject"]["userIdToken"] == (
        "(signed by the preview)"
    )
    assert "eyJ" not in json.dumps(relayed)  # no JWT anywhere in what the page gets
    assert outsider["status"] == 200, outsider["body"]
    assert outsider["rendered"] != relayed["rendered"]


def test_proxy_relays_refusals_of_the_endpoints(dev_app: FastAPI) -> None:
    """The endpoint's answer is relayed as it is, never papered over: with certificates
    configured that cannot be fetched, the real verification answers 503 and no card is drawn."""
    os.environ["INBOXDESK_GOOGLE_CERTS_URL"] = "http://127.0.0.1:9/unreachable-certs"
    reset_settings()
    try:
        with _client(dev_app) as client:
            answer = _proxy_post(client, "addon/homepage", HOMEPAGE)
    finally:
        os.environ.pop("INBOXDESK_GOOGLE_CERTS_URL", None)
        reset_settings()
    assert answer.status_code == 200
    relayed = answer.json()
    assert relayed["status"] == 503, relayed["body"]
    assert relayed["body"]["error"]["code"] == "addon_certificates_unavailable"
    assert relayed["rendered"] == []


def test_certs_verify_the_preview_tokens(dev_app: FastAPI) -> None:
    """/preview/certs serves, in Google's v1/certs format, the certificate of the key the preview
    signs with: a token it signs verifies against it with google-auth."""
    with _client(dev_app) as client:
        answer = client.get("/preview/certs")
    certs = answer.json()
    keys = devkeys.dev_keys(get_settings().data_dir)
    assert certs == keys.certs_json()
    token = keys.user_token(email="lee@team.test")

    def serve(url: str, method: str = "GET", **_: Any) -> TransportResponse:
        class Answer(TransportResponse):
            status = 200
            headers: dict[str, str] = {}
            data = answer.content

        return Answer()

    claims = id_token.verify_token(
        token, serve, audience=devkeys.DEV_OAUTH_CLIENT_ID, certs_url="http://127.0.0.1/certs"
    )
    assert claims["email"] == "lee@team.test"


# --- Gmail's part ---------------------------------------------------------------------------------


def test_page_lists_the_mailbox_threads_from_gmail(
    db: Database, dev_mode: None, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The thread list is read from Gmail (the emulator): subjects and senders escaped, a
    thread's messages oldest first; the agent chooser lists the active agents."""
    monkeypatch.setenv("INBOXDESK_GMAIL_API_URL", emulator.url)
    reset_settings()
    with db.unit_of_work() as s:
        mailboxes.create_mailbox(
            s, email=MAILBOX, name="Support", auth_kind=MailboxAuthKind.EMULATOR
        )
    first = emulator.import_raw(
        mail("Order <b>42</b> lost", message_id="p1@c.test", date=NOW, body="Where is it?")
    )
    emulator.import_raw(
        mail(
            "Re: Order <b>42</b> lost",
            message_id="p2@c.test",
            references=("p1@c.test",),
            date=NOW,
            body="Still waiting & worried",
        )
    )
    emulator.import_raw(
        mail("Refund please", message_id="p3@c.test", sender="Bob <bob@customer.test>", date=NOW)
    )
    with _client(create_app(db)) as client:
        page = client.get("/preview")
        assert page.status_code == 200
        assert "Order &lt;b&gt;42&lt;/b&gt; lost" in page.text
        assert "<b>42</b>" not in page.text
        assert "Refund please" in page.text
        assert f'data-thread-id="{first["threadId"]}"' in page.text
        assert "script-src 'nonce-" in page.headers["content-security-policy"]
        thread = client.get("/preview", params={"thread": first["threadId"]})
    assert thread.status_code == 200
    assert thread.text.index("Where is it?") < thread.text.index("Still waiting &amp; worried")
    state = thread.text.split('id="preview-state">', 1)[1].split("</script>", 1)[0]
    assert json.loads(state)["thread"]["id"] == first["threadId"]
    assert json.loads(state)["thread"]["replyTo"] == "ann@customer.test"


def test_page_without_a_mailbox_says_so(dev_app: FastAPI) -> None:
    with _client(dev_app) as client:
        page = client.get("/preview")
    assert page.status_code == 200
    assert "No mailbox is connected yet" in page.text


# --- the demo ------------------------------------------------------------------------------------


def test_demo_prints_a_working_preview_url(tmp_path: Path) -> None:
    """`inboxdesk demo` prints the preview's URL; there the page lists the demo mailbox's
    conversations (read from its emulator), offers the demo lead and agent, and its proxy gets
    the lead's homepage card through the add-on's real verification with the data dir's key."""
    with running_demo(cli_env(tmp_path), tmp_path, run=1) as demo:
        line = demo.wait_for_line("add-on preview:")
        url = line.split("add-on preview:", 1)[1].split()[0]
        assert url == f"{demo.url}/preview"
        demo.wait_for_line("demo ready:")
        with httpx.Client(timeout=30) as client:
            page = client.get(url)
            assert page.status_code == 200
            assert page.text.count("data-thread-id=") == 30  # the demo mail's conversations
            assert 'value="lead@demo.inboxdesk.test"' in page.text
            assert 'value="agent@demo.inboxdesk.test"' in page.text
            answer = client.post(
                f"{url}/api/addon/homepage",
                json={"agent": "lead@demo.inboxdesk.test", "event": {}},
            )
        assert answer.status_code == 200
        relayed = answer.json()
        assert relayed["status"] == 200, relayed["body"]
        assert "Lena Lead" in relayed["rendered"][0]
        assert (tmp_path / "addon-dev-key.pem").is_file()
        demo.proc.send_signal(signal.SIGINT)
        assert demo.proc.wait(timeout=30) == 0


def test_demo_names_where_the_preview_answers() -> None:
    """The printed address is one this machine's browser reaches and /preview answers (loopback);
    none for another machine's address."""
    assert demo_module._loopback_address("127.0.0.1") == "127.0.0.1"
    assert demo_module._loopback_address("0.0.0.0") == "127.0.0.1"  # noqa: S104
    assert demo_module._loopback_address("::") == "[::1]"
    assert demo_module._loopback_address("::1") == "[::1]"
    assert demo_module._loopback_address("localhost") == "localhost"
    assert demo_module._loopback_address("192.168.1.5") is None
    assert demo_module._loopback_address("desk.example.test") is None


# --- drawing cards -----------------------------------------------------------------------------


def _action(function: str, **parameters: str) -> dict[str, Any]:
    return {
        "action": {
            "function": function,
            "parameters": [{"key": k, "value": v} for k, v in parameters.items()],
        }
    }


SAMPLE_CARD: dict[str, Any] = {
    "name": "ticket",
    "header": {"title": "#1042 · Open · <High>", "subtitle": "Order lost"},
    "sections": [
        {
            "header": "Ticket",
            "widgets": [
                {
                    "decoratedText": {
                        "topLabel": "Customer",
                        "text": "<b>Ann</b> <script>x()</script>",
                    }
                },
                {
                    "selectionInput": {
                        "name": "assignee",
                        "label": "Assignee",
                        "type": "DROPDOWN",
                        "items": [
                            {"text": "Nobody", "value": "", "selected": False},
                            {"text": "Lee <Lead>", "value": "lee@team.test", "selected": True},
                        ],
                    }
                },
                {
                    "buttonList": {
                        "buttons": [
                            {
                                "text": "Assign",
                                "onClick": _action(
                                    "https://desk.test/addon/action/assign",
                                    ticket_id="7",
                                    version="3",
                                ),
                            },
                            {"text": "Off", "disabled": True, "onClick": _action("x")},
                        ]
                    }
                },
                {"divider": {}},
                {
                    "textInput": {
                        "name": "note",
                        "label": "Note",
                        "type": "MULTIPLE_LINE",
                        "value": 'say "hi"',
                    }
                },
                {
                    "textParagraph": {
                        "text": '<a href="javascript:alert(1)">x</a><i onclick="y">i</i>'
                    }
                },
                {"carousel": {}},
            ],
        }
    ],
}


def test_card_renders_every_widget_the_sidebar_uses() -> None:
    """Header, sections, decorated text, dropdown, buttons (the onClick JSON intact for the page's
    script), divider, text input, paragraph; an unknown widget is named, not dropped."""
    html = render_card(SAMPLE_CARD)
    assert 'data-card-name="ticket"' in html
    assert "#1042 · Open · &lt;High&gt;" in html
    assert '<div class="section-header">Ticket</div>' in html
    assert "<b>Ann</b>" in html
    assert "<script>" not in html
    assert '<select name="assignee" data-form-input="dropdown">' in html
    assert '<option value="lee@team.test" selected>Lee &lt;Lead&gt;</option>' in html
    onclick = html.split('data-onclick="', 1)[1].split('"', 1)[0]
    click = json.loads(onclick.replace("&quot;", '"'))
    assert click["action"]["function"] == "https://desk.test/addon/action/assign"
    assert {"key": "version", "value": "3"} in click["action"]["parameters"]
    assert ">Off</button>" in html.split("Assign", 1)[1]
    assert " disabled" in html
    assert '<hr class="widget divider">' in html
    assert 'data-form-input="text"' in html
    assert "say &quot;hi&quot;</textarea>" in html
    assert "not drawn by the preview: carousel" in html


def test_card_text_keeps_only_the_card_html_subset() -> None:
    """Formatted text keeps Google's card subset and loses scripts, handlers and javascript:
    links; titles and labels are text."""
    assert card_text('<b>bold</b> <font color="#ff0000">red</font><br>next') == (
        '<b>bold</b> <font color="#ff0000">red</font><br>next'
    )
    cleaned = card_text('<a href="javascript:alert(1)">x</a><i onclick="y">i</i><img src=x>')
    assert "javascript" not in cleaned
    assert "onclick" not in cleaned
    assert "<img" not in cleaned
    assert card_text('<a href="https://example.test/a">a</a>').startswith(
        '<a href="https://example.test/a"'
    )
    assert card_text("line 1\nline 2") == "line 1<br>line 2"
    assert card_text(None) == ""


def test_navigations_are_drawn_for_both_answer_shapes() -> None:
    """``{"action": …}`` and ``{"renderActions": {"action": …}}`` both give one HTML per
    navigation step (None for pops), index for index."""
    card = {"header": {"title": "Home"}, "sections": [{"widgets": [{"divider": {}}]}]}
    bare = {"action": {"navigations": [{"popCard": True}, {"pushCard": card}]}}
    wrapped = {"renderActions": {"action": {"navigations": [{"updateCard": card}]}}}
    drawn = render_navigations(bare)
    assert drawn[0] is None
    assert drawn[1] is not None
    assert "Home" in drawn[1]
    assert render_navigations(wrapped) == [render_card(card)]
    assert render_navigations({"renderActions": {"hostAppAction": {}}}) == []


def test_nested_card_and_overflow_menu_are_reachable() -> None:
    """A button that opens a card carries it as a template; an overflow menu keeps its items."""
    inner = {"header": {"title": "Inner"}, "sections": []}
    card = {
        "sections": [
            {
                "widgets": [
                    {"buttonList": {"buttons": [{"text": "Open", "onClick": {"card": inner}}]}},
                    {
                        "buttonList": {
                            "buttons": [
                                {
                                    "text": "More",
                                    "onClick": {
                                        "overflowMenu": {
                                            "items": [{"text": "Close", "onClick": _action("c")}]
                                        }
                                    },
                                }
                            ]
                        }
                    },
                ]
            }
        ]
    }
    html = render_card(card)
    assert '<template id="nested-card-1">' in html
    assert "Inner" in html
    assert "cardTemplate" in html
    assert "nested-card-1" in html
    assert "overflowMenu" in html
    assert "Close" in html
