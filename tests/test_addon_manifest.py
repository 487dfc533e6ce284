"""The add-on's deployment descriptor (`inboxdesk addon manifest --base-url URL`): a valid
google.cloud.gsuiteaddons.v1.Deployment with exactly our triggers, scopes and auth header."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from google.cloud.gsuiteaddons_v1.types import Deployment
from google.protobuf.json_format import MessageToDict, ParseDict
from typer.testing import CliRunner

from app.addon.manifest import DEFAULT_LOGO_URL, InvalidBaseUrl, build_manifest
from app.cli import cli
from app.config import reset_settings

BASE = "https://desk.example.com"

SCOPES = [
    "https://www.googleapis.com/auth/gmail.addons.execute",
    "https://www.googleapis.com/auth/gmail.addons.current.message.metadata",
    "https://www.googleapis.com/auth/gmail.addons.current.action.compose",
    "https://www.googleapis.com/auth/userinfo.email",
    "https://www.googleapis.com/auth/script.locale",
]


def _as_deployment(manifest: dict[str, Any]) -> Any:
    """Parse as Google's Deployment message: an unknown or misplaced field fails here."""
    return ParseDict(manifest, Deployment.pb()(), ignore_unknown_fields=False)


def test_descriptor_is_a_valid_deployment_with_our_triggers() -> None:
    """Homepage, one unconditional contextual trigger, the compose action with METADATA draft
    access, SYSTEM_ID_TOKEN — each pointing at this server's /addon/* endpoint."""
    manifest = build_manifest(BASE)
    deployment = _as_deployment(manifest)
    add_ons = deployment.add_ons
    assert add_ons.common.name == "Inboxdesk"
    assert add_ons.common.logo_url == DEFAULT_LOGO_URL
    assert add_ons.common.use_locale_from_app is True
    assert add_ons.common.homepage_trigger.run_function == f"{BASE}/addon/homepage"
    assert add_ons.common.homepage_trigger.enabled.value is True
    [contextual] = add_ons.gmail.contextual_triggers
    assert contextual.HasField("unconditional")
    assert contextual.on_trigger_function == f"{BASE}/addon/contextual"
    [compose] = add_ons.gmail.compose_trigger.actions
    assert compose.run_function == f"{BASE}/addon/compose"
    assert compose.label
    assert add_ons.gmail.compose_trigger.draft_access == 2  # METADATA
    assert add_ons.http_options.authorization_header == 1  # SYSTEM_ID_TOKEN
    assert list(deployment.oauth_scopes) == SCOPES
    # Nothing was lost in the round trip through the protobuf message.
    assert MessageToDict(deployment) == manifest


def test_metadata_draft_access_has_its_scope() -> None:
    """draftAccess METADATA needs gmail.addons.current.message.metadata (Gmail manifest docs);
    compose insertion needs the compose action scope; the user token needs userinfo.email."""
    manifest = build_manifest(BASE)
    assert manifest["addOns"]["gmail"]["composeTrigger"]["draftAccess"] == "METADATA"
    for scope in ("current.message.metadata", "current.action.compose", "userinfo.email"):
        assert any(s.endswith(scope) for s in manifest["oauthScopes"])


@pytest.mark.parametrize(
    ("given", "base"),
    [
        ("https://desk.example.com/", "https://desk.example.com"),
        ("  https://Desk.Example.com  ", "https://desk.example.com"),
        ("https://example.com/inboxdesk/", "https://example.com/inboxdesk"),
        ("https://desk.example.com:8443", "https://desk.example.com:8443"),
    ],
)
def test_base_url_is_normalized(given: str, base: str) -> None:
    """Trailing slash dropped, path prefix and port kept: the URLs Google will POST to."""
    manifest = build_manifest(given)
    assert (
        manifest["addOns"]["common"]["homepageTrigger"]["runFunction"] == base + "/addon/homepage"
    )


BAD_URLS = [
    "http://desk.example.com",
    "desk.example.com",
    "https://",
    "https://localhost:8000",
    "https://127.0.0.1",
    "https://10.1.2.3/x",
    "https://[::1]/",
    "https://user:pw@desk.example.com",
    "https://desk.example.com/?a=1",
    "https://desk.example.com/#top",
    "https://desk.example.com:99999",
    "ftp://desk.example.com",
    "",
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_bad_base_url_is_refused(url: str) -> None:
    with pytest.raises(InvalidBaseUrl):
        build_manifest(url)


@pytest.fixture
def public_url() -> Iterator[None]:
    saved = os.environ.get("INBOXDESK_PUBLIC_URL")
    os.environ["INBOXDESK_PUBLIC_URL"] = BASE
    reset_settings()
    yield
    if saved is None:
        os.environ.pop("INBOXDESK_PUBLIC_URL", None)
    else:
        os.environ["INBOXDESK_PUBLIC_URL"] = saved
    reset_settings()


def test_cli_prints_the_descriptor(public_url: None) -> None:
    """stdout is exactly the JSON (ready for --deployment-file); no warning when the base URL is
    INBOXDESK_PUBLIC_URL."""
    result = CliRunner().invoke(cli, ["addon", "manifest", "--base-url", BASE + "/"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == build_manifest(BASE)
    assert result.stderr == ""


def test_cli_warns_when_public_url_differs() -> None:
    """A descriptor for another address than INBOXDESK_PUBLIC_URL would make every request a
    wrong-audience 401: the command says so (on stderr, the JSON stays clean)."""
    result = CliRunner().invoke(cli, ["addon", "manifest", "--base-url", "https://other.example"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["addOns"]["gmail"]["composeTrigger"]
    assert "INBOXDESK_PUBLIC_URL=https://other.example" in result.stderr


def test_cli_custom_logo_and_name(public_url: None) -> None:
    logo = "https://cdn.example.com/logo.png"
    result = CliRunner().invoke(
        cli, ["addon", "manifest", "--base-url", BASE, "--logo-url", logo, "--name", "Desk"]
    )
    assert result.exit_code == 0, result.output
    common = json.loads(result.stdout)["addOns"]["common"]
    assert (common["logoUrl"], common["name"]) == (logo, "Desk")


@pytest.mark.parametrize(
    "args",
    [
        ["--base-url", "http://desk.example.com"],
        ["--base-url", "https://localhost"],
        ["--base-url", BASE, "--logo-url", "http://cdn.example.com/logo.png"],
    ],
)
def test_cli_bad_url_exits_1_with_a_message(args: list[str]) -> None:
    result = CliRunner().invoke(cli, ["addon", "manifest", *args])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")


def test_cli_needs_the_base_url() -> None:
    result = CliRunner().invoke(cli, ["addon", "manifest"])
    assert result.exit_code == 2
    assert "--base-url" in result.stderr
