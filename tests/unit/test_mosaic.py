"""The reader against the independent nearest-neighbour model of the demo data."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import shapely
from affine import Affine

from eobatch.demo_data import DEMO_SCENES, write_demo_collection
from eobatch.sources import (
    BandSource,
    PixelGrid,
    Scene,
    filter_cloud_cover,
    filter_time,
    order_scenes,
    read_mosaic,
)
from eobatch.sources.mosaic import WARP_TOLERANCE_PX
from tests.reference import matches_nearest, nearest_mosaic

BANDS = ["B04", "B08"]
# One LAEA 20 km cell at 20 m that the demo data covers in part.
GRID = PixelGrid(3035, Affine(20, 0, 4620000, 0, -20, 2820040), 1002, 1002)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    write_demo_collection(folder)
    return folder


def as_scene(folder: Path, demo, cover: bytes | None = None) -> Scene:  # type: ignore[no-untyped-def]
    bands = {
        b: BandSource(str(folder / demo.path_template.replace("(BAND)", b)), 1, 0)
        for b in ("B02", "B03", "B04", "B08")
    }
    return Scene(demo.name, demo.sensing_time, None, bands, cover)


def test_mosaic_matches_the_nearest_neighbour_model(folder: Path) -> None:
    scenes = order_scenes([as_scene(folder, d) for d in DEMO_SCENES], "mostRecent")
    by_name = {d.name: d for d in DEMO_SCENES}
    bands, mask = read_mosaic(scenes, BANDS, GRID)

    def expected(band: str):  # type: ignore[no-untyped-def]
        def at(shift):  # type: ignore[no-untyped-def]
            values, _ = nearest_mosaic(
                [by_name[s.id] for s in scenes],
                BANDS,
                3035,
                GRID.transform,
                GRID.width,
                GRID.height,
                shift,
            )
            return values[band].astype(np.float32)

        return at

    _, exact_mask = nearest_mosaic(
        [by_name[s.id] for s in scenes], BANDS, 3035, GRID.transform, GRID.width, GRID.height
    )
    assert 0.1 < exact_mask.mean() < 0.9  # the cell is partly covered: edges are exercised
    assert (mask.astype(bool) == exact_mask).mean() > 0.9999
    for band in BANDS:
        ok = matches_nearest(bands[band], expected(band), 2 * WARP_TOLERANCE_PX)
        assert ok.all(), f"{band}: {np.count_nonzero(~ok)} pixels differ"
    assert np.isnan(bands["B04"][mask == 0]).all()


def test_most_recent_scene_wins_and_holes_fall_back(folder: Path) -> None:
    newest, older = DEMO_SCENES[3], DEMO_SCENES[1]  # 2024-09-20 (with a cloud hole), 2024-05-10
    grid = PixelGrid(
        32633,
        Affine(10, 0, newest.bounds[0], 0, -10, newest.bounds[3]),
        newest.width,
        newest.height,
    )
    bands, mask = read_mosaic([as_scene(folder, newest), as_scene(folder, older)], BANDS, grid)
    rows, cols = np.mgrid[0 : grid.height, 0 : grid.width]
    top = newest.values("B04", rows, cols)
    col0 = round((newest.bounds[0] - older.bounds[0]) / 10)
    row0 = round((older.bounds[3] - newest.bounds[3]) / 10)
    below = older.values("B04", rows + row0, cols + col0)
    assert mask.all()
    assert (top == 0).any()  # the hole exists ...
    np.testing.assert_array_equal(bands["B04"], np.where(top == 0, below, top))  # ... and is filled


def test_cover_geometry_masks_pixels_outside(folder: Path) -> None:
    demo = DEMO_SCENES[1]
    grid = PixelGrid(32633, demo.transform, demo.width, demo.height)
    west_half = shapely.box(0, 40, 14.29, 60)  # lon/lat
    _, mask = read_mosaic([as_scene(folder, demo, shapely.to_wkb(west_half))], BANDS, grid)
    assert 0.3 < mask.mean() < 0.7
    assert mask[:, 0].all() and not mask[:, -1].any()


def test_scene_outside_the_grid_is_skipped(folder: Path) -> None:
    far = PixelGrid(3035, Affine(20, 0, 3000000, 0, -20, 2000000), 100, 100)
    bands, mask = read_mosaic([as_scene(folder, DEMO_SCENES[0])], BANDS, far)
    assert not mask.any() and np.isnan(bands["B08"]).all()


def test_scenes_are_read_only_where_they_can_still_fill_a_pixel(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scene is warped over the empty pixels it reaches and skipped when it reaches none; the
    pixels are those of warping every scene over the whole grid."""
    from eobatch.sources import mosaic

    whole_grid = []
    windows: list[tuple[str, tuple[int, int, int, int]]] = []
    warp = mosaic._warp_scene

    def counting(scene, bands, grid, window, *args):  # type: ignore[no-untyped-def]
        windows.append((scene.id, (window.col_off, window.row_off, window.width, window.height)))
        return warp(scene, bands, grid, window, *args)

    scenes = order_scenes([as_scene(folder, d) for d in DEMO_SCENES], "mostRecent")
    for scene in scenes:  # each scene alone, over the whole grid: the reference
        whole_grid.append(read_mosaic([scene], BANDS, GRID))
    monkeypatch.setattr(mosaic, "_warp_scene", counting)
    bands, mask = read_mosaic(scenes, BANDS, GRID)
    expected = {b: np.full((GRID.height, GRID.width), np.nan, np.float32) for b in BANDS}
    filled = np.zeros((GRID.height, GRID.width), bool)
    for values, valid in whole_grid:
        take = valid.astype(bool) & ~filled
        for b in BANDS:
            expected[b][take] = values[b][take]
        filled |= take
    np.testing.assert_array_equal(mask.astype(bool), filled)
    for b in BANDS:
        np.testing.assert_array_equal(bands[b], expected[b])
    # The 2023 scene covers the whole demo area but the three 2024 scenes before it already
    # filled the cell except where the cloud hole and the footprints leave gaps: it is read on
    # a window no larger than the grid's part the demo data reaches, never on the whole grid.
    assert all(w[2] * w[3] < GRID.width * GRID.height for _, w in windows)
    # Asked again for pixels every scene has already filled, nothing is read.
    windows.clear()
    read_mosaic([scenes[-1], scenes[-1]], BANDS, GRID)
    assert len(windows) == 1


def test_time_filter_is_inclusive_and_order_is_deterministic(folder: Path) -> None:
    scenes = [as_scene(folder, d) for d in DEMO_SCENES]
    kept = filter_time(scenes, DEMO_SCENES[1].sensing_time, DEMO_SCENES[2].sensing_time)
    assert [s.id for s in kept] == ["2024-05-10", "2024-07-15"]
    assert order_scenes(scenes, "leastRecent")[0].id == "2023-08-01"
    assert order_scenes(scenes, "mostRecent")[0].id == "2024-09-20"
    with pytest.raises(ValueError, match="leastCloudy"):
        order_scenes(scenes, "leastCloudy")


def test_least_cc_puts_the_least_cloudy_first_newest_among_equals(folder: Path) -> None:
    base = [as_scene(folder, d) for d in DEMO_SCENES]
    covers = [30.0, 5.0, 5.0, None]  # the last scene has no cloud cover: it goes last
    scenes = [replace(s, cloud_cover=c) for s, c in zip(base, covers, strict=True)]
    ordered = order_scenes(scenes, "leastCC")
    newer, older = sorted(scenes[1:3], key=lambda s: s.sensing_time, reverse=True)
    assert [s.id for s in ordered] == [newer.id, older.id, scenes[0].id, scenes[3].id]
    assert [s.id for s in filter_cloud_cover(scenes, 5)] == [s.id for s in scenes[1:]]
    assert filter_cloud_cover(scenes, 100) == scenes


def _patch(path: Path, values: np.ndarray, transform: Affine, nodata: float | None) -> str:
    """A small GeoTIFF in the grid's CRS (EPSG:3035)."""
    import rasterio

    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=values.shape[1],
        height=values.shape[0],
        count=1,
        dtype=values.dtype,
        crs="EPSG:3035",
        transform=transform,
        nodata=nodata,
    ) as dst:
        dst.write(values, 1)
    return str(path)


SMALL = PixelGrid(3035, Affine(20, 0, 4620000, 0, -20, 2820040), 20, 20)


def test_a_file_without_no_data_value_has_no_data_outside_its_extent(tmp_path: Path) -> None:
    """Without a no-data value, what the file does not cover is still no data (the warper's
    alpha band), so a lower-priority scene fills it; `fill` gives the rest a value."""
    west = np.full((20, 10), 7.0, dtype=np.float32)  # the grid's western half, no nodata
    everywhere = np.full((20, 20), 3.0, dtype=np.float32)
    a = _patch(tmp_path / "a.tif", west, SMALL.transform, None)
    b = _patch(tmp_path / "b.tif", everywhere[:10], SMALL.transform, 0)  # northern half
    when = DEMO_SCENES[0].sensing_time
    scenes = [
        Scene("a", when, None, {"H": BandSource(a)}),
        Scene("b", when, None, {"H": BandSource(b, 1, 0)}),
    ]
    values, mask = read_mosaic(scenes, ["H"], SMALL)
    expected = np.full((20, 20), np.nan, dtype=np.float32)
    expected[:10] = 3.0
    expected[:, :10] = 7.0
    assert np.array_equal(values["H"], expected, equal_nan=True)
    assert np.array_equal(mask, (~np.isnan(expected)).astype(np.uint8))
    filled, mask = read_mosaic(scenes, ["H"], SMALL, fill=0.0)
    assert np.array_equal(filled["H"], np.nan_to_num(expected, nan=0.0)) and mask.all()


def test_a_scene_lacking_a_requested_band_supplies_no_pixel(tmp_path: Path) -> None:
    """An HLS Landsat scene has no red-edge band: asked for red and red edge, a pixel comes
    from a scene that has both, never red from one and red edge from another."""
    ones = np.ones((20, 20), dtype=np.float32)
    path = _patch(tmp_path / "x.tif", ones, SMALL.transform, None)
    newest = Scene("newest", DEMO_SCENES[1].sensing_time, None, {"Red": BandSource(path)})
    older = Scene(
        "older",
        DEMO_SCENES[0].sensing_time,
        None,
        {"Red": BandSource(path), "RedEdge1": BandSource(path)},
    )
    _, mask = read_mosaic([newest], ["Red", "RedEdge1"], SMALL)
    assert not mask.any()
    values, mask = read_mosaic([newest, older], ["Red", "RedEdge1"], SMALL)
    assert mask.all() and (values["RedEdge1"] == 1).all()
