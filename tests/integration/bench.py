"""A test bench for whole tasks: an account with the demo collection, the API through FastAPI's
test client, and controllers on a real Dask cluster that the test steps itself."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from distributed import Client
from sqlalchemy import select

from eobatch.accounts import create_account
from eobatch.api import create_app
from eobatch.config import Settings
from eobatch.demo_data import DEMO_DEFAULT_BOUNDS, DEMO_EPSG, DemoScene
from eobatch.lifecycle.controller import Controller
from eobatch.store import Database
from eobatch.store.models import Account, LedgerEntry
from eobatch.store.models import Feature as FeatureRow
from tests.e2e.conftest import DATA_BUCKET, register_demo_collection
from tests.integration.test_api import User, signed_in

NDVI = """//VERSION=3
function setup() {
  return { input: ["B04", "B08", "dataMask"], output: { bands: 1, sampleType: "FLOAT32" } };
}
function evaluatePixel(s) { return [(s.B08 - s.B04) / (s.B08 + s.B04)]; }
"""


@dataclass
class Bench:
    settings: Settings
    db: Database
    user: User
    client: Client

    def controller(self) -> Controller:
        return Controller(self.db, self.settings, self.client)

    def request(self, evalscript: str = NDVI, run: str = "run") -> dict:
        return {
            "processRequest": {
                "input": {
                    "bounds": {
                        "properties": {"crs": f"http://www.opengis.net/def/crs/EPSG/0/{DEMO_EPSG}"},
                        "bbox": list(DEMO_DEFAULT_BOUNDS),
                    },
                    "data": [{"type": f"byoc-{self.user.collection_id}"}],
                },
                "evalscript": evalscript,
                "output": {"responses": [{"identifier": "default",
                                          "format": {"type": "image/tiff"}}]},
            },
            "input": {"type": "tiling-grid", "id": 7, "resolution": 20.0},
            "output": {"type": "raster", "delivery": {"s3": {"url": f"s3://results/{run}"}}},
        }  # fmt: skip

    def create(self, **kwargs: str) -> str:
        response = self.user.http.post("/api/v2/batch/process", json=self.request(**kwargs))
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def action(self, task_id: str, action: str) -> None:
        response = self.user.http.post(f"/api/v2/batch/process/{task_id}/{action}")
        assert response.status_code == 204, response.text

    def task(self, task_id: str) -> dict:
        return self.user.http.get(f"/api/v2/batch/process/{task_id}").json()

    def balance(self) -> tuple[int, int]:
        with self.db.session() as session:
            account = session.get(Account, self.user.account_id)
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


def status_is(bench: Bench, task_id: str, *statuses: str) -> Callable[[], bool]:
    return lambda: bench.task(task_id)["status"] in statuses


def make_bench(
    settings: Settings, db: Database, client: Client, demo: tuple[Path, list[DemoScene]], pu: float
) -> Bench:
    folder, scenes = demo
    shutil.copytree(folder, settings.buckets_dir / DATA_BUCKET)
    for bucket in ("results", "data"):
        (settings.buckets_dir / bucket).mkdir(parents=True)
    creds = create_account(db, "payer", pu)
    http = signed_in(create_app(settings, db), creds)
    collection_id = register_demo_collection(http, scenes)  # type: ignore[arg-type]
    return Bench(settings, db, User(http, creds.account_id, collection_id), client)


