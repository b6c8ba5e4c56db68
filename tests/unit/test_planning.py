"""Grids, AOI parsing, feature planning and the manifest, against tiling-grids.md §5."""

from __future__ import annotations

import pickle
from pathlib import Path

import pyogrio
import pytest
import shapely
from hypothesis import given
from hypothesis import strategies as st

from eobatch.errors import AnalysisError, InvalidRequest
from eobatch.planning import (
    GRIDS,
    ManifestRow,
    feature_manifest_bytes,
    parse_aoi,
    plan_tiling_grid,
    validate_tiling_input,
)

EPSG = "http://www.opengis.net/def/crs/EPSG/0/"


def around(lon: float, lat: float, d: float = 1e-4) -> object:
    return parse_aoi([lon - d, lat - d, lon + d, lat + d], None, None)


def test_descriptors_are_the_live_service_values() -> None:
    assert list(GRIDS) == [0, 1, 2, 3, 6, 7]
    seven = GRIDS[7].descriptor()
    assert seven == {
        "id": 7, "name": "LAEA 20km grid",
        "properties": {"tileWidth": 20000.0, "tileHeight": 20000.0, "resolutions": [10.0, 20.0],
                       "unit": "METRE", "chunkWidth": 0, "chunkHeight": 0, "singleCrs": True},
    }  # fmt: skip
    assert GRIDS[3].descriptor()["properties"]["unit"] == "DEGREE"
    assert GRIDS[0].descriptor()["properties"]["singleCrs"] is False


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


def test_utm_grids_and_areas_outside_coverage_fail_analysis() -> None:
    with pytest.raises(AnalysisError, match="UTM"):
        plan_tiling_grid(0, 20.0, 0, 0, around(10.0, 52.0))
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
        (None, {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},
         None, f"{BOUNDS}->geometry"),
        ([0, 0, 1, 1], {"type": "Polygon", "coordinates": [[[5, 5], [6, 5], [6, 6], [5, 5]]]},
         None, f"{BOUNDS}->geometry"),
        ([0, 0, 1, 1], None, f"{EPSG}999999", f"{BOUNDS}->properties->crs"),
        ([0, 0, 1, 1], None, "EPSG:4326 please", f"{BOUNDS}->properties->crs"),
        (None, None, None, BOUNDS),
    ],
)  # fmt: skip
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
    rows = [ManifestRow("default", f.name, f"s3://b/{f.name}/default.tiff", f.width, f.height,
                        f.epsg, f.geometry) for f in (a, b)]  # fmt: skip
    path = tmp_path / "m.gpkg"
    path.write_bytes(feature_manifest_bytes(rows))
    assert sorted(name for name, _ in pyogrio.list_layers(path)) == ["feature_3035", "feature_4326"]
    meta, _, geometry, fields = pyogrio.raw.read(path, layer="feature_3035")
    assert meta["fields"].tolist() == ["outputId", "identifier", "path", "width", "height"]
    assert meta["crs"] == "EPSG:3035"
    assert fields[1].tolist() == [a.name] and fields[3].tolist() == [1000]
    assert shapely.from_wkb(geometry[0]).equals(a.geometry)
