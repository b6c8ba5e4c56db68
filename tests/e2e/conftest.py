"""End-to-end fixtures: a data dir with the demo collection, and an account."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from eobatch.accounts import Credentials, create_account
from eobatch.demo_data import DemoScene, write_demo_collection
from eobatch.store import Database
from tests.e2e.service import ServiceProcess

DATA_BUCKET = "demo-data"


@dataclass
class World:
    data_dir: Path
    database_url: str
    creds: Credentials
    scenes: list[DemoScene]

    def service(self, **env: str) -> ServiceProcess:
        return ServiceProcess(self.data_dir, self.database_url, extra_env=env)


@pytest.fixture(scope="session")
def demo_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[DemoScene]]:
    """The demo collection, generated once per session and copied into each test's data dir."""
    folder = tmp_path_factory.mktemp("demo-data")
    return folder, write_demo_collection(folder)


@pytest.fixture
def world(
    tmp_path: Path, database_url: str, demo_files: tuple[Path, list[DemoScene]]
) -> Iterator[World]:
    data_dir = tmp_path / "data"
    folder, scenes = demo_files
    shutil.copytree(folder, data_dir / "buckets" / DATA_BUCKET)
    db = Database(database_url)
    db.migrate()
    creds = create_account(db, "e2e", 50_000)
    db.dispose()
    yield World(data_dir, database_url, creds, scenes)


def http_client(base_url: str, creds: Credentials) -> httpx.Client:
    token = httpx.post(
        f"{base_url}/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": creds.client_id,
            "client_secret": creds.client_secret,
        },
    ).json()["access_token"]
    return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def register_demo_collection(http: httpx.Client, scenes: list[DemoScene]) -> str:
    response = http.post("/api/v1/byoc/collections", json={"name": "demo", "s3Bucket": DATA_BUCKET})
    assert response.status_code == 201, response.text
    collection_id = response.json()["data"]["id"]
    for scene in scenes:
        tile = http.post(
            f"/api/v1/byoc/collections/{collection_id}/tiles",
            json={"path": scene.path_template, "sensingTime": scene.sensing_time.isoformat()},
        )
        assert tile.status_code == 201, tile.text
        assert tile.json()["data"]["status"] == "INGESTED", tile.json()
    return collection_id
