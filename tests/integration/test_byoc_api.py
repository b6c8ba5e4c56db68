"""The BYOC API over real files: ingestion checks, reingest, copyTiles, the collection summary and
collections in a bucket with their own storage locator (pu-byoc-process.md §2)."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import boto3
import numpy as np
import pytest
import rasterio
from affine import Affine

from eobatch.accounts import create_account, top_up
from eobatch.api import create_app
from eobatch.config import Settings
from eobatch.sources import PixelGrid, read_mosaic
from eobatch.sources import byoc as byoc_module
from eobatch.sources.byoc import collection_scenes
from eobatch.store import Database
from tests.integration.harness import service_settings
from tests.integration.test_api import User, assert_error, signed_in
from tests.servers import MOTO_KEY, MOTO_REGION, MOTO_SECRET, upload_to_gcs

X0, Y0 = 500_000.0, 5_000_000.0  # UTM 33N


@pytest.fixture
def backend() -> str:
    """Ingestion is file checks; the store part is plain CRUD, covered on both elsewhere."""
    return "sqlite"


def write_tif(
    path: Path,
    dtype: str = "uint16",
    epsg: int = 32633,
    size: int = 600,
    origin: tuple[float, float] = (X0, Y0),
    res: float = 10.0,
    overviews: tuple[int, ...] = (),
    **profile: object,
) -> None:
    """A GeoTIFF, tiled 256 px and DEFLATE unless `profile` says otherwise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate"}
    options.update(profile)
    data = (np.arange(size * size).reshape(size, size) % 250 + 1).astype(dtype)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=size,
        height=size,
        count=1,
        dtype=dtype,
        crs=f"EPSG:{epsg}",
        transform=Affine(res, 0, origin[0], 0, -res, origin[1]),
        **options,
    ) as dst:
        dst.write(data, 1)
        if overviews:
            dst.build_overviews(list(overviews))


@pytest.fixture
def user(settings: Settings, db: Database) -> User:
    (settings.buckets_dir / "tiles").mkdir(parents=True)
    (settings.buckets_dir / "other").mkdir(parents=True)
    http = signed_in(create_app(settings, db), create_account(db, "owner", 5000.0))
    created = http.post("/api/v1/byoc/collections", json={"name": "c", "s3Bucket": "tiles"})
    assert created.status_code == 201, created.text
    return User(http, created.json()["data"]["accountId"], created.json()["data"]["id"])


def add_tile(user: User, path: str, **extra: object) -> dict:
    response = user.http.post(
        f"/api/v1/byoc/collections/{user.collection_id}/tiles", json={"path": path, **extra}
    )
    assert response.status_code == 201, response.text
    return response.json()["data"]


BAD_TILES = {
    "not tiled": ({"tiled": False}, "is not tiled"),
    "small blocks": ({"blockxsize": 128, "blockysize": 128}, "128 x 128 px internal tiles"),
    "jpeg": ({"compress": "jpeg", "dtype": "uint8"}, "JPEG"),
    "lambert-93": ({"epsg": 2154}, "EPSG:2154"),
    "float into uint16": ({"dtype": "float32"}, "expects bitDepth 16 UINT"),
    "shifted file": ({"origin": (X0 + 100, Y0)}, "must agree within a pixel"),
}


@pytest.mark.parametrize("case", list(BAD_TILES))
def test_a_bad_file_fails_ingestion_with_the_reason(
    case: str, user: User, settings: Settings
) -> None:
    root = settings.buckets_dir / "tiles"
    write_tif(root / "good/B04.tif")
    write_tif(root / "good/B08.tif")
    assert add_tile(user, "good/(BAND).tif")["status"] == "INGESTED"  # bands B04, B08 (UINT16)
    overrides, reason = BAD_TILES[case]
    write_tif(root / "bad/B04.tif")
    write_tif(root / "bad/B08.tif", **overrides)  # type: ignore[arg-type]
    tile = add_tile(user, "bad/(BAND).tif")
    assert tile["status"] == "FAILED"
    assert reason in tile["additionalData"]["failedIngestionCause"]
    # fixed in the bucket and reingested, it is ingested; the failed state is gone
    write_tif(root / "bad/B08.tif")
    url = f"/api/v1/byoc/collections/{user.collection_id}/tiles/{tile['id']}"
    assert user.http.post(f"{url}/reingest").status_code == 204
    again = user.http.get(url).json()["data"]
    assert again["status"] == "INGESTED" and again["additionalData"]["failedIngestionCause"] is None


def test_missing_band_file_and_first_tile_configures_the_collection(
    user: User, settings: Settings
) -> None:
    root = settings.buckets_dir / "tiles"
    write_tif(root / "t1/B02.tif")
    write_tif(root / "t1/B03.tif", dtype="int16")
    first = add_tile(user, "t1", sensingTime="2024-05-01T10:00:00Z")
    assert first["status"] == "INGESTED" and first["path"] == "t1/(BAND).tif"
    bands = user.http.get(f"/api/v1/byoc/collections/{user.collection_id}").json()["data"]
    assert bands["additionalData"]["bands"] == {
        "B02": {"source": "B02", "bandIndex": 1, "bitDepth": 16, "sampleFormat": "UINT"},
        "B03": {"source": "B03", "bandIndex": 1, "bitDepth": 16, "sampleFormat": "INT"},
    }
    write_tif(root / "t2/B02.tif")
    tile = add_tile(user, "t2/(BAND).tif")
    assert tile["status"] == "FAILED"
    assert "t2/B03.tif' does not exist" in tile["additionalData"]["failedIngestionCause"]
    assert_error(
        user.http.post(
            f"/api/v1/byoc/collections/{user.collection_id}/tiles", json={"path": "t1/(BAND).tif"}
        ),
        409,
    )


def test_collection_summary_extent_and_sensing_times(user: User, settings: Settings) -> None:
    root = settings.buckets_dir / "tiles"
    url = f"/api/v1/byoc/collections/{user.collection_id}"
    assert user.http.get(url).json()["data"]["additionalData"]["hasSensingTimes"] == "NO"
    write_tif(root / "a/B04.tif")
    write_tif(root / "b/B04.tif", origin=(X0 + 6000, Y0))
    add_tile(user, "a/(BAND).tif", sensingTime="2024-05-01T10:00:00Z")
    add_tile(user, "b/(BAND).tif")
    summary = user.http.get(url).json()["data"]["additionalData"]
    assert summary["hasSensingTimes"] == "PARTIALLY"
    assert summary["fromSensingTime"] == summary["toSensingTime"] == "2024-05-01T10:00:00Z"
    lon = np.array(summary["extent"]["coordinates"][0])[:, 0]
    assert lon.min() == pytest.approx(15.0, abs=1e-3)  # x0 = 500 km: the central meridian
    assert lon.max() == pytest.approx(15.0 + 12000 / 78_700, abs=0.01)  # 12 km east at 45°


B04_EVALSCRIPT = """//VERSION=3
function setup() {
  return {input: ["B04", "dataMask"], output: {bands: 1, sampleType: "UINT16"}};
}
function evaluatePixel(s) { return [s.B04]; }
"""


def test_max_meters_per_pixel_from_the_tiles_overviews(user: User, settings: Settings) -> None:
    root = settings.buckets_dir / "tiles"
    url = f"/api/v1/byoc/collections/{user.collection_id}"

    def limit() -> float | None:
        return user.http.get(url).json()["data"]["additionalData"].get("maxMetersPerPixel")

    assert limit() is None  # no tile with a size yet: no limit
    # 2048 px of 100 m, overviews of 1024, 512, 256 and 128 px: the coarsest of at least
    # 256 px has 800 m pixels; requests may be five times coarser.
    write_tif(root / "deep/B04.tif", size=2048, res=100.0, overviews=(2, 4, 8, 16))
    add_tile(user, "deep/(BAND).tif", sensingTime="2024-05-01T10:00:00Z")
    assert limit() == 4000.0
    write_tif(root / "flat/B04.tif", origin=(X0, Y0 + 10_000))  # 600 px of 10 m, no overviews
    add_tile(user, "flat/(BAND).tif", sensingTime="2024-05-02T10:00:00Z")
    assert limit() == pytest.approx(5 * (800 + 10) / 2)  # five times the median

    def process(pixel_m: float):  # type: ignore[no-untyped-def]
        return user.http.post(
            "/api/v1/process",
            json={
                "input": {
                    "bounds": {
                        "bbox": [X0, Y0 - 204_800, X0 + 204_800, Y0],
                        "properties": {"crs": "http://www.opengis.net/def/crs/EPSG/0/32633"},
                    },
                    "data": [{"type": f"byoc-{user.collection_id}"}],
                },
                "output": {"resx": pixel_m, "resy": pixel_m},
                "evalscript": B04_EVALSCRIPT,
            },
            headers={"Accept": "image/tiff"},
        )

    assert process(2000.0).status_code == 200
    error = assert_error(process(2560.0), 400, "COMMON_EXCEPTION")  # 80 px of 2560 m
    assert error["message"].startswith(
        "Your request of 2560.00 meters per pixel exceeds the limit 2025.00 meters per pixel "
        f"of the collection byoc-{user.collection_id}."
    )


def test_ingestion_reads_the_files_with_no_transaction_open(
    user: User, settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow bucket holds up no other writer (on SQLite one writer holds the whole store)."""
    write_tif(settings.buckets_dir / "tiles" / "slow/B04.tif")
    reading, finish = threading.Event(), threading.Event()
    inspect = byoc_module._inspect_tile

    def slow_inspection(*args):  # type: ignore[no-untyped-def]
        reading.set()
        assert finish.wait(240)
        return inspect(*args)

    monkeypatch.setattr(byoc_module, "_inspect_tile", slow_inspection)
    added: list[dict] = []
    adding = threading.Thread(target=lambda: added.append(add_tile(user, "slow/(BAND).tif")))
    adding.start()
    try:
        assert reading.wait(240)
        top_up(db, user.account_id, 1.0)  # a write while the tile's files are being read
    finally:
        finish.set()
        adding.join()
    assert added[0]["status"] == "INGESTED"


def test_copy_tiles_to_another_collection(user: User, settings: Settings) -> None:
    root = settings.buckets_dir / "tiles"
    for name in ("a", "b"):
        write_tif(root / f"{name}/B04.tif")
    add_tile(user, "a/(BAND).tif")
    add_tile(user, "b/(BAND).tif")
    write_tif(root / "bad/B04.tif", tiled=False)
    assert add_tile(user, "bad/(BAND).tif")["status"] == "FAILED"

    def new(bucket: str = "tiles", **extra: object) -> str:
        body = {"name": "copy", "s3Bucket": bucket, **extra}
        return user.http.post("/api/v1/byoc/collections", json=body).json()["data"]["id"]

    target = new()
    copy = f"/api/v1/byoc/collections/{user.collection_id}/copyTiles"
    for _ in range(2):  # copying twice adds nothing the second time
        assert user.http.post(copy, params={"toCollection": target}).status_code == 204
        tiles = user.http.get(f"/api/v1/byoc/collections/{target}/tiles").json()["data"]
        assert sorted(t["path"] for t in tiles) == ["a/(BAND).tif", "b/(BAND).tif"]
        assert {t["status"] for t in tiles} == {"INGESTED"}
    source = user.http.get(f"/api/v1/byoc/collections/{user.collection_id}").json()["data"]
    copied = user.http.get(f"/api/v1/byoc/collections/{target}").json()["data"]
    assert copied["additionalData"]["bands"] == source["additionalData"]["bands"]
    # the tiles' sizes come along: the same request limit
    assert copied["additionalData"]["maxMetersPerPixel"] == 500.0
    assert source["additionalData"]["maxMetersPerPixel"] == 500.0

    other_bands = new(additionalData={"bands": {"X": {"bitDepth": 8}}})
    assert_error(user.http.post(copy, params={"toCollection": other_bands}), 409)
    assert_error(user.http.post(copy, params={"toCollection": new("other")}), 409)
    assert_error(user.http.post(copy), 400)
    assert_error(user.http.post(copy, params={"toCollection": str(uuid.uuid4())}), 404)


def test_collection_in_a_bucket_with_its_own_credentials(
    tmp_path: Path, moto_endpoint: str
) -> None:
    """`storage` names the bucket, a prefix and keys: tiles are checked and read through them,
    and the keys never come back in the API."""
    # no deployment keys: only the collection's own
    settings = service_settings(tmp_path, s3_endpoint=moto_endpoint)
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        aws_access_key_id=MOTO_KEY,
        aws_secret_access_key=MOTO_SECRET,
        region_name=MOTO_REGION,
    )
    bucket = f"own-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    write_tif(tmp_path / "B04.tif")
    s3.upload_file(str(tmp_path / "B04.tif"), bucket, "archive/2024/t1/B04.tif")
    db = Database(settings.resolved_database_url)
    db.migrate()
    try:
        http = signed_in(create_app(settings, db), create_account(db, "own", 5000.0))
        storage = {
            "s3": {
                "url": f"s3://{bucket}/archive",
                "accessKey": MOTO_KEY,
                "secretAccessKey": MOTO_SECRET,
                "region": MOTO_REGION,
            }
        }
        created = http.post("/api/v1/byoc/collections", json={"name": "own", "storage": storage})
        assert created.status_code == 201, created.text
        body = created.json()["data"]
        assert body["s3Bucket"] == bucket
        assert body["storage"]["s3"]["secretAccessKey"] == "***"
        assert MOTO_SECRET not in created.text
        tile = http.post(
            f"/api/v1/byoc/collections/{body['id']}/tiles", json={"path": "2024/t1/(BAND).tif"}
        ).json()["data"]
        assert tile["status"] == "INGESTED", tile
        # what a client GETs, it can PUT back (sentinelhub-py does): the secrets stay
        url = f"/api/v1/byoc/collections/{body['id']}"
        shown = http.get(url).json()["data"]
        assert http.put(url, json={**shown, "name": "renamed"}).status_code == 204
        assert http.get(url).json()["data"]["name"] == "renamed"
        scenes, _ = collection_scenes(db, settings, body["accountId"], body["id"])
        grid = PixelGrid(32633, Affine(10, 0, X0, 0, -10, Y0), 50, 50)
        values, mask = read_mosaic([scenes[0][0]], ["B04"], grid)
        expected = (np.arange(600 * 600).reshape(600, 600) % 250 + 1)[:50, :50]
        assert mask.all() and np.array_equal(values["B04"], expected.astype(np.float32))
        moved = {**shown, "storage": {"s3": {**shown["storage"]["s3"], "url": f"s3://{bucket}"}}}
        assert_error(http.put(url, json=moved), 409)  # it has tiles

        missing = {"s3": {**storage["s3"], "url": "s3://no-such-bucket-here"}}
        role = {"s3": {"url": f"s3://{bucket}", "iamRoleARN": "arn:aws:iam::123456789012:role/r"}}
        for wrong in (
            {"name": "x", "storage": missing},
            {"name": "x", "storage": storage, "s3Bucket": "another-bucket"},
            {"name": "x", "storage": role},
            {"name": "x", "storage": {"s3": {**storage["s3"], "accessKey": "***"}}},
            {"name": "x"},
        ):
            assert_error(http.post("/api/v1/byoc/collections", json=wrong), 400)
    finally:
        db.dispose()


def test_collection_in_a_gcs_bucket_with_a_service_account(
    tmp_path: Path, gcs_endpoint: str, gcs_bucket: str, gcs_credentials: str
) -> None:
    settings = service_settings(tmp_path, gcs_endpoint=gcs_endpoint)
    write_tif(tmp_path / "B08.tif", origin=(X0 + 1000, Y0))
    upload_to_gcs(gcs_endpoint, gcs_bucket, "cogs/t1/B08.tif", (tmp_path / "B08.tif").read_bytes())
    db = Database(settings.resolved_database_url)
    db.migrate()
    try:
        http = signed_in(create_app(settings, db), create_account(db, "gcs", 5000.0))
        storage_locator = {"gs": {"url": f"gs://{gcs_bucket}/cogs", "credentials": gcs_credentials}}
        created = http.post(
            "/api/v1/byoc/collections", json={"name": "gcs", "storage": storage_locator}
        )
        assert created.status_code == 201, created.text
        body = created.json()["data"]
        assert body["storage"]["gs"]["credentials"] == "***"
        tile = http.post(
            f"/api/v1/byoc/collections/{body['id']}/tiles", json={"path": "t1"}
        ).json()["data"]
        assert tile["status"] == "INGESTED" and tile["path"] == "t1/(BAND).tif", tile
        scenes, bands = collection_scenes(db, settings, body["accountId"], body["id"])
        assert list(bands) == ["B08"]
        grid = PixelGrid(32633, Affine(10, 0, X0 + 1000, 0, -10, Y0), 30, 30)
        values, mask = read_mosaic([scenes[0][0]], ["B08"], grid)
        expected = (np.arange(600 * 600).reshape(600, 600) % 250 + 1)[:30, :30]
        assert mask.all() and np.array_equal(values["B08"], expected.astype(np.float32))
    finally:
        db.dispose()
