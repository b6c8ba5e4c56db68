"""The console page, its static assets, and the API docs (Swagger UI, ReDoc) served offline."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
FAVICON = "/static/favicon.svg"
DOCS_REDIRECT = "/docs/oauth2-redirect"

router = APIRouter(include_in_schema=False)


@router.get("/")
def console() -> FileResponse:
    """The single-page console; it talks to the API with the token kept in the browser tab."""
    return FileResponse(STATIC / "console" / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/docs")
def swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="eobatch API",
        swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
        swagger_favicon_url=FAVICON,
        oauth2_redirect_url=DOCS_REDIRECT,
        # no online validator badge; keep the token across reloads of the docs page
        swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
    )


@router.get(DOCS_REDIRECT)
def swagger_ui_redirect() -> FileResponse:
    return FileResponse(STATIC / "vendor" / "swagger-ui" / "oauth2-redirect.html")


@router.get("/redoc")
def redoc() -> HTMLResponse:
    return get_redoc_html(
        openapi_url="/openapi.json",
        title="eobatch API",
        redoc_js_url="/static/vendor/redoc/redoc.standalone.js",
        redoc_favicon_url=FAVICON,
        with_google_fonts=False,
    )


def install_pages(app: FastAPI) -> None:
    """Serve the console at `/`, its assets at `/static`, and the docs at `/docs` and `/redoc`."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
