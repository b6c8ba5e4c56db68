"""The deployed layout on loopback, with faults: PostgreSQL, an S3 server (moto), `dask scheduler`,
two `dask worker`s and two `eobatch serve` replicas (docs/deployment.md).

On a task of 36 features each, a replica is killed, then a worker, then the scheduler for 60 s
(then started again; its workers come back under their restart policy, played by
`DaskProcesses.supervise`). Each time the task ends DONE with every feature delivered and billed
exactly once, no attempt counted against a feature, and no PU left held.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
import shapely
from sqlalchemy import select

from eobatch.store import Database
from eobatch.store.models import Account, LedgerEntry, Task
from eobatch.store.models import Feature as FeatureRow
from tests.dask_processes import DaskProcesses, free_port
from tests.e2e.conftest import DATA_BUCKET, World, http_client, register_demo_collection
from tests.e2e.service import ServiceProcess
from tests.e2e.test_crash_recovery import SLOW_EVALSCRIPT
from tests.geopackages import write_layer
from tests.servers import MOTO_KEY, MOTO_REGION, MOTO_SECRET

pytestmark = pytest.mark.slow

OUTPUT_BUCKET = "e2e-output"
FEATURES_BUCKET = "e2e-features"
FEATURES = 36
OPENING_MICRO = 50_000_000_000  # the `world` account's 50 000 PU
SCHEDULER_OUTAGE_S = 60


@pytest.fixture
def s3_endpoint(tmp_path: Path) -> Iterator[str]:
    """moto's S3 server in its own process, as a deployment's object storage would be."""
    port = free_port()
    log = open(tmp_path / "moto.log", "w")  # noqa: SIM115
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(endpoint, timeout=2)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline and process.poll() is None, "moto did not start"
            time.sleep(0.2)
    yield endpoint
    process.terminate()
    process.wait(30)


def s3_client(endpoint: str):  # type: ignore[no-untyped-def]
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=MOTO_KEY,
        aws_secret_access_key=MOTO_SECRET,
        region_name=MOTO_REGION,
    )


def fields_geopackage(path: Path) -> bytes:
    """36 squares of 1 km (100 × 100 px at 10 m) in a 6 × 6 block of the demo area."""
    boxes = [
        shapely.box(
            441_000 + 1000 * i, 5_337_000 + 1000 * j, 442_000 + 1000 * i, 5_338_000 + 1000 * j
        )
        for j in range(6)
        for i in range(6)
    ]
    write_layer(path, "fields", 32633, boxes, width=[100] * FEATURES, height=[100] * FEATURES)
    return path.read_bytes()


class Deployment:
    def __init__(self, world: World, endpoint: str, dask: DaskProcesses) -> None:
        self.world = world
        self.endpoint = endpoint
        self.dask = dask
        self.db = Database(world.database_url)
        env = {
            "EOBATCH_DASK_SCHEDULER": dask.address,
            "EOBATCH_S3_ENDPOINT": endpoint,
            "EOBATCH_S3_ACCESS_KEY": MOTO_KEY,
            "EOBATCH_S3_SECRET_KEY": MOTO_SECRET,
            "EOBATCH_REGION": MOTO_REGION,
            "EOBATCH_LEASE_S": "3",
            "EOBATCH_JWT_SECRET": "",  # the replicas share the key kept in the store
        }
        self.replicas = [world.service(**env), world.service(**env)]

    def locator(self, url: str) -> dict:
        return {
            "s3": {
                "url": url,
                "accessKey": MOTO_KEY,
                "secretAccessKey": MOTO_SECRET,
                "region": MOTO_REGION,
            }
        }

    def create_task(self, http: httpx.Client, collection_id: str, name: str) -> str:
        body = {
            "processRequest": {
                "input": {"data": [{"type": f"byoc-{collection_id}"}]},
                "evalscript": SLOW_EVALSCRIPT,
                "output": {
                    "responses": [{"identifier": "default", "format": {"type": "image/tiff"}}]
                },
            },
            "input": {
                "type": "geopackage",
                "features": self.locator(f"s3://{FEATURES_BUCKET}/fields.gpkg"),
            },
            "output": {"type": "raster", "delivery": self.locator(f"s3://{OUTPUT_BUCKET}/{name}")},
        }
        created = http.post("/api/v2/batch/process", json=body)
        assert created.status_code == 201, created.text
        task_id = created.json()["id"]
        assert http.post(f"/api/v2/batch/process/{task_id}/start").status_code == 204
        return task_id

    def features(self, task_id: str) -> list[FeatureRow]:
        with self.db.session() as session:
            rows = session.scalars(select(FeatureRow).where(FeatureRow.task_id == task_id))
            return list(rows)

    def wait_until_done(self, task_id: str, count: int, limit_s: float = 240) -> None:
        """Until `count` features are DONE (a fault lands mid-task after a few)."""
        deadline = time.monotonic() + limit_s
        while sum(f.status == "DONE" for f in self.features(task_id)) < count:
            assert time.monotonic() < deadline, f"fewer than {count} features done"
            time.sleep(0.1)

    def holder(self, task_id: str) -> ServiceProcess:
        """The replica whose controller holds the task's lease."""
        deadline = time.monotonic() + 60
        while True:
            with self.db.session() as session:
                task = session.get(Task, task_id)
                assert task is not None
                owner = task.controller_id or ""
            for replica in self.replicas:
                assert replica.process is not None
                if owner.split("-")[-2:-1] == [str(replica.process.pid)]:
                    return replica
            assert time.monotonic() < deadline, f"no replica holds {task_id} ({owner!r})"
            time.sleep(0.1)

    def final_task(self, http: httpx.Client, task_id: str, limit_s: float = 300) -> dict:
        deadline = time.monotonic() + limit_s
        while True:
            task = http.get(f"/api/v2/batch/process/{task_id}").json()
            if task["status"] in ("DONE", "FAILED", "STOPPED"):
                return task
            assert time.monotonic() < deadline, f"the task is still {task['status']}"
            time.sleep(0.3)

    def readiness(self) -> list[int]:
        return [httpx.get(f"{r.base_url}/readyz", timeout=30).status_code for r in self.replicas]

    def assert_delivered_and_billed_once(self, task: dict, name: str) -> None:
        assert task["status"] == "DONE", task
        rows = self.features(task["id"])
        assert len(rows) == FEATURES
        assert {f.status for f in rows} == {"DONE"} and all(f.delivered for f in rows)
        assert all(f.billed for f in rows)
        assert all(f.attempts == 0 for f in rows), [(f.name, f.attempts, f.error) for f in rows]
        listed = s3_client(self.endpoint).list_objects_v2(
            Bucket=OUTPUT_BUCKET, Prefix=f"{name}/{task['id']}/"
        )
        keys = {o["Key"] for o in listed.get("Contents", [])}
        # Each feature's GeoTIFF exactly once (the results catalogue lies beside them).
        assert {k for k in keys if k.endswith(".tiff")} == {
            f"{name}/{task['id']}/{f.name}/default.tiff" for f in rows
        }
        assert f"{name}/{task['id']}/collection.json" in keys
        cost = sum(f.cost_micro_pu + f.surcharge_micro_pu for f in rows)
        with self.db.session() as session:
            charges = session.scalars(
                select(LedgerEntry).where(LedgerEntry.task_id == task["id"])
            ).all()
        processed = -sum(e.amount_micro_pu for e in charges if e.kind == "processing")
        minimum = -sum(e.amount_micro_pu for e in charges if e.kind == "minimum")
        assert processed == cost  # each feature charged once
        assert round((cost + minimum) / 1e6, 6) == task["costPU"]

    def assert_books_balance(self, task_ids: list[str]) -> None:
        with self.db.session() as session:
            account = session.scalars(select(Account)).one()
            spent = -sum(
                e.amount_micro_pu
                for e in session.scalars(
                    select(LedgerEntry).where(LedgerEntry.task_id.in_(task_ids))
                )
            )
        assert account.reserved_micro_pu == 0  # no PU left held
        assert account.balance_micro_pu == OPENING_MICRO - spent


@pytest.fixture
def deployment(world: World, s3_endpoint: str, demo_files, tmp_path: Path) -> Iterator[Deployment]:  # type: ignore[no-untyped-def]
    s3 = s3_client(s3_endpoint)
    for bucket in (DATA_BUCKET, OUTPUT_BUCKET, FEATURES_BUCKET):
        s3.create_bucket(Bucket=bucket)
    folder, _ = demo_files
    for path in folder.rglob("*.tif"):
        s3.upload_file(str(path), DATA_BUCKET, path.relative_to(folder).as_posix())
    s3.put_object(
        Bucket=FEATURES_BUCKET, Key="fields.gpkg", Body=fields_geopackage(tmp_path / "fields.gpkg")
    )
    (tmp_path / "dask").mkdir()
    dask = DaskProcesses(tmp_path / "dask", workers=2).start()
    dask.supervise()
    deployment = Deployment(world, s3_endpoint, dask)
    try:
        for replica in deployment.replicas:
            replica.start()
        yield deployment
    finally:
        for replica in deployment.replicas:
            replica.stop()
        dask.stop()
        deployment.db.dispose()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_each_single_fault_is_survived(deployment: Deployment, world: World) -> None:
    first, second = deployment.replicas
    with http_client(first.base_url, world.creds) as http:
        # A token from one replica is good on the other: they share the store's signing key.
        api = {
            r.port: httpx.Client(base_url=r.base_url, headers=http.headers, timeout=60)
            for r in deployment.replicas
        }
        collection_id = register_demo_collection(api[second.port], world.scenes)
        done: list[str] = []

        # 1. The replica working on the task dies: the other one takes it over.
        task_id = deployment.create_task(api[first.port], collection_id, "replica")
        deployment.wait_until_done(task_id, 3)
        victim = deployment.holder(task_id)
        victim.kill()
        survivor = second if victim is first else first
        task = deployment.final_task(api[survivor.port], task_id)
        deployment.assert_delivered_and_billed_once(task, "replica")
        done.append(task_id)
        victim.start()

        # 2. A worker dies mid-task (and is started again, as its restart policy says).
        task_id = deployment.create_task(api[second.port], collection_id, "worker")
        deployment.wait_until_done(task_id, 3)
        deployment.dask.kill_worker(0)
        task = deployment.final_task(api[first.port], task_id)
        deployment.assert_delivered_and_billed_once(task, "worker")
        done.append(task_id)

        # 3. The scheduler is gone for a minute: the replicas are not ready and give their
        #    tasks back, the workers exit; then it starts again and the task carries on.
        task_id = deployment.create_task(api[first.port], collection_id, "scheduler")
        deployment.wait_until_done(task_id, 3)
        starts = list(deployment.dask.starts)
        deployment.dask.kill_scheduler()
        outage_ends = time.monotonic() + SCHEDULER_OUTAGE_S
        deadline = time.monotonic() + 30
        while deployment.readiness() != [503, 503]:
            assert time.monotonic() < deadline, "a replica stayed ready without a scheduler"
            time.sleep(0.5)
        while time.monotonic() < outage_ends:  # the API keeps answering meanwhile
            assert api[second.port].get(f"/api/v2/batch/process/{task_id}").status_code == 200
            time.sleep(1)
        # the workers left with their scheduler, and their restart policy brought them back
        assert all(now > then for now, then in zip(deployment.dask.starts, starts, strict=True))
        deployment.dask.start_scheduler()
        task = deployment.final_task(api[second.port], task_id)
        deployment.assert_delivered_and_billed_once(task, "scheduler")
        deadline = time.monotonic() + 60
        while deployment.readiness() != [200, 200]:
            assert time.monotonic() < deadline, "a replica did not reconnect to the scheduler"
            time.sleep(0.5)
        done.append(task_id)
        for client in api.values():
            client.close()

    deployment.assert_books_balance(done)
