"""Whole tasks in one process: the API through FastAPI's test client, controllers the test steps
itself, feature jobs on a real Dask cluster, and an account with the generated demo collection
(UINT16 bands B02, B03, B04, B08 in UTM 33N) so every delivered pixel can be compared with the
reference mosaic (tests/reference.py).

Fixtures (tests/integration/conftest.py): `service` (SQLite in tmp_path) and `service_factory`
(the `settings`/`db` fixtures, so on both stores, with settings overrides and a balance).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from distributed import Client
from fastapi.testclient import TestClient
from sqlalchemy import select

from eobatch.accounts import create_account
from eobatch.api import create_app
from eobatch.config import Settings
from eobatch.demo import demo_aoi
from eobatch.demo_data import DEMO_DEFAULT_BOUNDS, DEMO_EPSG, DemoScene
from eobatch.lifecycle.controller import Controller
from eobatch.store import Database
from eobatch.store.models import Account, LedgerEntry
from eobatch.store.models import Feature as FeatureRow
from tests.e2e.conftest import DATA_BUCKET, register_demo_collection
from tests.integration.test_api import signed_in

NDVI = """//VERSION=3
function setup() {
  return { input: ["B04", "B08", "dataMask"], output: { bands: 1, sampleType: "FLOAT32" } };
}
function evaluatePixel(s) { return [(s.B08 - s.B04) / (s.B08 + s.B04)]; }
"""

TERMINAL = ("DONE", "FAILED", "STOPPED", "ANALYSIS_DONE")
JWT_SECRET = "test-signing-key-that-is-long-enough-for-hs256"


@dataclass
class Service:
    settings: Settings
    db: Database
    http: TestClient
    client: Client  # the Dask cluster's client
    account_id: str
    collection_id: str  # the demo collection

    @property
    def buckets(self) -> Path:
        return self.settings.buckets_dir

    @cached_property
    def stepper(self) -> Controller:
        """The controller `run` and `wait` step."""
        return self.controller()

    def controller(self) -> Controller:
        """A new controller (tests of concurrency run several)."""
        return Controller(self.db, self.settings, self.client)

    # -- request bodies ---------------------------------------------------------------------

    def request(
        self,
        evalscript: str,
        responses: list[str],
        output: dict,
        grid: dict | None = None,
        fmt: str = "image/tiff",
    ) -> dict:
        """A request over the demo AOI (lon/lat) in 2024, one response per identifier."""
        return {
            "processRequest": {
                "input": {
                    "bounds": {
                        "bbox": demo_aoi(),
                        "properties": {"crs": "http://www.opengis.net/def/crs/EPSG/0/4326"},
                    },
                    "data": [
                        {
                            "type": f"byoc-{self.collection_id}",
                            "dataFilter": {
                                "timeRange": {
                                    "from": "2024-01-01T00:00:00Z",
                                    "to": "2024-12-31T23:59:59Z",
                                }
                            },
                        }
                    ],
                },
                "output": {
                    "responses": [{"identifier": r, "format": {"type": fmt}} for r in responses]
                },
                "evalscript": evalscript,
            },
            "input": grid or {"type": "tiling-grid", "id": 7, "resolution": 20.0},
            "output": output,
        }

    def basic_request(self, evalscript: str = NDVI, run: str = "run") -> dict:
        """One GeoTIFF per feature over the demo's default bounds (all dates), to s3://results/run."""
        return {
            "processRequest": {
                "input": {
                    "bounds": {
                        "properties": {"crs": f"http://www.opengis.net/def/crs/EPSG/0/{DEMO_EPSG}"},
                        "bbox": list(DEMO_DEFAULT_BOUNDS),
                    },
                    "data": [{"type": f"byoc-{self.collection_id}"}],
                },
                "evalscript": evalscript,
                "output": {
                    "responses": [{"identifier": "default", "format": {"type": "image/tiff"}}]
                },
            },
            "input": {"type": "tiling-grid", "id": 7, "resolution": 20.0},
            "output": {"type": "raster", "delivery": {"s3": {"url": f"s3://results/{run}"}}},
        }

    # -- driving tasks ----------------------------------------------------------------------

    def create(self, body: dict | None = None, **basic: str) -> str:
        """Create a task from `body` (default: `basic_request(**basic)`); its id."""
        response = self.http.post("/api/v2/batch/process", json=body or self.basic_request(**basic))
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def action(self, task_id: str, action: str) -> None:
        response = self.http.post(f"/api/v2/batch/process/{task_id}/{action}")
        assert response.status_code == 204, response.text

    def run(self, body: dict, action: str = "start", timeout: float = 240) -> dict:
        """Create and start (or analyse) a task; step the controller until it settles."""
        task_id = self.create(body)
        self.action(task_id, action)
        return self.wait(task_id, timeout)

    def wait(self, task_id: str, timeout: float = 240) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.stepper.step()
            task = self.task(task_id)
            if task["status"] in TERMINAL and not self.stepper.in_flight:
                return task
        raise AssertionError(f"task {task_id} did not settle in {timeout} s: {task}")

    # -- what the store says ----------------------------------------------------------------

    def task(self, task_id: str) -> dict:
        return self.http.get(f"/api/v2/batch/process/{task_id}").json()

    def balance(self) -> tuple[int, int]:
        """(balance, reserved) of the account, micro-PU."""
        with self.db.session() as session:
            account = session.get(Account, self.account_id)
            assert account is not None
            return account.balance_micro_pu, account.reserved_micro_pu

    def features(self, task_id: str) -> list[FeatureRow]:
        with self.db.session() as session:
            return list(
                session.scalars(
                    select(FeatureRow).where(FeatureRow.task_id == task_id).order_by(FeatureRow.id)
                )
            )

    def charges(self, task_id: str) -> list[LedgerEntry]:
        with self.db.session() as session:
            return list(
                session.scalars(
                    select(LedgerEntry)
                    .where(LedgerEntry.task_id == task_id)
                    .order_by(LedgerEntry.id)
                )
            )


def run_until(
    controllers: list[Controller], done: Callable[[], bool], limit_s: float = 240
) -> None:
    deadline = time.monotonic() + limit_s
    while not done():
        assert time.monotonic() < deadline, "the controller did not get there in time"
        for controller in controllers:
            controller.step()


def status_is(service: Service, task_id: str, *statuses: str) -> Callable[[], bool]:
    return lambda: service.task(task_id)["status"] in statuses


def service_settings(tmp_path: Path, **overrides: object) -> Settings:
    """Embedded settings in `tmp_path` (SQLite, folder buckets) for a `Service`."""
    return Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'store.sqlite'}",
        jwt_secret=JWT_SECRET,
        workers=1,
        controller_poll_s=0.05,
        **{"feature_retry_delay_s": 0.2, **overrides},  # type: ignore[arg-type]
    )


def make_service(
    settings: Settings,
    db: Database,
    client: Client,
    demo: tuple[Path, list[DemoScene]],
    pu: float = 100_000.0,
) -> Service:
    """An account holding `pu` with the demo collection in its bucket (a local folder), and
    empty `results` and `data` buckets."""
    folder, scenes = demo
    shutil.copytree(folder, settings.buckets_dir / DATA_BUCKET)
    for bucket in ("results", "data"):
        (settings.buckets_dir / bucket).mkdir(parents=True, exist_ok=True)
    creds = create_account(db, "payer", pu)
    http = signed_in(create_app(settings, db), creds)
    collection_id = register_demo_collection(http, scenes)  # type: ignore[arg-type]
    return Service(settings, db, http, client, creds.account_id, collection_id)


def start_service(
    tmp_path: Path, client: Client, demo: tuple[Path, list[DemoScene]], **overrides: object
) -> Service:
    """A `Service` on its own SQLite store in `tmp_path` (call `service.db.dispose()` after)."""
    settings = service_settings(tmp_path, **overrides)
    db = Database(settings.resolved_database_url)
    db.migrate()
    return make_service(settings, db, client, demo)
