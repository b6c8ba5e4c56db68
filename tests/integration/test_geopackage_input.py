"""GeoPackage input through the API and the controller's analysis, from local and S3 buckets."""

from __future__ import annotations

import copy
import io
import re
import tempfile
from pathlib import Path

import boto3
import pyogrio
import pytest
from sqlalchemy import select

from eobatch.api import create_app
from eobatch.config import Settings
from eobatch.lifecycle.controller import Controller
from eobatch.store.models import Feature
from tests.geopackages import valid_geopackage
from tests.integration.harness import service_settings
from tests.integration.test_api import User, _user, assert_error, task_count, valid_request
from tests.servers import MOTO_KEY, MOTO_REGION, MOTO_SECRET
from tests.unit.test_geopackage import MALFORMED

# the collection has no tiles (hence no bands) yet: a script that only needs dataMask
MASK_SCRIPT = """//VERSION=3
function setup() { return { input: ["dataMask"], output: { bands: 1, sampleType: "UINT8" } }; }
function evaluatePixel(s) { return [s.dataMask]; }
"""


def geopackage_request(user: User, features_url: str, **extra) -> dict:  # type: ignore[no-untyped-def]
    body = valid_request(user.collection_id)
    body["processRequest"]["evalscript"] = MASK_SCRIPT
    del body["processRequest"]["input"]["bounds"]  # optional for GeoPackage input
    body["input"] = {"type": "geopackage", "features": {"s3": {"url": features_url, **extra}}}
    return body


def analyse(user: User, db, settings: Settings, body: dict) -> dict:  # type: ignore[no-untyped-def]
    """Create the task, ask for analysis, let one controller round analyse it; the task JSON."""
    response = user.http.post("/api/v2/batch/process", json=body)
    assert response.status_code == 201, response.text
    task_id = response.json()["id"]
    assert user.http.post(f"/api/v2/batch/process/{task_id}/analyse").status_code == 204
    controller = Controller(db, settings, client=None)  # analysis needs no Dask cluster
    for claimed in controller.claim():
        controller.advance(claimed)
    return user.http.get(f"/api/v2/batch/process/{task_id}").json()


def read_manifest(data: bytes) -> dict[str, tuple[int, list[str], list[int]]]:
    """layer → (EPSG, identifiers, widths), read back with GDAL."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.gpkg"
        path.write_bytes(data)
        layers = {}
        for name, _ in pyogrio.list_layers(path):
            meta, _, _, fields = pyogrio.raw.read(path, layer=name)
            columns = dict(zip(meta["fields"], fields, strict=True))
            layers[name] = (
                int(meta["crs"].split(":")[1]),
                columns["identifier"].tolist(),
                columns["width"].tolist(),
            )
        return layers


# -- embedded mode (local-folder buckets) --------------------------------------------------------


@pytest.fixture
def app(settings, db):  # type: ignore[no-untyped-def]
    for bucket in ("data", "results", "in"):
        (settings.buckets_dir / bucket).mkdir(parents=True, exist_ok=True)
    return create_app(settings, db)


@pytest.fixture
def alice(app, db, settings) -> User:  # type: ignore[no-untyped-def]
    return _user(app, db, settings, "alice")


def test_geopackage_task_is_analysed_into_its_features(alice: User, db, settings) -> None:  # type: ignore[no-untyped-def]
    valid_geopackage(settings.buckets_dir / "in" / "fields.gpkg")
    task = analyse(alice, db, settings, geopackage_request(alice, "s3://in/fields.gpkg"))
    assert (task["status"], task.get("error")) == ("ANALYSIS_DONE", None)
    with db.session() as session:
        rows = session.scalars(select(Feature).where(Feature.task_id == task["id"])).all()
        stored = sorted((f.id, f.name, f.epsg, f.width, f.height) for f in rows)
    assert stored == [
        (0, "fields_utm-1", 32633, 100, 100),
        (1, "fields_utm-2", 32633, 100, 100),
        (2, "fields_utm-3", 32633, 50, 50),
        (3, "fields_wgs-1", 4326, 100, 100),
        (4, "fields_wgs-2", 4326, 20, 20),
    ]
    manifest = settings.buckets_dir / "results" / "run" / f"featureManifest-{task['id']}.gpkg"
    assert read_manifest(manifest.read_bytes()) == {
        "feature_32633": (32633, ["fields_utm-1", "fields_utm-2", "fields_utm-3"], [100, 100, 50]),
        "feature_4326": (4326, ["fields_wgs-1", "fields_wgs-2"], [100, 20]),
    }


def test_aoi_and_defaults_apply(alice: User, db, settings) -> None:  # type: ignore[no-untyped-def]
    valid_geopackage(settings.buckets_dir / "in" / "fields.gpkg")
    body = geopackage_request(alice, "s3://in/fields.gpkg")
    body["processRequest"]["input"]["bounds"] = {"bbox": [14.305, 48.285, 14.306, 48.286]}
    body["input"]["defaults"] = {"width": 256, "height": 256}
    task = analyse(alice, db, settings, body)
    assert task["status"] == "ANALYSIS_DONE"
    with db.session() as session:
        rows = session.scalars(select(Feature).where(Feature.task_id == task["id"])).all()
        assert [(f.id, f.name, f.width) for f in rows] == [(3, "fields_wgs-1", 100)]


@pytest.mark.parametrize(
    "case",
    [
        "null identifier",
        "identifier repeated across tables",
        "too wide",
        "non-EPSG CRS",
        "not an SQLite file",
        "point feature",
    ],
)
def test_malformed_geopackage_is_refused_at_create_and_fails_the_analysis(  # type: ignore[no-untyped-def]
    case: str, alice: User, db, settings
) -> None:
    """Create checks the file's rules (the seed: it validates all but the evalscript); a file
    broken after the task was created fails its analysis with the same message."""
    breaker, message = MALFORMED[case]
    path = valid_geopackage(settings.buckets_dir / "in" / "fields.gpkg")
    body = geopackage_request(alice, "s3://in/fields.gpkg")
    created = alice.http.post("/api/v2/batch/process", json=body)
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    breaker(path)
    results = sorted(p.name for p in (settings.buckets_dir / "results").rglob("*"))
    error = assert_error(alice.http.post("/api/v2/batch/process", json=body), 400)
    violation = {e["parameter"]: e["violation"] for e in error["errors"]}[
        "input->features->s3->url"
    ]
    assert violation.startswith("GeoPackage s3://in/fields.gpkg")
    assert re.search(message, violation), violation
    assert task_count(db) == 1  # nothing stored for the refused one, no request file written
    assert sorted(p.name for p in (settings.buckets_dir / "results").rglob("*")) == results

    assert alice.http.post(f"/api/v2/batch/process/{task_id}/analyse").status_code == 204
    controller = Controller(db, settings, client=None)  # analysis needs no Dask cluster
    for claimed in controller.claim():
        controller.advance(claimed)
    task = alice.http.get(f"/api/v2/batch/process/{task_id}").json()
    assert task["status"] == "FAILED"
    assert task["error"].startswith("GeoPackage s3://in/fields.gpkg")
    assert re.search(message, task["error"]), task["error"]
    with db.session() as session:
        assert session.scalars(select(Feature).where(Feature.task_id == task["id"])).all() == []
    assert not (
        settings.buckets_dir / "results" / "run" / f"featureManifest-{task['id']}.gpkg"
    ).exists()


def test_create_checks_what_it_can(alice: User, db, settings) -> None:  # type: ignore[no-untyped-def]
    valid_geopackage(settings.buckets_dir / "in" / "fields.gpkg")
    cases = [
        (
            geopackage_request(alice, "s3://in/missing.gpkg"),
            "input->features->s3->url",
            "no GeoPackage at s3://in/missing.gpkg",
        ),
        (geopackage_request(alice, "s3://nobucket/f.gpkg"), "input->features", "bucket 'nobucket'"),
        (geopackage_request(alice, "s3://in"), "input->features->s3->url", "URL of a .gpkg"),
    ]
    both = geopackage_request(alice, "s3://in/fields.gpkg")
    both["input"]["defaults"] = {"width": 10, "height": 10, "resolution": 5.0}
    cases.append((both, "input->defaults", "not both kinds"))
    half = geopackage_request(alice, "s3://in/fields.gpkg")
    half["input"]["defaults"] = {"width": 10}
    cases.append((half, "input->defaults", "give both width and height"))
    gcs = copy.deepcopy(both)
    gcs["input"] = {
        "type": "geopackage",
        "features": {"gs": {"url": "gs://b/f.gpkg", "credentials": "e30="}},
    }
    cases.append((gcs, "input->features->gs->credentials", "service-account key"))
    for body, parameter, text in cases:
        error = assert_error(alice.http.post("/api/v2/batch/process", json=body), 400)
        found = {e["parameter"]: e["violation"] for e in error["errors"]}
        assert text in found.get(parameter, ""), error
    assert task_count(db) == 0


# -- S3 (moto server on loopback) ----------------------------------------------------------------


@pytest.fixture
def s3_settings(tmp_path: Path, moto_endpoint: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'store.sqlite'}",
        jwt_secret="test-signing-key-that-is-long-enough-for-hs256",
        workers=1,
        s3_endpoint=moto_endpoint,
        s3_access_key=MOTO_KEY,
        s3_secret_key=MOTO_SECRET,
        region=MOTO_REGION,
    )


def test_geopackage_from_s3_with_a_key_pair(  # type: ignore[no-untyped-def]
    s3_settings: Settings, s3_bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    from eobatch.store import Database

    db = Database(s3_settings.resolved_database_url)
    db.migrate()
    try:
        s3 = boto3.client(
            "s3",
            endpoint_url=moto_endpoint,
            aws_access_key_id=MOTO_KEY,
            aws_secret_access_key=MOTO_SECRET,
            region_name=MOTO_REGION,
        )
        s3.put_object(
            Bucket=s3_bucket,
            Key="aoi/features.gpkg",
            Body=valid_geopackage(tmp_path / "f.gpkg").read_bytes(),
        )
        if "data" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
            s3.create_bucket(Bucket="data")  # the BYOC collection's bucket
        user = _user(create_app(s3_settings, db), db, s3_settings, "carol")
        body = geopackage_request(
            user,
            f"s3://{s3_bucket}/aoi/features.gpkg",
            accessKey=MOTO_KEY,
            secretAccessKey=MOTO_SECRET,
        )
        body["output"]["delivery"]["s3"] = {
            "url": f"s3://{s3_bucket}/out",
            "accessKey": MOTO_KEY,
            "secretAccessKey": MOTO_SECRET,
        }
        task = analyse(user, db, s3_settings, body)
        assert (task["status"], task.get("error")) == ("ANALYSIS_DONE", None)
        key = f"out/featureManifest-{task['id']}.gpkg"
        manifest = s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
        layers = read_manifest(io.BytesIO(manifest).getvalue())
        assert sorted(layers) == ["feature_32633", "feature_4326"]
        assert layers["feature_4326"][1] == ["fields_wgs-1", "fields_wgs-2"]
    finally:
        db.dispose()


# -- GCS (fake-gcs-server on loopback) -----------------------------------------------------------


def test_geopackage_from_gcs_with_service_account_credentials(  # type: ignore[no-untyped-def]
    tmp_path: Path, gcs_endpoint: str, gcs_bucket: str, gcs_credentials: str
) -> None:
    from eobatch.store import Database
    from tests.servers import upload_to_gcs

    settings = service_settings(tmp_path, gcs_endpoint=gcs_endpoint)
    for bucket in ("data", "results"):
        (settings.buckets_dir / bucket).mkdir(parents=True)
    upload_to_gcs(
        gcs_endpoint,
        gcs_bucket,
        "aoi/features.gpkg",
        valid_geopackage(tmp_path / "f.gpkg").read_bytes(),
    )
    db = Database(settings.resolved_database_url)
    db.migrate()
    try:
        user = _user(create_app(settings, db), db, settings, "dora")
        body = geopackage_request(user, "unused")
        body["input"]["features"] = {
            "gs": {"url": f"gs://{gcs_bucket}/aoi/features.gpkg", "credentials": gcs_credentials}
        }
        task = analyse(user, db, settings, body)
        assert (task["status"], task.get("error")) == ("ANALYSIS_DONE", None)
        manifest = settings.buckets_dir / "results" / "run" / f"featureManifest-{task['id']}.gpkg"
        layers = read_manifest(manifest.read_bytes())
        assert layers["feature_4326"][1] == ["fields_wgs-1", "fields_wgs-2"]
        with db.session() as session:
            assert session.query(Feature).filter(Feature.task_id == task["id"]).count() == sum(
                len(identifiers) for _, identifiers, _ in layers.values()
            )
    finally:
        db.dispose()
