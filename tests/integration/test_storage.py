"""Object storage against real backends: local-folder buckets and moto S3 on loopback."""

from __future__ import annotations

import base64
import json
import multiprocessing
import pickle
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.env
from affine import Affine

from eobatch.config import Settings
from eobatch.errors import InvalidRequest
from eobatch.sinks import encode_geotiff
from eobatch.storage import Location, open_location, redact_locator
from tests.servers import (
    MOTO_KEY,
    MOTO_REGION,
    MOTO_SECRET,
)

PARAMETER = "output->delivery"


def _local_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", jwt_secret="x" * 40)


def _s3_settings(tmp_path: Path, endpoint: str, keys: bool = True) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        jwt_secret="x" * 40,
        s3_endpoint=endpoint,
        s3_access_key=MOTO_KEY if keys else None,
        s3_secret_key=MOTO_SECRET if keys else None,
        region="us-east-1",
    )


def _gcs_settings(tmp_path: Path, endpoint: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        jwt_secret="x" * 40,
        gcs_endpoint=endpoint,
        region="europe-west1",
    )


@pytest.fixture(params=["local", "s3", "gs"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Location:
    """`s3://<bucket>/results` in embedded mode (a folder) and on the moto server, and
    `gs://<bucket>/results` on the GCS emulator."""
    if request.param == "gs":
        bucket = request.getfixturevalue("gcs_bucket")
        settings = _gcs_settings(tmp_path, request.getfixturevalue("gcs_endpoint"))
        credentials = request.getfixturevalue("gcs_credentials")
        locator = {"gs": {"url": f"gs://{bucket}/results/", "credentials": credentials}}
        return open_location(locator, settings, PARAMETER)
    if request.param == "local":
        settings = _local_settings(tmp_path)
        (settings.buckets_dir / "results-bucket").mkdir(parents=True)
        return open_location({"s3": {"url": "s3://results-bucket/results"}}, settings, PARAMETER)
    bucket = request.getfixturevalue("s3_bucket")
    settings = _s3_settings(tmp_path, request.getfixturevalue("moto_endpoint"))
    return open_location({"s3": {"url": f"s3://{bucket}/results/"}}, settings, PARAMETER)


def test_put_get_exists_list_delete(location: Location) -> None:
    assert location.list() == []
    assert not location.exists("a/b.bin")
    location.put("a/b.bin", b"one")
    location.put("a/c/d.bin", b"two")
    location.put("top.json", b"{}")
    location.put("a/b.bin", b"three")  # overwrite

    assert location.get("a/b.bin") == b"three"
    assert location.exists("a/b.bin")
    assert not location.exists("a")  # folders are not objects
    assert location.list() == ["a/b.bin", "a/c/d.bin", "top.json"]
    assert location.list("a") == ["a/b.bin", "a/c/d.bin"]
    assert location.list("a/c/") == ["a/c/d.bin"]
    assert location.list("missing") == []

    location.delete("a/b.bin")
    location.delete("a/b.bin")  # deleting twice is fine
    assert not location.exists("a/b.bin")
    assert location.list() == ["a/c/d.bin", "top.json"]
    with pytest.raises(FileNotFoundError):
        location.get("a/b.bin")


def test_child_and_urls(location: Location) -> None:
    scheme = "gs" if location.is_gcs else "s3"
    assert location.url.endswith("/results")
    assert location.url.startswith(f"{scheme}://{location.bucket}")
    assert location.url_for("x/y.tiff") == f"{scheme}://{location.bucket}/results/x/y.tiff"

    child = location.child("req-1/")
    assert child.url == f"{scheme}://{location.bucket}/results/req-1"
    child.put("tile/out.tiff", b"data")
    assert location.list() == ["req-1/tile/out.tiff"]
    assert location.get("req-1/tile/out.tiff") == b"data"
    assert child.list() == ["tile/out.tiff"]
    assert location.child("") == location

    if location.is_local:
        path = location.gdal_path("req-1/tile/out.tiff")
        assert Path(path).is_absolute() and Path(path).read_bytes() == b"data"
        assert location.gdal_options() == {}
        return
    # Remote reads: GDAL tuned for COGs in object storage (ranges merged, no folder listing).
    options = location.gdal_options()
    assert options["GDAL_HTTP_MERGE_CONSECUTIVE_RANGES"] == "YES"
    assert options["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"
    assert options["VSI_CACHE"] == "TRUE"
    if location.is_gcs:
        expected = f"/vsigs/{location.bucket}/results/req-1/tile/out.tiff"
        assert location.gdal_path("req-1/tile/out.tiff") == expected
        assert location.cloud == "gcp"
    else:
        expected = f"/vsis3/{location.bucket}/results/req-1/tile/out.tiff"
        assert location.gdal_path("req-1/tile/out.tiff") == expected
        options = location.gdal_options()
        assert options["AWS_HTTPS"] == "NO"
        assert options["AWS_VIRTUAL_HOSTING"] == "FALSE"
        assert options["AWS_S3_ENDPOINT"].startswith("127.0.0.1:")


@pytest.mark.parametrize("key", ["../escape", "a/../../b", "a/./b", "..", ""])
def test_keys_never_leave_the_location(location: Location, key: str) -> None:
    with pytest.raises(ValueError):
        location.put(key, b"x")
    if key:
        with pytest.raises(ValueError):
            location.child(key)


def test_put_file_streams_a_file_as_put_writes_bytes(location: Location, tmp_path: Path) -> None:
    source = tmp_path / "manifest.gpkg"
    data = bytes(range(256)) * 40_000  # 10 MB: more than one multipart piece on S3
    source.write_bytes(data)
    location.put("a/old.gpkg", b"old")
    location.put_file("a/old.gpkg", source)  # replaces
    location.put_file("b/new.gpkg", source)
    assert location.get("a/old.gpkg") == data
    assert location.get("b/new.gpkg") == data
    assert location.list() == ["a/old.gpkg", "b/new.gpkg"]  # no temporary files left behind


def test_local_put_leaves_no_temp_files(tmp_path: Path) -> None:
    settings = _local_settings(tmp_path)
    (settings.buckets_dir / "b1").mkdir(parents=True)
    location = open_location({"s3": {"url": "s3://b1"}}, settings, PARAMETER)
    assert location.local_root == str(settings.buckets_dir / "b1")
    location.put("f.bin", b"a" * 1000)
    location.put("f.bin", b"b" * 10)
    assert location.get("f.bin") == b"b" * 10
    assert sorted(p.name for p in Path(location.local_root).iterdir()) == ["f.bin"]


def test_gdal_reads_what_was_put(location: Location) -> None:
    data = np.arange(3 * 40 * 30, dtype=np.float32).reshape(3, 40, 30)
    transform = Affine(20.0, 0.0, 500000.0, 0.0, -20.0, 4600000.0)
    location.put("tiles/t1/default.tiff", encode_geotiff(data, 32633, transform, -1.0))

    with (
        rasterio.Env(**location.gdal_options()),
        rasterio.open(location.gdal_path("tiles/t1/default.tiff")) as src,
    ):
        assert src.crs.to_epsg() == 32633
        assert src.transform == transform
        np.testing.assert_array_equal(src.read(), data)


def _round_trip_in_child(location: Location) -> bytes:
    location.put("from-child.bin", b"written by a spawned process")
    return location.get("from-child.bin")


def test_location_pickles_and_works_in_another_process(location: Location) -> None:
    location.put("before.bin", b"1")  # a cached client exists in this process now
    copy = pickle.loads(pickle.dumps(location))
    assert copy == location
    assert copy.get("before.bin") == b"1"
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert pool.submit(_round_trip_in_child, location).result(timeout=120) == (
            b"written by a spawned process"
        )
    assert location.get("from-child.bin") == b"written by a spawned process"


def test_secrets_are_not_in_repr(moto_endpoint: str, s3_bucket: str, tmp_path: Path) -> None:
    settings = _s3_settings(tmp_path, moto_endpoint, keys=False)
    locator = {
        "s3": {"url": f"s3://{s3_bucket}", "accessKey": "AKIDEXAMPLE", "secretAccessKey": "s3cr3t"}
    }
    location = open_location(locator, settings, PARAMETER)
    assert location.access_key == "AKIDEXAMPLE"
    assert "s3cr3t" not in repr(location) and "AKIDEXAMPLE" not in repr(location)
    with rasterio.Env(**location.gdal_options()):
        config = rasterio.env.getenv()
        assert (config["AWS_ACCESS_KEY_ID"], config["AWS_SECRET_ACCESS_KEY"]) == (
            "AKIDEXAMPLE",
            "s3cr3t",
        )
        assert config["AWS_S3_ENDPOINT"] == moto_endpoint.removeprefix("http://")


def test_deployment_keys_are_used_when_the_locator_has_none(
    moto_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    location = open_location(
        {"s3": {"url": f"s3://{s3_bucket}/p", "region": "eu-west-1"}},
        _s3_settings(tmp_path, moto_endpoint),
        PARAMETER,
    )
    assert (location.access_key, location.secret_key) == (MOTO_KEY, MOTO_SECRET)
    assert location.region == "eu-west-1"
    assert location.gdal_options()["AWS_NO_SIGN_REQUEST"] == "NO"


def test_anonymous_without_any_keys(moto_endpoint: str, s3_bucket: str, tmp_path: Path) -> None:
    location = open_location(
        {"s3": {"url": f"s3://{s3_bucket}"}},
        _s3_settings(tmp_path, moto_endpoint, keys=False),
        PARAMETER,
    )
    assert location.access_key is None
    assert location.gdal_options()["AWS_NO_SIGN_REQUEST"] == "YES"
    location.put("anon.bin", b"moto accepts unsigned writes")  # but refuses unsigned reads
    assert location.list() == ["anon.bin"]


def test_missing_local_bucket(tmp_path: Path) -> None:
    settings = _local_settings(tmp_path)
    with pytest.raises(InvalidRequest) as caught:
        open_location({"s3": {"url": "s3://no-such-bucket/x"}}, settings, PARAMETER)
    violation = caught.value.errors[0]
    assert violation.parameter == PARAMETER
    assert "no-such-bucket" in violation.violation
    assert str(settings.buckets_dir) in violation.violation


def test_missing_s3_bucket(moto_endpoint: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest) as caught:
        open_location(
            {"s3": {"url": "s3://no-such-bucket/x"}},
            _s3_settings(tmp_path, moto_endpoint),
            PARAMETER,
        )
    violation = caught.value.errors[0]
    assert violation.parameter == PARAMETER
    assert "bucket 'no-such-bucket' not found" in violation.violation


def test_unreachable_endpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest) as caught:
        open_location(
            {"s3": {"url": "s3://some-bucket"}},
            _s3_settings(tmp_path, "http://127.0.0.1:9"),
            PARAMETER,
        )
    assert "not accessible" in caught.value.errors[0].violation


@pytest.mark.parametrize(
    "url",
    [
        "http://bucket/folder",
        "file:///etc",
        "s3://",
        "s3:///folder",
        "s3://bucket/../other",
        "s3://bucket/a/./b",
        "s3://bu cket/x",
        "s3://bucket/x?versionId=1",
        "bucket/folder",
    ],
)
def test_bad_urls(tmp_path: Path, url: str) -> None:
    settings = _local_settings(tmp_path)
    (settings.buckets_dir / "bucket").mkdir(parents=True)
    with pytest.raises(InvalidRequest) as caught:
        open_location({"s3": {"url": url}}, settings, PARAMETER)
    assert caught.value.errors[0].parameter == f"{PARAMETER}->s3->url"


def test_gcs_credentials_must_be_a_base64_service_account(tmp_path: Path) -> None:
    settings = _local_settings(tmp_path)
    for credentials in ("e30=", "not base64!", base64.b64encode(b"[1]").decode(), ""):
        with pytest.raises(InvalidRequest) as caught:
            open_location(
                {"gs": {"url": "gs://bucket/x", "credentials": credentials}}, settings, PARAMETER
            )
        violation = caught.value.errors[0]
        assert violation.parameter == f"{PARAMETER}->gs->credentials"
        assert "service-account" in violation.violation


def test_missing_gcs_bucket(gcs_endpoint: str, gcs_credentials: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest) as caught:
        open_location(
            {"gs": {"url": "gs://no-such-bucket/x", "credentials": gcs_credentials}},
            _gcs_settings(tmp_path, gcs_endpoint),
            PARAMETER,
        )
    assert "bucket 'no-such-bucket' not found" in caught.value.errors[0].violation


def test_gcs_location_carries_no_secret_in_repr(
    gcs_endpoint: str, gcs_bucket: str, gcs_credentials: str, tmp_path: Path
) -> None:
    location = open_location(
        {"gs": {"url": f"gs://{gcs_bucket}", "credentials": gcs_credentials}},
        _gcs_settings(tmp_path, gcs_endpoint),
        PARAMETER,
    )
    assert "PRIVATE KEY" in (location.gcs_credentials or "")
    assert "PRIVATE KEY" not in repr(location)
    assert (location.cloud, location.region) == ("gcp", "europe-west1")


# -- S3 with an IAM role through STS (moto serves STS on the same endpoint) ---------------------


def _role(endpoint: str) -> str:
    import boto3

    iam = boto3.client(
        "iam",
        endpoint_url=endpoint,
        region_name=MOTO_REGION,
        aws_access_key_id=MOTO_KEY,
        aws_secret_access_key=MOTO_SECRET,
    )
    name = f"sh-batch-{uuid.uuid4().hex[:8]}"
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "sts:AssumeRole",
                "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
            }
        ],
    }
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
    return role["Role"]["Arn"]


def test_iam_role_is_assumed_through_sts(
    moto_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    arn = _role(moto_endpoint)
    location = open_location(
        {"s3": {"url": f"s3://{s3_bucket}/by-role", "iamRoleARN": arn, "region": "eu-west-1"}},
        _s3_settings(tmp_path, moto_endpoint),
        PARAMETER,
    )
    access_key, secret_key, token = location.credentials()
    assert token and access_key != MOTO_KEY  # temporary credentials from AssumeRole
    assert location.credentials() == (access_key, secret_key, token)  # cached, not re-assumed
    location.put("r.bin", b"written with the role")
    assert location.get("r.bin") == b"written with the role"
    assert location.region == "eu-west-1"
    with rasterio.Env(**location.gdal_options()):
        config = rasterio.env.getenv()
        assert config["AWS_ACCESS_KEY_ID"] == access_key
        assert config["AWS_SESSION_TOKEN"] == token
    copy = pickle.loads(pickle.dumps(location))
    assert copy.get("r.bin") == b"written with the role"


@pytest.mark.parametrize(
    ("extra", "parameter", "text"),
    [
        ({"iamRoleARN": "not-an-arn"}, "iamRoleARN", "not an IAM role ARN"),
        (
            {
                "iamRoleARN": "arn:aws:iam::123456789012:role/r",
                "accessKey": "a",
                "secretAccessKey": "b",
            },
            "output->delivery",
            "not both",
        ),
    ],
)
def test_bad_role_locators(
    moto_endpoint: str, s3_bucket: str, tmp_path: Path, extra: dict, parameter: str, text: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        open_location(
            {"s3": {"url": f"s3://{s3_bucket}", **extra}},
            _s3_settings(tmp_path, moto_endpoint),
            PARAMETER,
        )
    violation = caught.value.errors[0]
    assert parameter in violation.parameter and text in violation.violation


def test_role_that_cannot_be_assumed(moto_endpoint: str, s3_bucket: str, tmp_path: Path) -> None:
    settings = _s3_settings(tmp_path, moto_endpoint).model_copy(
        update={"sts_endpoint": "http://127.0.0.1:9"}  # nothing listens: AssumeRole fails
    )
    with pytest.raises(InvalidRequest) as caught:
        open_location(
            {"s3": {"url": f"s3://{s3_bucket}", "iamRoleARN": "arn:aws:iam::123456789012:role/r"}},
            settings,
            PARAMETER,
        )
    violation = caught.value.errors[0]
    assert violation.parameter == f"{PARAMETER}->s3->iamRoleARN"
    assert "could not be assumed" in violation.violation


def test_half_a_key_pair_is_refused(moto_endpoint: str, s3_bucket: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="together"):
        open_location(
            {"s3": {"url": f"s3://{s3_bucket}", "accessKey": "only-the-key"}},
            _s3_settings(tmp_path, moto_endpoint),
            PARAMETER,
        )


def test_file_locations(tmp_path: Path) -> None:
    location = Location.local(tmp_path / "folder")
    assert location.url == (tmp_path / "folder").resolve().as_uri()
    location.put("x/y.txt", b"hi")
    assert location.list() == ["x/y.txt"]
    assert location.url_for("x/y.txt") == location.url + "/x/y.txt"
    assert Path(location.gdal_path("x/y.txt")).read_bytes() == b"hi"


def test_redact_locator() -> None:
    locator = {
        "s3": {
            "url": "s3://b/p",
            "region": "eu-central-1",
            "accessKey": "AK",
            "secretAccessKey": "SK",
            "sessionToken": "T",
            "iamRoleARN": "arn:aws:iam::1:role/r",
        }
    }
    redacted = redact_locator(locator)
    assert redacted == {
        "s3": {
            "url": "s3://b/p",
            "region": "eu-central-1",
            "accessKey": "***",
            "secretAccessKey": "***",
            "sessionToken": "***",
            "iamRoleARN": "arn:aws:iam::1:role/r",
        }
    }
    assert locator["s3"]["secretAccessKey"] == "SK"  # the original is untouched
    gs = redact_locator({"gs": {"url": "gs://b", "credentials": "e30="}})
    assert gs == {"gs": {"url": "gs://b", "credentials": "***"}}
