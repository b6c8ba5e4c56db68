"""The area of interest of a request: `processRequest.input.bounds` (bbox and/or geometry, CRS)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import shapely
from pyproj import CRS
from pyproj.exceptions import CRSError
from shapely.geometry import shape

from eobatch.errors import InvalidRequest, Violation
from eobatch.projection import transformer

BOUNDS = "processRequest->input->bounds"
_EPSG_URI = re.compile(r"^https?://www\.opengis\.net/def/crs/EPSG/0/(\d+)$")
_CRS84 = {
    "http://www.opengis.net/def/crs/OGC/1.3/CRS84",
    "https://www.opengis.net/def/crs/OGC/1.3/CRS84",
}


@dataclass(frozen=True)
class AOI:
    """The AOI as one (multi)polygon in EPSG `epsg` (x = easting/longitude)."""

    epsg: int
    geometry: shapely.Geometry

    def in_crs(self, epsg: int) -> shapely.Geometry:
        """The AOI in another CRS, edges densified first so curved outlines survive."""
        return reproject(self.geometry, self.epsg, epsg)

    def wgs84(self) -> shapely.Geometry:
        """The AOI in lon/lat, cut at the antimeridian into parts within −180..180.

        Longitudes beyond ±180 (e.g. a bbox 170..190) wrap around; an AOI in a projected CRS
        that straddles the antimeridian is unwrapped first, so it stays one small area instead
        of a band around the globe, and one around a pole becomes the polar cap it encloses.
        """
        area = reproject(self.geometry, self.epsg, 4326)
        if self.epsg != 4326:
            area = shapely.union_all([_unwrapped(p) for p in shapely.get_parts(area)])
        parts = [
            shapely.intersection(area, shapely.box(west, -90.0, west + 360.0, 90.0))
            for west in (-540.0, -180.0, 180.0)
        ]
        shifted = [shift_lon(part, -d) for part, d in zip(parts, (-360.0, 0.0, 360.0), strict=True)]
        return polygonal(shapely.union_all(shifted))


def reproject(geometry: shapely.Geometry, src: int, dst: int) -> shapely.Geometry:
    """`geometry` from EPSG `src` to `dst`, densified to 64 points per extent first."""
    if src == dst:
        return geometry
    minx, miny, maxx, maxy = geometry.bounds
    step = max(maxx - minx, maxy - miny) / 64 or 1.0
    dense = shapely.segmentize(geometry, step)
    to_dst = transformer(src, dst)

    def project(xy: np.ndarray) -> np.ndarray:
        x, y = to_dst.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(dense, project)


def projected(geometry: shapely.Geometry, src: int, dst: int) -> shapely.Geometry | None:
    """`geometry` in EPSG `dst`, or None if some of it falls outside that projection's domain."""
    try:
        area = reproject(geometry, src, dst)
    except Exception:  # pyproj refuses points outside the projection's domain
        return None
    return area if np.isfinite(shapely.get_coordinates(area)).all() else None


GeometryOrArray = TypeVar("GeometryOrArray", shapely.Geometry, np.ndarray)


def shift_lon(geometry: GeometryOrArray, degrees: float) -> GeometryOrArray:
    """Geometries moved east by `degrees` of longitude."""
    offset = np.array([degrees, 0.0])
    return shapely.transform(geometry, lambda xy: xy + offset)


def _unwrapped(polygon: shapely.Polygon) -> shapely.Geometry:
    """A lon/lat polygon with continuous longitudes along each ring (no 359° jumps); a ring
    that goes once around a pole is closed over that pole."""

    def area(ring: shapely.LinearRing) -> shapely.Geometry:
        xy = np.asarray(ring.coords)
        lon = np.unwrap(xy[:, 0], period=360.0)
        xy = np.column_stack([lon, xy[:, 1]])
        if abs(lon[-1] - lon[0]) > 180.0:  # around a pole
            pole = 90.0 if xy[:, 1].mean() > 0 else -90.0
            xy = np.vstack([xy, [[lon[-1], pole], [lon[0], pole]]])
        return shapely.make_valid(shapely.Polygon(xy))

    holes = [area(ring) for ring in polygon.interiors]
    return shapely.difference(area(polygon.exterior), shapely.union_all(holes))


def parse_crs(crs_uri: str | None) -> int:
    """The EPSG code of an OGC CRS URI (`http://www.opengis.net/def/crs/EPSG/0/32633`); None is
    WGS84."""
    where = f"{BOUNDS}->properties->crs"
    if crs_uri is None or crs_uri in _CRS84:
        return 4326
    match = _EPSG_URI.match(crs_uri.strip())
    if match is None:
        raise InvalidRequest.at(
            where, f"'{crs_uri}' is not a CRS URI; use http://www.opengis.net/def/crs/EPSG/0/<code>"
        )
    code = int(match.group(1))
    try:
        crs = CRS.from_epsg(code)
    except CRSError:
        raise InvalidRequest.at(
            where, f"EPSG:{code} is not a known coordinate reference system"
        ) from None
    if not (crs.is_projected or crs.is_geographic):
        raise InvalidRequest.at(where, f"EPSG:{code} is not a 2-D projected or geographic CRS")
    return code


def parse_aoi(
    bbox: list[float] | None, geometry: dict[str, Any] | None, crs_uri: str | None
) -> AOI:
    """The AOI of `bounds`: the bbox, the geometry, or their intersection when both are given."""
    found: list[Violation] = []
    epsg = None
    try:
        epsg = parse_crs(crs_uri)
    except InvalidRequest as exc:
        found.extend(exc.errors)
    parts = []
    if bbox is not None:
        box = _bbox(bbox, found)
        if box is not None:
            parts.append(box)
    if geometry is not None:
        geom = _geometry(geometry, found)
        if geom is not None:
            parts.append(geom)
    if not found and not parts:
        found.append(Violation(BOUNDS, "give a bbox and/or a geometry"))
    if not found:
        area = parts[0] if len(parts) == 1 else polygonal(shapely.intersection(*parts))
        if area.is_empty or area.area == 0:
            found.append(
                Violation(f"{BOUNDS}->geometry", "the bbox and the geometry do not overlap")
            )
    if found:
        raise InvalidRequest(f"Invalid bounds: {found[0].parameter}: {found[0].violation}", found)
    assert epsg is not None
    return AOI(epsg, area)


def _bbox(bbox: list[float], found: list[Violation]) -> shapely.Geometry | None:
    where = f"{BOUNDS}->bbox"
    if not isinstance(bbox, list | tuple) or len(bbox) != 4 or not all(map(_is_number, bbox)):
        found.append(Violation(where, f"must be 4 numbers [minX, minY, maxX, maxY], got {bbox!r}"))
        return None
    if not all(math.isfinite(v) for v in bbox):
        found.append(Violation(where, "must be finite numbers"))
        return None
    minx, miny, maxx, maxy = bbox
    if minx >= maxx or miny >= maxy:
        found.append(
            Violation(where, f"{bbox} is empty or inverted: need minX < maxX and minY < maxY")
        )
        return None
    return shapely.box(minx, miny, maxx, maxy)


def _geometry(geometry: dict[str, Any], found: list[Violation]) -> shapely.Geometry | None:
    where = f"{BOUNDS}->geometry"
    kind = geometry.get("type") if isinstance(geometry, dict) else None
    if kind not in ("Polygon", "MultiPolygon"):
        found.append(Violation(where, f"must be a GeoJSON Polygon or MultiPolygon, got {kind!r}"))
        return None
    try:
        geom = shape(geometry)
    except Exception as exc:  # shapely raises several kinds for malformed coordinates
        found.append(Violation(where, f"is not a valid {kind}: {exc}"))
        return None
    coords = shapely.get_coordinates(geom)
    if geom.is_empty or not np.isfinite(coords).all():
        found.append(Violation(where, "is empty or has non-finite coordinates"))
        return None
    if not geom.is_valid:
        found.append(Violation(where, f"is not a valid polygon: {shapely.is_valid_reason(geom)}"))
        return None
    return geom


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def polygonal(geometry: shapely.Geometry) -> shapely.Geometry:
    """The areal part of an intersection, without lines or points where the inputs only touch."""
    parts = [
        part
        for part in shapely.get_parts(geometry)
        if part.geom_type in ("Polygon", "MultiPolygon") and not part.is_empty
    ]
    return shapely.union_all(parts) if parts else shapely.Polygon()
