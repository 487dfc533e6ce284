"""The web application: REST API v1 (and, with later issues, the add-on endpoints)."""

from __future__ import annotations

from fastapi import FastAPI

from app.addon.routes import router as addon_router
from app.agents.routes import router as agents_router
from app.api.errors import install_error_handlers
from app.api.timing import ServerTimingMiddleware
from app.assignment.routes import router as assignment_router
from app.config import get_settings
from app.customers.routes import router as customers_router
from app.db.session import Database, get_database
from app.mailboxes.routes import router as mailboxes_router
from app.rules.routes import router as rules_router
from app.sla.routes import router as sla_router
from app.tickets.routes import router as tickets_router
from templates_replies.routes import router as templates_router

API_DESCRIPTION = """\
Inboxdesk's REST API. Authenticate with an agent's API token: `Authorization: Bearer ibx_…`
(`inboxdesk agent add EMAIL --name N --role R --token` prints one).

Errors are `{"error": {"code": "...", "message": "..."}}`: 401/403 auth, 404 unknown ids,
409 stale `version` or a status change the machine forbids, 422 invalid input.
"""


def create_app(database: Database | None = None) -> FastAPI:
    app = FastAPI(
        title="Inboxdesk",
        version="0.1.0",
        description=API_DESCRIPTION,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.database = database or get_database()
    install_error_handlers(app)
    app.add_middleware(ServerTimingMiddleware)
    for router in (
        tickets_router,
        customers_router,
        agents_router,
        mailboxes_router,
        templates_router,
        sla_router,
        addon_router,
        assignment_router,
        rules_router,
    ):
        app.include_router(router)
    # The add-on preview (/preview) exists only in demo mode; it also refuses non-loopback callers.
    # (Imported here: production never loads it, nor the Gmail client it reads threads with.)
    if get_settings().env == "dev":
        from app.addon.preview import router as preview_router

        app.include_router(preview_router)

    @app.get("/healthz", tags=["meta"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
