"""Operations: leases and fencing, fair shares, task outcomes, recovery, readiness and metrics.

Controllers run on a real Dask cluster against the `settings`/`db` store (both backends unless a
test says otherwise); faults are injected for real (an expired lease, a slow analysis, killed
database connections, a killed `dask scheduler` process).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from distributed.comm.core import CommClosedError
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text, update
from typer.testing import CliRunner

from eobatch.accounts import create_account
from eobatch.api import create_app
from eobatch.cli import app as cli_app
from eobatch.engine import FeatureJob, FeatureOutcome, run_features
from eobatch.lifecycle import controller as controller_module
from eobatch.lifecycle.billing import to_micro
from eobatch.lifecycle.controller import Controller
from eobatch.lifecycle.recovery import Cluster
from eobatch.store import Database, make_engine
from eobatch.store.db import schema_revision
from eobatch.store.models import Task
from tests.conftest import PG_ADMIN_URL
from tests.dask_processes import DaskProcesses
from tests.e2e.conftest import register_demo_collection
from tests.geopackages import squares, write_layer
from tests.integration.harness import NDVI, Service, run_until, service_settings, status_is
from tests.integration.test_api import signed_in
from tests.integration.test_billing import SLOW_NDVI, assert_books_balance


def wait_for(condition: Callable[[], bool], what: str, limit_s: float = 240) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def geopackage_task(
    svc: Service,
    http: TestClient,
    collection_id: str,
    name: str,
    count: int,
    pixels: int = 25,
    evalscript: str = NDVI,
) -> str:
    """A task of `count` small features: `pixels` × `pixels` px squares of 500 m in the demo
    area."""
    path = svc.buckets / "data" / f"{name}.gpkg"
    write_layer(
        path,
        "fields",
        32633,
        squares(441_000, 5_340_000, 500, count),
        width=[pixels] * count,
        height=[pixels] * count,
    )
    body = {
        "processRequest": {
            "input": {"data": [{"type": f"byoc-{collection_id}"}]},
            "evalscript": evalscript,
            "output": {"responses": [{"identifier": "default", "format": {"type": "image/tiff"}}]},
        },
        "input": {"type": "geopackage", "features": {"s3": {"url": f"s3://data/{name}.gpkg"}}},
        "output": {"type": "raster", "delivery": {"s3": {"url": f"s3://results/{name}"}}},
    }
    response = http.post("/api/v2/batch/process", json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def assert_each_feature_billed_once(svc: Service, task_id: str) -> None:
    rows = svc.features(task_id)
    assert {r.status for r in rows} == {"DONE"} and all(r.delivered and r.billed for r in rows)
    assert all(r.attempts == 0 for r in rows)  # no fault was counted against a feature
    assert sum(e.amount_micro_pu for e in svc.charges(task_id) if e.kind == "processing") == -sum(
        r.cost_micro_pu for r in rows
    )


def status(svc: Service, task_id: str) -> str:
    with svc.db.session() as session:
        task = session.get(Task, task_id)
        assert task is not None
        return task.status


def ledger_of(svc: Service, task_id: str) -> list[tuple[int, int]]:
    return [(e.id, e.amount_micro_pu) for e in svc.charges(task_id)]


def task_events(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    return [r for r in records if r.name == "eobatch.tasks"]


# -- leases and fencing --------------------------------------------------------------------------


def test_a_lease_shorter_than_the_analysis_gives_one_analysis(  # type: ignore[no-untyped-def]
    service_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Renewed every 2 s, a 6-second lease survives a loaded machine's pauses (1 s did not).
    svc = service_factory(5000.0, lease_s=6.0)
    analyses: list[str] = []
    analyse = controller_module.analyse_task

    def slow_analysis(db, settings, task, fence=None):  # type: ignore[no-untyped-def]
        analyses.append(task.id)
        time.sleep(2 * settings.lease_s)  # the analysis outlasts its lease twice over
        return analyse(db, settings, task, fence)

    monkeypatch.setattr(controller_module, "analyse_task", slow_analysis)
    controllers = [svc.controller(), svc.controller()]  # two replicas compete for the task
    for controller in controllers:
        controller.start()
    try:
        task_id = svc.create()
        svc.action(task_id, "start")
        wait_for(lambda: svc.task(task_id)["status"] in ("DONE", "FAILED", "STOPPED"), "the task")
    finally:
        for controller in controllers:
            controller.stop()
    assert svc.task(task_id)["status"] == "DONE"
    assert analyses == [task_id]
    assert_each_feature_billed_once(svc, task_id)
    assert_books_balance(svc, [task_id], to_micro(5000.0))  # no hold left behind either


def test_a_long_wrap_up_holds_up_neither_the_loop_nor_other_tasks(  # type: ignore[no-untyped-def]
    service_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = service_factory(5000.0, max_in_flight=2)
    controller = svc.controller()
    slow = geopackage_task(svc, svc.http, svc.collection_id, "slow", 2)
    publishing, release = threading.Event(), threading.Event()
    publish = controller_module.publish_results

    def slow_catalogue(context, setup, task):  # type: ignore[no-untyped-def]
        if task.id == slow:  # as a catalogue of a million items would take minutes
            publishing.set()
            assert release.wait(240)
        publish(context, setup, task)

    monkeypatch.setattr(controller_module, "publish_results", slow_catalogue)
    svc.action(slow, "start")
    run_until([controller], publishing.is_set)
    quick = geopackage_task(svc, svc.http, svc.collection_id, "quick", 2)
    svc.action(quick, "start")
    run_until([controller], status_is(svc, quick, "DONE"))  # meanwhile, the other task is done
    assert svc.task(slow)["status"] == "PROCESSING"  # DONE only once its catalogue is written
    assert controller.alive() and slow in controller.leases.held()
    release.set()
    run_until([controller], status_is(svc, slow, "DONE"))
    catalogue = svc.settings.buckets_dir / "results"
    assert len(list(catalogue.rglob("collection.json"))) == 2  # both catalogues written
    assert_books_balance(svc, [slow, quick], to_micro(5000.0))


def test_a_hung_snapshot_upload_does_not_freeze_the_loop(  # type: ignore[no-untyped-def]
    service_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = service_factory(5000.0, max_in_flight=1, execution_db_interval_s=0.01)
    controller = svc.controller()
    hanging, answer = threading.Event(), threading.Event()
    write = Controller._write_execution_db

    def hung_bucket(self, task_id, context):  # type: ignore[no-untyped-def]
        hanging.set()  # as an S3 server that accepts the connection and never answers
        assert answer.wait(240)
        write(self, task_id, context)

    monkeypatch.setattr(Controller, "_write_execution_db", hung_bucket)
    task_id = geopackage_task(svc, svc.http, svc.collection_id, "hung", 3)
    svc.action(task_id, "start")
    run_until([controller], hanging.is_set)
    # the loop goes on processing meanwhile (one job at a time: three rounds at least)
    run_until([controller], lambda: {f.status for f in svc.features(task_id)} == {"DONE"})
    assert controller.alive() and svc.task(task_id)["status"] == "PROCESSING"
    answer.set()  # the final snapshot comes after the hung one, and then DONE
    run_until([controller], status_is(svc, task_id, "DONE"))
    assert_each_feature_billed_once(svc, task_id)


def fails_in_company(jobs: list[FeatureJob]) -> list[FeatureOutcome]:
    """A Dask job that dies whenever it holds more than one feature (as if one of them killed
    its worker)."""
    if len(jobs) > 1:
        raise RuntimeError("worker died")
    return run_features(jobs)


def test_a_job_that_fails_as_a_whole_costs_its_features_no_attempt(service_factory) -> None:  # type: ignore[no-untyped-def]
    svc = service_factory(5000.0, max_in_flight=2)
    controller = Controller(svc.db, svc.settings, svc.client, run=fails_in_company)
    task_id = geopackage_task(svc, svc.http, svc.collection_id, "company", 6)
    svc.action(task_id, "start")
    run_until([controller], lambda: bool(controller.in_flight))
    assert all(len(features) == 3 for _, features in controller.in_flight.values())
    run_until([controller], lambda: svc.task(task_id)["status"] == "DONE")
    assert not controller.solo[task_id]  # each ran alone, then was recorded
    assert_each_feature_billed_once(svc, task_id)  # with no attempt counted
    assert_books_balance(svc, [task_id], to_micro(5000.0))


def cut_off_once(marker: Path) -> Callable[[list[FeatureJob]], list[FeatureOutcome]]:
    """A Dask job whose first run ends as if the connection to the scheduler was cut while its
    result was gathered (the error the client raises then)."""

    def run(jobs: list[FeatureJob]) -> list[FeatureOutcome]:
        if not marker.exists():
            marker.touch()
            raise CommClosedError("in <TCP (closed) ConnectionPool.gather>: ConnectionResetError")
        return run_features(jobs)

    return run


def test_a_result_lost_with_the_scheduler_connection_costs_no_attempt(  # type: ignore[no-untyped-def]
    service_factory, tmp_path: Path
) -> None:
    svc = service_factory(5000.0, max_in_flight=1, feature_attempts=1)
    controller = Controller(svc.db, svc.settings, svc.client, run=cut_off_once(tmp_path / "cut"))
    task_id = geopackage_task(svc, svc.http, svc.collection_id, "cut", 1)
    svc.action(task_id, "start")
    run_until([controller], lambda: svc.task(task_id)["status"] in ("DONE", "FAILED"))
    assert (tmp_path / "cut").exists()  # it was cut off once, and run again
    assert_each_feature_billed_once(svc, task_id)  # one attempt allowed, none counted


def fails_first(log: Path) -> Callable[[list[FeatureJob]], list[FeatureOutcome]]:
    """A Dask job whose first attempt at each feature fails as a storage outage would; every
    attempt's start is logged (wall-clock time: the workers are other processes)."""

    def run(jobs: list[FeatureJob]) -> list[FeatureOutcome]:
        outcomes = []
        for job in jobs:
            tried = log.read_text().split() if log.exists() else []
            with log.open("a") as out:
                out.write(f"{job.feature.id}:{time.time()}\n")
            if not any(t.startswith(f"{job.feature.id}:") for t in tried):
                outcomes.append(
                    FeatureOutcome(job.task_id, job.feature.id, False, error="OSError: refused")
                )
            else:
                outcomes.extend(run_features([job]))
        return outcomes

    return run


def test_a_failed_feature_waits_before_its_next_attempt(  # type: ignore[no-untyped-def]
    service_factory, tmp_path: Path
) -> None:
    svc = service_factory(5000.0, feature_retry_delay_s=2.0, feature_attempts=3)
    log = tmp_path / "attempts"
    controller = Controller(svc.db, svc.settings, svc.client, run=fails_first(log))
    task_id = geopackage_task(svc, svc.http, svc.collection_id, "retried", 2)
    svc.action(task_id, "start")
    run_until([controller], lambda: svc.task(task_id)["status"] in ("DONE", "FAILED"))
    starts: dict[str, list[float]] = {}
    for line in log.read_text().split():
        feature, _, at = line.partition(":")
        starts.setdefault(feature, []).append(float(at))
    assert sorted(len(s) for s in starts.values()) == [2, 2]  # failed once, then done
    for first, second in starts.values():
        assert second - first >= 2.0  # not at once: the outage may still be on
    rows = svc.features(task_id)
    assert {r.status for r in rows} == {"DONE"} and {r.attempts for r in rows} == {1}


def test_a_paused_controller_that_lost_its_task_changes_nothing(service_factory, caplog) -> None:  # type: ignore[no-untyped-def]
    svc = service_factory(5000.0, max_in_flight=2)
    paused, successor = svc.controller(), svc.controller()
    task_id = geopackage_task(svc, svc.http, svc.collection_id, "paused", 4)
    svc.action(task_id, "start")
    run_until([paused], lambda: len(paused.in_flight) == 2)
    jobs = list(paused.in_flight)
    assert svc.balance()[1] > 0  # their costs are held

    # `paused` stops (a frozen VM, a partition) long enough for its lease to run out ...
    with svc.db.session() as session:
        session.execute(update(Task).where(Task.id == task_id).values(lease_until=Task.created))
    with caplog.at_level(logging.WARNING, logger="eobatch.lifecycle.leases"):
        run_until([successor], lambda: svc.task(task_id)["status"] == "DONE")
    assert f"task {task_id}: taken over from controller {paused.id}" in caplog.text
    # ... then wakes up with the results of the jobs it had dispatched: the store refuses them.
    wait_for(lambda: all(job.done() for job in jobs), "the paused controller's jobs")
    before = (ledger_of(svc, task_id), svc.balance())
    for _ in range(3):
        paused.step()
    assert not paused.in_flight and not paused.leases.held()
    assert (ledger_of(svc, task_id), svc.balance()) == before
    assert_each_feature_billed_once(svc, task_id)
    assert_books_balance(svc, [task_id], to_micro(5000.0))


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_the_controller_rides_out_lost_database_connections(service_factory, settings) -> None:  # type: ignore[no-untyped-def]
    svc = service_factory(5000.0)
    controller = svc.controller()
    controller.start()
    name = settings.resolved_database_url.rsplit("/", 1)[1]
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        task_id = geopackage_task(
            svc, svc.http, svc.collection_id, "connections", 12, pixels=200, evalscript=SLOW_NDVI
        )
        svc.action(task_id, "start")
        for done in (1, 2):  # twice, while features are in flight
            wait_for(
                lambda n=done: sum(r.status == "DONE" for r in svc.features(task_id)) >= n,
                f"{done} feature(s) done",
            )
            with admin.connect() as connection:
                killed = connection.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                ).scalar()
            assert killed
        wait_for(lambda: svc.task(task_id)["status"] in ("DONE", "FAILED", "STOPPED"), "the task")
    finally:
        controller.stop()
        admin.dispose()
    assert svc.task(task_id)["status"] == "DONE"
    assert_each_feature_billed_once(svc, task_id)
    assert_books_balance(svc, [task_id], to_micro(5000.0))


# -- fair shares ---------------------------------------------------------------------------------


def test_three_tasks_of_two_accounts_all_progress_from_the_start(  # type: ignore[no-untyped-def]
    service_factory, demo_folder
) -> None:
    svc = service_factory(5000.0, max_in_flight=3)
    other = signed_in(svc.http.app, create_account(svc.db, "other", 5000.0))
    other_collection = register_demo_collection(other, demo_folder[1])  # type: ignore[arg-type]
    large = geopackage_task(svc, svc.http, svc.collection_id, "large", 16)
    small = geopackage_task(svc, svc.http, svc.collection_id, "small", 4)
    others = geopackage_task(svc, other, other_collection, "others", 4)
    tasks = [large, small, others]
    for http, task_id in ((svc.http, large), (svc.http, small), (other, others)):
        assert http.post(f"/api/v2/batch/process/{task_id}/start").status_code == 204

    controller = svc.controller()
    first_round: set[str] = set()
    finished: list[str] = []
    deadline = time.monotonic() + 240
    while len(finished) < 3:
        assert time.monotonic() < deadline, f"only {finished} finished"
        controller.step()
        if not first_round:
            first_round = {task_id for task_id, _ in controller.in_flight.values()}
        for task_id in tasks:
            if task_id not in finished and status(svc, task_id) == "DONE":
                finished.append(task_id)
    assert first_round == set(tasks)  # every task had a job in the very first round
    # The large task, though oldest, never held the others back: it finished last.
    assert finished[-1] == large
    for task_id in tasks:
        assert_each_feature_billed_once(svc, task_id)


# -- task outcomes -------------------------------------------------------------------------------


def test_a_task_whose_every_feature_failed_is_failed(service_factory, caplog) -> None:  # type: ignore[no-untyped-def]
    svc = service_factory(5000.0)
    broken = NDVI.replace("return [(s.B08", 'throw new Error("broken"); return [(s.B08')
    with caplog.at_level(logging.INFO, logger="eobatch.tasks"):
        task = svc.run(svc.basic_request(broken))
    assert task["status"] == "FAILED"
    assert task["error"].startswith("All 4 features failed; first error (feature ")
    assert "broken" in task["error"]
    assert task["costPU"] == 0
    events = [(r.event, r.task_id) for r in task_events(caplog.records)]
    assert events.count(("feature_failed", task["id"])) == 4
    assert events[-1] == ("failed", task["id"])


def test_a_failed_task_whose_collection_was_deleted_still_ends_failed(service_factory) -> None:  # type: ignore[no-untyped-def]
    """The features failed, the collection is gone, and another controller takes the task
    over: its request no longer reads, yet the task must end rather than wait forever."""
    svc = service_factory(5000.0)
    first, successor = svc.controller(), svc.controller()
    broken = NDVI.replace("return [(s.B08", 'throw new Error("broken"); return [(s.B08')
    task_id = svc.create(svc.basic_request(broken))
    svc.action(task_id, "start")
    run_until([first], lambda: {f.status for f in svc.features(task_id)} == {"FATAL"})
    deleted = svc.http.delete(f"/api/v1/byoc/collections/{svc.collection_id}")
    assert deleted.status_code in (200, 204), deleted.text
    with svc.db.session() as session:  # `first` froze: its lease runs out
        session.execute(update(Task).where(Task.id == task_id).values(lease_until=Task.created))
    run_until([successor], status_is(svc, task_id, "FAILED", "DONE"))
    task = svc.task(task_id)
    assert task["status"] == "FAILED" and "broken" in task["error"]


def test_a_task_with_some_failed_features_is_done_and_says_how_many(
    service_factory, caplog
) -> None:  # type: ignore[no-untyped-def]
    svc = service_factory(5000.0, feature_attempts=2)
    task_id = svc.run(svc.basic_request(), action="analyse")["id"]
    blocked = svc.features(task_id)[0].name
    root = svc.buckets / "results" / "run" / task_id
    root.mkdir(parents=True)
    (root / blocked).write_text("a file where the feature's folder must go")
    svc.action(task_id, "start")
    with caplog.at_level(logging.INFO, logger="eobatch.tasks"):
        task = svc.wait(task_id)
    assert task["status"] == "DONE"
    assert task["error"].startswith(f"1 of 4 features failed; first error (feature {blocked}): ")
    assert task["error"].endswith(f"GET /api/v2/batch/process/{task_id}/features lists them.")
    assert task["costPU"] == 100.0  # three features billed, topped up to the task minimum
    failures = [r for r in task_events(caplog.records) if r.event == "feature_failed"]
    assert [(r.feature, r.attempt, r.final) for r in failures] == [
        (blocked, 1, False),
        (blocked, 2, True),
    ]
    lines = [r.getMessage() for r in caplog.records]
    assert f"task {task_id} started processing" in lines
    assert any(
        line.startswith(f"task {task_id} done: 4 features, 1 failed, 100 PU") for line in lines
    )


# -- readiness and metrics -----------------------------------------------------------------------


def metric(http: TestClient, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(http.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def test_a_start_through_this_process_api_wakes_its_controller(service_factory) -> None:  # type: ignore[no-untyped-def]
    """A user action recorded by the API of the controller's own process is taken up at once,
    not at the next poll: with an hour-long poll interval a started task still runs to DONE."""
    svc = service_factory(5000.0, controller_poll_s=3600.0)
    controller = svc.controller()
    http = TestClient(create_app(svc.settings, svc.db, controller))
    http.headers["Authorization"] = svc.http.headers["Authorization"]
    task_id = svc.create()
    # Stepped in a thread: its first round waits for work for up to the hour; only the wake-up
    # of the start below ends that wait, and the join gives up long before the hour is over.
    stepping = threading.Thread(
        target=run_until, args=([controller], status_is(svc, task_id, "DONE")), daemon=True
    )
    stepping.start()
    assert http.post(f"/api/v2/batch/process/{task_id}/start").status_code == 204
    stepping.join(240)
    assert not stepping.is_alive(), f"the task stayed {svc.task(task_id)['status']}"
    assert svc.task(task_id)["status"] == "DONE"


def test_metrics_count_tasks_features_pu_and_workers(service: Service) -> None:
    controller = service.controller()
    http = TestClient(create_app(service.settings, service.db, controller))
    before = {name: metric(http, name, **labels) for name, labels in COUNTED}
    task_id = service.create()
    service.action(task_id, "start")
    run_until([controller], lambda: service.task(task_id)["status"] == "DONE")
    after = {name: metric(http, name, **labels) for name, labels in COUNTED}
    delta = {name: after[name] - before[name] for name in after}
    assert delta["eobatch_features_total"] == 4
    assert delta["eobatch_feature_duration_seconds_count"] == 4
    assert delta["eobatch_pu_charged_total"] == pytest.approx(100.0)  # the task's whole cost
    assert delta["eobatch_task_events_total"] == 1  # done
    assert metric(http, "eobatch_tasks", status="DONE") == 1
    assert metric(http, "eobatch_tasks", status="PROCESSING") == 0
    assert metric(http, "eobatch_dask_workers") == 2  # the session's LocalCluster
    assert metric(http, "eobatch_dask_connected") == 1
    assert metric(http, "eobatch_features_in_flight") == 0


COUNTED = [
    ("eobatch_features_total", {"outcome": "done"}),
    ("eobatch_feature_duration_seconds_count", {}),
    ("eobatch_pu_charged_total", {}),
    ("eobatch_task_events_total", {"event": "done"}),
]


@pytest.fixture
def dask_processes(tmp_path: Path) -> Iterator[DaskProcesses]:
    cluster = DaskProcesses(tmp_path, workers=1).start()
    yield cluster
    cluster.stop()


def test_readyz_follows_the_scheduler_database_and_loop(
    tmp_path: Path, dask_processes: DaskProcesses
) -> None:
    settings = service_settings(tmp_path, dask_scheduler=dask_processes.address)
    db = Database(settings.resolved_database_url)
    db.migrate()
    cluster = Cluster.start(settings)
    controller = Controller(db, settings, cluster)
    http = TestClient(create_app(settings, db, controller), raise_server_exceptions=False)
    try:
        assert http.get("/healthz").json() == {"status": "ok"}
        controller.start()
        wait_for(lambda: http.get("/readyz").status_code == 200, "ready")
        checks = http.get("/readyz").json()["checks"]
        assert checks["database"]["ok"] and checks["controller"]["ok"]
        assert checks["dask"] == {"ok": True, "scheduler": dask_processes.address}

        dask_processes.kill_scheduler()
        wait_for(lambda: http.get("/readyz").status_code == 503, "not ready without a scheduler")
        body = http.get("/readyz").json()
        assert body["status"] == "not ready" and not body["checks"]["dask"]["ok"]
        assert body["checks"]["database"]["ok"] and body["checks"]["controller"]["ok"]

        dask_processes.start_scheduler()  # same address: the controller reconnects by itself
        wait_for(lambda: http.get("/readyz").status_code == 200, "ready again")
    finally:
        controller.stop()
        cluster.close()

    # A loop that stopped making rounds, and a store that does not answer, are not ready either.
    stalled = settings.model_copy(update={"controller_stall_s": 0.05})
    http = TestClient(create_app(stalled, db, Controller(db, stalled, None)))
    wait_for(lambda: not http.get("/readyz").json()["checks"]["controller"]["ok"], "stalled")
    http.app.state.db = Database(f"sqlite:///{tmp_path}/missing/store.sqlite")  # type: ignore[attr-defined]
    checks = http.get("/readyz").json()["checks"]
    assert not checks["database"]["ok"] and "unable to open database" in checks["database"]["error"]
    db.dispose()


# -- migrations ------------------------------------------------------------------------------


def test_migrate_command(tmp_path: Path) -> None:
    env = {"EOBATCH_DATABASE_URL": f"sqlite:///{tmp_path}/store.sqlite", "COLUMNS": "200"}
    first = CliRunner().invoke(cli_app, ["migrate"], env=env)
    assert first.exit_code == 0, first.output
    head = schema_revision(make_engine("sqlite://"))[1]  # the newest migration
    assert f"schema migrated from empty to {head}" in first.output
    again = CliRunner().invoke(cli_app, ["migrate"], env=env)
    assert again.exit_code == 0 and f"schema already at {head}" in again.output
    bad = CliRunner().invoke(
        cli_app, ["migrate"], env={"EOBATCH_DATABASE_URL": "postgresql+psycopg://x@127.0.0.1:1/x"}
    )
    assert bad.exit_code == 1 and "check EOBATCH_DATABASE_URL" in bad.output


def test_a_store_migrated_by_a_newer_eobatch_is_refused_in_one_line(tmp_path: Path) -> None:
    env = {"EOBATCH_DATABASE_URL": f"sqlite:///{tmp_path}/store.sqlite", "COLUMNS": "300"}
    assert CliRunner().invoke(cli_app, ["migrate"], env=env).exit_code == 0
    engine = create_engine(env["EOBATCH_DATABASE_URL"])
    with engine.begin() as connection:  # what a later version (rolled back since) left
        connection.execute(text("UPDATE alembic_version SET version_num = '0099_future'"))
    engine.dispose()
    for command in (["migrate"], ["tasks", "list"], ["accounts", "list"]):
        result = CliRunner().invoke(cli_app, command, env=env)
        assert result.exit_code == 1, (command, result.output)
        assert "schema revision 0099_future" in result.output
        assert "a newer eobatch migrated it" in result.output
        assert "Traceback" not in result.output and len(result.output.splitlines()) <= 4


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_replicas_migrating_at_once_all_succeed(database_url: str) -> None:
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def replica() -> None:
        db = Database(database_url)
        try:
            barrier.wait()
            db.migrate()
        except BaseException as exc:
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=replica) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    db = Database(database_url)
    with db.session() as session:
        assert session.execute(text("SELECT version_num FROM alembic_version")).all() == [
            (schema_revision(db.engine)[1],)
        ]
    db.dispose()
