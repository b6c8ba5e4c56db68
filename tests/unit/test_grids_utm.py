"""UTM grids 0–2 against tiling-grids.md §2 and §5 and against real Sentinel Hub grid-0 tiles."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyproj import Transformer

from eobatch.errors import AnalysisError
from eobatch.planning import parse_aoi, plan_tiling_grid
from eobatch.planning.utm import (
    UTM_LAYOUTS,
    S2Tiles,
    outline_wgs84,
    redundant_subtiles,
    s2_outlines,
    s2_tiles,
    subtile_origins,
)

EPSG = "http://www.opengis.net/def/crs/EPSG/0/"
FRANCE = Path(__file__).parents[1] / "fixtures/grids/grid0_france.csv"


def point_aoi(lon: float, lat: float, d: float = 1e-5):  # type: ignore[no-untyped-def]
    return parse_aoi([lon - d, lat - d, lon + d, lat + d], None, None)


def utm_point(epsg: int, x: float, y: float):  # type: ignore[no-untyped-def]
    return parse_aoi([x - 1, y - 1, x + 1, y + 1], None, f"{EPSG}{epsg}")


def france() -> list[dict]:
    with FRANCE.open() as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


# -- the Sentinel-2 tile list ------------------------------------------------------------------


def test_s2_tile_list_is_the_esa_kml() -> None:
    s2 = s2_tiles()
    assert len(s2) == 56686
    assert (s2.epsg < 32700).sum() == 28366 and (s2.epsg > 32700).sum() == 28320
    at = {name: i for i, name in enumerate(s2.names.tolist())}
    for name, epsg, ulx, uly in [
        ("33UVP", 32633, 399960, 5400000),
        ("31TCJ", 32631, 300000, 4900020),
        ("28PBB", 32628, 199980, 1700040),
        ("53LNF", 32753, 499980, 8600020),
    ]:
        i = at[name]
        assert (s2.epsg[i], s2.ulx[i], s2.uly[i]) == (epsg, ulx, uly)
    # the 60 m corner rule: UL on the 60 m lattice (true northing in the south)
    true_north = s2.uly - np.where(s2.epsg > 32700, 10_000_000, 0)
    assert (s2.ulx % 60 == 0).all() and (true_north % 60 == 0).all()
    assert list(s2.names) == sorted(s2.names)
    assert not any(n.startswith(("32X", "34X", "36X")) for n in s2.names.tolist())


# -- real Sentinel Hub tiles ---------------------------------------------------------------------


def test_every_france_tile_of_sentinel_hub_is_planned_with_its_exact_bounds() -> None:
    sh = france()
    assert len(sh) == 1667
    planned = plan_tiling_grid(0, 60.0, 0, 0, parse_aoi([-5.5, 41.0, 10.0, 51.5], None, None))
    ours = {f.name: f for f in planned}
    for tile in sh:
        f = ours[tile["name"]]
        bounds = tuple(float(tile[k]) for k in ("minx", "miny", "maxx", "maxy"))
        assert (f.epsg, f.bounds, f.geometry.bounds) == (int(tile["epsg"]), bounds, bounds)
        assert (f.width, f.height) == (334, 334)
    # no tile of ours lies inside the sample's area without being in it: SH's removals match
    sh_outline = shapely.union_all(
        [
            _outline(int(t["epsg"]), *(float(t[k]) for k in ("minx", "miny", "maxx", "maxy")))
            for t in sh
        ]
    )
    extra = [
        f.name
        for f in planned
        if f.name not in {t["name"] for t in sh}
        and shapely.difference(_outline(f.epsg, *f.geometry.bounds), sh_outline).area < 1e-9 * 0.04
    ]
    assert extra == []


def test_ids_step_like_sentinel_hub_inside_an_s2_tile() -> None:
    sh = france()
    planned = plan_tiling_grid(0, 60.0, 0, 0, parse_aoi([-5.5, 41.0, 10.0, 51.5], None, None))
    ours = {f.name: f.id for f in planned}
    by_s2: dict[str, list[dict]] = {}
    for tile in sh:
        by_s2.setdefault(tile["name"][:5], []).append(tile)
    checked = 0
    for tiles in by_s2.values():
        base_sh, base_ours = int(tiles[0]["sh_id"]), ours[tiles[0]["name"]]
        for t in tiles:
            assert ours[t["name"]] - base_ours == int(t["sh_id"]) - base_sh
            checked += 1
    assert checked == 1667
    ids = [f.id for f in planned]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert [f.name for f in planned] == sorted(f.name for f in planned)


REMOVED = (
    ["30TYS_3_0", "30TYS_3_1", "30TYS_4_0", "30TYS_4_1", "30TYS_4_2"]
    + [f"30TYT_3_{r}" for r in range(1, 5)]
    + [f"30TYT_4_{r}" for r in range(2, 5)]
    + [f"30UYV_2_{r}" for r in range(4)]
    + [f"30UYV_{c}_{r}" for c in (3, 4) for r in range(5)]
    + [f"31TG{s}_4_{r}" for s in "KL" for r in range(5)]
)


def test_tiles_fully_covered_by_the_next_zone_are_removed() -> None:
    planned = {
        f.name for f in plan_tiling_grid(0, 60.0, 0, 0, parse_aoi([-2, 42, 8, 50], None, None))
    }
    assert planned.isdisjoint(REMOVED)
    assert {"30TYS_2_0", "30TYS_3_2", "30TYT_2_0", "31TGK_3_0", "30UYV_2_4", "30TYN_4_0"} <= planned


def test_removal_is_reproducible_from_the_tile_list() -> None:
    """Recomputing §2.3 for the S2 tiles around France gives the shipped masks there."""
    s2 = s2_tiles()
    bounds = shapely.bounds(s2_outlines(s2))
    near = np.flatnonzero(
        (bounds[:, 2] > -8) & (bounds[:, 0] < 14) & (bounds[:, 3] > 39) & (bounds[:, 1] < 54)
    )
    rows = [(s2.names[i], int(s2.epsg[i]), int(s2.ulx[i]), int(s2.uly[i])) for i in near]
    drops = redundant_subtiles(S2Tiles.from_rows(rows), 0)
    inner = (bounds[near, 0] > -6) & (bounds[near, 2] < 12) & (bounds[near, 1] > 41)
    inner &= bounds[near, 3] < 52
    assert sum(bin(m).count("1") for m in np.array(drops)[inner]) > 60
    assert np.array_equal(np.array(drops, dtype=object)[inner], s2.drops[0][near][inner])


# -- worked examples (tiling-grids.md §5) --------------------------------------------------------


@pytest.mark.parametrize(
    ("grid", "res", "buffer", "aoi", "name", "epsg", "bounds", "size"),
    [
        (
            0,
            60.0,
            (0, 0),
            point_aoi(2.3522, 48.8566),
            "31UDQ_2_4",
            32631,
            (440040, 5399820, 460080, 5419860),
            (334, 334),
        ),
        (
            0,
            10.0,
            (10, 10),
            point_aoi(2.3522, 48.8566),
            "31UDQ_2_4",
            32631,
            (439940, 5399720, 460180, 5419960),
            (2024, 2024),
        ),
        (
            0,
            20.0,
            (0, 0),
            utm_point(32631, 450000, 5430000),
            "31UDQ_2_3",
            32631,
            (440040, 5419860, 460080, 5439900),
            (1002, 1002),
        ),
        (
            0,
            20.0,
            (0, 0),
            utm_point(32630, 790000, 4790000),
            "30TYN_4_0",
            32630,
            (780120, 4779960, 800160, 4800000),
            (1002, 1002),
        ),
        (
            1,
            10.0,
            (3, 7),
            point_aoi(-17.5546, 14.7750),
            "28PBB_2_6",
            32628,
            (219970, 1629930, 230030, 1640070),
            (1006, 1014),
        ),
        (
            1,
            10.0,
            (50, 50),
            utm_point(32634, 605000, 6175000),
            "34UFG_0_2",
            32634,
            (599500, 6169500, 610500, 6180500),
            (1100, 1100),
        ),
        (
            2,
            120.0,
            (0, 0),
            point_aoi(3.713, 50.999),
            "31UES_0_0",
            32631,
            (499980, 5599920, 600060, 5700000),
            (834, 834),
        ),
        (
            2,
            360.0,
            (0, 0),
            point_aoi(14.3, 48.3),
            "33UVP_0_0",
            32633,
            (399960, 5299920, 500040, 5400000),
            (278, 278),
        ),
    ],
)
def test_worked_examples(grid, res, buffer, aoi, name, epsg, bounds, size) -> None:  # type: ignore[no-untyped-def]
    features = plan_tiling_grid(grid, res, *buffer, aoi)
    (f,) = [f for f in features if f.name == name]
    assert (f.epsg, f.bounds, (f.width, f.height)) == (epsg, bounds, size)
    t = f.transform
    assert (t.a, t.b, t.c, t.d, t.e, t.f) == (res, 0, bounds[0], 0, -res, bounds[3])
    x0, y1 = bounds[0] + buffer[0] * res, bounds[3] - buffer[1] * res
    size_m = UTM_LAYOUTS[grid].size
    assert f.geometry.bounds == (x0, y1 - size_m, x0 + size_m, y1)


def test_a_point_on_an_in_zone_overlap_strip_selects_both_tiles() -> None:
    names = {f.name for f in plan_tiling_grid(0, 60.0, 0, 0, utm_point(32631, 500060, 5450000))}
    assert names == {"31UDQ_4_2", "31UEQ_0_2"}


def test_grid1_tiles_of_adjacent_squares_abut() -> None:
    aoi = parse_aoi([395000, 5391000, 405000, 5399000], None, f"{EPSG}32633")
    features = {f.name: f for f in plan_tiling_grid(1, 10.0, 0, 0, aoi)}
    west, east = features["33UUP_9_0"], features["33UVP_0_0"]
    assert west.bounds[2] == east.bounds[0] == 400000


# -- AOIs: CRSs, zones, antimeridian, coverage ---------------------------------------------------


def test_a_multi_zone_aoi_gives_outputs_in_each_zone() -> None:
    features = plan_tiling_grid(2, 60.0, 0, 0, parse_aoi([5.0, 45.0, 7.0, 45.5], None, None))
    assert {f.epsg for f in features} == {32631, 32632}


def test_antimeridian_aois_in_lonlat_and_in_utm_agree() -> None:
    lonlat = parse_aoi([179.6, -17.0, 180.4, -16.5], None, None)  # Fiji, across ±180
    features = plan_tiling_grid(0, 60.0, 0, 0, lonlat)
    assert {f.epsg for f in features} == {32760, 32701}
    to_utm = Transformer.from_crs(4326, 32760, always_xy=True)
    ring = shapely.segmentize(shapely.box(179.6, -17.0, 180.4, -16.5), 0.01)
    utm = shapely.transform(ring, lambda xy: np.column_stack(to_utm.transform(*xy.T)))
    in_utm = parse_aoi(None, shapely.geometry.mapping(utm), f"{EPSG}32760")
    assert [f.name for f in plan_tiling_grid(0, 60.0, 0, 0, in_utm)] == [f.name for f in features]
    split = {
        "type": "MultiPolygon",
        "coordinates": [
            [[[179.6, -17], [180, -17], [180, -16.5], [179.6, -16.5], [179.6, -17]]],
            [[[-180, -17], [-179.6, -17], [-179.6, -16.5], [-180, -16.5], [-180, -17]]],
        ],
    }
    as_parts = plan_tiling_grid(0, 60.0, 0, 0, parse_aoi(None, split, None))
    assert [f.name for f in as_parts] == [f.name for f in features]


@pytest.mark.parametrize(("grid", "lat"), [(0, 80.9), (1, 80.8), (2, 81.5), (0, -85.0)])
def test_aoi_beyond_the_latitude_limit_fails_analysis(grid: int, lat: float) -> None:
    with pytest.raises(AnalysisError, match=f"tiling grid {grid} .* covers latitudes"):
        plan_tiling_grid(grid, UTM_LAYOUTS[grid].size / 1000, 0, 0, point_aoi(20.0, lat, 0.01))


def test_no_tile_reaches_beyond_the_latitude_limit() -> None:
    features = plan_tiling_grid(0, 60.0, 0, 0, parse_aoi([10, 79.5, 30, 80.7], None, None))
    assert features
    for f in features:
        lat = shapely.bounds(_outline(f.epsg, *f.geometry.bounds))[[1, 3]]
        assert np.abs(lat).max() <= 80.7


# -- properties against a brute-force reference --------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    grid=st.sampled_from([0, 1, 2]),
    lon=st.floats(-179.9, 179.9, allow_subnormal=False),
    lat=st.floats(-75, 75, allow_subnormal=False),  # 1e-311 breaks PROJ, not us
    width=st.floats(0.01, 0.6),
    height=st.floats(0.01, 0.6),
    crs=st.sampled_from(["lonlat", "utm", "3857"]),
)
def test_planned_tiles_are_exactly_those_meeting_the_aoi(
    grid, lon, lat, width, height, crs
) -> None:  # type: ignore[no-untyped-def]
    box = shapely.box(lon, lat, lon + width, lat + height)
    if crs == "lonlat":
        aoi = parse_aoi(list(box.bounds), None, None)
    else:
        epsg = 3857 if crs == "3857" else (32600 if lat >= 0 else 32700) + int((lon + 180) // 6) + 1
        tr = Transformer.from_crs(4326, epsg, always_xy=True)
        ring = shapely.transform(
            shapely.segmentize(box, 0.005), lambda xy: np.column_stack(tr.transform(*xy.T))
        )
        aoi = parse_aoi(None, shapely.geometry.mapping(ring), f"{EPSG}{epsg}")
    layout = UTM_LAYOUTS[grid]
    res = layout.size / 1000 if grid != 1 else 10.0
    features = plan_tiling_grid(grid, res, 0, 0, aoi)
    got = {f.name for f in features}
    # brute force: every surviving sub-tile of every S2 tile nearby, tested in lon/lat
    area = aoi.wgs84()
    eps = 2e-5  # ≈ 2 m: tiles within this of the AOI's outline may go either way
    must, may = _reference(grid, area.buffer(-eps)), _reference(grid, area.buffer(eps))
    assert must <= got <= may
    # exact raster grid: size × resolution = bounds, and neighbours share edges exactly
    by_name = {f.name: f for f in features}
    for f in features:
        assert f.bounds[2] - f.bounds[0] == f.width * res
        s2, c, r = f.name.split("_")
        right = by_name.get(f"{s2}_{int(c) + 1}_{r}")
        below = by_name.get(f"{s2}_{c}_{int(r) + 1}")
        assert right is None or right.bounds[0] == f.bounds[2]
        assert below is None or below.bounds[3] == f.bounds[1]


def _reference(grid: int, area: shapely.Geometry) -> set[str]:
    if area.is_empty:
        return set()
    s2 = s2_tiles()
    layout = UTM_LAYOUTS[grid]
    n, size = layout.per_axis, layout.size
    ox0, oy0 = subtile_origins(s2, grid)
    names = set()
    for part in (
        area,
        shapely.transform(area, lambda xy: xy + np.array([360.0, 0.0])),
        shapely.transform(area, lambda xy: xy - np.array([360.0, 0.0])),
    ):
        for t in np.flatnonzero(shapely.intersects(part, _s2_outline_array())):
            k = np.arange(n * n)
            x0, y1 = ox0[t] + k // n * size, oy0[t] - k % n * size
            rings = outline_wgs84(np.full(n * n, s2.epsg[t]), x0, y1 - size, x0 + size, y1)
            rings = shapely.segmentize(rings, 0.002)
            alive = np.array([not s2.drops[grid][t] >> j & 1 for j in k.tolist()])
            inside = np.abs(shapely.bounds(rings)[:, [1, 3]]).max(axis=1) <= layout.lat_limit
            for j in np.flatnonzero(alive & inside & shapely.intersects(part, rings)):
                names.add(f"{s2.names[t]}_{j // n}_{j % n}")
    return names


_OUTLINES: list[np.ndarray] = []


def _s2_outline_array() -> np.ndarray:
    if not _OUTLINES:
        _OUTLINES.append(shapely.buffer(s2_outlines(s2_tiles()), 0.01))
    return _OUTLINES[0]


def _outline(epsg: int, minx: float, miny: float, maxx: float, maxy: float) -> shapely.Geometry:
    args = [np.array([v]) for v in (epsg, minx, miny, maxx, maxy)]
    return outline_wgs84(*args)[0]


def test_an_aoi_around_the_north_pole_covers_the_polar_cap() -> None:
    """A box in polar stereographic (EPSG:3413) around the pole, reaching 72–77° N."""
    polar = parse_aoi([-1_400_000, -1_400_000, 1_400_000, 1_400_000], None, f"{EPSG}3413")
    cap = polar.wgs84()
    assert cap.bounds[1] == pytest.approx(71.9, abs=0.3) and cap.bounds[3] == 90.0
    assert cap.bounds[0] == -180.0 and cap.bounds[2] == 180.0
    features = plan_tiling_grid(2, 360.0, 0, 0, polar)
    assert len({f.epsg for f in features}) == 57  # every zone but 32, 34, 36 (Svalbard)
    for lon in (-179.5, 0.0, 179.5):
        assert {f.name for f in plan_tiling_grid(2, 360.0, 0, 0, point_aoi(lon, 79.0))} <= {
            f.name for f in features
        }
