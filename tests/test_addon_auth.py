"""Add-on request verification (app/addon/auth.py): Google's system ID token in the Authorization
header, then the user's ID token in the event; every forgery is a 401 that changes nothing.

The probe route below depends on AddonCallerDep like the real /addon/* routes do and writes a
row when it runs, so a request that slipped through would show in the row counts.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.addon import auth, devkeys
from app.addon.auth import AddonCallerDep, CertificateCache, cache_lifetime
from app.addon.events import AddonEvent
from app.agents import service as agents
from app.agents.models import Role
from app.api.deps import SessionDep
from app.config import reset_settings
from app.customers import service as customers
from app.db.registry import metadata
from app.db.session import Database
from app.main import create_app
from tests.addon_fixtures import (  # noqa: F401 - fixtures
    FORGER_KEYS,
    KEYS,
    CertsServer,
    GoogleKeys,
    action_event,
    certs_server_fixture,
    contextual_event,
    google_keys_fixture,
    homepage_event,
    post_event,
    with_user,
)
from tests.conftest import Caller

PROBE = "/addon-probe/whoami"


def _probe_app(database: Database) -> FastAPI:
    app = create_app(database)

    @app.post(PROBE)
    def whoami(caller: AddonCallerDep, session: SessionDep) -> dict[str, Any]:
        # A write, so that a request wrongly let through would leave a row behind.
        customers.upsert_customer(session, email=f"probe-{time.time_ns()}@probe.test")
        return {
            "email": caller.email,
            "agent_id": caller.agent.id if caller.agent else None,
            "thread": caller.event.thread_id,
            "ticket": caller.event.parameter("ticket_id"),
            "tags": caller.event.form_values("tags"),
        }

    return app


@pytest.fixture
def probe(db: Database, google_keys: GoogleKeys) -> Iterator[TestClient]:
    with TestClient(_probe_app(db), raise_server_exceptions=False) as client:
        yield client


def _row_counts(db: Database) -> dict[str, int]:
    with db.session() as s:
        return {
            t.name: s.execute(select(func.count()).select_from(t)).scalar_one()
            for t in metadata.sorted_tables
        }


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _assert_refused(response: Any, code: str = "addon_unauthorized") -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == code


# --- the accepted request -------------------------------------------------------------------


def test_valid_request_resolves_the_agent(probe: TestClient, agent: Caller) -> None:
    """Valid system + user tokens: the agent behind the user token's e-mail, and the event's
    thread, parameters and form values reach the route."""
    event = action_event(
        parameters={"ticket_id": "42"}, form_inputs={"tags": ["vip", "refund"]}, thread_id="t-1"
    )
    response = post_event(probe, PROBE, event, agent_email=agent.agent.email.upper())
    assert response.status_code == 200, response.text
    assert response.json() == {
        "email": agent.agent.email,
        "agent_id": agent.agent.id,
        "thread": "t-1",
        "ticket": "42",
        "tags": ["vip", "refund"],
    }


def test_google_user_who_is_not_an_agent_gets_no_agent(probe: TestClient) -> None:
    """A verified Google user unknown to Inboxdesk passes with agent None (the cards then say
    "ask an admin")."""
    response = post_event(probe, PROBE, homepage_event(), agent_email="Stranger@Gmail.test")
    assert response.status_code == 200, response.text
    assert response.json()["agent_id"] is None
    assert response.json()["email"] == "stranger@gmail.test"


def test_deactivated_agent_is_not_an_agent(probe: TestClient, db: Database) -> None:
    """An agent switched off by an admin is no agent in the sidebar either."""
    with db.unit_of_work() as s:
        gone = agents.create_agent(s, email="gone@team.test", name="Gone", role=Role.LEAD)
        gone.is_active = False
    response = post_event(probe, PROBE, homepage_event(), agent_email="gone@team.test")
    assert response.status_code == 200
    assert response.json()["agent_id"] is None


def test_unknown_event_fields_are_tolerated(probe: TestClient, agent: Caller) -> None:
    """Google adds fields over time: unknown ones anywhere in the event are accepted."""
    event = contextual_event(thread_id="t-9")
    event["brandNewHostObject"] = {"x": 1}
    event["commonEventObject"]["somethingNew"] = [1, 2]
    event["gmail"]["labels"] = ["INBOX"]
    response = post_event(probe, PROBE, event, agent_email=agent.agent.email)
    assert response.status_code == 200, response.text
    assert response.json()["thread"] == "t-9"


def test_configured_extra_audience_and_query_string(
    db: Database, google_keys: GoogleKeys, agent: Caller
) -> None:
    """INBOXDESK_ADDON_AUDIENCES adds accepted audiences; a URL with a query string is accepted
    with or without it."""
    os.environ["INBOXDESK_ADDON_AUDIENCES"] = "https://proxy.example.test/x, https://other.test/y"
    reset_settings()
    with TestClient(_probe_app(db), raise_server_exceptions=False) as client:
        event = with_user(homepage_event(), agent.agent.email)
        for aud in ("https://other.test/y", google_keys.url(PROBE)):
            token = google_keys.system_token(PROBE, audience=aud)
            response = client.post(PROBE + "?a=1", json=event, headers=_bearer(token))
            assert response.status_code == 200, (aud, response.text)
        token = google_keys.system_token(PROBE, audience=google_keys.url(PROBE) + "?a=1")
        assert client.post(PROBE + "?a=1", json=event, headers=_bearer(token)).status_code == 200
        token = google_keys.system_token(PROBE, audience="https://proxy.example.test/z")
        _assert_refused(client.post(PROBE, json=event, headers=_bearer(token)))


def test_public_url_with_a_path_prefix(
    db: Database, google_keys: GoogleKeys, agent: Caller
) -> None:
    """Served under a prefix (a proxy, uvicorn --root-path): the audience is INBOXDESK_PUBLIC_URL
    (with the prefix) + the route's path, never the prefix twice nor without it."""
    os.environ["INBOXDESK_PUBLIC_URL"] = "https://desk.example.test/inboxdesk/"
    reset_settings()
    event = with_user(homepage_event(), agent.agent.email)
    with TestClient(
        _probe_app(db), root_path="/inboxdesk", raise_server_exceptions=False
    ) as client:
        good = google_keys.system_token(
            PROBE, audience="https://desk.example.test/inboxdesk" + PROBE
        )
        # The path as the test client sends it, and with the prefix as uvicorn --root-path does.
        for path in (PROBE, "/inboxdesk" + PROBE):
            response = client.post(path, json=event, headers=_bearer(good))
            assert response.status_code == 200, (path, response.text)
        for aud in (
            "https://desk.example.test" + PROBE,
            "https://desk.example.test/inboxdesk/inboxdesk" + PROBE,
        ):
            token = google_keys.system_token(PROBE, audience=aud)
            _assert_refused(client.post(PROBE, json=event, headers=_bearer(token)))


# --- refused requests -----------------------------------------------------------------------

NOW = int(time.time())


def _system(google: GoogleKeys, **claims: Any) -> str:
    return google.system_token(PROBE, **claims)


SYSTEM_FORGERIES: dict[str, Any] = {
    "garbage": lambda g: "not-a-jwt-at-all-0123456789abcdef",
    "three garbage segments": lambda g: "aaaaaaaaaa.bbbbbbbbbb.cccccccccc",
    "forged signature (same kid, other key)": lambda g: FORGER_KEYS.system_token(
        audience=g.url(PROBE), email=g.service_account
    ),
    "unsigned (alg none)": lambda g: _unsigned(g),
    "expired": lambda g: _system(g, iat=NOW - 7200, exp=NOW - 3600),
    "issued in the future": lambda g: _system(g, iat=NOW + 3600, exp=NOW + 7200),
    "wrong audience (another endpoint)": lambda g: _system(g, audience=g.url("/addon/homepage")),
    "audience from the Host header": lambda g: _system(g, audience="http://testserver" + PROBE),
    "wrong issuer": lambda g: _system(g, iss="https://evil.example.test"),
    "wrong service account": lambda g: _system(
        g, email="service-999@gcp-sa-gsuiteaddons.iam.gserviceaccount.com"
    ),
    "service account e-mail not verified": lambda g: _system(g, email_verified=False),
    "no e-mail": lambda g: _system(g, email=""),
    "user token in the header": lambda g: g.user_token(g.service_account),
}


def _unsigned(google: GoogleKeys) -> str:
    import base64
    import json

    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    claims = devkeys.id_token_claims(audience=google.url(PROBE), email=google.service_account)
    return f"{b64({'alg': 'none', 'kid': KEYS.kid})}.{b64(claims)}."


@pytest.mark.parametrize("case", list(SYSTEM_FORGERIES))
def test_bad_system_token_is_refused_and_changes_nothing(
    case: str, probe: TestClient, db: Database, google_keys: GoogleKeys, agent: Caller
) -> None:
    """Each forged, expired, misdirected or foreign system ID token → 401, no row written."""
    token = SYSTEM_FORGERIES[case](google_keys)
    before = _row_counts(db)
    response = post_event(
        probe, PROBE, homepage_event(), agent_email=agent.agent.email, headers=_bearer(token)
    )
    _assert_refused(response)
    assert token not in response.text
    assert _row_counts(db) == before


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": ""}, {"Authorization": "Bearer "}, {"Authorization": "Basic eDp5"}],
)
def test_missing_system_token_is_refused(
    headers: dict[str, str], probe: TestClient, db: Database, agent: Caller
) -> None:
    """No bearer token at all → 401 naming what is missing."""
    before = _row_counts(db)
    event = with_user(homepage_event(), agent.agent.email)
    response = probe.post(PROBE, json=event, headers=headers)
    _assert_refused(response)
    assert "system ID token" in response.json()["error"]["message"]
    assert _row_counts(db) == before


USER_FORGERIES: dict[str, Any] = {
    "missing": lambda g, email: None,
    "empty": lambda g, email: "",
    "garbage": lambda g, email: "garbage-user-token-0123456789",
    "wrong audience": lambda g, email: g.user_token(email, audience="other-client.apps.test"),
    "system token instead": lambda g, email: g.system_token(PROBE),
    "forged": lambda g, email: FORGER_KEYS.user_token(email=email, audience=g.client_id),
    "expired": lambda g, email: g.user_token(email, iat=NOW - 7200, exp=NOW - 3600),
    "e-mail not verified": lambda g, email: g.user_token(email, email_verified=False),
    "wrong issuer": lambda g, email: g.user_token(email, iss="accounts.evil.test"),
}


@pytest.mark.parametrize("case", list(USER_FORGERIES))
def test_bad_user_token_is_refused_and_changes_nothing(
    case: str, probe: TestClient, db: Database, google_keys: GoogleKeys, agent: Caller
) -> None:
    """A valid system token does not vouch for the user: a missing or bad userIdToken → 401."""
    event = homepage_event()
    event["authorizationEventObject"] = {
        "userIdToken": USER_FORGERIES[case](google_keys, agent.agent.email)
    }
    before = _row_counts(db)
    response = post_event(probe, PROBE, event, agent_email=agent.agent.email)
    _assert_refused(response)
    assert _row_counts(db) == before


def test_unconfigured_server_refuses_every_request(
    probe: TestClient, db: Database, agent: Caller
) -> None:
    """Without INBOXDESK_ADDON_SERVICE_ACCOUNT (prod) even a perfectly signed request is 401,
    with a message saying what to configure."""
    del os.environ["INBOXDESK_ADDON_SERVICE_ACCOUNT"]
    reset_settings()
    before = _row_counts(db)
    response = post_event(probe, PROBE, homepage_event(), agent_email=agent.agent.email)
    _assert_refused(response, "addon_not_configured")
    message = response.json()["error"]["message"]
    assert "INBOXDESK_ADDON_SERVICE_ACCOUNT" in message
    assert "INBOXDESK_OAUTH_CLIENT_ID" not in message
    os.environ["INBOXDESK_OAUTH_CLIENT_ID"] = " "
    reset_settings()
    response = post_event(probe, PROBE, homepage_event(), agent_email=agent.agent.email)
    _assert_refused(response, "addon_not_configured")
    assert "INBOXDESK_OAUTH_CLIENT_ID" in response.json()["error"]["message"]
    assert _row_counts(db) == before


def _addon_endpoints(app: FastAPI) -> list[str]:
    """The POST paths under /addon/ as the app publishes them (its OpenAPI document)."""
    return sorted(
        path.replace("{name}", "assign")
        for path, operations in app.openapi()["paths"].items()
        if path.startswith("/addon/") and "post" in operations
    )


def test_every_addon_endpoint_verifies(
    db: Database, google_keys: GoogleKeys, agent: Caller
) -> None:
    """Each real /addon/* POST route (found in the app, so a new one is covered too) refuses a
    request without a token, and one whose token was minted for another endpoint."""
    app = create_app(db)
    endpoints = _addon_endpoints(app)
    assert {"/addon/homepage", "/addon/contextual", "/addon/compose"} <= set(endpoints)
    event = with_user(action_event(parameters={"ticket_id": "1", "version": "1"}), "x@y.test")
    before = _row_counts(db)
    with TestClient(app, raise_server_exceptions=False) as client:
        for path in endpoints:
            _assert_refused(client.post(path, json=event))
            other = google_keys.system_token("/addon/elsewhere")
            _assert_refused(client.post(path, json=event, headers=_bearer(other)))
            response = post_event(client, path, homepage_event(), agent_email=agent.agent.email)
            assert response.status_code != 401, (path, response.text)
    assert _row_counts(db) == before


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", b'"text"', b'{"commonEventObject": {"parameters": [1]}}'],
)
def test_body_that_is_not_an_event_is_422(
    body: bytes, probe: TestClient, db: Database, google_keys: GoogleKeys
) -> None:
    """Once Google's signature holds, a body that is no event object is a 422, not a 500."""
    before = _row_counts(db)
    headers = {**_bearer(_system(google_keys)), "Content-Type": "application/json"}
    response = probe.post(PROBE, content=body, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_event"
    assert _row_counts(db) == before


def test_unsigned_garbage_body_is_401_not_422(probe: TestClient) -> None:
    """The body is not even parsed before the system token is verified."""
    response = probe.post(PROBE, content=b"{not json", headers={"Content-Type": "application/json"})
    _assert_refused(response)


def test_oversized_event_is_413(probe: TestClient, google_keys: GoogleKeys) -> None:
    body = b'{"x": "' + b"a" * (auth.MAX_EVENT_BYTES + 10) + b'"}'
    response = probe.post(PROBE, content=body, headers=_bearer(_system(google_keys)))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "addon_event_too_large"


# --- certificates ---------------------------------------------------------------------------


def test_certificates_are_fetched_once_then_cached(
    probe: TestClient, google_keys: GoogleKeys, agent: Caller
) -> None:
    """Five requests (ten tokens) cost one certificates fetch while max-age holds."""
    for _ in range(5):
        response = post_event(probe, PROBE, homepage_event(), agent_email=agent.agent.email)
        assert response.status_code == 200
    assert google_keys.server.hits == 1


def test_no_store_certificates_are_fetched_each_time(
    probe: TestClient, google_keys: GoogleKeys, agent: Caller
) -> None:
    """max-age=0 is honoured: nothing is reused (two tokens a request → two fetches)."""
    google_keys.server.max_age = 0
    for _ in range(3):
        assert post_event(probe, PROBE, homepage_event(), agent_email=agent.agent.email).is_success
    assert google_keys.server.hits == 6


def test_certificates_unavailable_is_503_and_changes_nothing(
    probe: TestClient, db: Database, google_keys: GoogleKeys, agent: Caller
) -> None:
    """Google's certificates endpoint failing is our outage (503), not the caller's fault."""
    google_keys.server.status = 500
    before = _row_counts(db)
    response = post_event(probe, PROBE, homepage_event(), agent_email=agent.agent.email)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "addon_certificates_unavailable"
    assert _row_counts(db) == before


def test_rotated_key_is_fetched_early(
    probe: TestClient, google_keys: GoogleKeys, agent: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Google rotates keys: a token under a kid we have not seen refetches before max-age ends,
    but at most once a minute (made-up kids cannot make us fetch on every request)."""
    clock = [1000.0]
    monkeypatch.setattr(auth, "certificate_cache", CertificateCache(clock=lambda: clock[0]))
    assert post_event(probe, PROBE, homepage_event(), agent_email=agent.agent.email).is_success
    rotated = devkeys.generate(kid="test-kid-2")
    google_keys.server.document = {**KEYS.certs_json(), **rotated.certs_json()}
    response = post_event(
        probe, PROBE, homepage_event(), agent_email=agent.agent.email, keys=rotated
    )
    _assert_refused(response)  # within the minute: no refetch
    assert google_keys.server.hits == 1
    clock[0] += auth.MIN_REFETCH_SECONDS + 1
    response = post_event(
        probe, PROBE, homepage_event(), agent_email=agent.agent.email, keys=rotated
    )
    assert response.status_code == 200, response.text
    assert google_keys.server.hits == 2


def test_cache_expires_after_max_age() -> None:
    """A cached document is served until max-age, then fetched again."""
    from app.addon.auth import _Response

    calls: list[str] = []

    def fetch(url: str, method: str = "GET", **kwargs: Any) -> _Response:
        calls.append(url)
        return _Response(200, {"Cache-Control": "public, max-age=100", "Age": "10"}, b"{}")

    now = [0.0]
    cache = CertificateCache(fetch, clock=lambda: now[0])  # type: ignore[arg-type]
    cache.get("u")
    now[0] = 89.0
    cache.get("u")
    assert len(calls) == 1
    now[0] = 91.0
    cache.get("u")
    assert len(calls) == 2


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Cache-Control": "public, max-age=19204, must-revalidate, no-transform"}, 19204.0),
        ({"cache-control": "max-age=600", "age": "100"}, 500.0),
        ({"Cache-Control": "no-store"}, 0.0),
        ({"Cache-Control": "no-cache, max-age=600"}, 0.0),
        ({}, 300.0),
        ({"Cache-Control": "max-age=abc"}, 300.0),
        ({"Cache-Control": "max-age=99999999"}, auth.MAX_CERTS_TTL_SECONDS),
    ],
)
def test_cache_lifetime(headers: dict[str, str], expected: float) -> None:
    assert cache_lifetime(headers, default=300.0) == expected


# --- logs -----------------------------------------------------------------------------------


def test_tokens_never_reach_the_logs(
    probe: TestClient, google_keys: GoogleKeys, agent: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    """Accepted and refused requests alike: no token, nor its signature, in any log record."""
    caplog.set_level(logging.DEBUG)
    tokens = [
        "abc.def",  # "Wrong number of segments in token: …" quotes it
        "not-a-jwt-token-with-some-length",
        _system(google_keys, iat=NOW - 7200, exp=NOW - 3600),
        _system(google_keys, audience="https://elsewhere.test/x"),
        FORGER_KEYS.system_token(
            audience=google_keys.url(PROBE), email=google_keys.service_account
        ),
    ]
    for token in tokens:
        response = post_event(
            probe, PROBE, homepage_event(), agent_email=agent.agent.email, headers=_bearer(token)
        )
        assert response.status_code == 401
    user_token = google_keys.user_token(agent.agent.email, audience="someone-else")
    event = homepage_event()
    event["authorizationEventObject"] = {"userIdToken": user_token}
    assert post_event(probe, PROBE, event, agent_email=agent.agent.email).status_code == 401
    good = with_user(homepage_event(), agent.agent.email)
    assert post_event(probe, PROBE, good, agent_email=agent.agent.email).status_code == 200
    assert "rejected" in caplog.text  # the refusals were logged…
    for token in [*tokens, user_token, good["authorizationEventObject"]["userIdToken"]]:
        for piece in [token, *token.split(".")]:
            if len(piece) >= 8:
                assert piece not in caplog.text  # …without the tokens


def test_event_repr_hides_credentials(google_keys: GoogleKeys) -> None:
    """A logged event object shows no token."""
    event = AddonEvent.model_validate(with_user(contextual_event(thread_id="t"), "a@b.test"))
    text = repr(event) + str(event)
    assert event.authorizationEventObject is not None
    assert event.authorizationEventObject.userIdToken
    assert event.authorizationEventObject.userIdToken not in text
    assert "test-gmail-access-token" not in text


# --- dev mode -------------------------------------------------------------------------------


def test_dev_mode_trusts_the_local_key_only(
    probe: TestClient, google_keys: GoogleKeys, agent: Caller, tmp_path: Path
) -> None:
    """INBOXDESK_ENV=dev with nothing configured: tokens of the data dir's development key with
    the dev identities pass, without any network fetch; a key from elsewhere does not."""
    for key in (
        "INBOXDESK_GOOGLE_CERTS_URL",
        "INBOXDESK_ADDON_SERVICE_ACCOUNT",
        "INBOXDESK_OAUTH_CLIENT_ID",
    ):
        del os.environ[key]
    os.environ["INBOXDESK_ENV"] = "dev"
    data_dir = os.environ.get("INBOXDESK_DATA_DIR")
    os.environ["INBOXDESK_DATA_DIR"] = str(tmp_path)
    reset_settings()
    try:
        local = devkeys.dev_keys(tmp_path)
        assert (tmp_path / devkeys.KEY_FILE_NAME).exists()
        response = post_event(
            probe, PROBE, homepage_event(), agent_email=agent.agent.email, keys=local
        )
        assert response.status_code == 200, response.text
        assert response.json()["agent_id"] == agent.agent.id
        response = post_event(probe, PROBE, homepage_event(), agent_email=agent.agent.email)
        _assert_refused(response)
        assert google_keys.server.hits == 0
    finally:
        if data_dir is None:
            os.environ.pop("INBOXDESK_DATA_DIR")
        else:
            os.environ["INBOXDESK_DATA_DIR"] = data_dir
        reset_settings()


def test_dev_key_file_is_private_and_stable(tmp_path: Path) -> None:
    """load_or_create writes the key 0600 once; loading it again gives the same key."""
    path = tmp_path / "sub" / "key.pem"
    first = devkeys.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = devkeys.load_or_create(path)
    assert again.kid == first.kid
    token = first.user_token(email="a@b.test")
    from google.auth import jwt

    claims = jwt.decode(token, certs=again.certs_json(), audience=devkeys.DEV_OAUTH_CLIENT_ID)
    assert claims["email"] == "a@b.test"
    assert again.certs_json()[again.kid].startswith("-----BEGIN CERTIFICATE-----")


# --- event helpers --------------------------------------------------------------------------


def test_event_helpers() -> None:
    """parameter / form_value / form_values read Google's nesting and default when absent."""
    event = AddonEvent.model_validate(
        action_event(parameters={"ticket_id": "7"}, form_inputs={"tags": ["a", "b"], "q": "x"})
    )
    assert event.parameter("ticket_id") == "7"
    assert event.parameter("nope") is None
    assert event.form_values("tags") == ["a", "b"]
    assert event.form_value("tags") == "a"
    assert event.form_value("q") == "x"
    assert event.form_value("nope") is None
    assert event.form_values("nope") == []
    empty = AddonEvent.model_validate({})
    assert empty.parameter("x") is None
    assert empty.form_values("x") == []
    assert empty.thread_id is None
    dated = AddonEvent.model_validate(
        {"commonEventObject": {"formInputs": {"due": {"dateInput": {"msSinceEpoch": 1}}}}}
    )
    assert dated.form_value("due") is None
