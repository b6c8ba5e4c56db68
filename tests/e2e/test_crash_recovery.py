"""Kill -9 the service mid-processing, start it again: the task completes, nothing is lost and
nothing already delivered is redone or billed twice."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from eobatch.lifecycle.billing import to_pu
from eobatch.store import Database
from eobatch.store.models import Account, LedgerEntry, Task
from eobatch.store.models import Feature as FeatureRow
from tests.e2e.conftest import World, http_client, register_demo_collection
from tests.e2e.test_sentinelhub_py import OUTPUT_BUCKET, process_request

pytestmark = pytest.mark.slow

# NDVI with a busy loop per pixel, so a feature takes seconds and the kill lands mid-task.
SLOW_EVALSCRIPT = """//VERSION=3
function setup() {
  return { input: [{ bands: ["B04", "B08", "dataMask"] }],
           output: { id: "default", bands: 1, sampleType: "FLOAT32" } };
}
function evaluatePixel(s) {
  let spin = 0;
  for (let i = 0; i < 4500; i++) { spin += i & 1; }
  if (s.dataMask === 0) return [NaN];
  return [(s.B08 - s.B04) / (s.B08 + s.B04) + spin * 0];
}
"""


def features(db: Database, task_id: str) -> list[FeatureRow]:
    with db.session() as session:
        return list(session.scalars(select(FeatureRow).where(FeatureRow.task_id == task_id)))


def test_killed_service_resumes_and_delivers_every_feature_once(world: World) -> None:
    (world.data_dir / "buckets" / OUTPUT_BUCKET).mkdir(parents=True)
    root = world.data_dir / "buckets" / OUTPUT_BUCKET / "results"
    db = Database(world.database_url)
    env = {"EOBATCH_LEASE_S": "2", "EOBATCH_WORKERS": "1"}  # one worker: features finish in turn
    service = world.service(**env).start()
    try:
        with http_client(service.base_url, world.creds) as http:
            collection_id = register_demo_collection(http, world.scenes)
            body = {
                "processRequest": process_request(collection_id) | {"evalscript": SLOW_EVALSCRIPT},
                "input": {"type": "tiling-grid", "id": 7, "resolution": 20.0},
                "output": {
                    "type": "raster",
                    "delivery": {"s3": {"url": f"s3://{OUTPUT_BUCKET}/results"}},
                },
            }
            created = http.post("/api/v2/batch/process", json=body)
            assert created.status_code == 201, created.text
            task_id = created.json()["id"]
            assert http.post(f"/api/v2/batch/process/{task_id}/start").status_code == 204

        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            done = [f for f in features(db, task_id) if f.status == "DONE"]
            if done:
                break
            time.sleep(0.05)
        service.kill()
    finally:
        service.stop()

    rows = features(db, task_id)
    done_before = {f.name for f in rows if f.status == "DONE"}
    assert 0 < len(done_before) < len(rows) == 4, "the kill must land mid-processing"
    mtimes = {n: (root / task_id / n / "default.tiff").stat().st_mtime_ns for n in done_before}
    with db.session() as session:
        assert session.get(Task, task_id).status == "PROCESSING"

    service = world.service(**env).start()
    try:
        with http_client(service.base_url, world.creds) as http:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                task = http.get(f"/api/v2/batch/process/{task_id}").json()
                if task["status"] in ("DONE", "FAILED", "STOPPED"):
                    break
                time.sleep(0.3)
    finally:
        service.stop()

    assert task["status"] == "DONE", task
    rows = features(db, task_id)
    assert {f.status for f in rows} == {"DONE"} and all(f.delivered for f in rows)
    for f in rows:
        assert (root / task_id / f.name / "default.tiff").is_file()
    for name, mtime in mtimes.items():  # delivered before the crash: not processed again
        assert (root / task_id / name / "default.tiff").stat().st_mtime_ns == mtime
    # Billed once per feature: the task's cost is the sum of its features' (plus the top-up to
    # the 100 PU task minimum), the account was charged exactly that and holds nothing back.
    cost = sum(f.cost_micro_pu + f.surcharge_micro_pu for f in rows)
    with db.session() as session:
        account = session.scalars(select(Account)).one()
        charges = session.scalars(select(LedgerEntry).where(LedgerEntry.task_id == task_id)).all()
        minimum = sum(-e.amount_micro_pu for e in charges if e.kind == "minimum")
        assert minimum == max(0, 100_000_000 - cost)
        charged = -sum(e.amount_micro_pu for e in charges)
        assert task["costPU"] == to_pu(cost + minimum) == to_pu(charged)
        assert account.balance_micro_pu == 50_000_000_000 - (cost + minimum)
        assert account.reserved_micro_pu == 0
    db.dispose()
