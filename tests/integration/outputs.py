"""A small in-process service for output tests: API, controller and a threaded Dask cluster.

Tasks run over the generated demo collection (UINT16 bands B02, B03, B04, B08 in UTM 33N), so
every delivered pixel can be compared with `demo_band_values` through the reference mosaic.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from distributed import Client, LocalCluster
from fastapi.testclient import TestClient

from eobatch.accounts import create_account
from eobatch.api import create_app
from eobatch.config import Settings
from eobatch.demo import demo_aoi
from eobatch.demo_data import write_demo_collection
from eobatch.lifecycle.controller import Controller
from eobatch.store import Database
from tests.e2e.conftest import DATA_BUCKET, register_demo_collection
from tests.integration.test_api import signed_in

TERMINAL = ("DONE", "FAILED", "STOPPED", "ANALYSIS_DONE")


@dataclass
class Service:
    settings: Settings
    db: Database
    http: TestClient
    controller: Controller
    collection_id: str

    @property
    def buckets(self) -> Path:
        return self.settings.buckets_dir

    def request(self, evalscript: str, responses: list[str], output: dict,
                grid: dict | None = None, fmt: str = "image/tiff") -> dict:  # fmt: skip
        """A Batch V2 request over the demo AOI with one response per identifier."""
        return {
            "processRequest": {
                "input": {
                    "bounds": {
                        "bbox": demo_aoi(),
                        "properties": {"crs": "http://www.opengis.net/def/crs/EPSG/0/4326"},
                    },
                    "data": [{
                        "type": f"byoc-{self.collection_id}",
                        "dataFilter": {"timeRange": {"from": "2024-01-01T00:00:00Z",
                                                     "to": "2024-12-31T23:59:59Z"}},
                    }],
                },
                "output": {"responses": [{"identifier": r, "format": {"type": fmt}}
                                         for r in responses]},
                "evalscript": evalscript,
            },
            "input": grid or {"type": "tiling-grid", "id": 7, "resolution": 20.0},
            "output": output,
        }  # fmt: skip

    def create(self, body: dict) -> str:
        response = self.http.post("/api/v2/batch/process", json=body)
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def run(self, body: dict, action: str = "start", timeout: float = 240) -> dict:
        """Create and start (or analyse) a task; drive the controller until it settles."""
        task_id = self.create(body)
        assert self.http.post(f"/api/v2/batch/process/{task_id}/{action}").status_code == 204
        return self.wait(task_id, timeout)

    def wait(self, task_id: str, timeout: float = 240) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.controller.step()
            task = self.http.get(f"/api/v2/batch/process/{task_id}").json()
            if task["status"] in TERMINAL and not self.controller.in_flight:
                return task
        raise AssertionError(f"task {task_id} did not settle in {timeout} s: {task}")


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Client]:
    cluster = LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                           dashboard_address=None)  # fmt: skip
    client = Client(cluster, set_as_default=False)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    write_demo_collection(folder)
    return folder


def make_service(tmp_path: Path, demo_folder: Path, client: Client, **settings) -> Service:  # type: ignore[no-untyped-def]
    import shutil

    data_dir = tmp_path / "data"
    shutil.copytree(demo_folder, data_dir / "buckets" / DATA_BUCKET)
    (data_dir / "buckets" / "results").mkdir()
    config = Settings(
        data_dir=data_dir,
        database_url=f"sqlite:///{tmp_path / 'store.sqlite'}",
        jwt_secret="test-signing-key-that-is-long-enough-for-hs256",
        workers=1,
        controller_poll_s=0.05,
        **settings,
    )
    db = Database(config.resolved_database_url)
    db.migrate()
    creds = create_account(db, "outputs", 100_000)
    http = signed_in(create_app(config, db), creds)
    from eobatch.demo_data import DEMO_SCENES

    collection_id = register_demo_collection(http, DEMO_SCENES)  # type: ignore[arg-type]
    return Service(config, db, http, Controller(db, config, client), collection_id)


@pytest.fixture
def service(tmp_path: Path, demo_folder: Path, dask_client: Client) -> Iterator[Service]:
    svc = make_service(tmp_path, demo_folder, dask_client)
    yield svc
    svc.db.dispose()
