"""``inboxdesk``: the one console script (DESIGN §4)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from app.agents.models import Role
from app.config import get_settings, reset_settings
from app.errors import AppError

cli = typer.Typer(help="Inboxdesk: a helpdesk that lives inside Gmail.", no_args_is_help=True)
db_cli = typer.Typer(help="Database schema (Alembic).", no_args_is_help=True)
agent_cli = typer.Typer(help="Agents and their API tokens.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")
cli.add_typer(agent_cli, name="agent")

DEMO_ADMIN_EMAIL = "admin@demo.inboxdesk.test"


def _setup_logging() -> None:
    logging.basicConfig(
        level=get_settings().log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


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


@cli.command("demo")
def demo(
    port: Annotated[int, typer.Option(help="TCP port of the web server")] = 8000,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
) -> None:
    """Everything on embedded defaults: SQLite in the data dir, a demo admin, the web server."""
    from app.db import migrations
    from app.demo import prepare_demo
    from app.main import create_app
    from app.server import run_server

    # The demo runs on SQLite in the data dir even if a database URL is configured elsewhere.
    os.environ["INBOXDESK_DATABASE_URL"] = ""
    reset_settings()
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrations.upgrade(url=settings.database_url_resolved)
    token = prepare_demo(admin_email=DEMO_ADMIN_EMAIL)
    base = f"http://{host}:{port}"
    typer.echo(
        "\n".join(
            [
                "Inboxdesk demo",
                f"  database:  {Path(settings.data_dir).resolve() / 'inboxdesk.db'}",
                f"  API docs:  {base}/docs",
                f"  tickets:   {base}/api/v1/tickets",
                f"  admin:     {DEMO_ADMIN_EMAIL}",
                f"  API token: {token}",
                "",
                f'  try: curl -H "Authorization: Bearer {token}" {base}/api/v1/tickets',
                "  Ctrl-C stops the demo.",
            ]
        )
    )
    _setup_logging()
    run_server(create_app(), host=host, port=port, log_level="warning")


def main() -> None:
    cli()
