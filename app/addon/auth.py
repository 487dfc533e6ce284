"""Who is calling the add-on endpoints: Google, on behalf of which agent.

Anyone on the internet can POST to ``/addon/*``, so every request proves two things:

1. **It comes from our deployment.** With ``addOns.common.httpOptions.authorizationHeader:
   SYSTEM_ID_TOKEN`` (the default, "Send an ID token for the project-specific Google Workspace
   add-ons system service account",
   https://developers.google.com/workspace/add-ons/reference/rest/v1/projects.deployments —
   HttpAuthorizationHeader) Google sends ``Authorization: Bearer <ID token>``: an RS256 JWT signed
   with Google's keys (https://www.googleapis.com/oauth2/v1/certs), ``iss`` accounts.google.com,
   ``aud`` = the endpoint URL the request was sent to, ``email`` = the deployment's service account
   (``service-<project number>@gcp-sa-gsuiteaddons.iam.gserviceaccount.com``; `gcloud
   workspace-add-ons get-authorization` prints it as serviceAccountEmail, see
   https://developers.google.com/workspace/add-ons/reference/rest/v1/projects/getAuthorization).
   The same scheme as "Verify requests from Google Chat"
   (https://developers.google.com/workspace/chat/verify-requests-from-chat) and Google's ID-token
   rules ("Verify the Google ID token on your server side",
   https://developers.google.com/identity/gsi/web/guides/verify-google-id-token).
2. **Who the Gmail user is.** ``authorizationEventObject.userIdToken`` (event object reference,
   https://developers.google.com/workspace/add-ons/reference/event-object) is the user's Google ID
   token, ``aud`` = the add-on's OAuth client id (``oauthClientId`` of the same getAuthorization
   answer); its verified ``email`` is looked up among the active agents.

Both go through ``google.oauth2.id_token.verify_token`` (signature against the certificates, exp
and iat with a small clock skew, audience); issuer and e-mail are checked here. Any failure is a
401 before anything is read or written; tokens never reach a log or an error message.

Audience decision: Google sets ``aud`` to the URL it POSTed to, which is the URL our deployment
descriptor (manifest.py) or our card actions named, both built from ``INBOXDESK_PUBLIC_URL``. So the
accepted audiences are ``public_url + request path`` (with and without the query string) plus the
explicitly configured ``INBOXDESK_ADDON_AUDIENCES`` — never the Host header, which the caller
controls. A token minted for /addon/homepage is therefore refused at /addon/action/assign.

Certificates are fetched from ``INBOXDESK_GOOGLE_CERTS_URL`` and kept in this process for the
``Cache-Control: max-age`` Google sends (hours); an unknown ``kid`` (Google rotated its keys)
triggers one early refetch, at most once a minute. google-auth's own fetch caches nothing.

Dev mode (``INBOXDESK_ENV=dev``): an unset service account / client id default to devkeys'
DEV_SERVICE_ACCOUNT / DEV_OAUTH_CLIENT_ID, and while the certificates URL is Google's default the
local development key (``<data dir>/addon-dev-key.pem``) is trusted instead of Google's — the demo
and /preview work offline. Production (the default) has no fallback: unset settings → 401.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import Depends, Request
from google.auth import exceptions as google_exceptions
from google.auth import transport
from google.oauth2 import id_token
from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.addon import devkeys
from app.addon.events import AddonEvent
from app.agents.models import Agent
from app.agents.service import find_agent
from app.api.deps import SessionDep
from app.config import GOOGLE_CERTS_URL, Settings, get_settings
from app.errors import AppError, Unauthorized, ValidationFailed

log = logging.getLogger(__name__)

# Google's ID tokens carry either form ("Verify the Google ID token on your server side").
GOOGLE_ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})
# Tolerated clock difference between Google and this server for exp / iat.
CLOCK_SKEW_SECONDS = 10
# Without a max-age from the server, certificates are kept this long.
DEFAULT_CERTS_TTL_SECONDS = 300.0
# Never trust a cached answer longer than this, whatever the header says.
MAX_CERTS_TTL_SECONDS = 24 * 3600.0
# An unknown kid may refetch early, but not more often than this (tokens with made-up kids
# must not turn into one outgoing request each).
MIN_REFETCH_SECONDS = 60.0
FETCH_TIMEOUT_SECONDS = 10.0
# The body is read only after the system token verified; still, an event is small.
MAX_EVENT_BYTES = 1_000_000
DEV_CERTS_URL = "devkeys:"


class AddonUnauthorized(Unauthorized):
    code = "addon_unauthorized"


class AddonNotConfigured(AddonUnauthorized):
    code = "addon_not_configured"


class CertificatesUnavailable(AppError):
    """Google's certificates could not be fetched: our problem, not the caller's."""

    status_code = 503
    code = "addon_certificates_unavailable"


class EventTooLarge(AppError):
    status_code = 413
    code = "addon_event_too_large"


@dataclass(frozen=True)
class AddonCaller:
    """A verified add-on request. ``agent`` is None for a verified Google user who is not an
    active agent: the cards then tell them to ask an admin."""

    agent: Agent | None
    email: str
    event: AddonEvent


@dataclass(frozen=True)
class AddonConfig:
    service_account: str
    client_id: str
    certs_url: str
    audiences: tuple[str, ...]
    dev: bool


def addon_config(settings: Settings) -> AddonConfig:
    """The effective verification settings, dev defaults applied; AddonNotConfigured if unset."""
    dev = settings.env == "dev"
    service_account = settings.addon_service_account or (
        devkeys.DEV_SERVICE_ACCOUNT if dev else None
    )
    client_id = settings.oauth_client_id or (devkeys.DEV_OAUTH_CLIENT_ID if dev else None)
    missing = [
        name
        for name, value in (
            ("INBOXDESK_ADDON_SERVICE_ACCOUNT", service_account),
            ("INBOXDESK_OAUTH_CLIENT_ID", client_id),
        )
        if not value
    ]
    if missing or service_account is None or client_id is None:
        raise AddonNotConfigured(
            "the Gmail add-on is not configured on this server: set "
            + " and ".join(missing)
            + " (`gcloud workspace-add-ons get-authorization` prints serviceAccountEmail and "
            "oauthClientId)"
        )
    certs_url = settings.google_certs_url
    if dev and certs_url == GOOGLE_CERTS_URL:
        certs_url = DEV_CERTS_URL
    return AddonConfig(
        service_account=service_account.lower(),
        client_id=client_id,
        certs_url=certs_url,
        audiences=tuple(settings.addon_audiences),
        dev=dev,
    )


def endpoint_audiences(request: Request, settings: Settings) -> list[str]:
    """The ``aud`` values a system token for this request may carry (see the module docstring)."""
    base = settings.public_url.rstrip("/")
    # The route's own path: behind a proxy mounting us under a prefix (uvicorn --root-path), the
    # prefix belongs in INBOXDESK_PUBLIC_URL, so it is taken off the scope's path if present.
    path = request.scope["path"]
    root = request.scope.get("root_path") or ""
    if root and path.startswith(root + "/"):
        path = path[len(root) :]
    accepted = [base + path]
    if request.url.query:
        accepted.append(f"{base}{path}?{request.url.query}")
    accepted.extend(a for a in settings.addon_audiences if a not in accepted)
    return accepted


# --- certificates ---------------------------------------------------------------------------


@dataclass
class _Cached:
    response: _Response
    expires_at: float
    fetched_at: float


class _Response(transport.Response):
    def __init__(self, status: int, headers: Mapping[str, str], data: bytes) -> None:
        self._status = status
        self._headers = dict(headers)
        self._data = data

    @property
    def status(self) -> int:
        return self._status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._headers

    @property
    def data(self) -> bytes:
        return self._data


class UrllibRequest(transport.Request):
    """google-auth's transport interface over the standard library: fetching a JSON document
    needs neither ``requests`` nor ``urllib3`` (google.auth.transport.requests would)."""

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> _Response:
        if not url.startswith(("https://", "http://")):
            raise google_exceptions.TransportError("certificates URL must be http(s)")
        req = urllib.request.Request(  # noqa: S310 - scheme checked above
            url, data=body, headers=dict(headers or {}), method=method
        )
        try:
            with urllib.request.urlopen(  # noqa: S310
                req, timeout=timeout or FETCH_TIMEOUT_SECONDS
            ) as answer:
                return _Response(answer.status, dict(answer.headers.items()), answer.read())
        except urllib.error.HTTPError as exc:
            return _Response(exc.code, dict(exc.headers.items()), exc.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise google_exceptions.TransportError(f"cannot fetch {url}: {exc}") from exc


def cache_lifetime(headers: Mapping[str, str], *, default: float) -> float:
    """Seconds a response may be reused: Cache-Control max-age minus Age (RFC 9111 §4.2.1);
    no-store / no-cache → 0; no max-age → ``default``."""
    lowered = {k.lower(): v for k, v in headers.items()}
    directives: dict[str, str | None] = {}
    for part in lowered.get("cache-control", "").split(","):
        name, _, value = part.strip().partition("=")
        if name:
            directives[name.lower()] = value.strip().strip('"') or None
    if "no-store" in directives or "no-cache" in directives:
        return 0.0
    max_age = directives.get("s-maxage") or directives.get("max-age")
    try:
        lifetime = float(max_age) if max_age is not None else default
    except ValueError:
        lifetime = default
    with contextlib.suppress(ValueError):
        lifetime -= float(lowered.get("age", "0"))
    return max(0.0, min(lifetime, MAX_CERTS_TTL_SECONDS))


class CertificateCache:
    """Certificate documents by URL, kept for their Cache-Control lifetime (thread-safe).

    Used as the ``request`` of ``id_token.verify_token``: it answers GETs of a certificates URL
    from memory while fresh, else fetches through ``fetch``. One lock: concurrent requests at
    expiry cause one fetch, not a stampede.
    """

    def __init__(
        self,
        fetch: transport.Request | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch or UrllibRequest()
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, _Cached] = {}
        self.fetches = 0

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def get(self, url: str) -> _Response:
        with self._lock:
            now = self._clock()
            entry = self._entries.get(url)
            if entry is not None and now < entry.expires_at:
                return entry.response
            return self._refresh(url, now)

    def refresh_if_unknown(self, url: str, kid: str | None) -> None:
        """Fetch again before expiry when a token names a key we do not have (rotation)."""
        with self._lock:
            entry = self._entries.get(url)
            now = self._clock()
            if entry is None or kid is None or now - entry.fetched_at < MIN_REFETCH_SECONDS:
                return
            try:
                known = json.loads(entry.response.data)
            except ValueError:
                known = {}
            if isinstance(known, dict) and kid not in known:
                self._refresh(url, now)

    def _refresh(self, url: str, now: float) -> _Response:
        self.fetches += 1
        response = self._fetch(url, method="GET", timeout=FETCH_TIMEOUT_SECONDS)
        if response.status == HTTPStatus.OK:
            lifetime = cache_lifetime(response.headers, default=DEFAULT_CERTS_TTL_SECONDS)
            self._entries[url] = _Cached(response, now + lifetime, now)
        return response

    def request(self) -> transport.Request:
        """A transport for verify_token that serves the certificates from this cache."""
        return _CachedRequest(self)


class _CachedRequest(transport.Request):
    def __init__(self, cache: CertificateCache) -> None:
        self._cache = cache

    def __call__(self, url: str, method: str = "GET", **kwargs: Any) -> _Response:
        return self._cache.get(url)


class _DevCertsRequest(transport.Request):
    """Dev mode: the local key's certificate, no network."""

    def __init__(self, keys: devkeys.DevKeys) -> None:
        self._data = json.dumps(keys.certs_json()).encode()

    def __call__(self, url: str, method: str = "GET", **kwargs: Any) -> _Response:
        return _Response(HTTPStatus.OK, {"content-type": "application/json"}, self._data)


certificate_cache = CertificateCache()


def certificate_source(config: AddonConfig, settings: Settings) -> transport.Request:
    if config.certs_url == DEV_CERTS_URL:
        return _DevCertsRequest(devkeys.dev_keys(settings.data_dir))
    return certificate_cache.request()


# --- token verification ---------------------------------------------------------------------


def _kid(token: str) -> str | None:
    header = token.split(".", 1)[0]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except ValueError:
        return None
    kid = decoded.get("kid") if isinstance(decoded, dict) else None
    return kid if isinstance(kid, str) else None


def _redacted(message: str, token: str) -> str:
    """google-auth's messages may quote the token or pieces of it (``Wrong number of segments
    in token: b'…'``): cut every piece out before the message goes anywhere."""
    for piece in sorted([token, *token.split(".")], key=len, reverse=True):
        if len(piece) >= 8:
            message = message.replace(piece, "<token>")
    return message


def verify_google_id_token(
    token: str,
    *,
    audiences: list[str],
    certs_url: str,
    request: transport.Request,
    what: str,
) -> Mapping[str, Any]:
    """Signature, exp/iat, audience (google-auth), issuer and a verified e-mail; else 401."""
    try:
        if certs_url != DEV_CERTS_URL:
            certificate_cache.refresh_if_unknown(certs_url, _kid(token))
        claims = id_token.verify_token(
            token,
            request,
            audience=audiences,
            certs_url=certs_url,
            clock_skew_in_seconds=CLOCK_SKEW_SECONDS,
        )
    except google_exceptions.TransportError as exc:
        log.error("add-on: cannot fetch the ID-token certificates from %s: %s", certs_url, exc)
        raise CertificatesUnavailable(
            "cannot verify the request now: Google's certificates are unavailable"
        ) from None
    except (ValueError, TypeError, google_exceptions.GoogleAuthError) as exc:
        reason = _redacted(str(exc), token)
        log.warning("add-on: %s rejected: %s", what, reason)
        raise AddonUnauthorized(f"invalid {what}: {_public_reason(reason)}") from None
    if claims.get("iss") not in GOOGLE_ISSUERS:
        log.warning("add-on: %s rejected: issuer %r", what, claims.get("iss"))
        raise AddonUnauthorized(f"invalid {what}: not issued by Google")
    email = claims.get("email")
    if not isinstance(email, str) or not email:
        raise AddonUnauthorized(f"invalid {what}: no e-mail claim")
    if claims.get("email_verified") not in (True, "true"):
        log.warning("add-on: %s rejected: e-mail not verified", what)
        raise AddonUnauthorized(f"invalid {what}: e-mail not verified")
    return claims


def _public_reason(reason: str) -> str:
    """A short, fixed reason for the caller (no claim values echoed back)."""
    lowered = reason.lower()
    for needle, text in (
        ("expired", "expired"),
        ("too early", "not yet valid"),
        ("audience", "wrong audience"),
        ("signature", "bad signature"),
        ("key id", "unknown signing key"),
    ):
        if needle in lowered:
            return text
    return "malformed token"


def _bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AddonUnauthorized(
            "missing system ID token: Google sends `Authorization: Bearer <ID token>`"
        )
    return token


@dataclass(frozen=True)
class VerifiedSystemRequest:
    config: AddonConfig
    certs: transport.Request


def verify_system_request(request: Request) -> VerifiedSystemRequest:
    """Step 1, headers only: the request was sent by our add-on deployment."""
    settings = get_settings()
    config = addon_config(settings)
    token = _bearer_token(request)
    certs = certificate_source(config, settings)
    claims = verify_google_id_token(
        token,
        audiences=endpoint_audiences(request, settings),
        certs_url=config.certs_url,
        request=certs,
        what="system ID token",
    )
    if str(claims["email"]).lower() != config.service_account:
        log.warning("add-on: system ID token of another service account rejected")
        raise AddonUnauthorized("invalid system ID token: not this add-on's service account")
    return VerifiedSystemRequest(config=config, certs=certs)


async def _event_body(
    request: Request,
    system: Annotated[VerifiedSystemRequest, Depends(verify_system_request)],
) -> bytes:
    """Step 2: the body, read only once Google's signature is checked."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_EVENT_BYTES:
        raise EventTooLarge(f"an add-on event is at most {MAX_EVENT_BYTES} bytes")
    body = await request.body()
    if len(body) > MAX_EVENT_BYTES:
        raise EventTooLarge(f"an add-on event is at most {MAX_EVENT_BYTES} bytes")
    return body


def parse_event(body: bytes) -> AddonEvent:
    try:
        return AddonEvent.model_validate_json(body or b"{}")
    except ValidationError as exc:
        errors = [
            {"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]}
            for e in exc.errors(include_input=False, include_url=False)
        ][:10]
        raise ValidationFailed(
            "the body is not an add-on event object",
            code="invalid_event",
            details={"errors": errors},
        ) from None


def active_agent(session: Session, email: str) -> Agent | None:
    agent = find_agent(session, email)
    return agent if agent is not None and agent.is_active else None


def addon_caller(
    session: SessionDep,
    system: Annotated[VerifiedSystemRequest, Depends(verify_system_request)],
    body: Annotated[bytes, Depends(_event_body)],
) -> AddonCaller:
    """Step 3: the event and its user. FastAPI solves the parameters in order, so the system
    token is verified (headers only) before the body is read or the user token looked at."""
    event = parse_event(body)
    auth = event.authorizationEventObject
    user_token = auth.userIdToken if auth else None
    if not user_token:
        raise AddonUnauthorized(
            "missing authorizationEventObject.userIdToken: the deployment needs the "
            "userinfo.email scope"
        )
    claims = verify_google_id_token(
        user_token,
        audiences=[system.config.client_id],
        certs_url=system.config.certs_url,
        request=system.certs,
        what="user ID token",
    )
    email = str(claims["email"]).strip().lower()
    return AddonCaller(agent=active_agent(session, email), email=email, event=event)


AddonCallerDep = Annotated[AddonCaller, Depends(addon_caller)]
