"""Billing of whole tasks: the API, a real controller and a real Dask cluster, on both backends.

Each test drives the controller step by step from the test thread (no background loop), so what
is in flight when a user stops a task, or when the balance runs out, is known exactly. Amounts
are compared in integer micro-PU: to the last decimal the API shows.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from eobatch.accounts import top_up
from eobatch.api import create_app
from eobatch.cli import app as cli_app
from eobatch.config import Settings
from eobatch.ledger import entries
from eobatch.lifecycle.billing import Pricing, to_micro, to_pu
from eobatch.store import Database
from eobatch.store.models import Task
from tests.integration.harness import NDVI, Service, run_until, status_is
from tests.integration.test_api import _user

# The same maths, made slow (a few seconds per feature) so a stop lands while work is in flight.
SLOW_NDVI = NDVI.replace(
    "function evaluatePixel(s) {",
    "function evaluatePixel(s) { let w = 0; for (let i = 0; i < 1500; i++) { w += i % 7; }",
)

# 4 features of 1000 × 1000 px: the demo AOI sits on the corner of four LAEA 20 km cells.
FEATURE_MICRO = Pricing(("B04", "B08", "dataMask"), ("FLOAT32",)).feature_micro(1000, 1000)


def assert_books_balance(svc: Service, task_ids: list[str], opening_micro: int) -> None:
    """costPU = its features' charges + minimum = its ledger entries; balance = opening - all."""
    spent = 0
    for task_id in task_ids:
        rows = svc.features(task_id)
        charges = svc.charges(task_id)
        features = sum(r.cost_micro_pu + r.surcharge_micro_pu for r in rows)
        minimum = sum(-e.amount_micro_pu for e in charges if e.kind == "minimum")
        ledger_total = -sum(e.amount_micro_pu for e in charges)
        assert ledger_total == features + minimum
        assert svc.task(task_id)["costPU"] == to_pu(ledger_total)
        spent += ledger_total
    balance, reserved = svc.balance()
    assert balance == opening_micro - spent
    assert reserved == 0  # nothing is held once no work is in flight
    # the ledger's running balance agrees with the account
    assert entries(svc.db, svc.account_id)[-1].balance_after_micro == balance


# -- a task that runs out, is topped up and finishes ---------------------------------------------


def test_out_of_pu_stops_the_task_and_charges_nothing_more(service_factory) -> None:  # type: ignore[no-untyped-def]
    # 4 PU pays for two features (1.695 PU each) but not a third: the task stops OUT_OF_PU.
    svc = service_factory(4.0, min_balance_pu=0.0)
    controller = svc.controller()
    task_id = svc.create()
    svc.action(task_id, "start")
    run_until([controller], status_is(svc, task_id, "STOPPED", "DONE", "FAILED"))

    task = svc.task(task_id)
    assert (task["status"], task["stoppedStatusReason"]) == ("STOPPED", "OUT_OF_PU")
    rows = svc.features(task_id)
    assert [r.status for r in rows] == ["DONE", "DONE", "PENDING", "PENDING"]
    assert [r.cost_micro_pu for r in rows] == [FEATURE_MICRO] * 2 + [0, 0]
    assert task["costPU"] == to_pu(2 * FEATURE_MICRO)
    assert svc.balance() == (to_micro(4.0) - 2 * FEATURE_MICRO, 0)
    assert_books_balance(svc, [task_id], to_micro(4.0))

    # Stopped means stopped: more controller rounds charge nothing.
    for _ in range(5):
        controller.step()
    assert svc.balance()[0] == to_micro(4.0) - 2 * FEATURE_MICRO

    # Topped up, restarted: the rest is processed and the 100 PU task minimum is charged.
    top_up(svc.db, svc.account_id, 200.0)
    svc.action(task_id, "start")
    run_until([controller], status_is(svc, task_id, "PROCESSING"))
    run_until([controller], status_is(svc, task_id, "DONE", "STOPPED", "FAILED"))
    task = svc.task(task_id)
    assert task["status"] == "DONE"
    assert [r.cost_micro_pu for r in svc.features(task_id)] == [FEATURE_MICRO] * 4
    assert task["costPU"] == 100.0  # 4 × 1.695 PU, topped up to the minimum
    kinds = [e.kind for e in svc.charges(task_id)]  # one processing entry per batch of results
    assert set(kinds[:-1]) == {"processing"} and kinds[-1] == "minimum"
    assert_books_balance(svc, [task_id], to_micro(204.0))


def test_a_feature_the_whole_balance_cannot_pay_is_never_started(service_factory) -> None:  # type: ignore[no-untyped-def]
    svc = service_factory(1.0, min_balance_pu=0.0)  # less than one feature
    controller = svc.controller()
    task_id = svc.create()
    svc.action(task_id, "start")
    run_until([controller], status_is(svc, task_id, "STOPPED", "DONE", "FAILED"))
    task = svc.task(task_id)
    assert (task["status"], task["stoppedStatusReason"], task["costPU"]) == (
        "STOPPED",
        "OUT_OF_PU",
        0.0,
    )
    assert {r.status for r in svc.features(task_id)} == {"PENDING"}
    assert svc.balance() == (to_micro(1.0), 0)


# -- a user stop mid-processing --------------------------------------------------------------------


def test_user_stop_charges_processed_and_in_progress_features_only(service_factory) -> None:  # type: ignore[no-untyped-def]
    svc = service_factory(5000.0, max_in_flight=1)
    controller = svc.controller()
    task_id = svc.create(evalscript=SLOW_NDVI)
    svc.action(task_id, "start")
    run_until([controller], lambda: any(r.status == "DONE" for r in svc.features(task_id)))
    in_flight = {
        fid for tid, fids in controller.in_flight.values() if tid == task_id for fid in fids
    }
    assert in_flight, "the stop must land while features are being processed"
    svc.action(task_id, "stop")
    run_until([controller], status_is(svc, task_id, "STOPPED"))
    for _ in range(5):  # cancelled jobs that still report must not be charged again
        controller.step()

    rows = svc.features(task_id)
    billed = {r.id for r in rows if r.billed}
    done = {r.id for r in rows if r.status == "DONE"}
    assert done and billed <= done | in_flight and done <= billed
    assert any(r.status == "PENDING" and not r.billed for r in rows), "something was left"
    for r in rows:
        assert r.cost_micro_pu == (FEATURE_MICRO if r.id in billed else 0)
    task = svc.task(task_id)
    assert (task["status"], task["stoppedStatusReason"]) == ("STOPPED", "USER_ACTION")
    assert task["costPU"] == to_pu(len(billed) * FEATURE_MICRO)
    assert_books_balance(svc, [task_id], to_micro(5000.0))


# -- two tasks billing one account -----------------------------------------------------------------


def test_two_tasks_on_one_account_never_overspend_it(service_factory, backend: str) -> None:  # type: ignore[no-untyped-def]
    # 6 PU pays for 3 of the 8 features the two tasks want. On PostgreSQL each task has its own
    # controller, both running at once in their own threads; SQLite has one controller.
    svc = service_factory(6.0, min_balance_pu=0.0)
    first, second = svc.create(run="a"), svc.create(run="b")
    controllers = (
        [svc.controller(), svc.controller()] if backend == "postgresql" else [svc.controller()]
    )
    svc.action(first, "start")
    svc.action(second, "start")
    if len(controllers) == 2:
        # each controller leases one task, then both run concurrently
        with svc.db.session() as session:
            session.execute(update(Task).where(Task.id == second).values(controller_id="held"))
        run_until(controllers[:1], lambda: svc.task(first)["status"] == "PROCESSING")
        with svc.db.session() as session:
            session.execute(update(Task).where(Task.id == second).values(controller_id=None))
        run_until(controllers[1:], lambda: svc.task(second)["status"] == "PROCESSING")
    finished = ("STOPPED", "DONE", "FAILED")
    threads = [
        threading.Thread(
            target=run_until,
            args=([c], lambda: all(svc.task(t)["status"] in finished for t in (first, second))),
        )
        for c in controllers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    balance, _ = svc.balance()
    assert balance >= 0
    assert {svc.task(t)["stoppedStatusReason"] for t in (first, second)} == {"OUT_OF_PU"}
    processed = sum(r.billed for t in (first, second) for r in svc.features(t))
    assert processed == 3  # all that 6 PU can pay for, and nothing more
    assert balance == to_micro(6.0) - 3 * FEATURE_MICRO
    assert_books_balance(svc, [first, second], to_micro(6.0))


# -- transparency --------------------------------------------------------------------------------


def test_estimate_features_listing_and_execution_database(service_factory, settings) -> None:  # type: ignore[no-untyped-def]
    svc = service_factory(5000.0)
    controller = svc.controller()
    task_id = svc.create()
    assert "estimate" not in svc.task(task_id)
    svc.action(task_id, "analyse")
    run_until([controller], status_is(svc, task_id, "ANALYSIS_DONE"))
    estimate = svc.task(task_id)["estimate"]
    # SIMPLE mosaicking, local folder: every bound is 4 features, topped up to 100 PU.
    assert estimate == {"featureCount": 4, "minPU": 100.0, "expectedPU": 100.0, "maxPU": 100.0}

    svc.action(task_id, "start")
    run_until([controller], status_is(svc, task_id, "DONE"))
    page = svc.http.get(f"/api/v2/batch/process/{task_id}/features", params={"count": 3})
    assert page.status_code == 200
    listed = page.json()["data"]
    assert len(listed) == 3 and "nextToken" in page.json()["links"]
    assert {f["costPU"] for f in listed} == {to_pu(FEATURE_MICRO)}
    assert all(
        f["status"] == "DONE" and f["samples"] == 1 and f["bytesWritten"] > 0 for f in listed
    )
    assert (
        svc.http.get(f"/api/v2/batch/process/{task_id}/features", params={"count": 0}).status_code
        == 400
    )

    path = svc.settings.buckets_dir / "results" / "run" / f"execution-{task_id}.sqlite"
    with sqlite3.connect(path) as connection:
        costs = connection.execute("SELECT costPU FROM features ORDER BY id").fetchall()
    assert costs == [(to_pu(FEATURE_MICRO),)] * 4

    result = CliRunner().invoke(
        cli_app,
        ["accounts", "ledger", svc.account_id],
        env={
            "EOBATCH_DATA_DIR": str(svc.settings.data_dir),
            "EOBATCH_DATABASE_URL": svc.settings.resolved_database_url,
            "COLUMNS": "250",
        },
    )
    assert result.exit_code == 0, result.output
    assert "opening balance" in result.output and "minimum" in result.output
    assert "processing" in result.output


def test_features_no_scene_meets_add_nothing_to_the_estimate(service_factory) -> None:  # type: ignore[no-untyped-def]
    svc = service_factory(5000.0)
    controller = svc.controller()
    body = svc.basic_request()
    minx, miny, maxx, maxy = body["processRequest"]["input"]["bounds"]["bbox"]
    # 100 km around the demo data: over 100 LAEA 20 km cells, 4 of them with data.
    body["processRequest"]["input"]["bounds"]["bbox"] = [
        minx - 1e5,
        miny - 1e5,
        maxx + 1e5,
        maxy + 1e5,
    ]
    task_id = svc.create(body)
    svc.action(task_id, "analyse")
    run_until([controller], status_is(svc, task_id, "ANALYSIS_DONE"))
    estimate = svc.task(task_id)["estimate"]
    assert estimate["featureCount"] > 100
    # Only the 4 features with data are charged (4 x 1.7 PU, topped up to the minimum);
    # counting the others too would make it featureCount x 1.7 PU.
    assert estimate == {**estimate, "minPU": 100.0, "expectedPU": 100.0, "maxPU": 100.0}
    assert 4 * to_pu(FEATURE_MICRO) < 100.0 < estimate["featureCount"] * to_pu(FEATURE_MICRO)

    svc.action(task_id, "start")
    run_until([controller], status_is(svc, task_id, "DONE"))
    rows = svc.features(task_id)
    assert sum(1 for r in rows if r.cost_micro_pu) == 4  # what the estimate counted
    assert svc.task(task_id)["costPU"] == 100.0


def test_another_accounts_features_are_not_found(service_factory) -> None:  # type: ignore[no-untyped-def]
    svc = service_factory(5000.0)
    task_id = svc.create()
    stranger = _user(svc.http.app, svc.db, svc.settings, "stranger")
    response = stranger.http.get(f"/api/v2/batch/process/{task_id}/features")
    assert response.status_code == 404
    assert response.json()["error"]["status"] == 404


# -- failures and transfer surcharges ----------------------------------------------------------


def test_failed_features_are_not_charged(service_factory) -> None:  # type: ignore[no-untyped-def]
    svc = service_factory(5000.0)
    controller = svc.controller()
    broken = NDVI.replace("return [(s.B08", 'throw new Error("broken"); return [(s.B08')
    task_id = svc.create(evalscript=broken)
    svc.action(task_id, "start")
    run_until([controller], status_is(svc, task_id, "DONE", "FAILED", "STOPPED"))
    rows = svc.features(task_id)
    assert {r.status for r in rows} == {"FATAL"} and all("broken" in r.error for r in rows)
    assert svc.task(task_id)["costPU"] == 0  # no feature processed: no minimum either
    assert svc.balance() == (to_micro(5000.0), 0)
    assert_books_balance(svc, [task_id], to_micro(5000.0))


@pytest.mark.parametrize(
    ("bucket_region", "pu_per_mb"), [("eu-central-1", 0.0), ("us-west-2", 0.03)]
)
def test_outputs_to_another_region_pay_the_transfer_surcharge(  # type: ignore[no-untyped-def]
    bucket_region: str,
    pu_per_mb: float,
    tmp_path: Path,
    moto_endpoint: str,
    dask_client,
    demo_folder,
) -> None:
    import boto3

    from tests.servers import MOTO_KEY, MOTO_SECRET

    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'store.sqlite'}",
        jwt_secret="test-signing-key-that-is-long-enough-for-hs256",
        workers=1,
        s3_endpoint=moto_endpoint,
        s3_access_key=MOTO_KEY,
        s3_secret_key=MOTO_SECRET,
        cloud="aws",
        region="eu-central-1",
        execution_db_interval_s=3600,
    )
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        aws_access_key_id=MOTO_KEY,
        aws_secret_access_key=MOTO_SECRET,
        region_name="us-east-1",
    )
    suffix = bucket_region.replace("-", "")
    data_bucket, out_bucket = f"demo-{suffix}", f"out-{suffix}"
    for name in (data_bucket, out_bucket):
        s3.create_bucket(Bucket=name)
    if "data" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket="data")  # the helper's own (unused) collection lives there
    folder, scenes = demo_folder
    for path in folder.rglob("*.tif"):
        s3.upload_file(str(path), data_bucket, path.relative_to(folder).as_posix())
    db = Database(settings.resolved_database_url)
    db.migrate()
    try:
        user = _user(create_app(settings, db), db, settings, "mover")
        collection = user.http.post(
            "/api/v1/byoc/collections", json={"name": "demo", "s3Bucket": data_bucket}
        ).json()["data"]["id"]
        for scene in scenes:
            tile = user.http.post(
                f"/api/v1/byoc/collections/{collection}/tiles",
                json={"path": scene.path_template, "sensingTime": scene.sensing_time.isoformat()},
            )
            assert tile.status_code == 201, tile.text
        svc = Service(settings, db, user.http, dask_client, user.account_id, collection)
        body = svc.basic_request()
        body["output"]["delivery"]["s3"] = {
            "url": f"s3://{out_bucket}/run",
            "region": bucket_region,
            "accessKey": MOTO_KEY,
            "secretAccessKey": MOTO_SECRET,
        }
        created = user.http.post("/api/v2/batch/process", json=body)
        assert created.status_code == 201, created.text
        task_id = created.json()["id"]
        svc.action(task_id, "start")
        run_until([svc.controller()], status_is(svc, task_id, "DONE", "FAILED", "STOPPED"))
        assert svc.task(task_id)["status"] == "DONE"

        rows = svc.features(task_id)
        for row in rows:  # the bytes billed are the bytes that landed in the bucket
            key = f"run/{task_id}/{row.name}/default.tiff"
            assert row.bytes_written == s3.head_object(Bucket=out_bucket, Key=key)["ContentLength"]
            assert row.surcharge_micro_pu == to_micro(row.bytes_written / 1e6 * pu_per_mb)
        transfer = sum(r.surcharge_micro_pu for r in rows)
        assert (transfer > 0) == (pu_per_mb > 0)
        kinds = {e.kind for e in svc.charges(task_id)}
        assert ("transfer" in kinds) == (pu_per_mb > 0)
        assert_books_balance(svc, [task_id], to_micro(5000.0))
    finally:
        db.dispose()


def test_features_without_data_are_not_charged(service_factory) -> None:  # type: ignore[no-untyped-def]
    """SIMPLE features with no scene in the time range: DONE with 'No data', nothing
    delivered, nothing charged (not even the 100 PU minimum)."""
    svc = service_factory(5000.0)
    controller = svc.controller()
    body = svc.basic_request()
    body["processRequest"]["input"]["data"][0]["dataFilter"] = {
        "timeRange": {"from": "2010-01-01T00:00:00Z", "to": "2010-12-31T23:59:59Z"}
    }
    task_id = svc.create(body)
    svc.action(task_id, "start")
    run_until([controller], status_is(svc, task_id, "DONE", "FAILED", "STOPPED"))
    rows = svc.features(task_id)
    assert len(rows) == 4
    assert {(r.status, r.error, r.delivered, r.cost_micro_pu) for r in rows} == {
        ("DONE", "No data", False, 0)
    }
    assert svc.task(task_id)["costPU"] == 0
    assert svc.balance() == (to_micro(5000.0), 0)
    assert not list((svc.settings.buckets_dir / "results" / "run").rglob("*.tif"))
