"""Sentinel-2 through STAC, whole tasks: items in a stac-geoparquet file (and behind a STAC API),
COGs on the S3 server, outputs compared pixel for pixel with numpy models of the same rules.

Scenes (EPSG:32633 unless said): A newest, cloudy, baseline 05.10 (offset in its values) with a
no-data block; B older, clear, baseline 02.14; C oldest, baseline 05.10 with the offset already
removed by the publisher (Earth Search's flag); D1/D2 a July orbit in UTM zone 34, two adjacent
tiles the feature straddles.
"""

from __future__ import annotations

import copy
import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
import shapely
from affine import Affine
from pyproj import Transformer
from rasterio.io import MemoryFile

from eobatch.accounts import create_account
from eobatch.api import create_app
from eobatch.config import Settings
from eobatch.sources.mosaic import WARP_TOLERANCE_PX
from eobatch.store import Database
from tests.geopackages import write_layer
from tests.integration.harness import Service
from tests.integration.test_api import signed_in
from tests.reference import matches_nearest
from tests.sentinel2 import S2Scene, publish, write_geoparquet
from tests.servers import MOTO_KEY, MOTO_REGION, MOTO_SECRET

EPSG = 32633
X0, Y0, SIZE, RES = 499_980.0, 5_003_040.0, 3000.0, 10.0  # the feature: 300 x 300 px at 10 m
PX = int(SIZE / RES)
TILE_X0, TILE_Y0, TILE_SIZE = X0 - 600, Y0 + 600, 4200.0  # the scenes overhang it by 600 m
ZERO = (slice(0, 60), slice(0, 60))  # A's no-data block, in A's 10 m pixels (tile-relative)
JUNE = {"from": "2024-06-01T00:00:00Z", "to": "2024-06-30T23:59:59Z"}
JULY = {"from": "2024-07-01T00:00:00Z", "to": "2024-07-31T23:59:59Z"}


def june_scenes() -> list[S2Scene]:
    a = S2Scene("S2A_A", "2024-06-10T10:00:00Z", 60.0, "05.10", EPSG, TILE_X0, TILE_Y0, TILE_SIZE)
    b = S2Scene("S2B_B", "2024-06-05T10:00:00Z", 10.0, "02.14", EPSG, TILE_X0, TILE_Y0, TILE_SIZE)
    c = S2Scene(
        "S2A_C",
        "2024-06-01T10:00:00Z",
        20.0,
        "05.10",
        EPSG,
        TILE_X0,
        TILE_Y0,
        TILE_SIZE,
        offset_applied=True,
    )
    a.fill(1, zero_block=(slice(60, 120), slice(60, 120)))  # inside the feature (offset 60 px)
    b.fill(2)
    c.fill(3)
    return [a, b, c]


def july_scenes() -> list[S2Scene]:
    """Two adjacent zone-34 tiles meeting in the middle of the feature."""
    to_34 = Transformer.from_crs(EPSG, 32634, always_xy=True)
    xs, ys = to_34.transform([X0, X0 + SIZE, X0, X0 + SIZE], [Y0, Y0, Y0 - SIZE, Y0 - SIZE])
    west, east = np.floor(min(xs) / 60) * 60 - 600, np.ceil(max(xs) / 60) * 60 + 600
    north = np.ceil(max(ys) / 60) * 60 + 600
    middle = np.round((west + east) / 2 / 60) * 60
    size = float(max(middle - west, east - middle, north - (min(ys) - 600)))
    size = np.ceil(size / 60) * 60
    d1 = S2Scene("S2A_D1", "2024-07-03T10:00:00Z", 5.0, "02.14", 32634, west, north, size)
    d2 = S2Scene("S2A_D2", "2024-07-03T10:00:05Z", 5.0, "02.14", 32634, middle, north, size)
    d1.fill(4)
    d2.fill(5)
    d1.values["B04"][:, int((middle - west) / 10) :] = 0  # D1 holds nothing east of the seam
    return [d1, d2]


@dataclass
class World:
    service: Service  # the API and the controllers (no demo collection: collection_id "")
    s3: Any
    out_bucket: str
    features_url: str
    june: list[S2Scene]
    july: list[S2Scene]
    items: list[dict]
    l1c: S2Scene  # the one scene of sentinel-2-l1c, a data type of the test's mapping file

    @property
    def http(self) -> Any:
        return self.service.http

    def run(self, body: dict, expect: str = "DONE") -> tuple[str, dict]:
        task = self.service.run(body)
        assert task["status"] == expect, task.get("error")
        return task["id"], task

    def using(self, **overrides: object) -> World:
        """This world with its controllers configured by `overrides` (another STAC source)."""
        settings = self.service.settings.model_copy(update=overrides)
        return replace(self, service=replace(self.service, settings=settings))

    def output(self, task_id: str, name: str = "default") -> tuple[np.ndarray, Affine]:
        key = f"run/{task_id}/f-1/{name}.tiff"
        body = self.s3.get_object(Bucket=self.out_bucket, Key=key)["Body"].read()  # type: ignore[attr-defined]
        with MemoryFile(body) as memory, memory.open() as src:
            return src.read(), src.transform

    def request(self, evalscript: str, data: list[dict], features: str = "") -> dict:
        body = {
            "processRequest": {
                "input": {"data": data},
                "evalscript": evalscript,
                "output": {
                    "responses": [{"identifier": "default", "format": {"type": "image/tiff"}}]
                },
            },
            "input": {
                "type": "geopackage",
                "features": {"s3": {"url": features or self.features_url}},
            },
            "output": {
                "type": "raster",
                "delivery": {"s3": {"url": f"s3://{self.out_bucket}/run"}},
            },
        }
        return body


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str, dask_client
) -> Iterator[World]:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("s2")
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        aws_access_key_id=MOTO_KEY,
        aws_secret_access_key=MOTO_SECRET,
        region_name=MOTO_REGION,
    )
    suffix = uuid.uuid4().hex[:8]
    cogs, out = f"s2-cogs-{suffix}", f"s2-out-{suffix}"
    for name in (cogs, out):
        s3.create_bucket(Bucket=name)
    june, july = june_scenes(), july_scenes()
    l1c = S2Scene(
        "S2A_L1C",
        "2024-06-07T10:00:00Z",
        0.0,
        "05.10",
        EPSG,
        TILE_X0,
        TILE_Y0,
        TILE_SIZE,
        collection="sentinel-2-l1c",
    )
    l1c.fill(6)
    items = publish(s3, cogs, [*june, *july, l1c])
    mapping = json.loads(
        resources.files("eobatch.sources.data").joinpath("stac_collections.json").read_text()
    )
    mapping["sentinel-2-l1c"] = {**mapping["sentinel-2-l2a"], "stacCollection": "sentinel-2-l1c"}
    (tmp / "mapping.json").write_text(json.dumps(mapping))
    catalogue = write_geoparquet(tmp / "items.parquet", items)
    square = shapely.box(X0, Y0 - SIZE, X0 + SIZE, Y0)
    for name, size in (("feature", PX), ("feature20", PX // 2)):  # 10 m and 20 m pixels
        gpkg = tmp / f"{name}.gpkg"
        write_layer(
            gpkg, "features", EPSG, [square], identifiers=["f-1"], width=[size], height=[size]
        )
        s3.upload_file(str(gpkg), out, f"input/{name}.gpkg")
    settings = Settings(
        data_dir=tmp / "data",
        database_url=f"sqlite:///{tmp / 'store.sqlite'}",
        jwt_secret="test-signing-key-that-is-long-enough-for-hs256",
        workers=1,
        s3_endpoint=moto_endpoint,
        s3_access_key=MOTO_KEY,
        s3_secret_key=MOTO_SECRET,
        stac_source=str(catalogue),
        stac_mapping=tmp / "mapping.json",
        execution_db_interval_s=3600,
    )
    db = Database(settings.resolved_database_url)
    db.migrate()
    creds = create_account(db, "s2-user", 1_000_000.0)
    http = signed_in(create_app(settings, db), creds)
    service = Service(settings, db, http, dask_client, creds.account_id, collection_id="")
    yield World(service, s3, out, f"s3://{out}/input/feature.gpkg", june, july, items, l1c)
    db.dispose()


# -- numpy models -------------------------------------------------------------------------------


def window(scene: S2Scene, band: str) -> np.ndarray:
    """A June scene's stored values over the feature, on the 10 m feature grid (nearest)."""
    res = {"B04": 10, "B08": 10, "B05": 20, "B01": 60, "SCL": 20}[band]
    rows = (np.arange(PX) * RES + RES / 2 + (TILE_Y0 - Y0)) // res
    cols = (np.arange(PX) * RES + RES / 2 + (X0 - TILE_X0)) // res
    return scene.values[band][rows.astype(int)[:, None], cols.astype(int)[None, :]].astype(
        np.float64
    )


def harmonised(dn: np.ndarray, shift: float) -> np.ndarray:
    return np.where(dn == 0, np.nan, np.maximum(dn + shift, 0) if shift < 0 else dn + shift)


def mosaic(layers: list[np.ndarray]) -> np.ndarray:
    """First non-NaN value in priority order."""
    out = np.full(layers[0].shape, np.nan)
    for layer in layers:
        take = np.isnan(out) & ~np.isnan(layer)
        out[take] = layer[take]
    return out


# -- tests ---------------------------------------------------------------------------------------

UNITS_SCRIPT = """//VERSION=3
function setup() {
  return {
    input: [{ datasource: "h", bands: ["B04", "dataMask"], units: "DN" },
            { datasource: "raw", bands: ["B04"], units: "DN" },
            { datasource: "refl", bands: ["B04"] }],
    output: { bands: 4, sampleType: "FLOAT32" } };
}
function evaluatePixel(s) {
  return [s.h.B04, s.raw.B04, s.refl.B04, s.h.dataMask];
}
"""


def test_units_and_harmonisation_of_each_baseline(world: World) -> None:
    """DN with and without harmonizeValues and REFLECTANCE (the default units), mosaicked
    mostRecent: A's values lose its offset, B's are kept, A's no-data block comes from B."""
    data = [
        {"type": "sentinel-2-l2a", "id": "h", "dataFilter": {"timeRange": JUNE}},
        {
            "type": "sentinel-2-l2a",
            "id": "raw",
            "dataFilter": {"timeRange": JUNE},
            "processing": {"harmonizeValues": False},
        },
        {"type": "S2L2A", "id": "refl", "dataFilter": {"timeRange": JUNE}},
    ]
    task_id, task = world.run(world.request(UNITS_SCRIPT, data))
    got, transform = world.output(task_id)
    assert transform == Affine(RES, 0, X0, 0, -RES, Y0)
    a, b, _ = world.june
    h = mosaic([harmonised(window(a, "B04"), -1000), harmonised(window(b, "B04"), 0)])
    raw = mosaic([harmonised(window(a, "B04"), 0), harmonised(window(b, "B04"), 0)])
    assert np.array_equal(got[0], h.astype(np.float32))
    assert np.array_equal(got[1], raw.astype(np.float32))
    assert np.array_equal(got[2], h.astype(np.float32) * np.float32(1e-4))
    assert (got[3] == 1).all()
    assert (got[0] < got[1]).any() and (got[0] == 0).any()  # the offset removed, clamped at 0
    assert task["costPU"] > 0


ORDERS_SCRIPT = """//VERSION=3
function setup() {
  return {
    input: ["newest", "cc30", "least", "oldest"].map(
      id => ({ datasource: id, bands: ["B08"], units: "DN" })),
    output: { bands: 4, sampleType: "UINT16" } };
}
function evaluatePixel(s) { return [s.newest.B08, s.cc30.B08, s.least.B08, s.oldest.B08]; }
"""


def test_cloud_cover_filter_and_every_mosaicking_order(world: World) -> None:
    def source(name: str, **data_filter: object) -> dict:
        return {
            "type": "sentinel-2-l2a",
            "id": name,
            "dataFilter": {"timeRange": JUNE, **data_filter},
        }

    data = [
        source("newest"),
        source("cc30", maxCloudCoverage=30),
        source("least", mosaickingOrder="leastCC"),
        source("oldest", mosaickingOrder="leastRecent"),
    ]
    task_id, _ = world.run(world.request(ORDERS_SCRIPT, data))
    got, _ = world.output(task_id)
    a, b, c = world.june
    a08, b08, c08 = (harmonised(window(s, "B08"), 0) for s in (a, b, c))
    a08 = harmonised(window(a, "B08"), -1000)
    newest = mosaic([a08, b08])  # A, its hole filled from B
    assert np.array_equal(got[0], newest.astype(np.uint16))
    assert np.array_equal(got[1], b08.astype(np.uint16))  # A (60 %) filtered out: B, newer than C
    assert np.array_equal(got[2], b08.astype(np.uint16))  # 10 % < 20 % < 60 %
    assert np.array_equal(got[3], c08.astype(np.uint16))  # C's offset is already gone


def test_process_api_previews_sentinel2_as_tasks_read_it(world: World) -> None:
    """The same sources through POST /api/v1/process over the feature's grid: the pixels of
    the task above (same numpy models), charged once by the Process rules."""
    data = [
        {"type": "sentinel-2-l2a", "id": "newest", "dataFilter": {"timeRange": JUNE}},
        {
            "type": "sentinel-2-l2a",
            "id": "cc30",
            "dataFilter": {"timeRange": JUNE, "maxCloudCoverage": 30},
        },
        {
            "type": "sentinel-2-l2a",
            "id": "least",
            "dataFilter": {"timeRange": JUNE, "mosaickingOrder": "leastCC"},
        },
        {
            "type": "sentinel-2-l2a",
            "id": "oldest",
            "dataFilter": {"timeRange": JUNE, "mosaickingOrder": "leastRecent"},
        },
    ]
    body = {
        "input": {
            "bounds": {
                "bbox": [X0, Y0 - SIZE, X0 + SIZE, Y0],
                "properties": {"crs": f"http://www.opengis.net/def/crs/EPSG/0/{EPSG}"},
            },
            "data": data,
        },
        "output": {
            "width": PX,
            "height": PX,
            "responses": [{"identifier": "default", "format": {"type": "image/tiff"}}],
        },
        "evalscript": ORDERS_SCRIPT,
    }
    response = world.http.post("/api/v1/process", json=body)
    assert response.status_code == 200, response.text
    with MemoryFile(response.content) as memory, memory.open() as src:
        got, transform = src.read(), src.transform
    assert transform == Affine(RES, 0, X0, 0, -RES, Y0)
    a, b, c = world.june
    a08 = harmonised(window(a, "B08"), -1000)
    b08, c08 = (harmonised(window(s, "B08"), 0) for s in (b, c))
    expected = [mosaic([a08, b08]), b08, b08, c08]
    for band, values in zip(got, expected, strict=True):
        assert np.array_equal(band, values.astype(np.uint16))
    assert float(response.headers["x-processingunits-spent"]) > 0


RESAMPLING_SCRIPT = """//VERSION=3
function setup() {
  return {
    input: ["n", "l", "c"].map(
      id => ({ datasource: id, bands: ["B05", "B01", "SCL"], units: "DN" })),
    output: { bands: 9, sampleType: "FLOAT32" } };
}
function evaluatePixel(s) {
  return [s.n.B05, s.n.B01, s.l.B05, s.l.B01, s.c.B05, s.c.B01, s.n.SCL, s.l.SCL, s.c.SCL];
}
"""


def upsampled(scene: S2Scene, band: str, method: str) -> np.ndarray:
    """`band` of `scene` on the 10 m feature grid: separable kernels on the exact source
    coordinates of each output pixel centre (before GDAL rounds them to the uint16 it stores)."""
    res = {"B05": 20, "B01": 60}[band]
    values = scene.values[band].astype(np.float64)
    # source pixel coordinate (centres at integers) of each output column / row centre
    sx = ((X0 - TILE_X0) + (np.arange(PX) + 0.5) * RES) / res - 0.5
    sy = ((TILE_Y0 - Y0) + (np.arange(PX) + 0.5) * RES) / res - 0.5
    if method == "NEAREST":
        return values[np.floor(sy + 0.5).astype(int)[:, None], np.floor(sx + 0.5).astype(int)]

    def weights(coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        base = np.floor(coords).astype(int)
        t = coords - base
        if method == "BILINEAR":
            return np.stack([base, base + 1], 1), np.stack([1 - t, t], 1)
        taps = np.stack([base - 1, base, base + 1, base + 2], 1)
        d = np.abs(taps - coords[:, None])
        w = np.where(
            d < 1,
            1.5 * d**3 - 2.5 * d**2 + 1,
            np.where(d < 2, -0.5 * d**3 + 2.5 * d**2 - 4 * d + 2, 0),
        )
        return taps, w

    (ry, wy), (rx, wx) = weights(sy), weights(sx)
    out = np.einsum("ri,cj,ricj->rc", wy, wx, values[ry[:, :, None, None], rx[None, None]])
    return out


def test_20_and_60_m_bands_upsampled_to_10_m_with_each_method(world: World) -> None:
    data = [
        {
            "type": "sentinel-2-l2a",
            "id": i,
            "dataFilter": {"timeRange": JUNE},
            "processing": {"upsampling": m},
        }
        for i, m in (("n", "NEAREST"), ("l", "BILINEAR"), ("c", "BICUBIC"))
    ]
    task_id, _ = world.run(world.request(RESAMPLING_SCRIPT, data))
    got, _ = world.output(task_id)
    a = world.june[0]  # newest; its 20 m and 60 m bands have no holes
    for n, method in enumerate(("NEAREST", "BILINEAR", "BICUBIC")):
        for k, band in enumerate(("B05", "B01")):
            exact = upsampled(a, band, method)
            rounded = np.floor(exact + 0.5)  # GDAL rounds half up into uint16 ...
            # ... from a double that may land a hair either side of an exact .5: then both are
            tie = np.abs(exact - np.floor(exact) - 0.5) < 1e-6

            def shifted(dn: np.ndarray) -> np.ndarray:  # harmonised, clamped at 0 like uint16
                return np.maximum(np.clip(dn, 0, 65535) - 1000, 0)

            value = got[2 * n + k]
            ok = (value == shifted(rounded)) | (
                tie & ((value == shifted(np.floor(exact))) | (value == shifted(np.ceil(exact))))
            )
            assert ok.all(), (method, band, int((~ok).sum()))
            assert tie.mean() < 0.05 or method == "BILINEAR"
    # SCL is a classification: always nearest, whatever the request asks
    scl = window(a, "SCL").astype(np.float32)
    for n in range(3):
        assert np.array_equal(got[6 + n], scl)


STRADDLE_SCRIPT = """//VERSION=3
function setup() {
  return { input: [{ bands: ["B04", "dataMask"], units: "DN" }],
           output: { bands: 2, sampleType: "UINT16" }, mosaicking: "ORBIT" };
}
function evaluatePixel(samples) {
  return [samples[0].B04, samples.length];
}
"""


def test_feature_in_another_utm_zone_straddling_two_tiles(world: World) -> None:
    """The July orbit: two zone-34 tiles merged into one ORBIT sample, each supplying its side
    of the seam, warped into the zone-33 feature (nearest, within the warper's tolerance)."""
    data = [{"type": "sentinel-2-l2a", "dataFilter": {"timeRange": JULY}}]
    task_id, _ = world.run(world.request(STRADDLE_SCRIPT, data))
    got, _ = world.output(task_id)
    assert (got[1] == 1).all()  # one orbit: the two tiles of one day are one sample
    d1, d2 = world.july
    rows, cols = np.mgrid[0:PX, 0:PX]
    x, y = Affine(RES, 0, X0, 0, -RES, Y0) @ (cols + 0.5, rows + 0.5)
    ux, uy = Transformer.from_crs(EPSG, 32634, always_xy=True).transform(x, y)

    def expected(shift: tuple[float, float]) -> np.ndarray:
        out = np.full((PX, PX), np.nan)
        for tile in (d2, d1):  # mostRecent: D2 (5 s later) first; they do not overlap
            col = np.floor((ux - tile.x0) / 10 + shift[0]).astype(int)
            row = np.floor((tile.y0 - uy) / 10 + shift[1]).astype(int)
            n = tile.values["B04"].shape[0]
            inside = (col >= 0) & (col < n) & (row >= 0) & (row < n) & np.isnan(out)
            vals = np.zeros((PX, PX))
            vals[inside] = tile.values["B04"][row[inside], col[inside]]
            take = inside & (vals != 0)
            out[take] = vals[take]
        return out

    ok = matches_nearest(got[0].astype(np.float64), expected, WARP_TOLERANCE_PX)
    assert ok.all(), f"{(~ok).sum()} pixels differ"
    assert (ux < d2.x0).any() and (ux >= d2.x0).any()  # the feature straddles the seam


TILE_SCRIPT = """//VERSION=3
function setup() {
  return { input: [{ bands: ["B08", "dataMask"], units: "DN" }],
           output: { bands: 1, sampleType: "UINT16" }, mosaicking: "TILE" };
}
function evaluatePixel(samples) { return [samples.length]; }
function updateOutputMetadata(scenes, inputMetadata, outputMetadata) {
  outputMetadata.userData = { tiles: scenes.tiles.map(t => [t.shId, t.cloudCoverage, t.date]) };
}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def stac_api(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The same items behind a STAC API on loopback: rustac's server, in-memory backend."""
    path = tmp_path_factory.mktemp("api") / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": world.items}))
    port = free_port()
    rustac = Path(sys.executable).with_name("rustac")
    server = subprocess.Popen(
        [str(rustac), "serve", str(path), "--use-duckdb", "false", "--addr", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline and server.poll() is None, "rustac serve died"
            time.sleep(0.1)
    yield url
    server.terminate()
    server.wait(10)


def test_tile_mosaicking_from_a_stac_api_with_cloud_cover_metadata(
    world: World, stac_api: str
) -> None:
    data = [
        {
            "type": "sentinel-2-l2a",
            "dataFilter": {"timeRange": JUNE, "maxCloudCoverage": 50, "mosaickingOrder": "leastCC"},
        }
    ]
    body = world.request(TILE_SCRIPT, data)
    body["processRequest"]["output"]["responses"].append(
        {"identifier": "userdata", "format": {"type": "application/json"}}
    )
    task_id, _ = world.using(stac_source=stac_api).run(body)
    got, _ = world.output(task_id)
    assert (got[0] == 2).all()  # B and C; A is too cloudy
    key = f"run/{task_id}/f-1/userdata.json"
    userdata = json.loads(world.s3.get_object(Bucket=world.out_bucket, Key=key)["Body"].read())  # type: ignore[attr-defined]
    assert userdata == {
        "tiles": [["S2B_B", 10.0, "2024-06-05T10:00:00Z"], ["S2A_C", 20.0, "2024-06-01T10:00:00Z"]]
    }


@pytest.mark.parametrize(
    ("script_input", "processing", "message"),
    [
        ('["B10"]', {}, "B10 not in the collection sentinel-2-l2a"),
        ('[{bands: ["SCL"], units: "REFLECTANCE"}]', {}, "SCL of sentinel-2-l2a has no units"),
        ('[{datasource: "nope", bands: ["B04"]}]', {}, "datasource 'nope' is not the id of any"),
    ],
)
def test_bands_and_units_the_collection_lacks_fail_the_analysis(
    world: World, script_input: str, processing: dict, message: str
) -> None:
    script = (
        "//VERSION=3\nfunction setup() { return { input: "
        + script_input
        + ", output: { bands: 1 } }; }\nfunction evaluatePixel(s) { return [0]; }"
    )
    data = [{"type": "sentinel-2-l2a", "dataFilter": {"timeRange": JUNE}, **processing}]
    _, task = world.run(world.request(script, data), expect="FAILED")
    assert message in task["error"]


def test_unreachable_catalogue_fails_the_analysis_with_a_hint(world: World) -> None:
    body = world.request(STRADDLE_SCRIPT, [{"type": "sentinel-2-l2a"}])
    _, task = world.using(stac_source="/nonexistent/items.parquet").run(body, expect="FAILED")
    assert "EOBATCH_STAC_SOURCE" in task["error"]


def test_fusion_and_filters_that_cannot_work_are_refused_at_creation(world: World) -> None:
    base = world.request(STRADDLE_SCRIPT, [{"type": "sentinel-2-l2a"}])
    cases = []
    twice = copy.deepcopy(base)
    twice["processRequest"]["input"]["data"] = [
        {"type": "sentinel-2-l2a", "id": "x"},
        {"type": "sentinel-2-l1c", "id": "x"},
    ]
    cases.append((twice, "processRequest->input->data->0->id", "duplicate id"))
    olci = copy.deepcopy(base)
    olci["processRequest"]["input"]["data"] = [{"type": "sentinel-3-olci"}]
    cases.append((olci, "processRequest->input->data->0->type", "not available"))
    cloud = copy.deepcopy(base)
    cloud["processRequest"]["input"]["data"][0]["dataFilter"] = {"maxCloudCoverage": 120}
    cases.append((cloud, "processRequest->input->data->0->dataFilter->maxCloudCoverage", ""))
    for body, parameter, text in cases:
        response = world.http.post("/api/v2/batch/process", json=body)  # type: ignore[attr-defined]
        assert response.status_code == 400, response.text
        found = {e["parameter"]: e["violation"] for e in response.json()["error"]["errors"]}
        assert parameter in found and text in found[parameter], found


OVERVIEW_SCRIPT = """//VERSION=3
function setup() {
  return { input: [{ bands: ["B04", "B01"], units: "DN" }],
           output: { bands: 2, sampleType: "FLOAT32" } };
}
function evaluatePixel(s) { return [s.B04, s.B01]; }
"""


def overview(world: World, scene: S2Scene, band: str) -> np.ndarray:
    """The first overview (20 m) of a scene's band as GDAL built it, over the feature."""
    key = f"{scene.collection}/{scene.id}/{band}.tif"
    cogs = next(i for i in world.items if i["id"] == scene.id)["assets"]["red"]["href"]
    bucket = cogs.removeprefix("s3://").split("/")[0]
    body = world.s3.get_object(Bucket=bucket, Key=key)["Body"].read()  # type: ignore[attr-defined]
    with MemoryFile(body) as memory, memory.open(overview_level=0) as src:
        assert src.res == (20.0, 20.0)
        values = src.read(1).astype(np.float64)
    row, col = int((TILE_Y0 - Y0) / 20), int((X0 - TILE_X0) / 20)
    return values[row : row + PX // 2, col : col + PX // 2]


def test_coarser_output_reads_the_overview_nearest_its_resolution(world: World) -> None:
    """20 m output: the 10 m band comes from its 20 m overview (averaged by GDAL), the 60 m band
    (too small for overviews) from full resolution; A's no-data block is filled from B."""
    data = [{"type": "sentinel-2-l2a", "dataFilter": {"timeRange": JUNE}}]
    features = world.features_url.replace("feature.gpkg", "feature20.gpkg")
    task_id, _ = world.run(world.request(OVERVIEW_SCRIPT, data, features))
    got, transform = world.output(task_id)
    assert transform == Affine(20, 0, X0, 0, -20, Y0)
    a, b, _ = world.june
    expected = mosaic(
        [harmonised(overview(world, a, "B04"), -1000), harmonised(overview(world, b, "B04"), 0)]
    )
    assert np.array_equal(got[0], expected.astype(np.float32))
    full = harmonised(window(a, "B04")[::2, ::2], -1000)
    assert not np.array_equal(got[0], full.astype(np.float32))  # not full-resolution samples
    rows = ((np.arange(PX // 2) + 0.5) * 20 + (TILE_Y0 - Y0)) // 60
    cols = ((np.arange(PX // 2) + 0.5) * 20 + (X0 - TILE_X0)) // 60
    index = rows.astype(int)[:, None], cols.astype(int)[None, :]
    # a pixel takes every band from one scene: in A's B04 hole, B01 comes from B too
    hole = np.isnan(harmonised(overview(world, a, "B04"), -1000))
    b01 = np.where(hole, b.values["B01"][index], a.values["B01"][index] - 1000.0)
    assert hole.any() and np.array_equal(got[1], b01.astype(np.float32))


def test_a_data_type_declared_in_the_mapping_file(world: World) -> None:
    """sentinel-2-l1c is not in the built-in mapping (Earth Search's L1C assets are not COGs);
    the test's mapping file declares it, and its scene (baseline 05.10) is harmonised."""
    script = STRADDLE_SCRIPT.replace('units: "DN" }', "}").replace('"UINT16"', '"FLOAT32"')
    data = [{"type": "S2L1C", "dataFilter": {"timeRange": JUNE}}]
    task_id, _ = world.run(world.request(script, data))
    got, _ = world.output(task_id)
    expected = harmonised(window(world.l1c, "B04"), -1000).astype(np.float32) * np.float32(1e-4)
    assert np.array_equal(got[0], expected) and (got[1] == 1).all()


def test_one_source_named_by_its_id(world: World) -> None:
    script = """//VERSION=3
function setup() {
  return { input: [{ datasource: "l2a", bands: ["B08"], units: "DN" }],
           output: { bands: 1, sampleType: "UINT16" } };
}
function evaluatePixel(s) { return [s.l2a.B08]; }
"""
    data = [{"type": "sentinel-2-l2a", "id": "l2a", "dataFilter": {"timeRange": JUNE}}]
    task_id, _ = world.run(world.request(script, data))
    got, _ = world.output(task_id)
    a, b, _ = world.june
    expected = mosaic([harmonised(window(a, "B08"), -1000), harmonised(window(b, "B08"), 0)])
    assert np.array_equal(got[0], expected.astype(np.uint16))


SERIES_SCRIPT = """//VERSION=3
function setup() {
  return { input: [{ bands: ["B08", "dataMask"], units: "DN" }],
           output: { id: "default", bands: 1, sampleType: "UINT16" }, mosaicking: "ORBIT" };
}
function preProcessScenes(collections) {
  collections.scenes.orbits = collections.scenes.orbits.filter(function (orbit) {
    return new Date(orbit.dateFrom).getTime() >= collections.to.getTime() - 26 * 24 * 3600 * 1000;
  });
  return collections;
}
function updateOutput(outputs, collection) {
  Object.values(outputs).forEach((output) => { output.bands = collection.scenes.length; });
}
function evaluatePixel(samples) { return samples.map((s) => (s.dataMask ? s.B08 : 0)); }
"""


def test_time_series_of_the_last_days_one_band_per_orbit(world: World) -> None:
    """The official "last N days" filter: collections.to is the request's timeRange.to as a
    Date; updateOutput makes one band per orbit kept (A on June 10, B on June 5; C on June 1
    is older than 26 days before June 30)."""
    data = [{"type": "sentinel-2-l2a", "dataFilter": {"timeRange": JUNE}}]
    task_id, _ = world.run(world.request(SERIES_SCRIPT, data))
    got, _ = world.output(task_id)
    a, b, _ = world.june
    newest = np.nan_to_num(harmonised(window(a, "B08"), -1000))  # A's no-data block: 0
    assert got.shape == (2, PX, PX)
    assert np.array_equal(got[0], newest.astype(np.uint16)) and (got[0] == 0).any()
    assert np.array_equal(got[1], window(b, "B08").astype(np.uint16))


def test_units_per_band_mixing_reflectance_and_dn(world: World) -> None:
    """What sentinelhub-py's generate_evalscript writes: one unit per band, in any case."""
    script = """//VERSION=3
function setup() {
  return { input: [{ bands: ["B04", "B08", "dataMask"], units: ["reflectance", "DN", "DN"] }],
           output: { bands: 3, sampleType: "FLOAT32" } };
}
function evaluatePixel(s) { return [s.B04, s.B08, s.dataMask]; }
"""
    data = [{"type": "sentinel-2-l2a", "dataFilter": {"timeRange": JUNE}}]
    task_id, _ = world.run(world.request(script, data))
    got, _ = world.output(task_id)
    a, b, _ = world.june
    b04 = mosaic([harmonised(window(a, "B04"), -1000), harmonised(window(b, "B04"), 0)])
    b08 = mosaic([harmonised(window(a, "B08"), -1000), harmonised(window(b, "B08"), 0)])
    assert np.array_equal(got[0], b04.astype(np.float32) * np.float32(1e-4))
    assert np.array_equal(got[1], b08.astype(np.float32))
    assert (got[2] == 1).all()


def test_fusion_paired_by_position_one_source_simple_the_other_orbit(world: World) -> None:
    """Data sources without ids, inputs without datasource: paired by position and keyed "0",
    "1"; the first source SIMPLE (an array of its one mosaic), the second ORBIT, oldest first."""
    script = """//VERSION=3
function setup() {
  return { input: [{ bands: ["B04"], units: "DN" },
                   { bands: ["B08", "dataMask"], units: "DN", mosaicking: "ORBIT" }],
           output: { bands: 3, sampleType: "FLOAT32" } };
}
function evaluatePixel(samples) {
  const orbits = samples[1];
  const last = orbits[orbits.length - 1];
  return [samples["0"][0].B04, orbits.length, last.dataMask ? last.B08 : -1];
}
"""
    data = [
        {"type": "sentinel-2-l2a", "dataFilter": {"timeRange": JUNE}},
        {
            "type": "sentinel-2-l2a",
            "dataFilter": {"timeRange": JUNE, "mosaickingOrder": "leastRecent"},
        },
    ]
    task_id, _ = world.run(world.request(script, data))
    got, _ = world.output(task_id)
    a, b, _ = world.june
    b04 = mosaic([harmonised(window(a, "B04"), -1000), harmonised(window(b, "B04"), 0)])
    assert np.array_equal(got[0], b04.astype(np.float32))
    assert (got[1] == 3).all()
    newest = np.nan_to_num(harmonised(window(a, "B08"), -1000), nan=-1)  # A is last: oldest first
    assert np.array_equal(got[2], newest.astype(np.float32))
