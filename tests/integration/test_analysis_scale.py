"""A large analysis streams its plan: bounded chunks, each stored in its own short transaction,
so the API reads and writes the task while it runs, and the stored features are the plan's."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import shapely
from sqlalchemy import func, select, update

from eobatch.api import create_app
from eobatch.config import Settings
from eobatch.lifecycle import analysis
from eobatch.lifecycle.fencing import fence
from eobatch.planning import features as planning
from eobatch.planning import parse_aoi, plan_tiling_grid
from eobatch.store import Database
from eobatch.store.models import Feature as FeatureRow
from eobatch.store.models import Task
from tests.integration.test_api import User, _user, valid_request
from tests.integration.test_geopackage_input import MASK_SCRIPT

BBOX = [5.0, 45.0, 10.0, 50.0]  # grid 7 (LAEA 20 km): about 600 features
CHUNK = 100


@pytest.fixture
def alice(settings: Settings, db: Database) -> User:
    for bucket in ("data", "results"):  # embedded mode: buckets are folders
        (settings.buckets_dir / bucket).mkdir(parents=True, exist_ok=True)
    return _user(create_app(settings, db), db, settings, "alice")


def wait_for(done: Callable[[], bool], what: str, limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    while not done():
        assert time.monotonic() < deadline, f"{what} did not happen in {limit_s} s"
        time.sleep(0.02)


def test_the_api_reads_and_writes_a_task_while_its_large_analysis_runs(  # type: ignore[no-untyped-def]
    alice: User, db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = valid_request(alice.collection_id)
    body["processRequest"]["evalscript"] = MASK_SCRIPT
    body["processRequest"]["input"]["bounds"]["bbox"] = BBOX
    created = alice.http.post("/api/v2/batch/process", json=body)
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    with db.session() as session:  # held as the controller holds it: every write is fenced
        session.execute(
            update(Task)
            .where(Task.id == task_id)
            .values(
                controller_id="analyser",
                lease_epoch=1,
                lease_until=datetime.now(UTC) + timedelta(hours=1),
            )
        )
        task = session.get(Task, task_id)

    monkeypatch.setattr(planning, "CHUNK", CHUNK)
    stored, resume = threading.Event(), threading.Event()
    store = analysis.store_features

    def store_then_pause(*args, **kwargs):  # type: ignore[no-untyped-def]
        store(*args, **kwargs)
        if not stored.is_set():  # after the first chunk's commit, until the API has answered
            stored.set()
            resume.wait(timeout=120)

    monkeypatch.setattr(analysis, "store_features", store_then_pause)
    result: list[object] = []
    worker = threading.Thread(
        target=lambda: result.append(
            analysis.analyse_task(
                db,
                settings,
                task,
                lambda session: fence(session, task_id, "analyser", 1, 3600),
            )
        )
    )
    worker.start()
    try:
        wait_for(stored.is_set, "the first chunk's commit")
        # The analysis is under way (one chunk stored); the API answers, even a write to the task
        answers: list[tuple[int, int]] = []
        client = threading.Thread(
            target=lambda: answers.append(
                (
                    alice.http.get(f"/api/v2/batch/process/{task_id}").status_code,
                    alice.http.put(
                        f"/api/v2/batch/process/{task_id}", json={"description": "still here"}
                    ).status_code,
                )
            )
        )
        client.start()
        wait_for(lambda: bool(answers), "the API's answers while the analysis runs", 60)
        assert answers == [(200, 200)]
        assert worker.is_alive()  # the answers came while the analysis was paused mid-way
        with db.session() as session:
            partial = session.scalar(
                select(func.count()).select_from(FeatureRow).where(FeatureRow.task_id == task_id)
            )
        assert partial == CHUNK
    finally:
        resume.set()
        worker.join(timeout=300)
    assert not worker.is_alive() and result, "the analysis did not finish"
    count, _, _ = result[0]  # type: ignore[misc]

    expected = plan_tiling_grid(7, 20.0, 0, 0, parse_aoi(BBOX, None, None))
    assert count == len(expected) > 5 * CHUNK  # several chunks
    with db.session() as session:
        rows = session.execute(
            select(
                FeatureRow.id,
                FeatureRow.name,
                FeatureRow.epsg,
                FeatureRow.minx,
                FeatureRow.miny,
                FeatureRow.maxx,
                FeatureRow.maxy,
                FeatureRow.geometry,
            )
            .where(FeatureRow.task_id == task_id)
            .order_by(FeatureRow.id)
        ).all()
        description = session.get(Task, task_id).description  # type: ignore[union-attr]
    assert description == "still here"
    assert [(r[0], r[1], r[2], (r[3], r[4], r[5], r[6])) for r in rows] == sorted(
        (f.id, f.name, f.epsg, f.bounds) for f in expected
    )
    by_id = {f.id: f.geometry for f in expected}
    assert all(shapely.from_wkb(r[7]).equals_exact(by_id[r[0]], 0) for r in rows)
