"""Scene files kept open per worker thread: reused, reopened when old, closed when evicted."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from eobatch.sources import datasets


def _write(path: Path, value: int) -> None:
    profile = {
        "driver": "GTiff",
        "width": 8,
        "height": 8,
        "count": 1,
        "dtype": "uint8",
        "crs": "EPSG:32633",
        "transform": Affine(10, 0, 0, 0, -10, 80),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.full((8, 8), value, np.uint8), 1)


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    datasets.close_datasets()


def test_a_file_is_opened_once_per_thread_and_options(tmp_path: Path) -> None:
    path = str(tmp_path / "a.tif")
    _write(tmp_path / "a.tif", 1)
    first = datasets.open_dataset(path, {})
    assert datasets.open_dataset(path, {}) is first
    assert datasets.open_dataset(path, {"AWS_REGION": "x"}) is not first  # other credentials
    other_thread = []
    thread = threading.Thread(target=lambda: other_thread.append(datasets.open_dataset(path, {})))
    thread.start()
    thread.join()
    assert other_thread[0] is not first  # GDAL handles are never shared between threads


def test_an_old_handle_is_reopened_and_sees_a_replaced_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.tif"
    _write(path, 1)
    now = [1000.0]
    monkeypatch.setattr(datasets.time, "monotonic", lambda: now[0])
    first = datasets.open_dataset(str(path), {})
    assert first.read(1)[0, 0] == 1
    path.unlink()
    _write(path, 2)  # replaced, as a BYOC reingestion does
    now[0] += datasets.MAX_AGE_S + 1
    second = datasets.open_dataset(str(path), {})
    assert second is not first and first.closed
    assert second.read(1)[0, 0] == 2


def test_the_least_recently_used_handle_is_closed_beyond_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(datasets, "MAX_OPEN", 2)
    paths = []
    for n in range(3):
        _write(tmp_path / f"{n}.tif", n)
        paths.append(str(tmp_path / f"{n}.tif"))
    a = datasets.open_dataset(paths[0], {})
    b = datasets.open_dataset(paths[1], {})
    datasets.open_dataset(paths[0], {})  # a is now the most recent
    datasets.open_dataset(paths[2], {})
    assert b.closed and not a.closed
