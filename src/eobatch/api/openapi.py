"""The OpenAPI document: request bodies the routes parse themselves, described by their models.

Routes read raw bodies (so that every error is a Sentinel Hub error body, and create accepts
multipart too); `json_body` tells OpenAPI what they accept, and `install_openapi` adds the models'
JSON schemas to the document's components, so Swagger UI can show and send them.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from eobatch.schemas import BatchRequest, DescriptionUpdate
from eobatch.schemas.byoc import CollectionIn, TileIn, TileUpdate
from eobatch.schemas.process import ProcessApiRequest

REF = "#/components/schemas/{model}"
BODY_MODELS: tuple[type[BaseModel], ...] = (
    BatchRequest,
    DescriptionUpdate,
    CollectionIn,
    TileIn,
    TileUpdate,
    ProcessApiRequest,
)


def json_body(model: type[BaseModel], multipart: dict[str, Any] | None = None) -> dict[str, Any]:
    """`openapi_extra` of a route whose JSON body is `model` (and, optionally, a multipart form
    with the given properties)."""
    reference = {"$ref": REF.format(model=model.__name__)}
    content: dict[str, Any] = {"application/json": {"schema": reference}}
    if multipart:
        content["multipart/form-data"] = {
            "schema": {"type": "object", "properties": multipart, "required": list(multipart)[:1]}
        }
    return {"requestBody": {"required": True, "content": content}}


def install_openapi(app: FastAPI, models: tuple[type[BaseModel], ...] = BODY_MODELS) -> None:
    """Generate the app's OpenAPI document once, with the body models in its components."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            _, schemas = models_json_schema(
                [(model, "validation") for model in models], ref_template=REF
            )
            components = document.setdefault("components", {}).setdefault("schemas", {})
            for name, schema in schemas.get("$defs", {}).items():
                components.setdefault(name, schema)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
