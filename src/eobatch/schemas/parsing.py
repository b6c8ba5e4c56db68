"""Turn raw JSON into schema models, with pydantic errors rewritten as SH-style violations."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from eobatch.errors import InvalidRequest, Violation
from eobatch.limits import MAX_JSON_DEPTH, check_json_text

M = TypeVar("M", bound=BaseModel)

# Discriminator tags pydantic puts into error locations; they are not parameters.
_UNION_TAGS = frozenset({"tiling-grid", "geopackage", "raster", "zarr"})


def _parameter(loc: tuple[Any, ...], prefix: str) -> str:
    parts = [str(p) for p in loc if not (isinstance(p, str) and p in _UNION_TAGS)]
    parts = [p for p in parts if not p.startswith(("function-", "literal["))]
    path = "->".join(parts)
    return f"{prefix}->{path}" if prefix and path else (prefix or path or "body")


def violations(error: ValidationError, prefix: str = "") -> list[Violation]:
    """One violation per pydantic error, named by the camelCase parameter path."""
    found = []
    for detail in error.errors(include_url=False):
        message = detail["msg"].removeprefix("Value error, ")
        if detail["type"] == "missing":
            message = "is required"
        elif detail["type"] == "extra_forbidden":
            message = "is not a known parameter"
        found.append(Violation(_parameter(detail["loc"], prefix), message))
    return found


def parse_model(model: type[M], data: Any, prefix: str = "") -> M:
    """Validate `data` against `model`, raising `InvalidRequest` that names every bad parameter."""
    if not isinstance(data, dict):
        raise InvalidRequest("Request body should be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        found = violations(exc, prefix)
        summary = "; ".join(f"{v.parameter}: {v.violation}" for v in found[:5])
        more = f" (and {len(found) - 5} more)" if len(found) > 5 else ""
        raise InvalidRequest(f"Invalid request: {summary}{more}", found) from exc


def parse_json(raw: bytes) -> Any:
    """Decode a JSON body; an empty or malformed body, or one holding NUL or control
    characters (`limits.check_json_text`), is a 400."""
    if not raw.strip():
        raise InvalidRequest("Request body should be non-empty.")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequest(f"Request body is not valid JSON: {exc}") from exc
    except RecursionError:
        raise InvalidRequest(
            f"Request body is nested more than {MAX_JSON_DEPTH} levels deep."
        ) from None
    check_json_text(data)
    return data
