"""Shared pieces of the Gmail add-on tests: Google's part, played locally.

A local RSA key (app/addon/devkeys.py) signs the ID tokens; its certificate is served on
127.0.0.1 in Google's v1/certs format with a ``Cache-Control: max-age`` header; the settings point
the add-on at it (INBOXDESK_GOOGLE_CERTS_URL, _ADDON_SERVICE_ACCOUNT, _OAUTH_CLIENT_ID,
_PUBLIC_URL). Requests then carry the tokens Google would send.

A test module gets ``certs_server`` (session), ``google_keys`` and ``addon_client`` with
``from tests.addon_fixtures import (addon_client_fixture, certs_server_fixture,
google_keys_fixture)  # noqa: F401`` (the functions have other names than the fixtures so ruff
sees no redefinition; all three are needed), then e.g.::

    def test_homepage(addon_client: AddonClient, agent: Caller) -> None:
        email = agent.agent.email
        response = addon_client.post("/addon/homepage", homepage_event(), agent_email=email)

or, with any TestClient: ``post_event(client, "/addon/homepage", homepage_event(),
agent_email=...)`` while the ``google_keys`` fixture is active.
"""

from __future__ import annotations

import copy
import json
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.addon import auth, devkeys
from app.config import get_settings, reset_settings
from tests.conftest import free_port

SERVICE_ACCOUNT = "service-123456789012@gcp-sa-gsuiteaddons.iam.gserviceaccount.com"
CLIENT_ID = "123456789012-inboxdesk.apps.googleusercontent.com"
PUBLIC_URL = "https://desk.example.test"
# One key for the whole run (RSA generation takes a while); the kid is Google-like.
KEYS = devkeys.generate(kid="test-kid-1")
# Another key under the same kid: what a forger without Google's key can produce.
FORGER_KEYS = devkeys.generate(kid="test-kid-1")


class CertsServer:
    """Serves ``{kid: certificate}`` like https://www.googleapis.com/oauth2/v1/certs and counts
    the requests. ``max_age`` is the Cache-Control lifetime it announces; ``status`` may be set
    to an error to play an outage."""

    def __init__(self, keys: devkeys.DevKeys) -> None:
        self.document: dict[str, str] = keys.certs_json()
        self.max_age = 3600
        self.status = 200
        self.hits = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server._lock:
                    server.hits += 1
                body = json.dumps(server.document).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Cache-Control", f"public, max-age={server.max_age}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/oauth2/v1/certs"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def reset(self, keys: devkeys.DevKeys) -> None:
        self.document = keys.certs_json()
        self.max_age = 3600
        self.status = 200
        self.hits = 0

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture(scope="session", name="certs_server")
def certs_server_fixture() -> Iterator[CertsServer]:
    server = CertsServer(KEYS)
    try:
        yield server
    finally:
        server.stop()


@dataclass
class GoogleKeys:
    """Google's side: the key that signs, the certificates server, the configured identities."""

    keys: devkeys.DevKeys
    server: CertsServer
    service_account: str = SERVICE_ACCOUNT
    client_id: str = CLIENT_ID
    public_url: str = PUBLIC_URL
    env: dict[str, str] = field(default_factory=dict)

    @property
    def certs_url(self) -> str:
        return self.server.url

    def url(self, path: str) -> str:
        """The endpoint URL Google would put in ``aud`` for ``path``."""
        return self.public_url + path

    def system_token(self, path: str, **claims: Any) -> str:
        """A system ID token for a request to ``path`` (claims override, e.g. ``aud=``, ``exp=``,
        ``email=``)."""
        claims.setdefault("audience", self.url(path))
        claims.setdefault("email", self.service_account)
        return self.keys.system_token(**claims)

    def user_token(self, email: str, **claims: Any) -> str:
        claims.setdefault("audience", self.client_id)
        return self.keys.user_token(email=email, **claims)


_ENV_KEYS = (
    "INBOXDESK_GOOGLE_CERTS_URL",
    "INBOXDESK_ADDON_SERVICE_ACCOUNT",
    "INBOXDESK_OAUTH_CLIENT_ID",
    "INBOXDESK_PUBLIC_URL",
    "INBOXDESK_ENV",
    "INBOXDESK_ADDON_AUDIENCES",
)


@pytest.fixture(name="google_keys")
def google_keys_fixture(certs_server: CertsServer) -> Iterator[GoogleKeys]:
    """Settings pointing the add-on at the local certificates server (restored afterwards; the
    in-process certificate cache is emptied before and after)."""
    certs_server.reset(KEYS)
    google = GoogleKeys(keys=KEYS, server=certs_server)
    saved = {key: os.environ.get(key) for key in _ENV_KEYS}
    google.env = {
        "INBOXDESK_GOOGLE_CERTS_URL": certs_server.url,
        "INBOXDESK_ADDON_SERVICE_ACCOUNT": SERVICE_ACCOUNT,
        "INBOXDESK_OAUTH_CLIENT_ID": CLIENT_ID,
        "INBOXDESK_PUBLIC_URL": PUBLIC_URL,
        "INBOXDESK_ENV": "prod",
    }
    os.environ.pop("INBOXDESK_ADDON_AUDIENCES", None)
    os.environ.update(google.env)
    reset_settings()
    auth.certificate_cache.clear()
    try:
        yield google
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reset_settings()
        auth.certificate_cache.clear()


# --- requests --------------------------------------------------------------------------------


def signed_headers(path: str, *, keys: devkeys.DevKeys = KEYS) -> dict[str, str]:
    """The Authorization header Google sends to ``path`` under the current settings."""
    settings = get_settings()
    token = keys.system_token(
        audience=settings.public_url.rstrip("/") + path,
        email=settings.addon_service_account or devkeys.DEV_SERVICE_ACCOUNT,
    )
    return {"Authorization": f"Bearer {token}"}


def with_user(
    event: Mapping[str, Any], agent_email: str, *, keys: devkeys.DevKeys = KEYS
) -> dict[str, Any]:
    """``event`` with authorizationEventObject filled as Google fills it for ``agent_email``."""
    settings = get_settings()
    signed = copy.deepcopy(dict(event))
    authorization = signed.setdefault("authorizationEventObject", {})
    authorization.setdefault(
        "userIdToken",
        keys.user_token(
            email=agent_email, audience=settings.oauth_client_id or devkeys.DEV_OAUTH_CLIENT_ID
        ),
    )
    authorization.setdefault("userOAuthToken", "ya29.test-user-oauth-token")
    authorization.setdefault("systemIdToken", "unused-in-body")
    return signed


def post_event(
    client: TestClient | httpx.Client,
    path: str,
    event: Mapping[str, Any],
    *,
    agent_email: str,
    headers: Mapping[str, str] | None = None,
    keys: devkeys.DevKeys = KEYS,
) -> httpx.Response:
    """POST ``event`` to ``path`` as Google would for the Gmail user ``agent_email``: a valid
    system ID token for the endpoint URL and a user ID token in the body. ``headers`` override
    (e.g. ``{"Authorization": ...}`` to send a broken token)."""
    sent = signed_headers(path, keys=keys)
    for name, value in (headers or {}).items():
        sent = {k: v for k, v in sent.items() if k.lower() != name.lower()}
        sent[name] = value
    return client.post(path, json=with_user(event, agent_email, keys=keys), headers=sent)


@dataclass
class AddonClient:
    """A TestClient that speaks as Google's add-on runtime."""

    client: TestClient
    google: GoogleKeys

    def post(
        self,
        path: str,
        event: Mapping[str, Any],
        *,
        agent_email: str,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        return post_event(
            self.client,
            path,
            event,
            agent_email=agent_email,
            headers=headers,
            keys=self.google.keys,
        )


@pytest.fixture(name="addon_client")
def addon_client_fixture(client: TestClient, google_keys: GoogleKeys) -> AddonClient:
    return AddonClient(client=client, google=google_keys)


# --- event builders (the shapes of https://developers.google.com/workspace/add-ons/reference/event-object)


def _common(
    *,
    parameters: Mapping[str, str] | None = None,
    form_inputs: Mapping[str, str | list[str]] | None = None,
    locale: str = "en",
    time_zone: str = "Europe/Berlin",
) -> dict[str, Any]:
    common: dict[str, Any] = {
        "hostApp": "GMAIL",
        "platform": "WEB",
        "userLocale": locale,
        "timeZone": {"id": time_zone, "offset": 3_600_000},
    }
    if parameters:
        common["parameters"] = {k: str(v) for k, v in parameters.items()}
    if form_inputs:
        common["formInputs"] = {
            name: {"stringInputs": {"value": [value] if isinstance(value, str) else list(value)}}
            for name, value in form_inputs.items()
        }
    return common


def homepage_event(*, locale: str = "en", time_zone: str = "Europe/Berlin") -> dict[str, Any]:
    """The homepage trigger: no message open."""
    return {"commonEventObject": _common(locale=locale, time_zone=time_zone)}


def contextual_event(
    *, thread_id: str, message_id: str | None = None, locale: str = "en"
) -> dict[str, Any]:
    """The contextual trigger: a message of ``thread_id`` is open."""
    return {
        "commonEventObject": _common(locale=locale),
        "gmail": {
            "messageId": message_id or f"msg-{thread_id}",
            "threadId": thread_id,
            "accessToken": "test-gmail-access-token",
        },
    }


def compose_event(
    *, thread_id: str | None = None, to: list[str] | None = None, locale: str = "en"
) -> dict[str, Any]:
    """The compose trigger (draftAccess METADATA: recipients; threadId when replying)."""
    gmail: dict[str, Any] = {"toRecipients": to or [], "ccRecipients": [], "bccRecipients": []}
    if thread_id:
        gmail["threadId"] = thread_id
    return {"commonEventObject": _common(locale=locale), "gmail": gmail}


def action_event(
    *,
    parameters: Mapping[str, str] | None = None,
    form_inputs: Mapping[str, str | list[str]] | None = None,
    thread_id: str | None = None,
    message_id: str | None = None,
    locale: str = "en",
) -> dict[str, Any]:
    """A card action's callback: its parameters, the form's values, the open message if any."""
    event: dict[str, Any] = {
        "commonEventObject": _common(parameters=parameters, form_inputs=form_inputs, locale=locale)
    }
    if thread_id:
        event["gmail"] = {
            "messageId": message_id or f"msg-{thread_id}",
            "threadId": thread_id,
            "accessToken": "test-gmail-access-token",
        }
    return event
