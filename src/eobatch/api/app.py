"""The FastAPI application: routers, error handlers, and the store it serves."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI

from eobatch import metrics
from eobatch.api import auth, batch, byoc, catalog, console, operations, process
from eobatch.api.errors import install_error_handlers
from eobatch.api.guard import InputGuard
from eobatch.api.openapi import install_openapi
from eobatch.config import Settings
from eobatch.sealing import keyring_for
from eobatch.signing import token_signing_key
from eobatch.store import Database
from eobatch.web.pages import install_pages

if TYPE_CHECKING:
    from eobatch.lifecycle.controller import Controller


def create_app(settings: Settings, db: Database, controller: Controller | None = None) -> FastAPI:
    """The HTTP API over `db`. It records user actions only; the controller (if this process
    runs one) does the work, and `/readyz` and `/metrics` report on it."""
    app = FastAPI(
        title="eobatch",
        summary="Sentinel Hub Batch Processing V2 compatible API",
        version="0.1.0",
        # served from packaged assets by eobatch.web (the defaults load them from a CDN)
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.controller = controller
    app.state.signing_key = token_signing_key(db, keyring_for(settings), settings.jwt_secret)
    app.state.metrics = metrics.registry(db, controller)
    install_error_handlers(app)
    app.add_middleware(InputGuard, max_body_bytes=settings.max_body_bytes)
    app.include_router(auth.router)
    app.include_router(batch.router)
    app.include_router(byoc.router)
    app.include_router(process.router)
    app.include_router(catalog.router)
    app.include_router(operations.router)
    app.include_router(console.router)
    install_pages(app)
    install_openapi(app)
    return app
