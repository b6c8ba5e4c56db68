"""Whole tasks of two accounts on one Dask worker: whatever one account's evalscript does to its
JavaScript environment, the other account's next task delivers exactly its numpy result.
On both stores (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from distributed import Client, LocalCluster

from eobatch.accounts import create_account
from eobatch.api import create_app
from eobatch.config import Settings
from eobatch.demo_data import DemoScene
from eobatch.store import Database
from tests.e2e.conftest import register_demo_collection
from tests.integration.harness import Service, make_service
from tests.integration.test_api import signed_in
from tests.integration.test_outputs_raster import check_pixels
from tests.unit.test_script_isolation import HOSTILE

SETUP = """//VERSION=3
function setup() {
  return { input: ["B04", "B08", "dataMask"], output: { id: "ndvi", bands: 1,
    sampleType: "FLOAT32" } };
}
"""

# The demo NDVI, written so that any built-in, global or helper a previous script changed shows.
ORDINARY = (
    SETUP
    + """
function evaluatePixel(s) {
  const parts = [];
  parts.push(s.B04);
  parts.push(s.B08);
  const sane = typeof x === "undefined" && !("zz" in {}) && JSON.stringify([1]) === "[1]" &&
    Object.keys({ a: 1 }).length === 1 && [3].map((v) => v)[0] === 3 && Math.abs(-2) === 2 &&
    [...parts].length === 2 && index(3, 1) === 0.5 && new Map([[1, 2]]).get(1) === 2;
  return [sane ? (parts[1] - parts[0]) / (parts[1] + parts[0]) : -999];
}
"""
)


@pytest.fixture(scope="module")
def one_worker() -> Iterator[Client]:
    """A cluster of one single-threaded worker: every task runs in the same V8 runtime."""
    cluster = LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
    )
    client = Client(cluster, set_as_default=False)
    yield client
    client.close()
    cluster.close()


def _second_account(first: Service, name: str, scenes: list[DemoScene]) -> Service:
    """Another account with its own demo collection (over the same bucket) on `first`'s store."""
    creds = create_account(first.db, name, 100_000)
    http = signed_in(create_app(first.settings, first.db), creds)
    collection_id = register_demo_collection(http, scenes)
    return replace(first, http=http, account_id=creds.account_id, collection_id=collection_id)


def test_no_script_state_crosses_between_accounts_on_one_worker(
    settings: Settings, db: Database, one_worker: Client, demo_folder
) -> None:  # type: ignore[no-untyped-def]
    tuned = settings.model_copy(update={"execution_db_interval_s": 3600, "controller_poll_s": 0.05})
    attacker = make_service(tuned, db, one_worker, demo_folder, 100_000)
    victim = _second_account(attacker, "victim", demo_folder[1])
    delivery = {"type": "raster", "delivery": {"s3": {"url": "s3://results/hostile"}}}
    for way, script in HOSTILE.items():
        body = attacker.request(SETUP.replace('id: "ndvi", ', "") + script, ["default"], delivery)
        task = attacker.run(body)
        assert task["status"] == "DONE", (way, task)
    body = victim.request(
        ORDINARY,
        ["ndvi"],
        {
            "type": "raster",
            "delivery": {"s3": {"url": "s3://results/victim/<tileName>/<outputId>.<format>"}},
        },
    )
    task = victim.run(body)
    assert task["status"] == "DONE", task
    outputs = sorted((victim.buckets / "results" / "victim").glob("*/ndvi.tiff"))
    assert len(outputs) == 4
    for path in outputs:
        check_pixels(path, "ndvi")
