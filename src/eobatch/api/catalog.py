"""The Catalog API (`/api/v1/catalog/1.0.0`, catalog-process.md §1): a STAC API over what this
deployment serves. Landing page and conformance are public (sentinelhub-py reads them without a
token); everything else needs the bearer token and shows only the caller's own BYOC collections.

Every route answers with and without a trailing slash. Search pages are offsets: `next` is the
number of items delivered so far, as Sentinel Hub's examples show.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any
from urllib.parse import urlencode

import shapely
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from eobatch.api.auth import current_account
from eobatch.errors import InvalidRequest, NotFound
from eobatch.schemas import parse_json
from eobatch.sources.catalog import (
    STAC_VERSION,
    CatalogCollection,
    ItemQuery,
    find_collection,
    items,
    visible_collections,
)
from eobatch.sources.cql2 import parse_fields, parse_filter, select_fields
from eobatch.sources.sortby import parse_sortby, sort_items

BASE = "/api/v1/catalog/1.0.0"
GEOJSON = "application/geo+json"
DEFAULT_LIMIT, MAX_LIMIT = 10, 100
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/ogcapi-features#fields",
    "https://api.stacspec.org/v1.0.0/ogcapi-features#context",
    "https://api.stacspec.org/v1.0.0/ogcapi-features#filter",
    "https://api.stacspec.org/v1.0.0/item-search#fields",
    "https://api.stacspec.org/v1.0.0/item-search#context",
    "https://api.stacspec.org/v1.0.0/item-search#filter",
    "https://api.stacspec.org/v1.0.0/item-search#sort",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
]

router = APIRouter(prefix=BASE, tags=["catalog"])


def _route(path: str, methods: list[str], summary: str) -> Callable:  # type: ignore[type-arg]
    """Register the endpoint at `path` and at `path` with a trailing slash."""

    def register(endpoint: Callable) -> Callable:  # type: ignore[type-arg]
        for variant in dict.fromkeys([path, path.rstrip("/") + "/", path.rstrip("/")]):
            router.add_api_route(
                variant,
                endpoint,
                methods=methods,
                summary=summary,
                include_in_schema=variant == path,
            )
        return endpoint

    return register


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + BASE


def _link(href: str, rel: str, media: str = "application/json", **extra: Any) -> dict[str, Any]:
    return {"href": href, "rel": rel, "type": media, **extra}


# -- landing page, conformance, collections -----------------------------------------------------


@_route("", ["GET"], "STAC landing page (public)")
async def landing(request: Request) -> JSONResponse:
    base = _base(request)
    links = [
        _link(f"{base}/", "root"),
        _link(f"{base}/", "self"),
        _link(f"{base}/collections", "data"),
        _link(f"{base}/conformance", "conformance"),
        _link(f"{base}/search", "search", GEOJSON, method="GET"),
        _link(f"{base}/search", "search", GEOJSON, method="POST"),
        _link(
            f"{base}/queryables",
            "http://www.opengis.net/def/rel/ogc/1.0/queryables",
            "application/schema+json",
        ),
        _link(
            str(request.base_url).rstrip("/") + "/openapi.json",
            "service-desc",
            'application/vnd.oai.openapi+json;version="3.1"',
        ),
        _link(str(request.base_url).rstrip("/") + "/docs", "service-doc", "text/html"),
    ]
    return JSONResponse(
        {
            "type": "Catalog",
            "stac_version": STAC_VERSION,
            "id": "eobatch",
            "title": "eobatch catalogue",
            "description": "The data this eobatch deployment serves: its STAC-served data types "
            "and your BYOC collections (sign in to list and search them).",
            "conformsTo": CONFORMANCE,
            "links": links,
        }
    )


@_route("/conformance", ["GET"], "Conformance classes (public)")
async def conformance() -> JSONResponse:
    return JSONResponse({"conformsTo": CONFORMANCE})


def _collection_json(base: str, collection: CatalogCollection) -> dict[str, Any]:
    href = f"{base}/collections/{collection.id}"
    return {
        **collection.as_stac(),
        "links": [
            _link(f"{base}/", "root"),
            _link(href, "self"),
            _link(f"{base}/collections", "parent"),
            _link(f"{href}/items", "items", GEOJSON),
            _link(
                f"{href}/queryables",
                "http://www.opengis.net/def/rel/ogc/1.0/queryables",
                "application/schema+json",
            ),
        ],
    }


@_route("/collections", ["GET"], "Collections: the served data types and your BYOC collections")
def collections(request: Request, account: str = Depends(current_account)) -> dict:
    state, base = request.app.state, _base(request)
    found = visible_collections(state.db, state.settings, account)
    return {
        "collections": [_collection_json(base, c) for c in found],
        "links": [_link(f"{base}/", "root"), _link(f"{base}/collections", "self")],
    }


@_route("/collections/{collection_id}", ["GET"], "One collection")
def collection(
    collection_id: str, request: Request, account: str = Depends(current_account)
) -> dict:
    state = request.app.state
    found = find_collection(state.db, state.settings, account, collection_id)
    return _collection_json(_base(request), found)


def _queryables(base: str, path: str, properties: Mapping[str, Any]) -> JSONResponse:
    return JSONResponse(
        {
            "$schema": "https://json-schema.org/draft/2019-09/schema",
            "$id": f"{base}{path}",
            "type": "object",
            "title": "Queryables",
            "properties": dict(properties),
            "additionalProperties": False,
        },
        media_type="application/schema+json",
    )


@_route("/collections/{collection_id}/queryables", ["GET"], "Filterable properties")
def collection_queryables(
    collection_id: str, request: Request, account: str = Depends(current_account)
) -> JSONResponse:
    state = request.app.state
    found = find_collection(state.db, state.settings, account, collection_id)
    base = _base(request)
    return _queryables(base, f"/collections/{collection_id}/queryables", found.queryables)


@_route("/queryables", ["GET"], "Filterable properties of all collections")
def all_queryables(request: Request, account: str = Depends(current_account)) -> JSONResponse:
    state = request.app.state
    union: dict[str, Any] = {}
    for found in visible_collections(state.db, state.settings, account):
        union.update(found.queryables)
    return _queryables(_base(request), "/queryables", union)


# -- items and search ---------------------------------------------------------------------------


@_route("/collections/{collection_id}/items/{item_id}", ["GET"], "One item")
def item(
    collection_id: str, item_id: str, request: Request, account: str = Depends(current_account)
) -> JSONResponse:
    state, base = request.app.state, _base(request)
    found = find_collection(state.db, state.settings, account, collection_id)
    matches = items(state.db, state.settings, account, found, ItemQuery(ids=(item_id,)))
    if not matches:
        raise NotFound(f"Item {item_id} not found in collection {collection_id}")
    return JSONResponse(_with_links(base, matches[0]), media_type=GEOJSON)


@_route("/collections/{collection_id}/items", ["GET"], "Items of a collection (OGC Features)")
def collection_items(
    collection_id: str, request: Request, account: str = Depends(current_account)
) -> JSONResponse:
    params = dict(request.query_params)
    params["collections"] = collection_id
    page = _search(request, account, params)
    base = _base(request)
    href = f"{base}/collections/{collection_id}/items"
    links = [
        _link(f"{base}/", "root"),
        _link(f"{href}?{urlencode(request.query_params)}", "self", GEOJSON),
        _link(f"{base}/collections/{collection_id}", "parent"),
    ]
    if page.next is not None:
        query = {**request.query_params, "next": str(page.next)}
        links.append(_link(f"{href}?{urlencode(query)}", "next", GEOJSON))
    body = {
        "type": "FeatureCollection",
        "features": page.features,
        "links": links,
        "timeStamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "numberReturned": len(page.features),
    }
    return JSONResponse(body, media_type=GEOJSON)


@_route("/search", ["GET"], "Search items (query parameters)")
def search_get(request: Request, account: str = Depends(current_account)) -> JSONResponse:
    page = _search(request, account, dict(request.query_params))
    href = f"{_base(request)}/search"
    links = [_link(f"{href}?{urlencode(request.query_params)}", "self", GEOJSON)]
    if page.next is not None:
        query = {**request.query_params, "next": str(page.next)}
        links.append(
            _link(f"{href}?{urlencode(query)}", "next", GEOJSON, title="Next set of results")
        )
    return _page_response(page, links)


@_route("/search", ["POST"], "Search items (JSON body)")
async def search_post(request: Request, account: str = Depends(current_account)) -> JSONResponse:
    body = parse_json(await request.body())
    if not isinstance(body, dict):
        raise InvalidRequest("Request body should be a JSON object.")
    page = await run_in_threadpool(_search, request, account, body)
    href = f"{_base(request)}/search"
    links = [_link(href, "self", GEOJSON)]
    if page.next is not None:
        links.append(
            _link(
                href,
                "next",
                GEOJSON,
                title="Next set of results",
                method="POST",
                body={"next": page.next},
                merge=True,
            )
        )
    return _page_response(page, links)


@dataclass(frozen=True)
class _Page:
    """One page of a search: its features (or distinct values), the limit, the next offset."""

    features: list[Any]
    limit: int
    next: int | None


def _page_response(page: _Page, links: list[dict[str, Any]]) -> JSONResponse:
    context: dict[str, Any] = {"limit": page.limit, "returned": len(page.features)}
    if page.next is not None:
        context["next"] = page.next
    body = {"type": "FeatureCollection", "features": page.features, "links": links}
    return JSONResponse({**body, "context": context}, media_type=GEOJSON)


def _search(request: Request, account: str, params: Mapping[str, Any]) -> _Page:
    """One page of a search given as query parameters (text values) or a JSON body."""
    state, base = request.app.state, _base(request)
    if params.get("query") is not None:
        raise InvalidRequest.at("query", "is not supported; use filter (CQL2)")
    names = _list(params.get("collections"), "collections")
    if len(names) != 1:
        raise InvalidRequest.at("collections", "give exactly one collection id")
    found = find_collection(state.db, state.settings, account, names[0])
    limit = _integer(params.get("limit"), "limit", DEFAULT_LIMIT, 1)
    limit = min(limit, MAX_LIMIT)  # more than the maximum: the maximum, as OGC Features says
    offset = _integer(params.get("next"), "next", 0, 0)
    start, end = _datetime_range(params.get("datetime"))
    ids = params.get("ids")
    query = ItemQuery(
        area=_area(params.get("bbox"), params.get("intersects")),
        start=start,
        end=end,
        ids=tuple(_list(ids, "ids")) if ids is not None else None,
        conditions=tuple(parse_filter(_filter_value(params), params.get("filter-lang"))),
    )
    sortby = parse_sortby(params.get("sortby"), ["datetime", *found.queryables])
    selected = sort_items(items(state.db, state.settings, account, found, query), sortby)
    distinct = params.get("distinct")
    if distinct is not None:
        if distinct != "date":
            raise InvalidRequest.at("distinct", f"'{distinct}' cannot be distinct; allowed: date")
        values: list[Any] = sorted({i["properties"]["datetime"][:10] for i in selected})
    else:
        fields = parse_fields(params.get("fields"))
        values = [
            select_fields(_with_links(base, i), *fields) if fields else _with_links(base, i)
            for i in selected
        ]
    window = values[offset : offset + limit]
    more = offset + limit < len(values)
    return _Page(window, limit, offset + limit if more else None)


def _with_links(base: str, found: dict[str, Any]) -> dict[str, Any]:
    collection_href = f"{base}/collections/{found['collection']}"
    return {
        **found,
        "links": [
            _link(f"{base}/", "root"),
            _link(f"{collection_href}/items/{found['id']}", "self", GEOJSON),
            _link(collection_href, "parent"),
            _link(collection_href, "collection"),
        ],
    }


def _filter_value(params: Mapping[str, Any]) -> Any:
    value = params.get("filter")
    if isinstance(value, str) and params.get("filter-lang") == "cql2-json":
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise InvalidRequest.at("filter", f"is not JSON: {exc}") from exc
    return value


def _list(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise InvalidRequest.at(name, "is a list of strings")


def _integer(value: Any, name: str, default: int, minimum: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidRequest.at(name, f"'{value}' is not an integer") from None
    if (isinstance(value, float) and value != number) or number < minimum:
        raise InvalidRequest.at(name, f"{value} is not an integer >= {minimum}")
    return number


def _area(bbox: Any, intersects: Any) -> shapely.Geometry | None:
    """The lon/lat search area of `bbox` (4 or 6 numbers, text or list) or `intersects`."""
    if bbox is not None and intersects is not None:
        raise InvalidRequest.at("intersects", "give bbox or intersects, not both")
    if bbox is not None:
        try:
            numbers = [float(v) for v in (bbox.split(",") if isinstance(bbox, str) else bbox)]
        except (TypeError, ValueError):
            raise InvalidRequest.at("bbox", f"{bbox!r} is not a list of numbers") from None
        if len(numbers) == 6:
            numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
        if len(numbers) != 4 or numbers[1] > numbers[3]:
            raise InvalidRequest.at("bbox", "is [west, south, east, north] in lon/lat")
        west, south, east, north = numbers
        if west > east:  # across the antimeridian
            return shapely.union(
                shapely.box(west, south, 180, north), shapely.box(-180, south, east, north)
            )
        return shapely.box(west, south, east, north)
    if intersects is not None:
        if isinstance(intersects, str):
            try:
                intersects = json.loads(intersects)
            except json.JSONDecodeError as exc:
                raise InvalidRequest.at("intersects", f"is not GeoJSON: {exc}") from exc
        try:
            geometry = shapely.geometry.shape(intersects)
        except Exception as exc:  # shapely raises several kinds for bad GeoJSON
            raise InvalidRequest.at("intersects", f"is not a GeoJSON geometry: {exc}") from exc
        if geometry.is_empty:
            raise InvalidRequest.at("intersects", "is an empty geometry")
        return geometry
    return None


def _datetime_range(value: Any) -> tuple[datetime | None, datetime | None]:
    """An RFC 3339 instant (a date: that whole day), `A/B`, `A/..` or `../B`."""
    if value is None or value == "":
        return None, None
    if not isinstance(value, str):
        raise InvalidRequest.at("datetime", "is an RFC 3339 instant or interval text")
    if "/" not in value:
        return _instant(value, False), _instant(value, True)
    start: datetime | None
    end: datetime | None
    first, _, second = value.partition("/")
    start = _instant(first, False) if first not in ("", "..") else None
    end = _instant(second, True) if second not in ("", "..") else None
    if start and end and start > end:
        raise InvalidRequest.at("datetime", f"'{value}' ends before it starts")
    return start, end


def _instant(text: str, end_of_day: bool) -> datetime:
    try:
        if len(text) == 10:
            day = datetime.fromisoformat(text).date()
            moment = time(23, 59, 59, 999999) if end_of_day else time()
            return datetime.combine(day, moment, UTC)
        whole, dot, rest = text.replace("Z", "+00:00").replace("z", "+00:00").partition(".")
        if dot:  # fractional seconds of any length: keep microseconds
            digits = "".join(c for c in rest if c.isdigit())
            whole = f"{whole}.{digits[:6].ljust(6, '0')}{rest[len(digits) :]}"
        parsed = datetime.fromisoformat(whole)
    except ValueError:
        raise InvalidRequest.at(
            "datetime", f"'{text}' is not an RFC 3339 date-time (e.g. 2024-05-01T00:00:00Z)"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
