"""The FastAPI application: routers, error handlers, and the store it serves."""

from __future__ import annotations

from fastapi import FastAPI

from eobatch.api import auth, batch, byoc, console
from eobatch.api.errors import install_error_handlers
from eobatch.api.openapi import install_openapi
from eobatch.config import Settings
from eobatch.store import Database
from eobatch.web.pages import install_pages


def create_app(settings: Settings, db: Database) -> FastAPI:
    """The HTTP API over `db`. It records user actions only; the controller does the work."""
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
    install_error_handlers(app)
    app.include_router(auth.router)
    app.include_router(batch.router)
    app.include_router(byoc.router)
    app.include_router(console.router)
    install_pages(app)
    install_openapi(app)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict:
        return {"status": "ok"}

    return app
