"""Controller overhead: the real controller on PostgreSQL driving instant fake feature jobs.

A task of `--features` GeoPackage features (`--pixels` px squares) over the generated demo
collection is created through the API and analysed; then the controller (lifecycle/controller.py,
stepped in this process) processes it on a Dask cluster of separate processes (`dask scheduler`,
`dask worker`), each job returning a successful outcome at once instead of reading and writing
pixels. Everything the controller does per feature is real: leases and fencing, PU holds and
their release, billing, fair shares, progress, the results catalogue at the end.

Measured from the task entering PROCESSING until DONE: the CPU time of this process (the
controller, its Dask client, its lease keeper; not the scheduler nor the workers) per feature,
and features per second. The baseline: a bare Dask loop submitting the same number of instant
jobs, one per feature, with the same in-flight window, and gathering them.

Run: python benchmarks/controller.py [--smoke] [--features N] [--pixels P] [--workers W]
     [--window J]
Goal: <= 2 ms of controller CPU per feature, so one controller keeps several hundred workers busy.
With a window of 2 jobs per worker (the default) every round records about one job; a large
cluster's window (`--window 200` for 100 workers) lets each round record and dispatch many jobs
in one transaction per task, which is what a controller driving hundreds of workers sees.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

import numpy as np
import pyogrio
import shapely
from _instant import instant, instant_baseline  # benchmarks/_instant.py
from _signin import sign_in  # benchmarks/_signin.py, beside this script
from distributed import Client, as_completed
from fastapi.testclient import TestClient
from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, select, text

from eobatch.accounts import create_account
from eobatch.api import create_app
from eobatch.config import Settings
from eobatch.demo_data import DEMO_EPSG, write_demo_collection
from eobatch.lifecycle.controller import Controller
from eobatch.store import Database
from eobatch.store.models import Feature as FeatureRow
from eobatch.store.models import Task

PG_ADMIN_URL = os.environ.get(
    "EOBATCH_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
DASK = str(Path(sys.executable).parent / "dask")
HERE = str(Path(__file__).resolve().parent)
NDVI = """//VERSION=3
function setup() {
  return { input: ["B04", "B08", "dataMask"], output: { bands: 1, sampleType: "FLOAT32" } };
}
function evaluatePixel(s) { return [(s.B08 - s.B04) / (s.B08 + s.B04)]; }
"""
console = Console()


# -- the cluster and the store ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def dask_processes(workers: int, logs: Path) -> Iterator[str]:
    """`dask scheduler` and `workers` single-threaded `dask worker` processes; the address."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    processes = []

    def spawn(name: str, args: list[str]) -> None:
        log = open(logs / f"{name}.log", "w")  # noqa: SIM115
        processes.append(
            subprocess.Popen(
                [DASK, *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # the workers import the fake jobs from benchmarks/_instant.py
                env={
                    **os.environ,
                    "PYTHONPATH": os.pathsep.join(
                        filter(None, (HERE, os.environ.get("PYTHONPATH")))
                    ),
                },
            )
        )

    try:
        spawn("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", str(port)])
        for n in range(workers):
            spawn(
                f"worker{n}",
                [
                    "worker",
                    address,
                    "--nthreads",
                    "1",
                    "--nworkers",
                    "1",
                    "--no-nanny",
                    "--host",
                    "127.0.0.1",
                ],
            )
        yield address
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database; its URL. Dropped afterwards."""
    name = f"eobatch_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# -- the task --------------------------------------------------------------------------------------


def write_features(path: Path, count: int, pixels: int) -> None:
    """`count` squares of 200 m in UTM 33N over the demo collection, `pixels` px wide each."""
    per_row = int(np.ceil(np.sqrt(count)))
    boxes = [
        shapely.box(x, y, x + 200, y + 200)
        for i in range(count)
        for x, y in [(442_000 + (i % per_row) * 200, 5_337_000 + (i // per_row) * 200)]
    ]
    ids = np.arange(1, count + 1)
    pyogrio.raw.write(
        path,
        geometry=np.array(shapely.to_wkb(np.array(boxes, dtype=object)), dtype=object),
        field_data=[
            ids,
            np.array([f"f{i}" for i in ids], dtype=object),
            np.full(count, pixels),
            np.full(count, pixels),
        ],
        fields=["id", "identifier", "width", "height"],
        layer="features",
        driver="GPKG",
        geometry_type="Polygon",
        crs=f"EPSG:{DEMO_EPSG}",
        layer_options={"FID": "id"},
    )


def create_task(settings: Settings, db: Database, features: int, pixels: int) -> str:
    """An account with the demo collection, and a started task of `features` features."""
    data = settings.buckets_dir / "data"
    scenes = write_demo_collection(data)
    (settings.buckets_dir / "results").mkdir(parents=True)
    write_features(data / "features.gpkg", features, pixels)
    creds = create_account(db, "bench", 1e9)
    http = TestClient(create_app(settings, db), raise_server_exceptions=False)
    sign_in(http, creds)
    made = http.post("/api/v1/byoc/collections", json={"name": "demo", "s3Bucket": "data"})
    made.raise_for_status()
    collection_id = made.json()["data"]["id"]
    for scene in scenes:
        http.post(
            f"/api/v1/byoc/collections/{collection_id}/tiles",
            json={"path": scene.path_template, "sensingTime": scene.sensing_time.isoformat()},
        ).raise_for_status()
    body = {
        "processRequest": {
            "input": {"data": [{"type": f"byoc-{collection_id}"}]},
            "evalscript": NDVI,
            "output": {"responses": [{"identifier": "default", "format": {"type": "image/tiff"}}]},
        },
        "input": {"type": "geopackage", "features": {"s3": {"url": "s3://data/features.gpkg"}}},
        "output": {"type": "raster", "delivery": {"s3": {"url": "s3://results/bench"}}},
    }
    created = http.post("/api/v2/batch/process", json=body)
    created.raise_for_status()
    task_id = created.json()["id"]
    http.post(f"/api/v2/batch/process/{task_id}/start").raise_for_status()
    return task_id


def status(db: Database, task_id: str) -> str:
    with db.session() as session:
        task = session.get(Task, task_id)
        assert task is not None
        return task.status


# -- the two loops ---------------------------------------------------------------------------------


def run_controller(
    settings: Settings, db: Database, client: Client, task_id: str, limit_s: float
) -> tuple[float, float]:
    """Step a controller through the analysis, then time the processing: (CPU s, wall s)."""
    controller = Controller(db, settings, client, run=instant)
    deadline = time.monotonic() + limit_s
    while status(db, task_id) != "PROCESSING":
        assert time.monotonic() < deadline, "the analysis did not end in time"
        controller.step()
    cpu, wall = time.process_time(), time.perf_counter()
    while (now := status(db, task_id)) != "DONE" or controller.in_flight:
        assert now in ("PROCESSING", "DONE"), f"the task ended {now}"
        assert time.monotonic() < deadline, "the task did not end in time"
        controller.step()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    controller.leases.release_all()
    with db.session() as session:
        left = session.scalars(
            select(FeatureRow.id).where(FeatureRow.task_id == task_id, ~FeatureRow.billed)
        ).all()
    assert not left, f"{len(left)} features not billed"
    return cpu, wall


def run_baseline(client: Client, features: int, window: int) -> tuple[float, float]:
    """Submit `features` instant jobs keeping `window` in flight, gather each: (CPU s, wall s)."""
    cpu, wall = time.process_time(), time.perf_counter()
    submitted = min(window, features)
    pending = as_completed(
        [client.submit(instant_baseline, n, pure=False) for n in range(submitted)]
    )
    for future in pending:
        future.result()
        if submitted < features:
            pending.add(client.submit(instant_baseline, submitted, pure=False))
            submitted += 1
    return time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a small task: seconds")
    parser.add_argument("--features", type=int, default=None, help="features of the task")
    parser.add_argument("--pixels", type=int, default=100, help="feature width and height, px")
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    parser.add_argument(
        "--window",
        type=int,
        default=None,
        help="jobs in flight (EOBATCH_MAX_IN_FLIGHT), e.g. 200 for a cluster of 100 workers; "
        "default: 2 per worker",
    )
    args = parser.parse_args()
    # A SIGTERM (a timeout) unwinds too: the Dask processes and the database go with it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(f"{Path(__file__).name}: terminated"))
    features = args.features or (200 if args.smoke else 3000)
    with (
        tempfile.TemporaryDirectory(prefix="eobatch-controller-") as tmp,
        postgres_database() as url,
        dask_processes(args.workers, Path(tmp)) as address,
        Client(address, timeout=60) as client,
    ):
        client.wait_for_workers(args.workers, timeout=120)
        settings = Settings(
            data_dir=Path(tmp) / "data",
            database_url=url,
            jwt_secret="benchmark-signing-key-that-is-long-enough-for-hs256",
            workers=args.workers,
            max_in_flight=args.window,
        )
        db = Database(settings.resolved_database_url)
        db.migrate()
        try:
            with console.status("creating the task ..."):
                task_id = create_task(settings, db, features, args.pixels)
            with console.status("the controller runs the task ..."):
                ours = run_controller(settings, db, client, task_id, limit_s=1800)
            window = settings.max_in_flight or 2 * args.workers
            with console.status("the bare Dask loop ..."):
                theirs = run_baseline(client, features, window)
        finally:
            db.dispose()
        shutil.rmtree(Path(tmp) / "data", ignore_errors=True)
    table = Table(
        title=f"controller overhead: {features} features of {args.pixels} px, instant jobs, "
        f"{args.workers} workers, {window} jobs in flight, PostgreSQL"
    )
    for column in ("loop", "CPU ms / feature", "features / s", "wall s"):
        table.add_column(column, justify="left" if column == "loop" else "right")
    for name, (cpu, wall) in (("eobatch controller", ours), ("bare Dask submit/gather", theirs)):
        table.add_row(name, f"{1000 * cpu / features:.2f}", f"{features / wall:.0f}", f"{wall:.1f}")
    console.print(table)


if __name__ == "__main__":
    main()
