"""How the controller packs a task's PENDING features into Dask jobs (`Controller._pack`)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from eobatch.config import Settings
from eobatch.lifecycle.controller import MAX_FEATURES_PER_JOB, Controller
from eobatch.store import Database


def controller(tmp_path: Path, window: int) -> Controller:
    settings = Settings(data_dir=tmp_path, max_in_flight=window)
    return Controller(Database(settings.resolved_database_url), settings, None)


def features(count: int, px: int) -> list:  # type: ignore[type-arg]
    return [SimpleNamespace(id=i, width=px, height=px) for i in range(1, count + 1)]


def jobs_of(ctl: Controller, rows: list, waiting: int, count: int, per_job: int) -> list[int]:  # type: ignore[type-arg]
    """The sizes of the jobs `_dispatch` would make of `rows`."""
    budget = ctl._pixel_budget(rows, waiting)
    return [len(job) for job in ctl._pack("t", rows, count, per_job, budget)]


def test_a_small_task_of_large_features_runs_one_feature_per_job(tmp_path: Path) -> None:
    # 17 features of 1000 px on a 2-worker cluster: one each, so the workers finish together
    ctl = controller(tmp_path, window=4)
    assert jobs_of(ctl, features(17, 1000), 17, count=4, per_job=5) == [1, 1, 1, 1]


def test_a_large_task_packs_large_features_until_its_last_jobs(tmp_path: Path) -> None:
    ctl = controller(tmp_path, window=4)
    # 400 waiting features of 1000 px: four per job (4 Mpx)
    assert jobs_of(ctl, features(128, 1000), 400, count=4, per_job=32) == [4, 4, 4, 4]
    # the last 16 (four jobs per place in the window): one per job again
    assert jobs_of(ctl, features(16, 1000), 16, count=4, per_job=4) == [1, 1, 1, 1]


def test_a_2000_px_feature_always_runs_alone(tmp_path: Path) -> None:
    ctl = controller(tmp_path, window=4)
    assert jobs_of(ctl, features(64, 2000), 10_000, count=4, per_job=32) == [1, 1, 1, 1]


@pytest.mark.parametrize("waiting", [40, 10_000])
def test_small_features_fill_jobs_up_to_the_feature_limit(tmp_path: Path, waiting: int) -> None:
    ctl = controller(tmp_path, window=4)
    rows = features(4 * MAX_FEATURES_PER_JOB, 100)
    assert jobs_of(ctl, rows, waiting, count=4, per_job=MAX_FEATURES_PER_JOB) == [32, 32, 32, 32]
