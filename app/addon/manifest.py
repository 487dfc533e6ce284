"""The deployment descriptor Google needs to run Inboxdesk as a Gmail add-on (HTTP runtime).

An HTTP add-on is registered as a *deployment* resource whose JSON plays the role of the Apps Script
manifest (https://developers.google.com/workspace/add-ons/guides/alternate-runtimes; schema:
"REST Resource: projects.deployments",
https://developers.google.com/workspace/add-ons/reference/rest/v1/projects.deployments — the
``google.cloud.gsuiteaddons.v1.Deployment`` message). Function names are the HTTPS URLs Google POSTs
the event object to. Printed by ``inboxdesk addon manifest --base-url URL``; created with
``gcloud workspace-add-ons deployments create NAME --deployment-file=FILE``.

What it declares and why:

* ``addOns.common.homepageTrigger`` → /addon/homepage (the queues; HomepageExtensionPoint).
* ``addOns.gmail.contextualTriggers`` with ``unconditional: {}`` → /addon/contextual: Gmail only
  supports unconditional contextual triggers, fired for every opened message ("Gmail manifest
  resource", https://developers.google.com/apps-script/manifest/gmail-addons).
* ``addOns.gmail.composeTrigger`` with one action → /addon/compose and ``draftAccess: METADATA``
  (recipients in the event; needs gmail.addons.current.message.metadata, same page).
* ``addOns.httpOptions.authorizationHeader: SYSTEM_ID_TOKEN``: each request carries the ID token
  of the deployment's service account that app/addon/auth.py verifies (HttpOptions lives on
  ``addOns``, not ``addOns.common``, in the Deployment message).
* ``oauthScopes``: gmail.addons.execute (run in Gmail), gmail.addons.current.message.metadata
  (contextual trigger and compose METADATA — bodies come from our own sync, so no .readonly),
  gmail.addons.current.action.compose (insert templates with updateDraftActionMarkup),
  userinfo.email (the user's verified e-mail in ``userIdToken``), script.locale with
  ``useLocaleFromApp`` (``userLocale`` and ``timeZone`` in the event, "Access user locale",
  https://developers.google.com/workspace/add-ons/how-tos/access-user-locale).
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

ADDON_NAME = "Inboxdesk"
# A Material icon on Google's static host (the kind Google's own samples use); --logo-url replaces
# it with your own HTTPS image.
DEFAULT_LOGO_URL = "https://www.gstatic.com/images/icons/material/system/1x/inbox_black_48dp.png"

HOMEPAGE_PATH = "/addon/homepage"
CONTEXTUAL_PATH = "/addon/contextual"
COMPOSE_PATH = "/addon/compose"

OAUTH_SCOPES = (
    "https://www.googleapis.com/auth/gmail.addons.execute",
    "https://www.googleapis.com/auth/gmail.addons.current.message.metadata",
    "https://www.googleapis.com/auth/gmail.addons.current.action.compose",
    "https://www.googleapis.com/auth/userinfo.email",
    "https://www.googleapis.com/auth/script.locale",
)


class InvalidBaseUrl(ValueError):
    """The base URL cannot serve a Google add-on (Google only calls public HTTPS endpoints)."""


def normalize_base_url(url: str) -> str:
    """``url`` without a trailing slash, or InvalidBaseUrl saying what is wrong with it."""
    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise InvalidBaseUrl(f"not a URL: {url!r} ({exc})") from None
    if parts.scheme != "https":
        raise InvalidBaseUrl(
            f"{url!r}: Google calls add-on endpoints over HTTPS only; give https://your-host"
        )
    host = parts.hostname
    if not host:
        raise InvalidBaseUrl(f"{url!r} has no host name")
    if parts.username or parts.password:
        raise InvalidBaseUrl(f"{url!r}: no user name or password in the URL")
    if parts.query or parts.fragment:
        raise InvalidBaseUrl(f"{url!r}: no query string or fragment in the base URL")
    if _is_private(host):
        raise InvalidBaseUrl(f"{url!r}: Google cannot reach {host}; use the public address")
    netloc = host if port is None else f"{host}:{port}"
    return f"https://{netloc}{parts.path.rstrip('/')}"


def _is_private(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return not address.is_global


def build_manifest(
    base_url: str, *, name: str = ADDON_NAME, logo_url: str = DEFAULT_LOGO_URL
) -> dict[str, Any]:
    """The deployment descriptor (a ``Deployment`` as JSON) for the server at ``base_url``."""
    base = normalize_base_url(base_url)
    if not logo_url.startswith("https://"):
        raise InvalidBaseUrl(f"the logo URL must be HTTPS: {logo_url!r}")
    return {
        "oauthScopes": list(OAUTH_SCOPES),
        "addOns": {
            "common": {
                "name": name,
                "logoUrl": logo_url,
                "useLocaleFromApp": True,
                "homepageTrigger": {"runFunction": base + HOMEPAGE_PATH, "enabled": True},
                # Cards open Gmail threads and, for details, this server's pages.
                "openLinkUrlPrefixes": ["https://mail.google.com/", base + "/"],
            },
            "gmail": {
                "contextualTriggers": [
                    {"unconditional": {}, "onTriggerFunction": base + CONTEXTUAL_PATH}
                ],
                "composeTrigger": {
                    "actions": [
                        {
                            "runFunction": base + COMPOSE_PATH,
                            "label": "Insert a reply template",
                            "logoUrl": logo_url,
                        }
                    ],
                    "draftAccess": "METADATA",
                },
            },
            "httpOptions": {"authorizationHeader": "SYSTEM_ID_TOKEN"},
        },
    }
