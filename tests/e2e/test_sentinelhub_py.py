"""sentinelhub-py, unchanged, against a real `eobatch serve` process over HTTP.

The outputs are checked pixel by pixel against NDVI computed here from the closed-form demo values
(tests/reference.py), and their CRS and geotransform against the LAEA grid arithmetic.
"""

from __future__ import annotations

import sqlite3
import time

import numpy as np
import pyogrio
import pytest
import rasterio
from affine import Affine
from sentinelhub import SHConfig
from sentinelhub.api.batch import utils as batch_utils
from sentinelhub.api.batch.process import BatchProcessClient, BatchRequestStatus
from sentinelhub.exceptions import DownloadFailedException

from eobatch.demo import NDVI_EVALSCRIPT, demo_aoi
from eobatch.sources.mosaic import WARP_TOLERANCE_PX
from tests.e2e.conftest import World, http_client, register_demo_collection
from tests.reference import matches_nearest, ndvi, nearest_mosaic

pytestmark = pytest.mark.slow

OUTPUT_BUCKET = "e2e-output"


def process_request(collection_id: str) -> dict:
    return {
        "input": {
            "bounds": {
                "bbox": demo_aoi(),
                "properties": {"crs": "http://www.opengis.net/def/crs/EPSG/0/4326"},
            },
            "data": [
                {
                    "type": f"byoc-{collection_id}",
                    "dataFilter": {
                        "timeRange": {"from": "2024-01-01T00:00:00Z", "to": "2024-12-31T23:59:59Z"},
                        "mosaickingOrder": "mostRecent",
                    },
                    "processing": {"upsampling": "NEAREST", "downsampling": "NEAREST"},
                }
            ],
        },
        "output": {"responses": [{"identifier": "default", "format": {"type": "image/tiff"}}]},
        "evalscript": NDVI_EVALSCRIPT,
    }


@pytest.fixture
def sh_client(world: World, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the token URL is plain http
    # sentinelhub-py refuses to poll more often than once a minute; the service is local.
    monkeypatch.setattr(batch_utils, "_MIN_SLEEP_TIME", 1)
    monkeypatch.setattr(batch_utils, "_MIN_ANALYSIS_SLEEP_TIME", 1)
    (world.data_dir / "buckets" / OUTPUT_BUCKET).mkdir(parents=True)
    service = world.service().start()
    try:
        with http_client(service.base_url, world.creds) as http:
            collection_id = register_demo_collection(http, world.scenes)
        config = SHConfig(
            sh_client_id=world.creds.client_id,
            sh_client_secret=world.creds.client_secret,
            sh_base_url=service.base_url,
            sh_token_url=f"{service.base_url}/auth/realms/main/protocol/openid-connect/token",
        )
        yield BatchProcessClient(config=config), collection_id
    finally:
        service.stop()


def test_sentinelhub_py_runs_a_task_to_done(world: World, sh_client) -> None:  # type: ignore[no-untyped-def]
    client, collection_id = sh_client

    grids = list(client.iter_tiling_grids(count=2))  # paginated: 6 grids, 2 per page
    assert [g["id"] for g in grids] == [0, 1, 2, 3, 6, 7]
    grid = client.get_tiling_grid(7)
    assert grid["name"] == "LAEA 20km grid" and grid["properties"]["tileWidth"] == 20000

    delivery = client.s3_specification(  # keys are required by sentinelhub-py; unused locally
        url=f"s3://{OUTPUT_BUCKET}/results", access_key="local", secret_access_key="local"
    )
    request = client.create(
        process_request(collection_id),
        input=client.tiling_grid_input(7, 20.0),
        output=client.raster_output(delivery),
        description="e2e",
    )
    others = [
        client.create(
            process_request(collection_id),
            input=client.tiling_grid_input(7, 20.0),
            output=client.raster_output(delivery),
            description=f"other {i}",
        )
        for i in range(2)
    ]
    assert request.status is BatchRequestStatus.CREATED

    listed = [r.request_id for r in client.iter_requests(count=1)]  # one task per page
    assert sorted(listed) == sorted([request.request_id] + [o.request_id for o in others])

    client.update_request(request, description="NDVI over the demo data")
    assert client.get_request(request).request["description"] == "NDVI over the demo data"

    client.start_analysis(others[0])
    batch_utils.monitor_batch_process_analysis(others[0], client, sleep_time=1)
    client.stop_job(others[0])
    deadline = time.monotonic() + 30
    while client.get_request(others[0]).status is not BatchRequestStatus.STOPPED:
        assert time.monotonic() < deadline, "STOP was not applied"
        time.sleep(0.2)
    assert client.get_request(others[0]).stopped_status_reason.value == "USER_ACTION"
    with pytest.raises(DownloadFailedException):  # a stopped task cannot be started right away
        client.start_job(others[0])

    client.start_analysis(request)
    analysed = batch_utils.monitor_batch_process_analysis(request, client, sleep_time=1)
    assert analysed.status is BatchRequestStatus.ANALYSIS_DONE

    client.start_job(request)
    done = batch_utils.monitor_batch_process_job(
        request, client, sleep_time=1, analysis_sleep_time=1
    )
    assert done.status is BatchRequestStatus.DONE
    assert done.completion_percentage == 100
    assert done.cost_PU > 0

    check_outputs(world, request.request_id)


def check_outputs(world: World, task_id: str) -> None:
    root = world.data_dir / "buckets" / OUTPUT_BUCKET / "results"
    assert (root / f"request-{task_id}.json").is_file()

    manifest = root / f"featureManifest-{task_id}.gpkg"
    layers = [name for name, _ in pyogrio.list_layers(manifest)]
    assert layers == ["feature_3035"]
    meta, _, geometries, fields = pyogrio.raw.read(manifest, layer="feature_3035")
    columns = dict(zip(meta["fields"], fields, strict=True))
    assert len(geometries) == 4  # the AOI meets four 20 km cells
    assert set(columns["outputId"]) == {"default"}
    assert set(columns["width"]) == {1000} and set(columns["height"]) == {1000}
    manifest_paths = {str(p) for p in columns["path"]}

    with sqlite3.connect(root / f"execution-{task_id}.sqlite") as execution:
        rows = execution.execute("SELECT name, status, error, delivered FROM features").fetchall()
    assert len(rows) == 4
    assert {r[1] for r in rows} == {"DONE"}
    assert all(r[3] for r in rows)

    by_name = {s.name: s for s in world.scenes}
    priority = [by_name[n] for n in ("2024-09-20", "2024-07-15", "2024-05-10")]  # mostRecent
    outputs = sorted((root / task_id).glob("*/default.tiff"))
    assert {p.parent.name for p in outputs} == {r[0] for r in rows}
    assert manifest_paths == {
        f"s3://{OUTPUT_BUCKET}/results/{task_id}/{p.parent.name}/default.tiff" for p in outputs
    }
    for path in outputs:
        with rasterio.open(path) as tiff:
            assert tiff.crs.to_epsg() == 3035
            assert tiff.count == 1 and tiff.dtypes[0] == "float32"
            assert (tiff.width, tiff.height) == (1000, 1000)
            t = tiff.transform
            assert (t.a, t.b, t.d, t.e) == (20.0, 0.0, 0.0, -20.0)
            assert t.c % 20000 == 0 and t.f % 20000 == 0  # cell corners of the LAEA 20 km grid
            actual = tiff.read(1)
        transform = Affine(20, 0, t.c, 0, -20, t.f)

        def expected(shift, transform=transform):  # type: ignore[no-untyped-def]
            values, _ = nearest_mosaic(priority, ["B04", "B08"], 3035, transform, 1000, 1000, shift)
            return ndvi(values["B04"], values["B08"])

        ok = matches_nearest(actual, expected, 2 * WARP_TOLERANCE_PX)
        assert ok.all(), f"{path}: {np.count_nonzero(~ok)} pixels differ from numpy NDVI"
        assert np.isfinite(actual).any() and np.isnan(actual).any()  # data and no-data both met
