"""GeoPackage input: reading, every validation rule with its own message, AOI filtering."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import shapely

from eobatch.errors import AnalysisError
from eobatch.planning import parse_aoi
from eobatch.planning.geopackage import (
    MAX_FEATURES,
    SizeDefaults,
    geopackage_plan,
    plan_geopackage,
    plan_geopackage_input,
    read_feature_tables,
)
from eobatch.storage import Location
from tests.geopackages import rebuild_table, sql, squares, valid_geopackage, write_layer

NO_DEFAULTS = SizeDefaults()
SOURCE = "s3://in/features.gpkg"


def plan(path: Path, defaults: SizeDefaults = NO_DEFAULTS, aoi=None):  # type: ignore[no-untyped-def]
    return plan_geopackage(read_feature_tables(path, defaults, SOURCE), aoi, SOURCE)


def test_valid_geopackage_in_two_crss(tmp_path: Path) -> None:
    features = plan(valid_geopackage(tmp_path / "f.gpkg"))
    assert [(f.id, f.name, f.epsg, f.width, f.height) for f in features] == [
        (0, "fields_utm-1", 32633, 100, 100),
        (1, "fields_utm-2", 32633, 100, 100),
        (2, "fields_utm-3", 32633, 50, 50),
        (3, "fields_wgs-1", 4326, 100, 100),  # 0.01° at 1e-4°
        (4, "fields_wgs-2", 4326, 20, 20),  # 0.01° at 5e-4°
    ]
    assert features[1].bounds == (501000, 5350000, 502000, 5351000)
    assert features[1].transform.a == 10.0 and features[1].transform.e == -10.0
    assert features[0].geometry.equals(shapely.box(500000, 5350000, 501000, 5351000))


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 6])
def test_a_plan_made_in_chunks_of_any_size_is_the_whole_plan(tmp_path: Path, size: int) -> None:
    tables = read_feature_tables(valid_geopackage(tmp_path / "f.gpkg"), NO_DEFAULTS, SOURCE)
    whole = geopackage_plan(tables, None, SOURCE)
    chunks = list(whole.chunks(size))
    assert [len(c) for c in chunks] == [min(size, 5 - start) for start in range(0, 5, size)]
    assert (
        [f for chunk in chunks for f in chunk]
        == whole.make(0, 5)
        == plan_geopackage(tables, None, SOURCE)
    )
    assert list(whole.extents) == [4326, 32633]  # by EPSG code, as the manifest's layers
    assert whole.extents == {
        32633: (500000.0, 5350000.0, 503000.0, 5351000.0),
        4326: pytest.approx((14.30, 48.28, 14.32, 48.29)),
    }


def test_aoi_keeps_only_intersecting_features_with_stable_ids(tmp_path: Path) -> None:
    path = valid_geopackage(tmp_path / "f.gpkg")
    aoi = parse_aoi(
        [501500, 5350500, 502500, 5350600], None, "http://www.opengis.net/def/crs/EPSG/0/32633"
    )
    assert [(f.id, f.name) for f in plan(path, aoi=aoi)] == [
        (1, "fields_utm-2"),
        (2, "fields_utm-3"),
    ]
    lonlat = parse_aoi([14.305, 48.285, 14.306, 48.286], None, None)
    assert [(f.id, f.name) for f in plan(path, aoi=lonlat)] == [(3, "fields_wgs-1")]


def test_features_keep_their_geopackage_ids_when_unique(tmp_path: Path) -> None:
    """The execution database lists a feature by its GeoPackage id (the seed's `id`)."""
    path = tmp_path / "f.gpkg"
    write_layer(
        path,
        "a",
        32633,
        squares(500000, 5350000, 1000, 2),
        ids=[10, 20],
        width=[8, 8],
        height=[8, 8],
    )
    write_layer(path, "b", 32633, squares(600000, 5350000, 1000, 1), ids=[7], width=[8], height=[8])
    assert [(f.id, f.name) for f in plan(path)] == [(10, "a-10"), (20, "a-20"), (7, "b-7")]


def test_defaults_fill_features_without_a_size(tmp_path: Path) -> None:
    path = tmp_path / "f.gpkg"
    write_layer(
        path,
        "t",
        32633,
        squares(500000, 5350000, 1000, 3),
        width=[200, None, None],
        height=[300, None, None],
        resolution=[None, 20.0, None],
    )
    sizes = [(f.width, f.height) for f in plan(path, SizeDefaults(resolution=5.0))]
    assert sizes == [(200, 300), (50, 50), (200, 200)]
    sizes = [(f.width, f.height) for f in plan(path, SizeDefaults(width=64, height=32))]
    assert sizes == [(200, 300), (50, 50), (64, 32)]


def test_geopackage_is_fetched_from_its_location(tmp_path: Path) -> None:
    valid_geopackage(tmp_path / "f.gpkg")
    features = plan_geopackage_input(Location.local(tmp_path), "f.gpkg", NO_DEFAULTS, None)
    assert len(features) == 5
    with pytest.raises(AnalysisError, match=r"GeoPackage file://.*/missing.gpkg not found"):
        plan_geopackage_input(Location.local(tmp_path), "missing.gpkg", NO_DEFAULTS, None)


# -- malformed GeoPackages: each breaks one rule and gets its own message ------------------------


def _recreate(create: str, columns: str, table: str = "fields_utm"):  # type: ignore[no-untyped-def]
    return lambda p: rebuild_table(p, table, create, columns)


def _many_features(path: Path) -> None:
    sql(
        path,
        "WITH RECURSIVE n(i) AS (SELECT 100 UNION ALL SELECT i + 1 FROM n WHERE i < "
        f"{MAX_FEATURES + 100 - 5}) INSERT INTO fields_utm (id, geom, identifier, width, height) "
        "SELECT i, (SELECT geom FROM fields_utm WHERE id = 1), 'f' || i, 10, 10 FROM n",
    )


def _line_table(path: Path) -> None:
    write_layer(
        path,
        "roads",
        32633,
        [shapely.LineString([(0, 0), (1, 1)])],
        geometry_type="LineString",
        width=[10],
        height=[10],
    )


def _point_in_generic_table(path: Path) -> None:
    write_layer(
        path,
        "mixed",
        32633,
        [shapely.box(0, 0, 1, 1), shapely.Point(5, 5)],
        geometry_type="Unknown",
        width=[10, 10],
        height=[10, 10],
    )


def _srs(organization: str, code: int):  # type: ignore[no-untyped-def]
    return lambda p: sql(
        p,
        "INSERT INTO gpkg_spatial_ref_sys (srs_name, srs_id, organization, "
        f"organization_coordsys_id, definition) VALUES ('x', 999001, '{organization}', {code}, "
        "'undefined')",
        "UPDATE gpkg_geometry_columns SET srs_id = 999001 WHERE table_name = 'fields_utm'",
    )


def _not_sqlite(path: Path) -> None:
    path.write_bytes(b"PK\x03\x04 this is a zip file, not a GeoPackage" * 10)


BASE = "id INTEGER PRIMARY KEY, geom POLYGON, identifier TEXT, width INTEGER, height INTEGER"
COLUMNS = "id, geom, identifier, width, height"

MALFORMED = {
    "not an SQLite file": (_not_sqlite, r"is not a GeoPackage: not an SQLite database"),
    "no gpkg_geometry_columns": (
        lambda p: sql(p, "DROP TABLE gpkg_geometry_columns"),
        r"not a GeoPackage: the required table gpkg_geometry_columns is missing",
    ),
    "no feature table": (
        lambda p: sql(p, "DELETE FROM gpkg_geometry_columns"),
        r"has no feature table: no table is registered in gpkg_geometry_columns",
    ),
    "registered table missing": (
        lambda p: sql(
            p, "INSERT INTO gpkg_geometry_columns VALUES ('ghost', 'geom', 'POLYGON', 4326, 0, 0)"
        ),
        r"table 'ghost' is registered in gpkg_geometry_columns but does not exist",
    ),
    "line table": (_line_table, r"table 'roads': geometry type LINESTRING is not allowed"),
    "point feature": (
        _point_in_generic_table,
        r"table 'mixed', feature 'mixed-2' \(id 2\): geometry is a POINT; only POLYGON or "
        r"MULTIPOLYGON",
    ),
    "null geometry": (
        lambda p: sql(p, "UPDATE fields_utm SET geom = NULL WHERE id = 2"),
        r"table 'fields_utm', feature 'fields_utm-2' \(id 2\) has no geometry",
    ),
    "empty geometry": (
        lambda p: write_layer(
            p, "flat", 32633, [shapely.Polygon([(0, 0), (1, 0), (2, 0)])], width=[1], height=[1]
        ),
        r"table 'flat', feature 'flat-1' \(id 1\): geometry is empty",
    ),
    "non-EPSG CRS": (_srs("ESRI", 102100), r"CRS ESRI:102100 \(srs_id 999001\) is not an EPSG CRS"),
    "undefined CRS": (
        lambda p: sql(p, "UPDATE gpkg_geometry_columns SET srs_id = -1"),
        r"table 'fields_utm': CRS NONE:-1 \(srs_id -1\) is not an EPSG CRS",
    ),
    "unknown EPSG code": (
        _srs("EPSG", 999999),
        r"table 'fields_utm': EPSG:999999 is not a known CRS",
    ),
    "CRS missing from gpkg_spatial_ref_sys": (
        lambda p: sql(
            p, "UPDATE gpkg_geometry_columns SET srs_id = 777 WHERE table_name = 'fields_wgs'"
        ),
        r"table 'fields_wgs': its CRS \(srs_id 777\) is not defined in gpkg_spatial_ref_sys",
    ),
    "no id column": (
        _recreate(
            "CREATE TABLE fields_utm (fid INTEGER PRIMARY KEY, geom POLYGON, identifier "
            "TEXT, width INTEGER, height INTEGER)",
            COLUMNS,
        ),
        r"table 'fields_utm' has no 'id' column; it must be the INTEGER PRIMARY KEY",
    ),
    "id not the primary key": (
        _recreate(
            "CREATE TABLE fields_utm (fid INTEGER PRIMARY KEY, id TEXT, geom POLYGON, "
            "identifier TEXT, width INTEGER, height INTEGER)",
            "id, id, geom, identifier, width, height",
        ),
        r"table 'fields_utm': column 'id' \(TEXT\) must be the table's INTEGER PRIMARY KEY",
    ),
    "no identifier column": (
        _recreate(
            "CREATE TABLE fields_utm (id INTEGER PRIMARY KEY, geom POLYGON, "
            "width INTEGER, height INTEGER)",
            "id, geom, width, height",
        ),
        r"table 'fields_utm' has no 'identifier' column",
    ),
    "identifier not TEXT": (
        _recreate(
            BASE.replace("identifier TEXT", "identifier INTEGER").join(
                ["CREATE TABLE fields_utm (", ")"]
            ),
            COLUMNS,
        ),
        r"table 'fields_utm': column 'identifier' must be TEXT, not INTEGER",
    ),
    "null identifier": (
        lambda p: sql(p, "UPDATE fields_utm SET identifier = NULL WHERE id = 3"),
        r"table 'fields_utm', feature id 3: identifier is null or empty",
    ),
    "identifier repeated in a table": (
        lambda p: sql(p, "UPDATE fields_utm SET identifier = 'same' WHERE id IN (1, 3)"),
        r"identifier 'same' is used by table 'fields_utm' feature id 1 and by table "
        r"'fields_utm' feature id 3",
    ),
    "identifier repeated across tables": (
        lambda p: sql(p, "UPDATE fields_wgs SET identifier = 'fields_utm-2' WHERE id = 1"),
        r"identifier 'fields_utm-2' is used by table 'fields_utm' feature id 2 and by table "
        r"'fields_wgs' feature id 1; identifiers must be unique across all feature tables",
    ),
    "identifier with a slash": (
        lambda p: sql(p, "UPDATE fields_utm SET identifier = '../up' WHERE id = 1"),
        r"feature id 1: identifier '../up' is not usable as an output folder name",
    ),
    "width without height": (
        lambda p: sql(p, "UPDATE fields_utm SET height = NULL WHERE id = 2"),
        r"feature 'fields_utm-2' \(id 2\): has width but no height; give both, or a resolution",
    ),
    "zero width": (
        lambda p: sql(p, "UPDATE fields_utm SET width = 0 WHERE id = 1"),
        r"feature 'fields_utm-1' \(id 1\): width 0 must be a positive whole number of pixels",
    ),
    "text width column": (
        _recreate(
            BASE.replace("width INTEGER", "width TEXT").join(["CREATE TABLE fields_utm (", ")"]),
            COLUMNS,
        ),
        r"table 'fields_utm': column 'width' must be INTEGER, not TEXT",
    ),
    "negative resolution": (
        lambda p: sql(p, "UPDATE fields_wgs SET resolution = -0.5 WHERE id = 2"),
        r"feature 'fields_wgs-2' \(id 2\): resolution -0.5 must be a positive number",
    ),
    "too wide": (
        lambda p: sql(p, "UPDATE fields_utm SET width = 4000 WHERE id = 3"),
        r"feature 'fields_utm-3' \(id 3\): output 4000 × 50 px exceeds the limit of "
        r"3500 × 3500 px",
    ),
    "too fine a resolution": (
        lambda p: sql(p, "UPDATE fields_wgs SET resolution = 0.000001 WHERE id = 1"),
        r"feature 'fields_wgs-1' \(id 1\): output 10000 × 10000 px at resolution 1e-06 exceeds",
    ),
    "no size": (
        lambda p: sql(p, "UPDATE fields_wgs SET resolution = NULL WHERE id = 2"),
        r"feature 'fields_wgs-2' \(id 2\): no output size: give width and height, or resolution",
    ),
    "no features": (
        lambda p: sql(p, "DELETE FROM fields_utm", "DELETE FROM fields_wgs"),
        r"has no features: every feature table is empty",
    ),
    "too many features": (_many_features, rf"has {MAX_FEATURES + 1} features; at most 700000"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_geopackage_fails_with_its_own_message(case: str, tmp_path: Path) -> None:
    breaker, message = MALFORMED[case]
    path = valid_geopackage(tmp_path / "f.gpkg")
    breaker(path)
    with pytest.raises(AnalysisError, match=message) as info:
        plan(path)
    assert str(info.value).startswith(f"GeoPackage {SOURCE}")


def test_every_malformed_message_is_distinct() -> None:
    assert len(MALFORMED) >= 15
    assert len({message for _, message in MALFORMED.values()}) == len(MALFORMED)


def test_aoi_meeting_no_feature_fails(tmp_path: Path) -> None:
    path = valid_geopackage(tmp_path / "f.gpkg")
    with pytest.raises(AnalysisError, match=f"No feature of GeoPackage {SOURCE} meets the AOI"):
        plan(path, aoi=parse_aoi([-10, -10, -9, -9], None, None))


def test_malformed_file_is_left_closed(tmp_path: Path) -> None:
    """A failed read must not keep the file open or locked (SQLite on the temp copy)."""
    path = valid_geopackage(tmp_path / "f.gpkg")
    sql(path, "UPDATE fields_utm SET width = 0 WHERE id = 1")
    with pytest.raises(AnalysisError):
        plan(path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE fields_utm SET width = 5 WHERE id = 1")
    assert len(plan(path)) == 5
