"""Raster files kept open per worker thread.

The features of a task read the same scene files over and over: small features hundreds of times
each. Opening a file costs a GDAL open (milliseconds, a request for remote files), and closing it
drops the blocks GDAL cached for it, which neighbouring features read again. So a thread keeps
the files it opened for a short while. GDAL dataset handles must not be shared between threads,
hence one cache per thread; files are reopened after MAX_AGE_S so that a replaced file (BYOC
reingestion) is seen within that time.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping

import rasterio
from rasterio.io import DatasetReader

MAX_OPEN = 64
MAX_AGE_S = 60.0

_Key = tuple[str, int | None, tuple[tuple[str, str], ...]]


class _Cache(threading.local):
    def __init__(self) -> None:
        self.datasets: OrderedDict[_Key, tuple[float, DatasetReader]] = OrderedDict()


_cache = _Cache()


def open_dataset(
    path: str, options: Mapping[str, str], overview_level: int | None = None
) -> DatasetReader:
    """`rasterio.open(path, overview_level=...)`, reused from this thread's cache.

    `options` are the GDAL options (credentials included) of the `rasterio.Env` the caller reads
    in; a file opened under other options is another entry. The dataset stays owned by the
    cache: callers must not close it.
    """
    key = (path, overview_level, tuple(sorted(options.items())))
    datasets = _cache.datasets
    now = time.monotonic()
    entry = datasets.get(key)
    if entry is not None and now - entry[0] < MAX_AGE_S:
        datasets.move_to_end(key)
        return entry[1]
    if entry is not None:
        del datasets[key]
        entry[1].close()
    if overview_level is None:
        dataset = rasterio.open(path)
    else:
        dataset = rasterio.open(path, overview_level=overview_level)
    datasets[key] = (now, dataset)
    while len(datasets) > MAX_OPEN:
        datasets.popitem(last=False)[1][1].close()
    return dataset


def close_datasets() -> None:
    """Close every file this thread keeps open."""
    while _cache.datasets:
        _cache.datasets.popitem()[1][1].close()
