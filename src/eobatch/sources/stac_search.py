"""Searching a STAC source: a STAC API, page by page with retries, or a stac-geoparquet file.

A STAC API search is POSTed to `<url>/search` and followed through its `next` links, so a
search of a country over years (thousands of items) arrives whole whatever the server's page
size. A page that fails for a transient reason (connection error, timeout, 408/429/5xx) is
asked again after an exponential backoff (honouring `Retry-After`); the pages already read are
kept. A stac-geoparquet file is searched with DuckDB, the predicates pushed into the Parquet
reader so a continent's items are never all loaded.

Every item is then tested exactly: its footprint against the bounding box (shapely) and its
properties against the filter the data type and the request's options select.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import shapely

log = logging.getLogger(__name__)

PAGE_SIZE = 250  # items per page asked of a STAC API (Earth Search and stac-server allow 250)
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class StacSearchError(Exception):
    """The STAC source could not be searched (after the retries a transient failure gets)."""


@dataclass(frozen=True)
class StacItem:
    """What the reader needs of a STAC item."""

    id: str
    datetime: datetime
    geometry: shapely.Geometry  # lon/lat footprint
    properties: dict[str, Any]
    assets: dict[str, str]  # asset key -> href
    collection: str | None = None


@dataclass(frozen=True)
class StacQuery:
    """Items of `collections` whose footprint meets `bbox` (lon/lat), sensed in [start, end],
    whose properties pass `filter` (property -> accepted values; a list-valued property such
    as `sar:polarizations` passes when it holds the same values as an accepted list)."""

    collections: tuple[str, ...]
    bbox: tuple[float, float, float, float]
    start: datetime | None = None
    end: datetime | None = None
    filter: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    alternate_href: str | None = None  # read `alternate.<name>.href` of assets that have one


@dataclass(frozen=True)
class Retry:
    """How a failing STAC API request is retried: `attempts` in all, the wait doubling from
    `backoff_s` up to `max_backoff_s` (with jitter), each request bounded by `timeout_s`."""

    attempts: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    timeout_s: float = 60.0

    def wait_s(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after is not None:
            try:
                return min(self.max_backoff_s, max(0.0, float(retry_after)))
            except ValueError:
                pass  # an HTTP date: use our own backoff
        wait = min(self.max_backoff_s, self.backoff_s * 2**attempt)
        return wait * random.uniform(0.5, 1.0)  # spread the retries of concurrent searches


def search_items(source: str, query: StacQuery, retry: Retry | None = None) -> list[StacItem]:
    """The items of the STAC source (API URL or stac-geoparquet file) that answer `query`."""
    if is_geoparquet(source):
        items = _search_geoparquet(_local_path(source), query)
    else:
        items = _search_api(source, query, retry or Retry())
    area = shapely.box(*query.bbox)
    return [
        item
        for item in items
        if item.geometry.intersects(area) and matches(item.properties, query.filter)
    ]


def matches(properties: Mapping[str, Any], accepted: Mapping[str, tuple[Any, ...]]) -> bool:
    """Whether item `properties` pass the filter (an item lacking a property does not)."""
    for name, values in accepted.items():
        value = properties.get(name)
        if value is None:
            return False
        if isinstance(value, list | tuple):
            wanted = sorted(map(str, value))
            if not any(
                isinstance(v, list | tuple) and sorted(map(str, v)) == wanted for v in values
            ):
                return False
        elif value not in values:
            return False
    return True


def is_geoparquet(source: str) -> bool:
    return urlsplit(source).path.lower().endswith((".parquet", ".geoparquet"))


def _local_path(source: str) -> str:
    parts = urlsplit(source)
    if parts.scheme not in ("", "file"):
        raise StacSearchError(
            f"stac-geoparquet source {source} must be a local file; serve remote catalogues "
            "through a STAC API"
        )
    return parts.path if parts.scheme == "file" else source


def _rfc3339(value: datetime | None) -> str:
    if value is None:
        return ".."
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- STAC API ------------------------------------------------------------------------------------


def _search_api(url: str, query: StacQuery, retry: Retry) -> list[StacItem]:
    body: dict[str, Any] = {
        "collections": list(query.collections),
        "bbox": list(query.bbox),
        "limit": PAGE_SIZE,
    }
    if query.start is not None or query.end is not None:  # some APIs refuse "../.."
        body["datetime"] = f"{_rfc3339(query.start)}/{_rfc3339(query.end)}"
    request: tuple[str, str, dict[str, Any] | None] | None = (
        "POST",
        f"{url.rstrip('/')}/search",
        body,
    )
    items: list[StacItem] = []
    followed: set[str] = set()
    headers = {"Accept": "application/geo+json, application/json", "User-Agent": "eobatch"}
    with httpx.Client(timeout=retry.timeout_s, headers=headers, follow_redirects=True) as client:
        while request is not None:
            page = _fetch(client, *request, retry=retry)
            features = page.get("features") or []
            items.extend(_from_geojson(f, query.alternate_href) for f in features)
            request = _next_request(page, request) if features else None
            if request is not None:
                key = json.dumps([request[1], request[2]], sort_keys=True)
                if key in followed:  # a server that links a page to itself: stop, not loop
                    break
                followed.add(key)
    return items


def _fetch(
    client: httpx.Client, method: str, href: str, body: dict[str, Any] | None, retry: Retry
) -> dict[str, Any]:
    """One page, asked again after a backoff while it fails for a transient reason."""
    problem = ""
    for attempt in range(retry.attempts):
        retry_after = None
        try:
            response = client.request(method, href, json=body)
        except httpx.TransportError as exc:  # refused, reset, timed out
            problem = f"{type(exc).__name__}: {exc}"
        else:
            if response.status_code in RETRYABLE_STATUS:
                problem = f"HTTP {response.status_code}"
                retry_after = response.headers.get("Retry-After")
            elif response.is_error:
                raise StacSearchError(
                    f"the STAC API answered HTTP {response.status_code} to {method} {href}: "
                    f"{response.text[:300]}"
                )
            else:
                try:
                    page = response.json()
                except ValueError as exc:
                    raise StacSearchError(f"the STAC API sent no JSON for {href}") from exc
                if not isinstance(page, dict):
                    raise StacSearchError(f"the STAC API sent no item collection for {href}")
                return page
        if attempt + 1 < retry.attempts:
            wait = retry.wait_s(attempt, retry_after)
            log.warning("STAC search %s failed (%s); retrying in %.1f s", href, problem, wait)
            time.sleep(wait)
    raise StacSearchError(f"the STAC API failed {retry.attempts} times for {href}: {problem}")


def _next_request(
    page: dict[str, Any], previous: tuple[str, str, dict[str, Any] | None]
) -> tuple[str, str, dict[str, Any] | None] | None:
    """The request of the `next` link (STAC API item search: GET, or POST with a body that
    may be merged into the previous one)."""
    for link in page.get("links") or []:
        if link.get("rel") != "next" or not link.get("href"):
            continue
        method = str(link.get("method") or "GET").upper()
        if method != "POST":
            return "GET", link["href"], None
        body = link.get("body") or {}
        if link.get("merge"):
            body = {**(previous[2] or {}), **body}
        return "POST", link["href"], body
    return None


def _from_geojson(item: dict[str, Any], alternate: str | None) -> StacItem:
    properties = dict(item.get("properties") or {})
    return StacItem(
        id=str(item["id"]),
        datetime=_parse_time(properties.get("datetime") or properties.get("start_datetime")),
        geometry=shapely.geometry.shape(item["geometry"]),
        properties=properties,
        assets=_hrefs(item.get("assets") or {}, alternate),
        collection=item.get("collection"),
    )


def _hrefs(assets: Mapping[str, Any], alternate: str | None) -> dict[str, str]:
    hrefs = {}
    for key, asset in assets.items():
        if not asset:
            continue
        other = ((asset.get("alternate") or {}).get(alternate) or {}) if alternate else {}
        href = other.get("href") or asset.get("href")
        if href:
            hrefs[key] = str(href)
    return hrefs


def _parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# -- stac-geoparquet -----------------------------------------------------------------------------

_CORE_COLUMNS = (
    "type",
    "stac_version",
    "stac_extensions",
    "id",
    "geometry",
    "bbox",
    "links",
    "assets",
    "collection",
)


def _search_geoparquet(path: str, query: StacQuery) -> list[StacItem]:
    """stac-geoparquet keeps item properties as top-level columns and the bbox as a struct the
    Parquet reader can prune row groups by."""
    import duckdb

    if not Path(path).is_file():
        raise StacSearchError(f"stac-geoparquet file {path} does not exist")
    # Parquet and ST_AsWKB are built in: never let DuckDB fetch an extension from the internet.
    with duckdb.connect(config={"autoinstall_known_extensions": False}) as con:
        return _query_geoparquet(con, path, query)


def _query_geoparquet(con: Any, path: str, query: StacQuery) -> list[StacItem]:
    source = "read_parquet(?)"
    described = con.execute(f"DESCRIBE SELECT * FROM {source}", [path]).fetchall()
    types = {row[0]: str(row[1]) for row in described}
    properties = [c for c in types if c not in _CORE_COLUMNS]
    minx, miny, maxx, maxy = query.bbox
    where = ["bbox.xmin <= ?", "bbox.xmax >= ?", "bbox.ymin <= ?", "bbox.ymax >= ?"]
    params: list[Any] = [maxx, minx, maxy, miny]
    if "collection" in types:
        where.append(f"collection IN ({', '.join('?' for _ in query.collections)})")
        params.extend(query.collections)
    # Times cross as epoch microseconds: DuckDB's own datetime conversion would need pytz.
    if query.start is not None:
        where.append("epoch_us(datetime) >= ?")
        params.append(_epoch_us(query.start))
    if query.end is not None:
        where.append("epoch_us(datetime) <= ?")
        params.append(_epoch_us(query.end))
    for name, accepted in query.filter.items():  # scalar columns: pushed down (lists: in Python)
        scalar = types.get(name) in ("VARCHAR", "BIGINT", "INTEGER", "DOUBLE", "BOOLEAN")
        if scalar and all(isinstance(v, str | int | float) for v in accepted):
            where.append(f"{_quote(name)} IN ({', '.join('?' for _ in accepted)})")
            params.extend(accepted)
    selected = ", ".join(
        f"epoch_us({_quote(c)})" if types[c].startswith("TIMESTAMP") else _quote(c)
        for c in properties
    )
    sql = (
        f"SELECT id, ST_AsWKB(geometry), to_json(assets), "
        f"{'collection' if 'collection' in types else 'NULL'}, {selected} FROM {source} "
        f"WHERE {' AND '.join(where)}"
    )
    items = []
    for row in con.execute(sql, [path, *params]).fetchall():
        item_id, wkb, assets_json, collection, *values = row
        props = {
            name: _from_epoch_us(value) if types[name].startswith("TIMESTAMP") else value
            for name, value in zip(properties, values, strict=True)
            if value is not None
        }
        items.append(
            StacItem(
                id=str(item_id),
                datetime=_parse_time(props.get("datetime") or props.get("start_datetime")),
                geometry=shapely.from_wkb(bytes(wkb)),
                properties=props,
                assets=_hrefs(json.loads(assets_json or "{}"), query.alternate_href),
                collection=collection,
            )
        )
    return items


def _epoch_us(value: datetime) -> int:
    return round(value.timestamp() * 1_000_000)


def _from_epoch_us(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1_000_000, UTC)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
