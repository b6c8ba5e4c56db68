"""Integration fixtures: an S3-compatible server (moto) on loopback and fresh buckets on it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

from eobatch.config import Settings
from eobatch.demo_data import DemoScene, write_demo_collection
from eobatch.store import Database
from tests.integration.harness import Service, make_service, start_service
from tests.servers import (
    MOTO_KEY,
    MOTO_REGION,
    MOTO_SECRET,
    create_gcs_bucket,
    service_account_credentials,
    start_gcs_server,
    start_moto_server,
)

os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """URL of a moto S3 server on 127.0.0.1, shared by the whole session."""
    endpoint, stop = start_moto_server()
    yield endpoint
    stop()


@pytest.fixture
def s3_bucket(moto_endpoint: str) -> str:
    """The name of a new, empty bucket on the moto server (credentials testing/testing)."""
    import boto3

    name = f"bucket-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        aws_access_key_id=MOTO_KEY,
        aws_secret_access_key=MOTO_SECRET,
        region_name=MOTO_REGION,
    )
    client.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def gcs_endpoint() -> Iterator[str]:
    """URL of a GCS emulator (fake-gcs-server) on 127.0.0.1, shared by the whole session."""
    endpoint, stop = start_gcs_server()
    yield endpoint
    stop()


@pytest.fixture(scope="session")
def gcs_credentials() -> str:
    """A base64 service-account JSON (a real RSA key, no real account) as SH locators take it."""
    return service_account_credentials()


@pytest.fixture
def gcs_bucket(gcs_endpoint: str) -> str:
    """The name of a new, empty bucket on the GCS emulator."""
    name = f"gcs-{uuid.uuid4().hex[:12]}"
    create_gcs_bucket(gcs_endpoint, name)
    return name


# -- whole tasks on a real Dask cluster (tests/integration/harness.py) ----------------------


@pytest.fixture(scope="session")
def dask_client() -> Iterator[Client]:
    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        host="127.0.0.1",
    )
    client = Client(cluster, set_as_default=False)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="session")
def demo_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[DemoScene]]:
    folder = tmp_path_factory.mktemp("demo")
    return folder, write_demo_collection(folder)


@pytest.fixture
def service_factory(settings: Settings, db: Database, dask_client: Client, demo_folder):  # type: ignore[no-untyped-def]
    """A `Service` on the `settings`/`db` store (both backends) with `pu` and setting overrides."""

    def make(pu: float, **overrides: object) -> Service:
        defaults = {"execution_db_interval_s": 3600, "feature_retry_delay_s": 0.2}
        tuned = settings.model_copy(update={**defaults, **overrides})
        return make_service(tuned, db, dask_client, demo_folder, pu)

    return make


@pytest.fixture
def service(tmp_path: Path, dask_client: Client, demo_folder) -> Iterator[Service]:  # type: ignore[no-untyped-def]
    """A `Service` on its own SQLite store."""
    svc = start_service(tmp_path, dask_client, demo_folder)
    yield svc
    svc.db.dispose()
