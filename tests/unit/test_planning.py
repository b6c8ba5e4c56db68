"""Grids, AOI parsing, feature planning and the manifest, against tiling-grids.md §5."""

from __future__ import annotations

import pickle
import sqlite3
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import shapely
from hypothesis import given
from hypothesis import strategies as st
from pyproj import Transformer

from eobatch.errors import AnalysisError, InvalidRequest
from eobatch.planning import (
    GRIDS,
    ManifestRow,
    feature_manifest_bytes,
    parse_aoi,
    parse_crs,
    plan_tiling_grid,
    tiling_grid_plan,
    validate_tiling_input,
)

EPSG = "http://www.opengis.net/def/crs/EPSG/0/"


def around(lon: float, lat: float, d: float = 1e-4) -> object:
    return parse_aoi([lon - d, lat - d, lon + d, lat + d], None, None)


# batch-v2-api.md §6, live SH EU response: id, name, tile size, chunk, resolutions, singleCrs, unit
LIVE = [
    (0, "20km grid", 20040.0, (334, 167), [10.0, 20.0, 60.0], False, "METRE"),
    (1, "10km grid", 10000.0, (500, 500), [1.0, 10.0, 20.0, 1.4999], False, "METRE"),
    (2, "100km grid", 100080.0, (278, 278), [360.0, 60.0, 120.0, 240.0], False, "METRE"),
    (
        3,
        "WGS84 1 degree grid",
        1.0,
        (500, 500),
        [5.0e-4, 0.001, 0.002, 0.005, 0.008, 1.0e-4, 2.0e-4, 8.0e-4],
        True,
        "DEGREE",
    ),
    (6, "LAEA 100km grid", 100000.0, (0, 0), [40.0, 50.0, 100.0], True, "METRE"),
    (7, "LAEA 20km grid", 20000.0, (0, 0), [10.0, 20.0], True, "METRE"),
]


@pytest.mark.parametrize(("id_", "name", "size", "chunk", "resolutions", "single", "unit"), LIVE)
def test_descriptors_are_the_live_service_values(  # type: ignore[no-untyped-def]
    id_, name, size, chunk, resolutions, single, unit
) -> None:
    assert GRIDS[id_].descriptor() == {
        "id": id_,
        "name": name,
        "properties": {
            "tileWidth": size,
            "tileHeight": size,
            "resolutions": resolutions,
            "unit": unit,
            "chunkWidth": chunk[0],
            "chunkHeight": chunk[1],
            "singleCrs": single,
        },
    }
    grid = GRIDS[id_]
    assert (grid.id, grid.name, grid.tile_width) == (id_, name, size)
    assert grid.resolutions == tuple(resolutions)
    assert grid.unit == ("deg" if unit == "DEGREE" else "m")


def test_grids_are_listed_by_id() -> None:
    assert list(GRIDS) == [0, 1, 2, 3, 6, 7]


@pytest.mark.parametrize(
    ("grid", "res", "point", "name", "bounds", "size"),
    [
        (6, 100.0, (10.0, 52.0), "100kmE43N32", (4300000, 3200000, 4400000, 3300000), 1000),
        (7, 10.0, (10.0, 52.0), "20kmE216N160", (4320000, 3200000, 4340000, 3220000), 2000),
        (6, 50.0, (2.3522, 48.8566), "100kmE37N28", (3700000, 2800000, 3800000, 2900000), 2000),
        (3, 0.0002, (25.3, 13.7), "N13E025", (25, 13, 26, 14), 5000),
        (3, 0.0001, (-29.5, -9.5), "S10W030", (-30, -10, -29, -9), 10000),
    ],
)
def test_worked_examples(grid, res, point, name, bounds, size) -> None:  # type: ignore[no-untyped-def]
    (feature,) = plan_tiling_grid(grid, res, 0, 0, around(*point))
    assert feature.name == name
    assert feature.bounds == pytest.approx(bounds)
    assert (feature.width, feature.height) == (size, size)
    t = feature.transform
    assert (t.c, t.f, t.a, t.e) == pytest.approx((bounds[0], bounds[3], res, -res))


def test_buffers_grow_bounds_and_size_but_not_the_tile_geometry() -> None:
    (f,) = plan_tiling_grid(7, 10.0, 3, 7, around(10.0, 52.0))
    assert f.bounds == (4320000 - 30, 3200000 - 70, 4340000 + 30, 3220000 + 70)
    assert (f.width, f.height) == (2006, 2014)
    assert f.geometry.bounds == (4320000, 3200000, 4340000, 3220000)
    assert f.resolution == pytest.approx((10.0, 10.0))


def test_aoi_in_utm_and_geometry_intersection() -> None:
    utm = parse_aoi([440680, 5336100, 454680, 5350100], None, f"{EPSG}32633")
    names = {f.name for f in plan_tiling_grid(7, 20.0, 0, 0, utm)}
    assert names == {"20kmE231N140", "20kmE232N140", "20kmE231N139", "20kmE232N139"}
    # a geometry that only reaches the north-west cell, intersected with the same bbox
    corner = shapely.geometry.mapping(shapely.box(440000, 5345000, 443000, 5351000))
    both = parse_aoi([440680, 5336100, 454680, 5350100], corner, f"{EPSG}32633")
    assert len(plan_tiling_grid(7, 20.0, 0, 0, both)) < 4
    ids = [f.id for f in plan_tiling_grid(7, 20.0, 0, 0, utm)]
    assert ids == [f.id for f in plan_tiling_grid(7, 20.0, 0, 0, utm)]  # stable across runs
    assert len(set(ids)) == 4


def test_touching_cells_are_not_selected() -> None:
    aoi = parse_aoi([4320000, 3200000, 4340000, 3220000], None, f"{EPSG}3035")
    assert [f.name for f in plan_tiling_grid(7, 20.0, 0, 0, aoi)] == ["20kmE216N160"]


def test_areas_outside_coverage_fail_analysis() -> None:
    with pytest.raises(AnalysisError, match="Europe"):
        plan_tiling_grid(7, 20.0, 0, 0, around(140.0, -30.0))


@pytest.mark.parametrize(
    ("args", "parameter"),
    [
        ((5, 20.0, 0, 0), "input->id"),
        ((7, 30.0, 0, 0), "input->resolution"),
        ((7, 20.0, -1, 0), "input->bufferX"),
        ((7, 20.0, 0, 40000), "input->bufferY"),
    ],
)
def test_invalid_tiling_input(args, parameter) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidRequest) as info:
        validate_tiling_input(*args)
    assert [v.parameter for v in info.value.errors] == [parameter]


BOUNDS = "processRequest->input->bounds"


@pytest.mark.parametrize(
    ("bbox", "geometry", "crs", "parameter"),
    [
        ([1, 2, 3], None, None, f"{BOUNDS}->bbox"),
        ([3, 2, 1, 4], None, None, f"{BOUNDS}->bbox"),
        ([1, 2, 1, 4], None, None, f"{BOUNDS}->bbox"),
        ([1, 2, float("inf"), 4], None, None, f"{BOUNDS}->bbox"),
        (None, {"type": "Point", "coordinates": [1, 2]}, None, f"{BOUNDS}->geometry"),
        (None, {"type": "Polygon", "coordinates": "x"}, None, f"{BOUNDS}->geometry"),
        (
            None,
            {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},
            None,
            f"{BOUNDS}->geometry",
        ),
        (
            [0, 0, 1, 1],
            {"type": "Polygon", "coordinates": [[[5, 5], [6, 5], [6, 6], [5, 5]]]},
            None,
            f"{BOUNDS}->geometry",
        ),
        ([0, 0, 1, 1], None, f"{EPSG}999999", f"{BOUNDS}->properties->crs"),
        ([0, 0, 1, 1], None, "EPSG:4326 please", f"{BOUNDS}->properties->crs"),
        (None, None, None, BOUNDS),
    ],
)
def test_invalid_bounds(bbox, geometry, crs, parameter) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidRequest) as info:
        parse_aoi(bbox, geometry, crs)
    assert parameter in [v.parameter for v in info.value.errors]


@given(st.floats(-179.9, 179.9), st.floats(-89.9, 89.9))
def test_grid3_tile_contains_its_point(lon: float, lat: float) -> None:
    features = plan_tiling_grid(3, 0.001, 0, 0, around(lon, lat, 1e-6))
    assert any(shapely.intersects_xy(f.geometry, lon, lat) for f in features)
    assert all(f.width == f.height == 1000 for f in features)


def test_features_pickle() -> None:
    (f,) = plan_tiling_grid(7, 20.0, 1, 1, around(10.0, 52.0))
    assert pickle.loads(pickle.dumps(f)) == f


def test_manifest_is_a_geopackage_with_one_layer_per_crs(tmp_path: Path) -> None:
    a = plan_tiling_grid(7, 20.0, 0, 0, around(10.0, 52.0))[0]
    b = plan_tiling_grid(3, 0.001, 0, 0, around(10.5, 52.5))[0]
    rows = [
        ManifestRow(
            "default",
            f.name,
            f"s3://b/{f.name}/default.tiff",
            f.width,
            f.height,
            f.epsg,
            f.geometry,
        )
        for f in (a, b)
    ]
    path = tmp_path / "m.gpkg"
    path.write_bytes(feature_manifest_bytes(rows))
    assert sorted(name for name, _ in pyogrio.list_layers(path)) == ["feature_3035", "feature_4326"]
    meta, _, geometry, fields = pyogrio.raw.read(path, layer="feature_3035")
    assert meta["fields"].tolist() == ["outputId", "identifier", "path", "width", "height"]
    assert meta["crs"] == "EPSG:3035"
    assert fields[1].tolist() == [a.name] and fields[3].tolist() == [1000]
    assert shapely.from_wkb(geometry[0]).equals(a.geometry)


def test_grid3_buffers_in_degrees() -> None:
    (f,) = plan_tiling_grid(3, 0.0002, 5, 10, around(25.3, 13.7))
    assert f.name == "N13E025"
    assert f.bounds == pytest.approx((25 - 0.001, 13 - 0.002, 26 + 0.001, 14 + 0.002))
    assert (f.width, f.height) == (5010, 5020)
    assert f.geometry.bounds == (25, 13, 26, 14)
    assert f.resolution == pytest.approx((0.0002, 0.0002))
    assert f.id == (13 + 90) * 360 + (25 + 180)


def test_grid3_edges_of_the_world() -> None:
    (f,) = plan_tiling_grid(3, 0.008, 0, 0, parse_aoi([179.5, 89.5, 180, 90], None, None))
    assert (f.name, f.geometry.bounds, f.width) == ("N89E179", (179, 89, 180, 90), 125)
    (g,) = plan_tiling_grid(3, 0.008, 0, 0, parse_aoi([-180, -90, -179.5, -89.5], None, None))
    assert (g.name, g.id) == ("S90W180", 0)


# A 40 km box in UTM 32N near Hamburg: 3035 x 4.30–4.35 Mm, y 3.37–3.41 Mm; lon 9.75–10.37,
# lat 53.43–53.78 (all well away from cell edges).
HAMBURG_UTM = [550000, 5920000, 590000, 5960000]
HAMBURG_CELLS = [f"20kmE{i}N{j}" for j in (170, 169, 168) for i in (215, 216, 217)]


def test_aoi_in_wgs84_and_in_utm_select_the_same_tiles() -> None:
    utm = parse_aoi(HAMBURG_UTM, None, f"{EPSG}32632")
    ring = shapely.segmentize(shapely.box(*HAMBURG_UTM), 1000)
    to_wgs = Transformer.from_crs(32632, 4326, always_xy=True)
    wgs = shapely.transform(ring, lambda xy: np.column_stack(to_wgs.transform(*xy.T)))
    lonlat = parse_aoi(None, shapely.geometry.mapping(wgs), None)
    assert lonlat.epsg == 4326 and utm.epsg == 32632
    for aoi in (utm, lonlat):
        features = plan_tiling_grid(7, 20.0, 0, 0, aoi)
        assert [f.name for f in features] == HAMBURG_CELLS  # north to south, west to east
        assert [f.id for f in features] == [
            j * 10_000 + i for j in (170, 169, 168) for i in (215, 216, 217)
        ]
        assert {f.epsg for f in features} == {3035}
        assert [f.name for f in plan_tiling_grid(3, 0.001, 0, 0, aoi)] == ["N53E009", "N53E010"]
    # back in UTM, the lon/lat outline differs only by the sag of its 1 km chords
    back = lonlat.in_crs(32632)
    assert back.symmetric_difference(utm.geometry).area < 1e-5 * utm.geometry.area


def test_whole_globe_on_laea_selects_the_whole_coverage() -> None:
    world = parse_aoi([-180, -90, 180, 90], None, None)
    features = plan_tiling_grid(6, 100.0, 0, 0, world)
    # coverage x 0.9–7.4 Mm, y 0.9–6.5 Mm → columns 9..73, rows 9..64
    assert len(features) == 65 * 56
    assert (features[0].name, features[-1].name) == ("100kmE9N64", "100kmE73N9")
    assert len({f.id for f in features}) == len(features)


def test_aoi_touching_the_coverage_edge_only_fails_analysis() -> None:
    edge = parse_aoi([7_400_000, 3_000_000, 7_500_000, 3_100_000], None, f"{EPSG}3035")
    with pytest.raises(AnalysisError, match="does not meet tiling grid 6"):
        plan_tiling_grid(6, 100.0, 0, 0, edge)


def test_bbox_and_geometry_intersection_drops_touching_lines() -> None:
    geometry = shapely.box(1, 0, 2, 1).union(shapely.box(0.5, 0.5, 3, 3))
    aoi = parse_aoi([0, 0, 1, 1], shapely.geometry.mapping(geometry), None)
    assert aoi.geometry.geom_type == "Polygon"
    assert aoi.geometry.equals(shapely.box(0.5, 0.5, 1, 1))


def test_parse_crs() -> None:
    assert parse_crs(None) == 4326
    assert parse_crs("http://www.opengis.net/def/crs/OGC/1.3/CRS84") == 4326
    assert parse_crs(f"{EPSG}4326") == 4326
    assert parse_crs(f"{EPSG}32633") == 32633
    assert parse_crs(f"{EPSG}3035") == 3035
    for bad in (f"{EPSG}123456789", "urn:ogc:def:crs:EPSG::4326", f"{EPSG}5773"):
        with pytest.raises(InvalidRequest) as info:
            parse_crs(bad)
        assert [v.parameter for v in info.value.errors] == [f"{BOUNDS}->properties->crs"]


@pytest.mark.parametrize("bbox", [["a", 1, 2, 3], 5, [0, 0, True, 1], [0, 0, float("nan"), 1]])
def test_bbox_must_be_four_finite_numbers(bbox) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidRequest) as info:
        parse_aoi(bbox, None, None)
    assert [v.parameter for v in info.value.errors] == [f"{BOUNDS}->bbox"]


def test_invalid_geometry_message_gives_the_reason() -> None:
    bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
    with pytest.raises(InvalidRequest, match="Self-intersection"):
        parse_aoi(None, bowtie, None)


def test_validation_messages_list_what_is_allowed() -> None:
    with pytest.raises(InvalidRequest, match="available: 0, 1, 2, 3, 6, 7"):
        validate_tiling_input(4, 10.0, 0, 0)
    with pytest.raises(InvalidRequest, match="allowed: 40, 50, 100"):
        validate_tiling_input(6, 20.0, 0, 0)
    with pytest.raises(InvalidRequest) as info:
        validate_tiling_input(7, 15.0, -1, -2)
    assert [v.parameter for v in info.value.errors] == [
        "input->resolution",
        "input->bufferX",
        "input->bufferY",
    ]
    assert validate_tiling_input(3, 0.0001, 0, 32767) is GRIDS[3]
    assert validate_tiling_input(0, 60.0, 0, 0) is GRIDS[0]


def test_grid3_features_pickle() -> None:
    features = plan_tiling_grid(3, 0.001, 2, 3, parse_aoi(HAMBURG_UTM, None, f"{EPSG}32632"))
    assert pickle.loads(pickle.dumps(features)) == features


def test_manifest_table_schema_matches_the_spec(tmp_path: Path) -> None:
    features = plan_tiling_grid(7, 20.0, 1, 1, parse_aoi(HAMBURG_UTM, None, f"{EPSG}32632"))
    rows = [
        ManifestRow(
            out, f.name, f"s3://b/{f.name}/{out}.tif", f.width, f.height, f.epsg, f.geometry
        )
        for f in features
        for out in ("a", "b")
    ]
    path = tmp_path / "featureManifest.gpkg"
    path.write_bytes(feature_manifest_bytes(rows))
    with sqlite3.connect(path) as db:
        columns = {
            name: kind for _, name, kind, *_ in db.execute("pragma table_info(feature_3035)")
        }
        geometry_column = db.execute("select column_name from gpkg_geometry_columns").fetchall()
    assert columns == {
        "fid": "INTEGER",
        "outputId": "TEXT",
        "identifier": "TEXT",
        "path": "TEXT",
        "width": "INTEGER",
        "height": "INTEGER",
        "geometry": "GEOMETRY",
    }
    assert geometry_column == [("geometry",)]
    _, fids, geometry, fields = pyogrio.raw.read(path, layer="feature_3035", return_fids=True)
    assert fids.tolist() == list(range(1, 19))
    assert fields[0].tolist() == ["a", "b"] * 9
    assert fields[1].tolist()[::2] == HAMBURG_CELLS
    assert fields[3].tolist() == [1002] * 18
    assert shapely.from_wkb(geometry[0]).bounds == (4300000, 3400000, 4320000, 3420000)


def test_grid3_antimeridian_aoi_selects_cells_on_both_sides() -> None:
    aoi = parse_aoi([179.5, -17.0, 180.5, -16.5], None, None)
    assert [f.name for f in plan_tiling_grid(3, 0.001, 0, 0, aoi)] == ["S17W180", "S17E179"]


@pytest.mark.parametrize(
    ("grid", "res", "buffer", "bbox"),
    [
        (7, 20.0, (2, 3), [9.0, 50.0, 10.5, 51.0]),  # LAEA
        (3, 0.001, (0, 0), [178.5, -1.5, 180.0, 1.5]),  # lon/lat, up to the antimeridian
        (0, 60.0, (1, 1), [5.5, 47.5, 7.0, 48.5]),  # UTM, across zones 31 and 32
    ],
)
def test_a_plan_made_in_chunks_is_the_whole_plan_and_knows_its_extents(
    grid: int, res: float, buffer: tuple[int, int], bbox: list[float]
) -> None:
    plan = tiling_grid_plan(grid, res, *buffer, parse_aoi(bbox, None, None))
    whole = plan.make(0, len(plan))
    assert len(whole) > 7
    for size in (1, 7, len(plan)):
        chunks = list(plan.chunks(size))
        assert all(len(c) == size for c in chunks[:-1]) and 0 < len(chunks[-1]) <= size
        assert [f for chunk in chunks for f in chunk] == whole
    assert plan_tiling_grid(grid, res, *buffer, parse_aoi(bbox, None, None)) == whole
    codes = sorted({f.epsg for f in whole})
    assert list(plan.extents) == codes
    for code in codes:
        bounds = [f.bounds for f in whole if f.epsg == code]
        assert plan.extents[code] == (
            min(b[0] for b in bounds),
            min(b[1] for b in bounds),
            max(b[2] for b in bounds),
            max(b[3] for b in bounds),
        )
