"""The Process and Catalog APIs driven by sentinelhub-py and pystac-client, unchanged, against a
real `eobatch serve`: previews as numpy arrays (TIFF, PNG, several responses in a tar) that equal
a batch task's GeoTIFFs pixel for pixel over the same feature grid; catalogue searches of the
BYOC collection and of a Sentinel-2 source (a stac-geoparquet file) page by page; bad Process
requests answered with a 400 that charges nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import rasterio
import shapely
from pystac_client import Client
from sentinelhub import (
    CRS,
    BBox,
    DataCollection,
    MimeType,
    MosaickingOrder,
    SentinelHubCatalog,
    SentinelHubRequest,
    SHConfig,
)
from sentinelhub.api.batch import utils as batch_utils
from sentinelhub.api.batch.process import BatchProcessClient, BatchRequestStatus
from sentinelhub.api.catalog import get_available_timestamps
from sentinelhub.exceptions import DownloadFailedException

from eobatch import ledger
from eobatch.demo import NDVI_EVALSCRIPT, demo_aoi
from eobatch.store import Database
from tests.e2e.conftest import World, http_client, register_demo_collection
from tests.e2e.test_sentinelhub_py import OUTPUT_BUCKET, process_request
from tests.sentinel2 import write_geoparquet

pytestmark = pytest.mark.slow

TIME = ("2024-01-01", "2024-12-31")
RGB = """//VERSION=3
function setup() {
  return { input: ["B02", "B03", "B04", "dataMask"], output: { bands: 4, sampleType: "AUTO" } };
}
function evaluatePixel(s) { return [s.B04 / 3000, s.B03 / 3000, s.B02 / 3000, s.dataMask]; }
"""
RGB_UINT8 = RGB.replace('sampleType: "AUTO"', 'sampleType: "UINT8"').replace(
    "return [s.B04 / 3000, s.B03 / 3000, s.B02 / 3000, s.dataMask]",
    "return [255 * s.B04 / 3000, 255 * s.B03 / 3000, 255 * s.B02 / 3000, 255 * s.dataMask]",
)
WITH_USERDATA = """//VERSION=3
function setup() {
  return {
    input: ["B04", "dataMask"],
    output: { id: "default", bands: 1, sampleType: "UINT16" },
    mosaicking: "ORBIT"
  };
}
function evaluatePixel(samples) { return [samples.length ? samples[0].B04 : 0]; }
function updateOutputMetadata(scenes, inputMetadata, outputMetadata) {
  outputMetadata.userData = { orbits: scenes.orbits.length };
}
"""
S2_ITEMS = [  # (id, day of June 2024, cloud cover)
    (f"S2B_MSIL2A_202406{day:02d}_T33UVP", day, cloud)
    for day, cloud in [(3, 5.0), (8, 80.0), (13, 12.5), (18, 40.0), (23, 2.0)]
]


@dataclass
class Served:
    base_url: str
    config: SHConfig
    collection_id: str
    token: str


@pytest.fixture
def served(world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Served]:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the token URL is plain http
    monkeypatch.setattr(batch_utils, "_MIN_SLEEP_TIME", 1)
    monkeypatch.setattr(batch_utils, "_MIN_ANALYSIS_SLEEP_TIME", 1)
    (world.data_dir / "buckets" / OUTPUT_BUCKET).mkdir(parents=True)
    catalogue = write_geoparquet(tmp_path / "s2.parquet", s2_items())
    service = world.service(EOBATCH_STAC_SOURCE=str(catalogue)).start()
    try:
        with http_client(service.base_url, world.creds) as http:
            collection_id = register_demo_collection(http, world.scenes)
            token = http.headers["Authorization"].removeprefix("Bearer ")
        config = SHConfig(
            sh_client_id=world.creds.client_id,
            sh_client_secret=world.creds.client_secret,
            sh_base_url=service.base_url,
            sh_token_url=f"{service.base_url}/oauth/token",
        )
        yield Served(service.base_url, config, collection_id, token)
    finally:
        service.stop()


def s2_items() -> list[dict]:
    footprint = shapely.box(14.0, 48.0, 15.0, 49.0)
    return [
        {
            "type": "Feature",
            "stac_version": "1.0.0",
            "id": item_id,
            "collection": "sentinel-2-l2a",
            "geometry": shapely.geometry.mapping(footprint),
            "bbox": list(footprint.bounds),
            "properties": {
                "datetime": f"2024-06-{day:02d}T10:00:00Z",
                "eo:cloud_cover": cloud,
            },
            "links": [],
            "assets": {"red": {"href": f"s3://sentinel-cogs/{item_id}/B04.tif"}},
        }
        for item_id, day, cloud in S2_ITEMS
    ]


def preview(
    served: Served,
    evalscript: str,
    bbox: BBox,
    size: tuple[int, int],
    *formats: tuple[str, MimeType],
) -> list:
    collection = DataCollection.define_byoc(served.collection_id)
    request = SentinelHubRequest(
        evalscript=evalscript,
        input_data=[
            SentinelHubRequest.input_data(
                data_collection=collection,
                time_interval=TIME,
                mosaicking_order=MosaickingOrder.MOST_RECENT,
            )
        ],
        responses=[SentinelHubRequest.output_response(name, kind) for name, kind in formats],
        bbox=bbox,
        size=size,
        config=served.config,
    )
    return request.get_data()


def test_previews_equal_the_batch_task_pixel_for_pixel(world: World, served: Served) -> None:
    client = BatchProcessClient(config=served.config)
    delivery = client.s3_specification(
        url=f"s3://{OUTPUT_BUCKET}/results", access_key="local", secret_access_key="local"
    )
    task = client.create(
        process_request(served.collection_id),
        input=client.tiling_grid_input(7, 20.0),
        output=client.raster_output(delivery),
    )
    client.start_job(task)
    done = batch_utils.monitor_batch_process_job(task, client, sleep_time=1, analysis_sleep_time=1)
    assert done.status is BatchRequestStatus.DONE

    outputs = sorted((world.data_dir / "buckets" / OUTPUT_BUCKET / "results").glob("*/*/*.tiff"))
    assert len(outputs) == 4
    for path in outputs:
        with rasterio.open(path) as tiff:
            batch = tiff.read(1)
            bbox = BBox(tuple(tiff.bounds), crs=CRS(tiff.crs.to_epsg()))
            size = (tiff.width, tiff.height)
        (image,) = preview(served, NDVI_EVALSCRIPT, bbox, size, ("default", MimeType.TIFF))
        assert image.dtype == np.float32 and image.shape == batch.shape
        assert np.array_equal(image, batch, equal_nan=True), f"{path.parent.name} differs"
        assert np.isfinite(image).any()


def test_png_tiff_and_several_responses_at_once(served: Served) -> None:
    bbox = BBox(demo_aoi(), crs=CRS.WGS84)
    (png,) = preview(served, RGB, bbox, (300, 200), ("default", MimeType.PNG))
    (tiff,) = preview(served, RGB_UINT8, bbox, (300, 200), ("default", MimeType.TIFF))
    assert png.shape == tiff.shape == (200, 300, 4) and png.dtype == np.uint8
    # AUTO stretches 0..1 to 0..255 exactly as the UINT8 script scales by 255 itself
    assert np.array_equal(png, tiff)
    assert (png[..., 3] == 255).any()

    (both,) = preview(
        served,
        WITH_USERDATA,
        bbox,
        (64, 64),
        ("default", MimeType.TIFF),
        ("userdata", MimeType.JSON),
    )
    assert set(both) == {"default.tif", "userdata.json"}
    assert both["default.tif"].dtype == np.uint16 and both["default.tif"].shape == (64, 64)
    assert both["userdata.json"] == {"orbits": 3}  # the three 2024 tiles under the AOI


def test_bad_process_requests_get_a_400_and_cost_nothing(world: World, served: Served) -> None:
    good = {
        "input": {
            "bounds": {"bbox": demo_aoi()},
            "data": [{"type": f"byoc-{served.collection_id}"}],
        },
        "output": {"width": 50, "height": 50},  # 240 m pixels: under the collection's limit
        "evalscript": RGB,
    }
    bad = {
        "evalscript": {**good, "evalscript": ""},
        "input->bounds": {**good, "input": {"data": good["input"]["data"]}},
        "output->resx": {**good, "output": {"resx": 0.00001, "resy": 0.00001}},
        "output->width": {**good, "output": {"width": 2501, "height": 10}},
        "output": {**good, "output": {"width": 10, "height": 10, "resx": 1, "resy": 1}},
        "input->data->0->type": {**good, "input": {**good["input"], "data": [{"type": "x"}]}},
        "output->responses->0->format->type": {
            **good,
            "output": {"responses": [{"identifier": "default", "format": {"type": "image/gif"}}]},
        },
        "output->responses->0->identifier": {
            **good,
            "output": {"responses": [{"identifier": "nope", "format": {"type": "image/png"}}]},
        },
    }
    db = Database(world.database_url)
    try:
        before = len(ledger.entries(db, world.creds.account_id))
        with httpx.Client(
            base_url=served.base_url, headers={"Authorization": f"Bearer {served.token}"}
        ) as http:
            for parameter, body in bad.items():
                response = http.post("/api/v1/process", json=body)
                assert response.status_code == 400, (parameter, response.text)
                error = response.json()["error"]
                assert parameter in [e["parameter"] for e in error["errors"]], error
            jpeg_of_4_bands = http.post(
                "/api/v1/process", json=good, headers={"Accept": "image/jpeg"}
            )
            assert jpeg_of_4_bands.status_code == 400, jpeg_of_4_bands.text
            ok = http.post("/api/v1/process", json=good, headers={"Accept": "image/png"})
            assert ok.status_code == 200 and ok.headers["content-type"] == "image/png"
            assert float(ok.headers["x-processingunits-spent"]) == 0.01  # area floor x 3 bands
        after = ledger.entries(db, world.creds.account_id)
        assert len(after) == before + 1 and after[-1].kind == "process"
        assert after[-1].amount_micro == -10_000
    finally:
        db.dispose()
    with pytest.raises(DownloadFailedException):  # sentinelhub-py sees the 400 as such
        preview(served, "", BBox(demo_aoi(), crs=CRS.WGS84), (10, 10), ("default", MimeType.PNG))


def test_catalog_search_with_sentinelhub_py_and_pystac_client(world: World, served: Served) -> None:
    catalog = SentinelHubCatalog(config=served.config)
    assert catalog.get_info()["conformsTo"]
    byoc = DataCollection.define_byoc(served.collection_id)
    collections = [c["id"] for c in catalog.get_collections()]
    assert f"byoc-{served.collection_id}" in collections and "sentinel-2-l2a" in collections

    aoi = BBox(demo_aoi(), crs=CRS.WGS84)
    results = catalog.search(byoc, bbox=aoi, time=TIME, limit=2)  # 3 tiles: two pages
    found = list(results)
    expected = sorted(s.sensing_time for s in world.scenes if s.sensing_time.year == 2024)
    assert [f["properties"]["datetime"] for f in found] == [
        t.isoformat().replace("+00:00", "Z") for t in expected
    ]
    one = catalog.get_feature(byoc, found[0]["id"])
    assert one["id"] == found[0]["id"] and one["assets"]["data"]["href"].startswith("s3://")

    s2 = DataCollection.SENTINEL2_L2A.define_from(
        f"S2_EOBATCH_{served.base_url.rsplit(':', 1)[1]}", service_url=served.base_url
    )
    clear = catalog.search(
        s2, bbox=aoi, time=("2024-06-01", "2024-06-30"), filter="eo:cloud_cover < 30", limit=1
    )
    assert [f["id"] for f in clear] == [i for i, _, cloud in S2_ITEMS if cloud < 30]
    june = ("2024-06-01", "2024-06-30")
    stamps = get_available_timestamps(aoi, june, s2, maxcc=0.3, config=served.config)
    assert [t.day for t in stamps] == [day for _, day, cloud in S2_ITEMS if cloud < 30]

    stac = Client.open(
        f"{served.base_url}/api/v1/catalog/1.0.0",
        headers={"Authorization": f"Bearer {served.token}"},
    )
    search = stac.search(
        collections=[f"byoc-{served.collection_id}"],
        bbox=demo_aoi(),
        datetime="2024-01-01/2024-12-31",
        limit=1,
    )
    assert [i.id for i in search.items()] == [f["id"] for f in found]
    cloudy = stac.search(
        collections=["sentinel-2-l2a"],
        bbox=demo_aoi(),
        filter={"op": ">=", "args": [{"property": "eo:cloud_cover"}, 40]},
        limit=1,
    )
    assert [i.id for i in cloudy.items()] == [i for i, _, cloud in S2_ITEMS if cloud >= 40]
    for method in ("POST", "GET"):  # pystac-client sends sortby as a list or as text
        clearest = stac.search(
            collections=["sentinel-2-l2a"],
            bbox=demo_aoi(),
            sortby="+properties.eo:cloud_cover",
            method=method,
            limit=2,
        )
        assert [i.id for i in clearest.items()] == [
            i for i, _, _ in sorted(S2_ITEMS, key=lambda item: item[2])
        ]

    with httpx.Client(base_url=served.base_url) as anonymous:
        assert anonymous.get("/api/v1/catalog/1.0.0/conformance").status_code == 200
        assert anonymous.get("/api/v1/catalog/1.0.0/collections").status_code == 401
