"""``/preview``: the Gmail add-on without Google, for the demo and for people building cards.

A web page plays Gmail's part: the mailbox's threads on the left (read from Gmail — in the demo
the local emulator — through the same ``GmailClient`` the sync uses), the chosen thread's
messages in the middle with a preview draft, and on the right the add-on's sidebar: the cards the
real ``/addon/*`` endpoints answer, drawn as HTML (``preview_render``). Clicks become Google's
event objects, posted by the page's script to ``/preview/api/<endpoint path>``; that proxy signs
the two ID tokens Google would send — the system token in ``Authorization`` (audience: the
endpoint's URL, e-mail: the add-on's service account) and the chosen agent's ``userIdToken`` —
with the local development key (``devkeys``), and forwards the event to the endpoint in process.
The endpoints verify those tokens exactly as they verify Google's.

Only ever in demo mode (``INBOXDESK_ENV=dev``): the router is not even mounted otherwise, and each
request must also come from a loopback address, name a loopback host (no DNS rebinding), carry
no proxy forwarding headers, and — for the proxy — be a same-origin JSON POST (no cross-site
form posts). Anything else is answered 404, exactly like a route that does not exist.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formataddr, parseaddr
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse
from jinja2 import Environment
from sqlalchemy import select
from starlette.exceptions import HTTPException

from app.addon import devkeys
from app.addon.auth import addon_config
from app.addon.preview_assets import CSS, JS
from app.addon.preview_render import render_navigations
from app.agents.models import Agent, Role
from app.api.deps import get_database
from app.config import Settings, get_settings
from app.crypto import CredentialsUnreadable
from app.mailboxes.models import Mailbox
from app.tickets.models import TicketThread
from gmail_sync.client import GmailError, RetryPolicy
from gmail_sync.mailbox_access import client_for_mailbox
from gmail_sync.parse import parse_message

# The newest messages the thread list reads (Gmail's list page size); threads shown at most.
LISTED_MESSAGES = 500
LISTED_THREADS = 100
BODY_LIMIT = 20_000
# Someone to sign in as who is not an agent: the card that says "ask an admin".
OUTSIDER = "visitor@outside.inboxdesk.test"
# The endpoints the proxy forwards to: the add-on's, nothing else of the app.
_PROXY_PATH = re.compile(r"addon/[A-Za-z0-9_\-]+(?:/[A-Za-z0-9_\-]+)*")
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
_FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip")
# Gmail reads the add-on's answer within 30 s (Google's limit for HTTP endpoints).
FORWARD_TIMEOUT_SECONDS = 30.0


def _not_found() -> HTTPException:
    return HTTPException(status_code=404)


def _loopback(host: str | None) -> bool:
    if not host:
        return False
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(request: Request) -> str | None:
    try:
        return urlsplit(f"//{request.headers.get('host', '')}").hostname
    except ValueError:
        return None


def local_dev_only(request: Request) -> None:
    """404 unless demo mode, a loopback client, a loopback Host and no proxy in between."""
    settings = get_settings()
    client = request.client.host if request.client else None
    if (
        settings.env != "dev"
        or not _loopback(client)
        or not _loopback(_host_name(request))
        or any(name in request.headers for name in _FORWARDING_HEADERS)
    ):
        raise _not_found()


router = APIRouter(
    prefix="/preview", include_in_schema=False, dependencies=[Depends(local_dev_only)]
)


# --- the signing side ------------------------------------------------------------------------


def dev_keys(settings: Settings) -> devkeys.DevKeys:
    """The key the add-on endpoints trust in dev mode (``auth.certificate_source``)."""
    return devkeys.dev_keys(settings.data_dir)


@router.get("/certs")
def certs() -> JSONResponse:
    """The development key's certificate, as Google serves its own at oauth2/v1/certs."""
    keys = dev_keys(get_settings())
    return JSONResponse(keys.certs_json(), headers={"Cache-Control": "public, max-age=300"})


@router.post("/api/{path:path}")
async def proxy(path: str, request: Request) -> JSONResponse:
    """Forward the page's event to the add-on endpoint ``/<path>`` with the tokens Google would
    add, and return the endpoint's answer with its cards drawn as HTML."""
    if not _PROXY_PATH.fullmatch(path):
        raise _not_found()
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    origin = request.headers.get("origin")
    if media_type != "application/json" or (
        origin and urlsplit(origin).netloc != request.url.netloc
    ):
        # A JSON POST cannot come from another site's form; a fetch from another origin says so.
        raise _not_found()
    try:
        payload = json.loads(await request.body())
    except ValueError:
        payload = None
    if (
        not isinstance(payload, dict)
        or not isinstance(payload.get("agent"), str)
        or not isinstance(payload.get("event"), dict)
    ):
        return JSONResponse(
            {"error": {"code": "bad_request", "message": 'send {"agent": email, "event": {...}}'}},
            status_code=400,
        )
    settings = get_settings()
    config = addon_config(settings)  # dev mode: devkeys' service account and client id if unset
    keys = dev_keys(settings)
    # Google's audience for the system token: the URL it POSTs to (auth.endpoint_audiences).
    endpoint_url = f"{settings.public_url.rstrip('/')}/{path}"
    system_token = keys.system_token(audience=endpoint_url, email=config.service_account)
    user_token = keys.user_token(email=payload["agent"], audience=config.client_id)
    event: dict[str, Any] = payload["event"]
    authorization = event.get("authorizationEventObject")
    if not isinstance(authorization, dict):
        authorization = event["authorizationEventObject"] = {}
    authorization["userIdToken"] = user_token

    public = urlsplit(settings.public_url)
    transport = httpx.ASGITransport(
        app=request.app, raise_app_exceptions=False, client=("127.0.0.1", 0)
    )
    async with httpx.AsyncClient(
        transport=transport,
        base_url=f"{public.scheme}://{public.netloc}",
        timeout=FORWARD_TIMEOUT_SECONDS,
    ) as client:
        response = await client.post(
            f"{public.path.rstrip('/')}/{path}",
            json=event,
            headers={"Authorization": f"Bearer {system_token}"},
        )
    try:
        body: Any = response.json()
    except ValueError:
        body = {"text": response.text}
    rendered = render_navigations(body) if response.is_success and isinstance(body, dict) else []
    authorization["userIdToken"] = "(signed by the preview)"
    return JSONResponse(
        {
            "status": response.status_code,
            "body": body,
            "rendered": rendered,
            "sent": {"path": f"/{path}", "event": event},
            "timing": response.headers.get("server-timing"),
        },
        headers={"Cache-Control": "no-store"},
    )


# --- Gmail's side: threads and messages --------------------------------------------------------


@dataclass
class ThreadRow:
    id: str
    subject: str
    sender: str
    snippet: str
    date: str
    count: int
    unread: bool
    labels: list[str]


@dataclass
class MessageView:
    id: str
    sender: str
    to: str
    date: str
    text: str


@dataclass
class ThreadView:
    id: str
    subject: str
    reply_to: str | None
    messages: list[MessageView] = field(default_factory=list)

    @property
    def last_message_id(self) -> str | None:
        return self.messages[-1].id if self.messages else None


def _headers(message: dict[str, Any]) -> dict[str, str]:
    return {
        str(h.get("name", "")).lower(): str(h.get("value", ""))
        for h in (message.get("payload") or {}).get("headers", [])
    }


def _when(message: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(message["internalDate"]) / 1000, tz=UTC)
    except (KeyError, TypeError, ValueError):
        return None


def _short_date(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%d %b %H:%M") if value else ""


def _unb64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def _display_name(address: str) -> str:
    name, email = parseaddr(address)
    return name or email or address


def read_threads(mailbox: Mailbox, settings: Settings) -> tuple[list[ThreadRow], str | None]:
    """The mailbox's newest threads as Gmail lists them, or an error to show instead."""
    try:
        with client_for_mailbox(mailbox, settings, retry=RetryPolicy(max_attempts=2)) as client:
            pairs = client.list_message_ids(max_results=LISTED_MESSAGES)
            order: dict[str, list[str]] = {}
            for message_id, thread_id in pairs:
                if thread_id in order or len(order) < LISTED_THREADS:
                    order.setdefault(thread_id, []).append(message_id)
            ids = [m for members in order.values() for m in members]
            messages = client.get_messages(ids, format="metadata") if ids else {}
            label_names = {
                label["id"]: label["name"]
                for label in client.list_labels()
                if label.get("type") == "user"
            }
    except (GmailError, CredentialsUnreadable) as exc:
        return [], f"Gmail could not be read for {mailbox.email}: {exc.message}"
    rows = []
    for thread_id, member_ids in order.items():
        members = [messages[m] for m in member_ids if messages.get(m)]
        if not members:
            continue
        members.sort(key=lambda m: _when(m) or datetime.min.replace(tzinfo=UTC))
        first, last = members[0], members[-1]
        labels = sorted(
            {label_names[i] for m in members for i in m.get("labelIds", []) if i in label_names}
        )
        rows.append(
            ThreadRow(
                id=thread_id,
                subject=_headers(first).get("subject") or "(no subject)",
                sender=_display_name(_headers(first).get("from", "")),
                snippet=str(last.get("snippet") or ""),
                date=_short_date(_when(last)),
                count=len(members),
                unread=any("UNREAD" in m.get("labelIds", []) for m in members),
                labels=labels,
            )
        )
    return rows, None


def read_thread(
    mailbox: Mailbox, settings: Settings, thread_id: str
) -> tuple[ThreadView | None, str | None]:
    """The thread's messages, oldest first, parsed as the sync parses them."""
    try:
        with client_for_mailbox(mailbox, settings, retry=RetryPolicy(max_attempts=2)) as client:
            listed = client.list_message_ids(max_results=LISTED_MESSAGES)
            ids = [message_id for message_id, owner in listed if owner == thread_id]
            raw_messages = client.get_messages(ids, format="raw") if ids else {}
    except (GmailError, CredentialsUnreadable) as exc:
        return None, f"Gmail could not be read for {mailbox.email}: {exc.message}"
    found = [m for m in raw_messages.values() if m]
    if not found:
        return None, f"no thread {thread_id} in {mailbox.email}"
    found.sort(key=lambda m: _when(m) or datetime.min.replace(tzinfo=UTC))
    view: ThreadView | None = None
    for message in found:
        parsed = parse_message(_unb64(str(message.get("raw", ""))))
        sender = formataddr((parsed.from_name or "", parsed.from_address or ""))
        if view is None:
            view = ThreadView(id=thread_id, subject=parsed.subject or "(no subject)", reply_to=None)
        if parsed.from_address and parsed.from_address.lower() != mailbox.email.lower():
            view.reply_to = parsed.from_address
        text = parsed.text or ""
        if len(text) > BODY_LIMIT:
            text = text[:BODY_LIMIT] + "\n…"
        view.messages.append(
            MessageView(
                id=str(message["id"]),
                sender=sender,
                to=", ".join(parsed.to),
                date=_short_date(parsed.date or _when(message)),
                text=text,
            )
        )
    return view, None


# --- the page ---------------------------------------------------------------------------------


@dataclass
class AgentChoice:
    email: str
    label: str


def _agents(agents: list[Agent]) -> list[AgentChoice]:
    rank = {Role.ADMIN: 1, Role.LEAD: 0, Role.AGENT: 2}
    ordered = sorted(agents, key=lambda a: (rank.get(a.role, 3), a.name.lower()))
    choices = [AgentChoice(a.email, f"{a.name} ({a.role.value}) — {a.email}") for a in ordered]
    choices.append(AgentChoice(OUTSIDER, f"{OUTSIDER} (not an agent)"))
    return choices


_env = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
_PAGE = _env.from_string(
    """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Inboxdesk · Gmail add-on preview</title>
<link rel="icon" href="data:,">
<style>{{ css|safe }}</style>
</head>
<body>
<header class="topbar">
  <span class="brand">Inboxdesk · Gmail add-on preview</span>
  {% if mailboxes|length > 1 %}
  <label>Mailbox <select id="mailbox">
    {% for box in mailboxes %}
    <option value="{{ box.id }}"{% if mailbox and box.id == mailbox.id %} selected{% endif %}>
      {{- box.email }}</option>
    {% endfor %}
  </select></label>
  {% endif %}
  <label>Signed in to Gmail as <select id="agent">
    {% for choice in agents %}
    <option value="{{ choice.email }}"{% if choice.email == agent %} selected{% endif %}>
      {{- choice.label }}</option>
    {% endfor %}
  </select></label>
  <a href="{{ inbox_url }}" data-keep-agent>Inbox</a>
</header>
<main class="layout">
  <nav class="threads" aria-label="Threads">
    {% if not mailbox %}
    <p class="notice">No mailbox is connected yet (<code>inboxdesk mailbox add</code>).</p>
    {% elif threads_error %}
    <p class="notice">{{ threads_error }}</p>
    {% elif not threads %}
    <p class="notice">No mail in {{ mailbox.email }}.</p>
    {% endif %}
    {% for t in threads %}
    <a class="thread-row{% if thread and t.id == thread.id %} selected{% endif %}
      {%- if t.unread %} unread{% endif %}" href="{{ thread_urls[t.id] }}"
      data-thread-id="{{ t.id }}" data-keep-agent>
      <span class="line"><span class="sender">{{ t.sender }}</span>
        {%- if t.count > 1 %}<span class="count">{{ t.count }}</span>{% endif -%}
        <span class="date">{{ t.date }}</span></span>
      <span class="subject">{{ t.subject }}</span>
      <span class="snippet">{{ t.snippet }}</span>
      {% if t.labels %}<span class="labels">
        {%- for l in t.labels %}<span class="label">{{ l }}</span>{% endfor -%}
      </span>{% endif %}
    </a>
    {% endfor %}
  </nav>
  <section class="reading" id="reading">
    {% if thread %}
    <h1 class="thread-subject">{{ thread.subject }}</h1>
    {% for m in thread.messages %}
    <article class="message" data-message-id="{{ m.id }}">
      <div class="meta"><b>{{ m.sender }}</b> · to {{ m.to }} · {{ m.date }} UTC</div>
      <div class="body">{{ m.text }}</div>
    </article>
    {% endfor %}
    <div class="reply-bar"><button type="button" id="reply" class="btn">Reply</button></div>
    <div class="draft" id="draft" hidden>
      <div class="row">To <b>{{ thread.reply_to or "" }}</b></div>
      <div class="row">Subject <input id="draft-subject" value="Re: {{ thread.subject }}"></div>
      <textarea id="draft-body" aria-label="Draft"
        placeholder="Write your reply, or insert a template from the sidebar"></textarea>
      <div class="row"><button type="button" id="discard" class="btn">Discard</button>
        <span class="hint">A preview draft: nothing is sent. HTML inserts are shown as text.
        </span></div>
    </div>
    {% elif thread_error %}
    <p class="empty">{{ thread_error }}</p>
    {% else %}
    <p class="empty">Open a thread on the left: the sidebar then shows its ticket (the
      contextual card). With none open it shows the homepage.</p>
    {% endif %}
  </section>
  <aside class="sidebar" aria-label="Add-on sidebar">
    <div class="sidebar-bar">
      <button type="button" id="back" class="icon-btn" title="Back" hidden>←</button>
      <span class="title">Inboxdesk</span>
      <span class="trigger" id="trigger-name"></span>
      <button type="button" id="reload" class="icon-btn" title="Run the trigger again">⟳</button>
    </div>
    <div id="card-host" aria-live="polite"></div>
    <details id="debug"><summary>Event sent and answer received (JSON)</summary>
      <pre id="debug-sent"></pre><pre id="debug-received"></pre></details>
  </aside>
</main>
<div id="toast" role="status" hidden></div>
<script type="application/json" id="preview-state">{{ state|tojson }}</script>
<script nonce="{{ nonce }}">{{ js|safe }}</script>
</body>
</html>
"""
)


def _page_url(**params: Any) -> str:
    kept = {k: v for k, v in params.items() if v not in (None, "")}
    return "/preview" + (f"?{urlencode(kept)}" if kept else "")


@router.get("", response_class=HTMLResponse)
def page(
    request: Request,
    mailbox: int | None = None,
    thread: str | None = None,
    agent: str | None = None,
) -> HTMLResponse:
    """The whole preview: thread list, thread, sidebar (filled in by the script)."""
    settings = get_settings()
    with get_database(request).session() as session:
        active = list(session.scalars(select(Agent).where(Agent.is_active.is_(True))))
        boxes = list(session.scalars(select(Mailbox).order_by(Mailbox.id)))
        thread_mailbox = None
        if thread and mailbox is None:
            thread_mailbox = session.scalar(
                select(TicketThread.mailbox_id).where(TicketThread.gmail_thread_id == thread)
            )
        session.expunge_all()
    choices = _agents(active)
    emails = {c.email for c in choices}
    chosen_agent = agent if agent in emails else choices[0].email
    wanted = mailbox if mailbox is not None else thread_mailbox
    current = next((b for b in boxes if b.id == wanted), boxes[0] if boxes else None)

    threads: list[ThreadRow] = []
    threads_error = thread_error = None
    view = None
    if current is not None:
        threads, threads_error = read_threads(current, settings)
        if thread:
            view, thread_error = read_thread(current, settings, thread)
    mailbox_id = current.id if current else None
    nonce = secrets.token_urlsafe(16)
    state = {
        "agent": chosen_agent,
        "mailbox": mailbox_id,
        "thread": None
        if view is None
        else {"id": view.id, "messageId": view.last_message_id, "replyTo": view.reply_to},
    }
    html = _PAGE.render(
        nonce=nonce,
        css=CSS,
        js=JS,
        state=state,
        agents=choices,
        agent=chosen_agent,
        mailboxes=boxes,
        mailbox=current,
        threads=threads,
        threads_error=threads_error,
        thread=view,
        thread_error=thread_error,
        inbox_url=_page_url(mailbox=mailbox_id, agent=chosen_agent),
        thread_urls={
            t.id: _page_url(mailbox=mailbox_id, thread=t.id, agent=chosen_agent) for t in threads
        },
    )
    return HTMLResponse(
        html,
        headers={
            "Content-Security-Policy": (
                f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; "
                "img-src 'self' data:; connect-src 'self'; form-action 'none'; "
                "base-uri 'none'; frame-ancestors 'none'"
            ),
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        },
    )
