"""GeoPackage input: the user's own features (batch-v2-api.md §4.2, the seed's GeoPackage section).

Every rule of the format is checked with its own message naming the table, the feature and the
rule; a broken file fails the analysis (`AnalysisError`), never the server. Metadata is read with
sqlite3 (the GeoPackage tables are plain SQLite), features with pyogrio (GDAL) in bulk.
"""

from __future__ import annotations

import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import pyogrio
import shapely
from pyproj import CRS
from pyproj.exceptions import CRSError

from eobatch.errors import AnalysisError
from eobatch.planning.aoi import AOI, projected
from eobatch.planning.features import Feature, FeaturePlan, extents_of
from eobatch.storage import Location

MAX_FEATURES = 700_000
MAX_SIZE_PX = 3500
MAX_IDENTIFIER = 200  # characters; the identifier names the output folder (<tileName>)
_POLYGONAL = ("POLYGON", "MULTIPOLYGON")


@dataclass(frozen=True)
class SizeDefaults:
    """`input.defaults`: output size for features that give none (width/height or resolution)."""

    width: int | None = None
    height: int | None = None
    resolution: float | None = None


@dataclass(frozen=True)
class FeatureTable:
    """One feature table, read and checked: columns as arrays, geometries in EPSG `epsg`."""

    name: str
    epsg: int
    fids: np.ndarray  # int64, the `id` column
    identifiers: np.ndarray  # object (str)
    geometries: np.ndarray  # shapely geometries
    width: np.ndarray  # int64, output pixels
    height: np.ndarray  # int64


class GeoPackageError(AnalysisError):
    """A rule of the GeoPackage input broken; the message names the table, feature and rule."""


def read_feature_tables(path: Path, defaults: SizeDefaults, source: str) -> list[FeatureTable]:
    """Every feature table of the GeoPackage at `path`, checked against all input rules.

    `source` is the user-facing locator (s3://…) used in messages.
    """
    where = f"GeoPackage {source}"
    tables = _registered_tables(path, where)
    total = 0
    for table, _, _ in tables:
        total += _count(path, table, where)
    if total > MAX_FEATURES:
        raise GeoPackageError(
            f"{where} has {total} features; at most {MAX_FEATURES} are allowed (all tables)"
        )
    if total == 0:
        raise GeoPackageError(f"{where} has no features: every feature table is empty")
    read = [
        _read_table(path, table, column, epsg, defaults, where) for table, column, epsg in tables
    ]
    _check_unique_identifiers(read, where)
    return read


def fetch_feature_tables(folder: Location, name: str, defaults: SizeDefaults) -> list[FeatureTable]:
    """Fetch the GeoPackage `name` from `folder` and read it, checked against every input rule
    (task creation does this too, to refuse a broken file before anything is stored)."""
    source = folder.url_for(name)
    try:
        data = folder.get(name)
    except FileNotFoundError:
        raise GeoPackageError(f"GeoPackage {source} not found") from None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "features.gpkg"
        path.write_bytes(data)
        del data
        return read_feature_tables(path, defaults, source)


def plan_geopackage_input(
    folder: Location, name: str, defaults: SizeDefaults, aoi: AOI | None
) -> list[Feature]:
    """Every feature of `geopackage_input_plan`, as a list."""
    return list(geopackage_input_plan(folder, name, defaults, aoi))


def geopackage_input_plan(
    folder: Location, name: str, defaults: SizeDefaults, aoi: AOI | None
) -> FeaturePlan:
    """Fetch the GeoPackage `name` from `folder`, check it and plan its features."""
    tables = fetch_feature_tables(folder, name, defaults)
    return geopackage_plan(tables, aoi, folder.url_for(name))


def plan_geopackage(tables: list[FeatureTable], aoi: AOI | None, source: str) -> list[Feature]:
    """Every feature of `geopackage_plan`, as a list."""
    return list(geopackage_plan(tables, aoi, source))


def geopackage_plan(tables: list[FeatureTable], aoi: AOI | None, source: str) -> FeaturePlan:
    """The features to process: all of them, or those meeting the AOI; in the feature CRS.

    A feature's id is its GeoPackage `id` (what the execution database lists), unless two
    tables share an id or one does not fit the store's 32-bit ids: then ids are 0, 1, … over all
    tables in table order, then `id` order, counted before the AOI filter.
    """
    parts: list[tuple[FeatureTable, int, np.ndarray, np.ndarray]] = []  # table, first id, rows
    every = np.concatenate([table.fids for table in tables])
    own_ids = len(np.unique(every)) == len(every) and bool(((every >= 0) & (every < 2**31)).all())
    first_id = 0
    for table in tables:
        hit = np.ones(len(table.fids), dtype=bool)
        if aoi is not None:
            area = projected(aoi.geometry, aoi.epsg, table.epsg)
            if area is None:
                area = projected(aoi.wgs84(), 4326, table.epsg)
            if area is None:
                hit[:] = False
            else:
                area = area if area.is_valid else shapely.make_valid(area)
                shapely.prepare(area)
                hit = shapely.intersects(area, table.geometries)
                hit &= ~shapely.touches(area, table.geometries)
        rows = np.flatnonzero(hit)
        if len(rows):
            parts.append((table, first_id, rows, shapely.bounds(table.geometries[rows])))
        first_id += len(table.fids)
    if not parts:
        raise GeoPackageError(f"No feature of GeoPackage {source} meets the AOI (input bounds)")
    starts = np.cumsum([0] + [len(rows) for _, _, rows, _ in parts])

    def make(start: int, stop: int) -> list[Feature]:
        features = []
        for (table, first, rows, bounds), lo, hi in zip(parts, starts, starts[1:], strict=False):
            if hi <= start or lo >= stop:  # the table holds none of these features
                continue
            a, b = max(start, lo) - lo, min(stop, hi) - lo
            for i, box in zip(rows[a:b].tolist(), bounds[a:b].tolist(), strict=True):
                features.append(
                    Feature(
                        id=int(table.fids[i]) if own_ids else first + i,
                        name=table.identifiers[i],
                        epsg=table.epsg,
                        bounds=tuple(box),  # type: ignore[arg-type]
                        width=int(table.width[i]),
                        height=int(table.height[i]),
                        geometry=table.geometries[i],
                    )
                )
        return features

    epsg = np.concatenate([np.full(len(rows), t.epsg) for t, _, rows, _ in parts])
    extents = extents_of(epsg, np.concatenate([bounds for _, _, _, bounds in parts]))
    return FeaturePlan(int(starts[-1]), extents, make)


def _connect(path: Path, where: str) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise GeoPackageError(
            f"{where} is not a GeoPackage: not an SQLite database ({exc})"
        ) from None
    return db


def _registered_tables(path: Path, where: str) -> list[tuple[str, str, int]]:
    """(table, geometry column, EPSG code) of every feature table, in table-name order."""
    db = _connect(path, where)
    try:
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        for required in ("gpkg_spatial_ref_sys", "gpkg_contents", "gpkg_geometry_columns"):
            if required not in names:
                raise GeoPackageError(
                    f"{where} is not a GeoPackage: the required table {required} is missing"
                )
        rows = db.execute(
            "SELECT g.table_name, g.column_name, g.geometry_type_name, g.srs_id, "
            "s.organization, s.organization_coordsys_id FROM gpkg_geometry_columns g "
            "LEFT JOIN gpkg_spatial_ref_sys s ON s.srs_id = g.srs_id ORDER BY g.table_name"
        ).fetchall()
        if not rows:
            raise GeoPackageError(
                f"{where} has no feature table: no table is registered in gpkg_geometry_columns"
            )
        tables = []
        for table, column, kind, srs_id, org, code in rows:
            at = f"{where}, table '{table}'"
            if table not in names:
                raise GeoPackageError(
                    f"{at} is registered in gpkg_geometry_columns but does not exist"
                )
            if str(kind).upper() not in (*_POLYGONAL, "GEOMETRY"):
                raise GeoPackageError(
                    f"{at}: geometry type {kind} is not allowed; use POLYGON or MULTIPOLYGON"
                )
            columns = {
                r[1].lower(): (r[2].upper(), r[5])
                for r in db.execute(f'PRAGMA table_info("{_quoted(table)}")')
            }
            _check_columns(columns, column, at)
            tables.append((table, column, _epsg_of(srs_id, org, code, at)))
        return tables
    finally:
        db.close()


def _check_columns(columns: dict[str, tuple[str, int]], geometry: str, at: str) -> None:
    if geometry.lower() not in columns:
        raise GeoPackageError(f"{at}: geometry column '{geometry}' is registered but missing")
    if "id" not in columns:
        raise GeoPackageError(f"{at} has no 'id' column; it must be the INTEGER PRIMARY KEY")
    kind, pk = columns["id"]
    if kind != "INTEGER" or pk != 1 or sum(p > 0 for _, p in columns.values()) != 1:
        raise GeoPackageError(
            f"{at}: column 'id' ({kind or 'untyped'}) must be the table's INTEGER PRIMARY KEY"
        )
    if "identifier" not in columns:
        raise GeoPackageError(f"{at} has no 'identifier' column (TEXT, unique, not null)")
    if "TEXT" not in columns["identifier"][0] and "CHAR" not in columns["identifier"][0]:
        raise GeoPackageError(
            f"{at}: column 'identifier' must be TEXT, not {columns['identifier'][0] or 'untyped'}"
        )
    for name, allowed in (("width", "INT"), ("height", "INT"), ("resolution", "")):
        kind = columns.get(name, ("", 0))[0]
        if allowed and name in columns and allowed not in kind:
            raise GeoPackageError(f"{at}: column '{name}' must be INTEGER, not {kind}")
        if not allowed and name in columns and kind not in ("REAL", "DOUBLE", "FLOAT"):
            raise GeoPackageError(f"{at}: column 'resolution' must be REAL, not {kind}")


def _epsg_of(srs_id: int, org: str | None, code: int | None, at: str) -> int:
    if org is None:
        raise GeoPackageError(
            f"{at}: its CRS (srs_id {srs_id}) is not defined in gpkg_spatial_ref_sys"
        )
    if str(org).upper() != "EPSG" or srs_id in (0, -1):
        raise GeoPackageError(
            f"{at}: CRS {org}:{code} (srs_id {srs_id}) is not an EPSG CRS; "
            "use a CRS with an EPSG code"
        )
    try:
        crs = CRS.from_epsg(int(code))  # type: ignore[arg-type]
    except CRSError:
        raise GeoPackageError(f"{at}: EPSG:{code} is not a known CRS") from None
    if not (crs.is_projected or crs.is_geographic):
        raise GeoPackageError(f"{at}: EPSG:{code} is not a 2-D projected or geographic CRS")
    return int(code)  # type: ignore[arg-type]


def _count(path: Path, table: str, where: str) -> int:
    db = _connect(path, where)
    try:
        return int(db.execute(f'SELECT count(*) FROM "{_quoted(table)}"').fetchone()[0])
    finally:
        db.close()


def _quoted(name: str) -> str:
    return name.replace('"', '""')


def _read_table(
    path: Path, table: str, column: str, epsg: int, defaults: SizeDefaults, where: str
) -> FeatureTable:
    at = f"{where}, table '{table}'"
    columns = _attribute_columns(path, table, where)
    _, gdal_fids, wkb, _ = pyogrio.raw.read(path, layer=table, columns=[], return_fids=True)
    fids, identifiers = columns["id"], columns["identifier"]
    order = np.argsort(gdal_fids, kind="stable")
    if not np.array_equal(np.asarray(gdal_fids)[order], fids):
        raise GeoPackageError(f"{at}: GDAL reads other features than the table holds")
    wkb = np.asarray(wkb, dtype=object)[order]
    names = [str(v) if v is not None else None for v in identifiers]
    for i, name in enumerate(names):
        feature = f"{at}, feature id {fids[i]}"
        if name is None or name == "":
            raise GeoPackageError(f"{feature}: identifier is null or empty; it is required")
        if len(name) > MAX_IDENTIFIER or name in (".", "..") or any(c in name for c in "/\\\0"):
            raise GeoPackageError(
                f"{feature}: identifier '{name[:60]}' is not usable as an output folder name: "
                f"use at most {MAX_IDENTIFIER} characters, no '/', '\\' or NUL, not '.' or '..'"
            )
    geometries = np.asarray(shapely.from_wkb(wkb, on_invalid="ignore"), dtype=object)
    kinds = shapely.get_type_id(geometries)
    for i in np.flatnonzero((kinds != 3) & (kinds != 6)).tolist():
        feature = f"{at}, feature '{names[i]}' (id {fids[i]})"
        if geometries[i] is None or kinds[i] < 0:
            raise GeoPackageError(f"{feature} has no geometry (null or unreadable)")
        kind = shapely.get_type_id(geometries[i])
        raise GeoPackageError(
            f"{feature}: geometry is a {_TYPE_NAMES.get(kind, kind)}; only POLYGON or "
            "MULTIPOLYGON are allowed"
        )
    empty = shapely.is_empty(geometries) | (shapely.area(geometries) <= 0)
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise GeoPackageError(f"{at}, feature '{names[i]}' (id {fids[i]}): geometry is empty")
    bounds = shapely.bounds(geometries)
    named = cast(list[str], names)  # every one checked above
    width, height = _output_sizes(bounds, columns, defaults, named, fids, at)
    return FeatureTable(table, epsg, fids, np.array(names, dtype=object), geometries, width, height)


_TYPE_NAMES = {
    0: "POINT",
    1: "LINESTRING",
    2: "LINEARRING",
    4: "MULTIPOINT",
    5: "MULTILINESTRING",
    7: "GEOMETRYCOLLECTION",
}


def _attribute_columns(path: Path, table: str, where: str) -> dict[str, np.ndarray]:
    """id, identifier, width, height, resolution (NaN where null or absent), in id order."""
    db = _connect(path, where)
    try:
        present = {r[1].lower() for r in db.execute(f'PRAGMA table_info("{_quoted(table)}")')}
        select = ", ".join(
            (f'"{c}"' if c in present else "NULL") for c in ("width", "height", "resolution")
        )
        rows = db.execute(
            f'SELECT id, identifier, {select} FROM "{_quoted(table)}" ORDER BY id'
        ).fetchall()
    finally:
        db.close()
    if not rows:
        empty = {k: np.empty(0) for k in ("width", "height", "resolution")}
        return {"id": np.empty(0, dtype=np.int64), "identifier": np.empty(0, dtype=object), **empty}
    ids, identifier, width, height, resolution = zip(*rows, strict=True)
    at = f"{where}, table '{table}'"
    out = {"id": np.array(ids, dtype=np.int64), "identifier": np.array(identifier, dtype=object)}
    for name, values in (("width", width), ("height", height), ("resolution", resolution)):
        bad = [
            (i, v)
            for i, v in zip(ids, values, strict=True)
            if v is not None and not isinstance(v, int | float)
        ]
        if bad:
            raise GeoPackageError(
                f"{at}, feature id {bad[0][0]}: {name} {bad[0][1]!r} is not a number"
            )
        out[name] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return out


def _output_sizes(
    bounds: np.ndarray,
    sizes: dict[str, np.ndarray],
    defaults: SizeDefaults,
    names: list[str],
    fids: np.ndarray,
    at: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels per feature: its own width+height, else its own resolution, else `defaults`.

    From a resolution, size = extent / resolution rounded (at least 1), like the Process API.
    """
    w, h, res = sizes["width"], sizes["height"], sizes["resolution"]

    def fail(i: int, rule: str) -> GeoPackageError:
        return GeoPackageError(f"{at}, feature '{names[i]}' (id {fids[i]}): {rule}")

    for name, values in (("width", w), ("height", h)):
        bad = ~np.isnan(values) & ((values < 1) | (values != np.floor(values)))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise fail(i, f"{name} {values[i]:g} must be a positive whole number of pixels")
    bad = ~np.isnan(res) & ~(res > 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise fail(i, f"resolution {res[i]:g} must be a positive number (CRS units per pixel)")
    half = np.isnan(w) != np.isnan(h)
    own_size = ~np.isnan(w) & ~np.isnan(h)
    own_res = ~own_size & ~np.isnan(res)
    if (half & ~own_res).any() and defaults.width is None and defaults.resolution is None:
        i = int(np.flatnonzero(half & ~own_res)[0])
        missing = "height" if np.isnan(h[i]) else "width"
        raise fail(
            i,
            f"has {'width' if missing == 'height' else 'height'} but no {missing}; "
            "give both, or a resolution",
        )
    width = np.where(own_size, w, np.nan)
    height = np.where(own_size, h, np.nan)
    resolution = np.where(own_res, res, np.nan)
    rest = ~own_size & ~own_res
    if rest.any():
        if defaults.width is not None and defaults.height is not None:
            width[rest] = np.where(np.isnan(w[rest]), defaults.width, w[rest])
            height[rest] = np.where(np.isnan(h[rest]), defaults.height, h[rest])
        elif defaults.resolution is not None:
            resolution[rest] = defaults.resolution
        else:
            i = int(np.flatnonzero(rest)[0])
            raise fail(
                i,
                "no output size: give width and height, or resolution, in the feature table "
                "or in input.defaults",
            )
    by_res = ~np.isnan(resolution)
    extent_x, extent_y = bounds[:, 2] - bounds[:, 0], bounds[:, 3] - bounds[:, 1]
    with np.errstate(invalid="ignore"):
        width[by_res] = np.maximum(1, np.round(extent_x[by_res] / resolution[by_res]))
        height[by_res] = np.maximum(1, np.round(extent_y[by_res] / resolution[by_res]))
    too_big = (width > MAX_SIZE_PX) | (height > MAX_SIZE_PX)
    if too_big.any():
        i = int(np.flatnonzero(too_big)[0])
        how = f" at resolution {resolution[i]:g}" if by_res[i] else ""
        raise fail(
            i,
            f"output {int(width[i])} × {int(height[i])} px{how} exceeds the limit of "
            f"{MAX_SIZE_PX} × {MAX_SIZE_PX} px",
        )
    return width.astype(np.int64), height.astype(np.int64)


def _check_unique_identifiers(tables: list[FeatureTable], where: str) -> None:
    seen: dict[str, tuple[str, int]] = {}
    for table in tables:
        for name, fid in zip(table.identifiers.tolist(), table.fids.tolist(), strict=True):
            first = seen.setdefault(name, (table.name, fid))
            if first != (table.name, fid):
                raise GeoPackageError(
                    f"{where}: identifier '{name}' is used by table '{first[0]}' feature id "
                    f"{first[1]} and by table '{table.name}' feature id {fid}; identifiers must "
                    "be unique across all feature tables"
                )
