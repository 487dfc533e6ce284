"""``inboxdesk``: the one console script (DESIGN §4)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from app.agents.models import Role
from app.config import get_settings
from app.errors import AppError
from app.logs import configure_logging
from app.mailboxes.models import MailboxAuthKind

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

cli = typer.Typer(help="Inboxdesk: a helpdesk that lives inside Gmail.", no_args_is_help=True)
db_cli = typer.Typer(help="Database schema (Alembic).", no_args_is_help=True)
agent_cli = typer.Typer(help="Agents and their API tokens.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")
cli.add_typer(agent_cli, name="agent")
mailbox_cli = typer.Typer(help="Support mailboxes connected to Gmail.", no_args_is_help=True)
cli.add_typer(mailbox_cli, name="mailbox")
templates_cli = typer.Typer(
    help="The shared reply-template library: seed, import, export (JSON).", no_args_is_help=True
)
cli.add_typer(templates_cli, name="templates")
addon_cli = typer.Typer(help="The Gmail add-on: its Google deployment.", no_args_is_help=True)
cli.add_typer(addon_cli, name="addon")
rules_cli = typer.Typer(
    help="Triage rules: seed the defaults, measure the urgency rules.", no_args_is_help=True
)
cli.add_typer(rules_cli, name="rules")

DEMO_ADMIN_EMAIL = "admin@demo.inboxdesk.test"


def _setup_logging() -> None:
    settings = get_settings()
    configure_logging(level=settings.log_level, fmt=settings.log_format)


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=1)


@db_cli.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations up to REVISION (default: head)."""
    from app.db import migrations

    url = get_settings().database_url_resolved
    migrations.upgrade(url=url, revision=revision)
    typer.echo(f"database at {_redact(url)} is at {revision}")


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@agent_cli.command("add")
def agent_add(
    email: str,
    name: Annotated[str, typer.Option("--name", help="display name")],
    role: Annotated[Role, typer.Option("--role", help="agent, lead or admin")] = Role.AGENT,
    token: Annotated[bool, typer.Option("--token", help="also issue an API token")] = False,
) -> None:
    """Add an agent. With --token, the new token alone is the last line of the output."""
    from app.agents import service
    from app.db.session import get_database

    try:
        with get_database().unit_of_work() as session:
            agent = service.create_agent(session, email=email, name=name, role=role)
            issued = service.issue_token(session, agent=agent, name="cli")[1] if token else None
    except AppError as exc:
        raise _fail(exc.message) from exc
    typer.echo(f"agent {agent.email} ({agent.role.value}) created with id {agent.id}")
    if issued:
        typer.echo("API token (shown once, store it now):")
        typer.echo(issued)


@mailbox_cli.command("add")
def mailbox_add(
    email: str,
    oauth: Annotated[
        Path | None,
        typer.Option("--oauth", metavar="CLIENT_SECRETS", help="OAuth client secrets JSON"),
    ] = None,
    service_account: Annotated[
        Path | None,
        typer.Option(
            "--service-account", metavar="KEY", help="service-account key JSON (delegation)"
        ),
    ] = None,
    emulator: Annotated[
        bool, typer.Option("--emulator", help="the local Gmail emulator (no credentials)")
    ] = False,
    name: Annotated[str | None, typer.Option("--name", help="display name")] = None,
    language: Annotated[
        str | None, typer.Option("--language", help="two-letter language (default en)")
    ] = None,
    timezone: Annotated[
        str | None,
        typer.Option("--timezone", help="IANA zone for customers of unknown zone (default UTC)"),
    ] = None,
    ack: Annotated[
        bool | None,
        typer.Option(
            "--ack/--no-ack",
            help="acknowledge new customer mail automatically (default: on for a new mailbox)",
        ),
    ] = None,
    open_browser: Annotated[
        bool, typer.Option("--open-browser/--no-browser", help="OAuth: open the consent page")
    ] = True,
    default_rules: Annotated[
        bool,
        typer.Option(
            "--default-rules/--no-default-rules",
            help="seed the default triage rules (urgency, VIP) if the installation has no rules",
        ),
    ] = True,
) -> None:
    """Connect EMAIL to Gmail, or give it new credentials (it becomes active again).

    Credentials are checked on Gmail (the account must be EMAIL), stored encrypted, never printed.
    """
    import app.db.registry  # noqa: F401 - all tables known: mailboxes references business_calendars
    from app.crypto import require_secret
    from app.db.session import get_database
    from app.emails import normalize_email
    from app.mailboxes.service import connect_mailbox

    if sum(bool(way) for way in (oauth, service_account, emulator)) != 1:
        raise _fail("give exactly one of --oauth CLIENT_SECRETS, --service-account KEY, --emulator")
    settings = get_settings()
    try:
        address = normalize_email(email)
        credentials: dict[str, Any] | None = None
        if emulator:
            kind = MailboxAuthKind.EMULATOR
        else:
            # Before the OAuth consent: without a key there is nowhere to keep its result.
            require_secret(settings.secret_key)
            kind, credentials = _mailbox_credentials(
                address, oauth=oauth, service_account=service_account, open_browser=open_browser
            )
        with get_database().unit_of_work() as session:
            mailbox = connect_mailbox(
                session,
                email=address,
                name=name,
                auth_kind=kind,
                credentials=credentials,
                secret_key=settings.secret_key,
                language=language,
                timezone=timezone,
                auto_ack=ack,
            )
            summary = f"mailbox {mailbox.email} ({kind.value}) connected with id {mailbox.id}"
            seeded = _seed_rules_if_none(session) if default_rules else 0
    except AppError as exc:
        raise _fail(exc.message) from None
    typer.echo(f"{summary}, state active")
    if seeded:
        typer.echo(
            f"default triage rules: {seeded} added (urgency, VIP); review them at /api/v1/rules"
        )


def _seed_rules_if_none(session: Session) -> int:
    """The default rules for a new installation: only while it has no rule at all, so a rule
    set someone edited (or emptied on purpose) is never topped up behind their back."""
    from sqlalchemy import select

    from app.rules.defaults import seed_default_rules
    from app.rules.models import Rule

    if session.execute(select(Rule.id).limit(1)).first() is not None:
        return 0
    return seed_default_rules(session)


def _mailbox_credentials(
    address: str, *, oauth: Path | None, service_account: Path | None, open_browser: bool
) -> tuple[MailboxAuthKind, dict[str, Any]]:
    """Obtain the credentials and prove on Gmail (users.getProfile) that they open ``address``:
    consent given with another Google account would otherwise sync the wrong mailbox."""
    from gmail_sync import credentials as gcreds
    from gmail_sync.client import GmailClient

    if oauth is not None:
        kind = MailboxAuthKind.OAUTH
        info = gcreds.run_oauth_flow(oauth, open_browser=open_browser)
        creds = gcreds.oauth_user_credentials(info)
    elif service_account is not None:
        kind = MailboxAuthKind.SERVICE_ACCOUNT
        info = gcreds.load_service_account_key(service_account)
        creds = gcreds.service_account_credentials(info, address)
    else:
        raise AppError("no credentials given")
    with GmailClient(creds, api_url=get_settings().gmail_api_url) as client:
        account = str(client.get_profile().get("emailAddress", "")).lower()
    if account != address:
        raise AppError(f"these credentials open the Gmail account {account}, not {address}")
    return kind, info


@templates_cli.command("seed")
def templates_seed() -> None:
    """Add the default templates (Russian and English) that are not there yet."""
    from app.db.session import get_database
    from templates_replies.library import seed_default_templates

    try:
        with get_database().unit_of_work() as session:
            created, kept = seed_default_templates(session)
    except AppError as exc:
        raise _fail(exc.message) from None
    typer.echo(f"default templates: {created} created, {kept} already there")


@templates_cli.command("import")
def templates_import(
    file: Annotated[Path, typer.Argument(help="a JSON document made by `templates export`")],
) -> None:
    """Create or update shared templates from FILE: all of them, or none if one is invalid.

    A template with the name and language of an existing shared one replaces its content.
    """
    import json

    from app.db.session import get_database
    from templates_replies.library import import_library

    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _fail(f"cannot read {file}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(f"{file} is not a JSON document: {exc}") from None
    if not isinstance(document, dict):
        raise _fail(f"{file} is not a template library (a JSON object with a templates list)")
    try:
        with get_database().unit_of_work() as session:
            result = import_library(session, document=document, agent=None)
    except AppError as exc:
        raise _fail(f"{exc.message}") from None
    for warning in result.warnings:
        typer.echo(
            f"spelling: template {warning.index} ({warning.name}): {', '.join(warning.words)}"
        )
    typer.echo(
        f"templates: {result.created} created, {result.updated} updated, "
        f"{result.unchanged} unchanged"
    )


@templates_cli.command("export")
def templates_export(
    file: Annotated[
        Path | None, typer.Argument(help="where to write the JSON (default: standard output)")
    ] = None,
) -> None:
    """Write the shared templates as one JSON document (personal ones stay with their owners)."""
    import json

    from app.db.session import get_database
    from templates_replies.library import export_library

    with get_database().unit_of_work() as session:
        document = export_library(session, agent=None)
    text = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    if file is None:
        typer.echo(text, nl=False)
        return
    try:
        file.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise _fail(f"cannot write {file}: {exc.strerror or exc}") from None
    typer.echo(f"{len(document['templates'])} templates written to {file}")


@rules_cli.command("seed")
def rules_seed(
    mailbox: Annotated[
        str | None,
        typer.Option(
            "--mailbox",
            metavar="EMAIL",
            help="seed this mailbox's own rules (default: global rules, for every mailbox)",
        ),
    ] = None,
) -> None:
    """Add the default rules (urgency signals, VIP segment) that are not there yet, by name."""
    from app.db.session import get_database
    from app.mailboxes.service import resolve_mailbox
    from app.rules.defaults import load_default_rules, seed_default_rules

    try:
        with get_database().unit_of_work() as session:
            mailbox_id = None if mailbox is None else resolve_mailbox(session, mailbox).id
            added = seed_default_rules(session, mailbox_id=mailbox_id)
    except AppError as exc:
        raise _fail(exc.message) from None
    scope = "every mailbox" if mailbox is None else mailbox
    kept = len(load_default_rules()) - added
    typer.echo(f"default rules for {scope}: {added} added, {kept} already there")


URGENCY_THRESHOLD = 0.85


@rules_cli.command("evaluate")
def rules_evaluate(
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            help="labelled messages, JSON lines {subject, body, language, urgent, segment?, "
            "held_out?} (default: tests/data/urgency_labelled.jsonl)",
        ),
    ] = None,
    rules: Annotated[
        Path | None,
        typer.Option(
            "--rules",
            help='rules to measure: a JSON list of rules or {"rules": [...]} '
            "(default: the shipped default rules)",
        ),
    ] = None,
) -> None:
    """Precision and recall of the urgency rules on labelled mail (exit 1 below 0.85)."""
    import json

    from app.rules.defaults import default_rule_objects, rule_objects, rules_from_document
    from app.rules.evaluation import (
        DEFAULT_LABELLED_SET,
        evaluate_urgency,
        format_report,
        load_labelled,
    )

    path = file or DEFAULT_LABELLED_SET
    try:
        messages = load_labelled(path)
        if rules is None:
            rule_list = default_rule_objects()
        else:
            rule_list = rule_objects(
                rules_from_document(json.loads(rules.read_text(encoding="utf-8")))
            )
        report = evaluate_urgency(messages, rule_list)
    except OSError as exc:
        raise _fail(f"cannot read {exc.filename or path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(f"{rules} is not a JSON document: {exc}") from None
    except AppError as exc:
        raise _fail(exc.message) from None
    if not messages:
        raise _fail(f"{path} holds no labelled messages")
    for line in format_report(report):
        typer.echo(line)
    if not report.passes(URGENCY_THRESHOLD):
        raise _fail(
            f"precision {report.overall.precision:.3f} / recall {report.overall.recall:.3f}: "
            f"below {URGENCY_THRESHOLD}"
        )


@cli.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
) -> None:
    """Run the web server: REST API and OpenAPI docs at /docs."""
    from app.main import create_app
    from app.server import run_server

    _setup_logging()
    run_server(create_app(), host=host, port=port)


@cli.command("sync")
def sync(
    once: Annotated[
        bool, typer.Option("--once", help="one pass over every mailbox, then exit")
    ] = False,
    mailbox: Annotated[str | None, typer.Option(help="only this mailbox")] = None,
    reconcile: Annotated[
        bool, typer.Option("--reconcile", help="find and repair drift between labels and tickets")
    ] = False,
) -> None:
    """Run the Gmail sync worker (polls every INBOXDESK_SYNC_INTERVAL_SECONDS)."""
    from gmail_sync.runner import reconcile_all, run_worker

    _setup_logging()
    if reconcile:
        for line in reconcile_all(only_mailbox=mailbox):
            typer.echo(line)
        return
    failures = run_worker(once=once, only_mailbox=mailbox)
    if once and failures:
        raise _fail(f"{failures} mailbox(es) failed to sync; see the log and GET /api/v1/mailboxes")


@cli.command("emulator")
def emulator(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8025,
    seed: Annotated[
        Path | None, typer.Option(help="import every .eml of this folder into INBOX")
    ] = None,
    mailbox: Annotated[
        list[str] | None, typer.Option(help="a mailbox to serve (repeatable)")
    ] = None,
    fault_rate: Annotated[float, typer.Option(help="share of calls answered 429/500/503")] = 0.0,
    state: Annotated[
        Path | None,
        typer.Option(
            "--state",
            metavar="FILE",
            help="keep the mailboxes in this JSON file: loaded if it exists (then not seeded "
            "again), saved every few seconds and on exit",
        ),
    ] = None,
) -> None:
    """Run the local Gmail API emulator (token: `Bearer emulator:<address>`)."""
    from gmail_sync.emulator.persistence import EmulatorStateError
    from gmail_sync.emulator.server import EmulatorOptions, run_emulator

    _setup_logging()
    if seed is not None and not seed.is_dir():
        raise _fail(f"--seed {seed}: not a folder")
    if state is not None and state.exists() and not state.is_file():
        raise _fail(f"--state {state}: not a file")
    typer.echo(f"Gmail emulator on http://{host}:{port}/ (INBOXDESK_GMAIL_API_URL)")
    try:
        run_emulator(
            EmulatorOptions(mailboxes=mailbox or (), seed_dir=seed, fault_rate=fault_rate),
            host=host,
            port=port,
            state_file=state,
        )
    except EmulatorStateError as exc:
        raise _fail(str(exc)) from None


@cli.command("demo")
def demo(
    port: Annotated[int, typer.Option(help="TCP port of the web server")] = 8000,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    emulator_port: Annotated[
        int, typer.Option(help="TCP port of the Gmail emulator (on 127.0.0.1)")
    ] = 8025,
) -> None:
    """Everything on one machine: SQLite in the data dir, the Gmail emulator seeded with demo
    mail, the sync worker, a demo admin and the web server. Ctrl-C stops it all."""
    from app.demo import DemoError, run_demo

    _setup_logging()
    try:
        run_demo(
            host=host,
            port=port,
            emulator_port=emulator_port,
            admin_email=DEMO_ADMIN_EMAIL,
            echo=typer.echo,
        )
    except DemoError as exc:
        raise _fail(str(exc)) from None


@addon_cli.command("manifest")
def addon_manifest(
    base_url: Annotated[
        str,
        typer.Option(
            "--base-url",
            help="the public HTTPS address of this server, as Google reaches it "
            "(normally INBOXDESK_PUBLIC_URL)",
        ),
    ],
    logo_url: Annotated[
        str | None, typer.Option("--logo-url", help="HTTPS URL of the add-on's icon")
    ] = None,
    name: Annotated[str, typer.Option("--name", help="the add-on's name in Gmail")] = "Inboxdesk",
) -> None:
    """Print the add-on's deployment descriptor (JSON) for
    `gcloud workspace-add-ons deployments create NAME --deployment-file=FILE`."""
    import json

    from app.addon.manifest import DEFAULT_LOGO_URL, InvalidBaseUrl, build_manifest

    try:
        manifest = build_manifest(base_url, name=name, logo_url=logo_url or DEFAULT_LOGO_URL)
    except InvalidBaseUrl as exc:
        raise _fail(str(exc)) from None
    typer.echo(json.dumps(manifest, indent=2))
    # Google puts the endpoint URL in the token's audience, and auth.py accepts
    # INBOXDESK_PUBLIC_URL + path: a different base URL means every request would be refused.
    settings = get_settings()
    public = settings.public_url.rstrip("/")
    base = manifest["addOns"]["common"]["homepageTrigger"]["runFunction"].removesuffix(
        "/addon/homepage"
    )
    if public != base and not any(a.startswith(base + "/") for a in settings.addon_audiences):
        typer.secho(
            f"note: INBOXDESK_PUBLIC_URL is {public}, not {base}: set INBOXDESK_PUBLIC_URL={base} "
            "on the server, or the add-on's requests will be refused (401, wrong audience)",
            fg=typer.colors.YELLOW,
            err=True,
        )


def main() -> None:
    cli()
