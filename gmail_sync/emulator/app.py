"""The emulator's ASGI app: Gmail routes, the batch endpoint, control endpoints."""

from __future__ import annotations

import json

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gmail_sync.emulator import control
from gmail_sync.emulator.batch import handle_batch
from gmail_sync.emulator.errors import GmailApiError
from gmail_sync.emulator.routes import add_gmail_routes
from gmail_sync.emulator.state import EmulatorState


def _gmail_error(error: GmailApiError) -> Response:
    return Response(
        json.dumps(error.body()).encode(),
        status_code=error.code,
        media_type="application/json; charset=UTF-8",
        headers=error.headers,
    )


def create_emulator_app(state: EmulatorState | None = None) -> FastAPI:
    app = FastAPI(
        title="Inboxdesk Gmail API emulator",
        description="A local subset of the Gmail REST API v1, plus /emulator/ control endpoints.",
        version="1",
    )
    app.state.emulator = state or EmulatorState()
    add_gmail_routes(app)
    for path in ("/batch", "/batch/gmail/v1"):
        app.add_api_route(path, handle_batch, methods=["POST"], include_in_schema=False)
    app.include_router(control.router)

    @app.exception_handler(GmailApiError)
    async def gmail_error(request: Request, exc: GmailApiError) -> Response:
        return _gmail_error(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith("/emulator/"):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
        # Google's front end answers unknown paths and methods with its own error.
        message = "Not Found" if exc.status_code == 404 else str(exc.detail)
        reason = "notFound" if exc.status_code == 404 else "badRequest"
        return _gmail_error(GmailApiError(exc.status_code, message, reason=reason))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return JSONResponse({"detail": exc.errors()}, status_code=422)

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> Response:
        error = GmailApiError(500, "Internal error encountered.", reason="backendError")
        return _gmail_error(error)

    return app
