"""Offset pagination with Sentinel Hub's `View` links (batch-v2-api.md §2.1)."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from eobatch.errors import InvalidRequest

MAX_COUNT = 100
_MAX_OFFSET = 2**62  # SQL offsets are 64-bit: a bigger token is none this endpoint returned


def page_window(count: int | None, viewtoken: str | None) -> tuple[int, int]:
    """(offset, limit) from the query; the view token is an opaque stringified offset."""
    if count is not None and count < 1:
        raise InvalidRequest.at("count", f"must be at least 1 (at most {MAX_COUNT} are returned)")
    # A larger page is capped, as Sentinel Hub does: clients follow the `next` links.
    limit = MAX_COUNT if count is None else min(count, MAX_COUNT)
    try:
        offset = int(viewtoken) if viewtoken not in (None, "") else 0
    except ValueError:
        offset = -1
    if not 0 <= offset < _MAX_OFFSET:
        raise InvalidRequest.at("viewtoken", "is not a token returned by this endpoint")
    return offset, limit


def page(request: Request, items: list[Any], offset: int, limit: int) -> dict[str, Any]:
    """`{data, links}` for `items`, which holds up to limit + 1 rows (extra = more)."""
    url = request.url
    links: dict[str, Any] = {
        "currentToken": str(offset),
        "@id": str(url.include_query_params(viewtoken=str(offset))),
    }
    if len(items) > limit:
        links["nextToken"] = str(offset + limit)
        links["next"] = str(url.include_query_params(viewtoken=str(offset + limit)))
    if offset > 0:
        previous = max(0, offset - limit)
        links["previousToken"] = str(previous)
        links["previous"] = str(url.include_query_params(viewtoken=str(previous)))
    return {"data": items[:limit], "links": links}
