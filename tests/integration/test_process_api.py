"""The Process and Catalog APIs through FastAPI's test client, on SQLite and PostgreSQL: multipart
bodies, geometry clipping, data fusion, the balance check, tenants, and catalogue paging, fields
and filters over a Sentinel-2 stac-geoparquet source."""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from fastapi.testclient import TestClient
from PIL import Image
from pyproj import Transformer

from eobatch.accounts import create_account
from eobatch.api import create_app
from eobatch.config import Settings
from eobatch.demo_data import DEMO_DEFAULT_BOUNDS, DEMO_EPSG
from eobatch.ledger import entries
from eobatch.store import Database
from tests.e2e.conftest import DATA_BUCKET, register_demo_collection
from tests.integration.test_api import signed_in
from tests.sentinel2 import write_geoparquet

UTM = f"http://www.opengis.net/def/crs/EPSG/0/{DEMO_EPSG}"
CATALOG = "/api/v1/catalog/1.0.0"
RGBA = """//VERSION=3
function setup() {
  return { input: ["B02", "B03", "B04", "dataMask"], output: { bands: 4, sampleType: "AUTO" } };
}
function evaluatePixel(s) { return [s.B04 / 3000, s.B03 / 3000, s.B02 / 3000, s.dataMask]; }
"""
CLOUDS = [3.0, 45.0, 12.0, 90.0, 25.0, 7.0]  # one June 2024 item every 5 days


@dataclass
class Api:
    http: TestClient
    db: Database
    account_id: str
    collection_id: str

    def body(self, **changes: object) -> dict:
        minx, miny, _, _ = DEMO_DEFAULT_BOUNDS
        body = {
            "input": {
                "bounds": {
                    "bbox": [minx + 2000, miny + 2000, minx + 4000, miny + 3000],
                    "properties": {"crs": UTM},
                },
                "data": [
                    {
                        "type": f"byoc-{self.collection_id}",
                        "dataFilter": {"timeRange": {"from": "2024-01-01T00:00:00Z", "to": ".."}},
                    }
                ],
            },
            "output": {"width": 100, "height": 50},
            "evalscript": RGBA,
        }
        return {**body, **changes}


@pytest.fixture
def api(settings: Settings, db: Database, demo_folder, tmp_path: Path) -> Api:  # type: ignore[no-untyped-def]
    folder, scenes = demo_folder
    shutil.copytree(folder, settings.buckets_dir / DATA_BUCKET)
    catalogue = write_geoparquet(tmp_path / "s2.parquet", s2_items())
    tuned = settings.model_copy(update={"stac_source": str(catalogue)})
    creds = create_account(db, "previewer", 10)
    http = signed_in(create_app(tuned, db), creds)
    collection_id = register_demo_collection(http, scenes)  # type: ignore[arg-type]
    return Api(http, db, creds.account_id, collection_id)


def s2_items() -> list[dict]:
    footprint = shapely.box(14.0, 48.0, 15.0, 49.0)
    return [
        {
            "type": "Feature",
            "stac_version": "1.0.0",
            "id": f"S2A_{n}",
            "collection": "sentinel-2-l2a",
            "geometry": shapely.geometry.mapping(footprint),
            "bbox": list(footprint.bounds),
            "properties": {"datetime": f"2024-06-{1 + 5 * n:02d}T10:00:00Z", "eo:cloud_cover": c},
            "links": [],
            "assets": {"red": {"href": f"s3://sentinel-cogs/S2A_{n}/B04.tif"}},
        }
        for n, c in enumerate(CLOUDS)
    ]


def png(response) -> np.ndarray:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.text
    return np.array(Image.open(io.BytesIO(response.content)))


def test_multipart_body_and_geometry_clipping(api: Api) -> None:
    body = api.body()
    evalscript = body.pop("evalscript")
    whole = png(
        api.http.post(
            "/api/v1/process",
            files={"request": (None, json.dumps(body)), "evalscript": ("s.js", evalscript)},
        )
    )
    assert whole.shape == (50, 100, 4) and (whole[..., 3] == 255).all()

    minx, miny, maxx, maxy = body["input"]["bounds"]["bbox"]
    triangle = {
        "type": "Polygon",
        "coordinates": [[[minx, miny], [maxx, miny], [minx, maxy], [minx, miny]]],
    }
    clipped = api.body()
    clipped["input"]["bounds"]["geometry"] = triangle
    image = png(api.http.post("/api/v1/process", json=clipped))
    rows, cols = np.mgrid[0:50, 0:100]
    # pixel centres (20 m pixels) against the hypotenuse; those within 2 % of it are left out
    position = (cols + 0.5) / 100 + (49.5 - rows) / 50
    clear = np.abs(position - 1) > 0.02
    assert (image[..., 3][(position < 1) & clear] == 255).all()
    assert (image[..., 3][(position > 1) & clear] == 0).all()
    assert (image[..., :3][image[..., 3] == 0] == 0).all()
    assert np.array_equal(
        image[..., :3][image[..., 3] == 255], whole[..., :3][image[..., 3] == 255]
    )


def test_data_fusion_reads_each_source_as_batch_does(api: Api) -> None:
    source = f"byoc-{api.collection_id}"
    fused = api.body(
        evalscript="""//VERSION=3
function setup() {
  return {
    input: [{ datasource: "now", bands: ["B04"] }, { datasource: "then", bands: ["B04"] }],
    output: { bands: 1, sampleType: "FLOAT32" }
  };
}
function evaluatePixel(s) { return [s.now[0].B04 - s.then[0].B04]; }
""",
        output={
            "width": 100,
            "height": 50,
            "responses": [{"identifier": "default", "format": {"type": "image/tiff"}}],
        },
    )
    fused["input"]["data"] = [
        {"type": source, "id": "now"},
        {"type": source, "id": "then", "dataFilter": {"mosaickingOrder": "leastRecent"}},
    ]
    response = api.http.post("/api/v1/process", json=fused)
    assert response.status_code == 200, response.text
    with rasterio.open(io.BytesIO(response.content)) as tiff:
        assert tiff.crs.to_epsg() == DEMO_EPSG and tiff.res == (20.0, 20.0)
        difference = tiff.read(1)
    # 2024-09-20 (newest) against 2023-08-01 (oldest): the demo's values differ everywhere
    assert np.isfinite(difference).all() and (difference != 0).mean() > 0.9
    # B04 from two sources: 2/3 of the bands factor, x2 FLOAT32, x2 fusion of two collections
    expected = 100 * 50 / 512**2 * 2 / 3 * 2 * 2
    assert float(response.headers["x-processingunits-spent"]) == pytest.approx(expected, rel=1e-4)


def test_the_balance_and_other_accounts_collections(api: Api, settings: Settings) -> None:
    big = api.body(output={"width": 2500, "height": 2500})  # ~24 PU, the account holds 10
    before = entries(api.db, api.account_id)
    refused = api.http.post("/api/v1/process", json=big)
    assert refused.status_code == 403, refused.text
    assert "Not enough processing units" in refused.json()["error"]["message"]
    assert entries(api.db, api.account_id) == before

    other = signed_in(create_app(settings, api.db), create_account(api.db, "other", 100))
    foreign = other.post("/api/v1/process", json=api.body())
    assert foreign.status_code == 400
    assert foreign.json()["error"]["errors"][0]["parameter"] == "input->data->0->type"
    assert other.get(f"{CATALOG}/collections/byoc-{api.collection_id}").status_code == 404
    listed = other.get(f"{CATALOG}/collections").json()["collections"]
    assert not any(c["id"].startswith("byoc-") for c in listed)


def test_catalog_search_filter_fields_and_paging(api: Api) -> None:
    area = {"collections": ["sentinel-2-l2a"], "bbox": [14.2, 48.2, 14.3, 48.3]}
    pages, body = [], {**area, "limit": 2, "filter": "eo:cloud_cover < 30"}
    while True:
        page = api.http.post(f"{CATALOG}/search", json=body).json()
        pages.append([f["id"] for f in page["features"]])
        links = [link for link in page["links"] if link["rel"] == "next"]
        if not links:
            assert "next" not in page["context"]
            break
        assert links[0]["body"] == {"next": page["context"]["next"]} and links[0]["merge"]
        body = {**body, **links[0]["body"]}
    assert pages == [["S2A_0", "S2A_2"], ["S2A_4", "S2A_5"]]

    json_filter = {"op": "between", "args": [{"property": "eo:cloud_cover"}, 10, 50]}
    found = api.http.post(
        f"{CATALOG}/search",
        json={
            **area,
            "filter": json_filter,
            "filter-lang": "cql2-json",
            "datetime": "2024-06-05/..",
        },
    ).json()["features"]
    assert [f["id"] for f in found] == ["S2A_1", "S2A_2", "S2A_4"]

    slim = api.http.get(
        f"{CATALOG}/search",
        params={
            "collections": "sentinel-2-l2a",
            "bbox": "14.2,48.2,14.3,48.3",
            "fields": "properties.eo:cloud_cover,-assets",
            "limit": 4,
        },
    ).json()
    assert set(slim["features"][0]) >= {"id", "geometry", "properties"}
    assert "assets" not in slim["features"][0]
    assert slim["features"][0]["properties"] == {
        "datetime": "2024-06-01T10:00:00Z",
        "eo:cloud_cover": 3.0,
    }
    (next_link,) = [link for link in slim["links"] if link["rel"] == "next"]
    rest = api.http.get(next_link["href"]).json()
    assert [f["id"] for f in rest["features"]] == ["S2A_4", "S2A_5"]

    days = api.http.post(f"{CATALOG}/search", json={**area, "distinct": "date"}).json()
    assert days["features"] == [f"2024-06-{1 + 5 * n:02d}" for n in range(len(CLOUDS))][:10]

    everything = api.http.post(f"{CATALOG}/search", json={**area, "limit": 100}).json()
    clouds = {f["id"]: f["properties"]["eo:cloud_cover"] for f in everything["features"]}
    cloudiest = sorted(clouds, key=lambda i: -clouds[i])  # ties stay in datetime order
    posted = api.http.post(
        f"{CATALOG}/search",
        json={
            **area,
            "limit": 100,
            "sortby": [{"field": "properties.eo:cloud_cover", "direction": "desc"}],
        },
    ).json()
    assert [f["id"] for f in posted["features"]] == cloudiest
    text = api.http.get(
        f"{CATALOG}/search",
        params={
            "collections": "sentinel-2-l2a",
            "bbox": "14.2,48.2,14.3,48.3",
            "sortby": "+eo:cloud_cover,-datetime",  # `+` arrives as a space: still ascending
            "limit": 3,
        },
    ).json()
    least = sorted(clouds, key=lambda i: clouds[i])
    assert [f["id"] for f in text["features"]] == least[:3]
    assert "item-search#sort" in " ".join(
        api.http.get(f"{CATALOG}/conformance").json()["conformsTo"]
    )

    items = api.http.get(
        f"{CATALOG}/collections/byoc-{api.collection_id}/items/", params={"limit": 3}
    )
    assert items.status_code == 200 and items.json()["numberReturned"] == 3
    assert any(link["rel"] == "next" for link in items.json()["links"])


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        ({"collections": ["sentinel-2-l2a", "dem"]}, "collections"),
        ({"collections": ["sentinel-2-l2a"]}, "bbox"),  # upstream catalogues need an area
        ({"collections": ["sentinel-2-l2a"], "bbox": [1, 2, 3]}, "bbox"),
        ({"collections": ["sentinel-2-l2a"], "bbox": [1, 2, 3, 4], "intersects": {}}, "intersects"),
        (
            {"collections": ["sentinel-2-l2a"], "bbox": [1, 2, 3, 4], "filter": "a = 1 OR b = 2"},
            "filter",
        ),
        ({"collections": ["sentinel-2-l2a"], "bbox": [1, 2, 3, 4], "filter": "gsd < 3"}, "filter"),
        ({"collections": ["sentinel-2-l2a"], "bbox": [1, 2, 3, 4], "datetime": "June"}, "datetime"),
        ({"collections": ["sentinel-2-l2a"], "bbox": [1, 2, 3, 4], "limit": 0}, "limit"),
        ({"collections": ["sentinel-2-l2a"], "bbox": [1, 2, 3, 4], "query": {}}, "query"),
        ({"collections": ["sentinel-2-l2a"], "bbox": [1, 2, 3, 4], "sortby": "-gsd"}, "sortby"),
        (
            {
                "collections": ["sentinel-2-l2a"],
                "bbox": [1, 2, 3, 4],
                "sortby": [{"field": "datetime", "direction": "down"}],
            },
            "sortby",
        ),
    ],
)
def test_bad_searches_name_the_parameter(api: Api, body: dict, parameter: str) -> None:
    response = api.http.post(f"{CATALOG}/search", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["errors"][0]["parameter"] == parameter


def test_pixels_coarser_than_the_collection_allows(api: Api) -> None:
    body = api.body(output={"width": 10, "height": 10})
    body["input"] = {
        "bounds": {"bbox": [14.0, 48.0, 15.0, 49.0]},  # ~74 km wide: 7.4 km pixels
        "data": [{"type": "sentinel-2-l2a"}],
    }
    response = api.http.post("/api/v1/process", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "COMMON_EXCEPTION"
    assert "meters per pixel exceeds the limit 1500.00" in error["message"]
    assert entries(api.db, api.account_id)[-1].kind != "process"


def test_a_script_that_runs_too_long_is_stopped_and_free(api: Api, settings: Settings) -> None:
    creds = create_account(api.db, "looper", 100)
    tuned = settings.model_copy(update={"process_timeout_s": 1.0})
    http = signed_in(create_app(tuned, api.db), creds)
    collection = http.post(
        "/api/v1/byoc/collections", json={"name": "loops", "s3Bucket": DATA_BUCKET}
    ).json()["data"]["id"]
    http.post(
        f"/api/v1/byoc/collections/{collection}/tiles",
        json={"path": "2024-05-10/(BAND).tif", "sensingTime": "2024-05-10T10:05:00Z"},
    ).raise_for_status()
    body = api.body(
        evalscript=RGBA.replace(
            "function evaluatePixel(s) {", "function evaluatePixel(s) { while (true) {}"
        )
    )
    body["input"]["data"][0]["type"] = f"byoc-{collection}"
    response = http.post("/api/v1/process", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "RENDERER_EXCEPTION"
    assert all(e.kind != "process" for e in entries(api.db, creds.account_id))


def test_catalog_intersects_and_one_item(api: Api) -> None:
    minx, miny, _, _ = DEMO_DEFAULT_BOUNDS
    lon, lat = Transformer.from_crs(DEMO_EPSG, 4326, always_xy=True).transform(
        minx + 500, miny + 5000
    )
    west = {"type": "Point", "coordinates": [lon, lat]}  # only the two scenes covering it all
    found = api.http.post(
        f"{CATALOG}/search",
        json={"collections": [f"byoc-{api.collection_id}"], "intersects": west},
    ).json()["features"]
    assert [f["properties"]["datetime"][:10] for f in found] == ["2023-08-01", "2024-05-10"]
    one = api.http.get(f"{CATALOG}/collections/byoc-{api.collection_id}/items/{found[1]['id']}")
    assert one.status_code == 200 and one.json()["id"] == found[1]["id"]
    assert one.headers["content-type"] == "application/geo+json"
    missing = api.http.get(f"{CATALOG}/collections/byoc-{api.collection_id}/items/nope")
    assert missing.status_code == 404
