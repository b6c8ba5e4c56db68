"""Scenes: one acquisition of a collection, as the reader sees it (files per band, time, cover)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class BandSource:
    """Where one band of a scene lives: a GDAL-readable path and the band index in that file."""

    path: str
    index: int = 1
    nodata: float | None = None
    offset: float = 0.0  # added to stored values (baseline harmonisation); results kept >= 0
    resampling: str | None = None  # forced resampling, e.g. NEAREST for classification bands


@dataclass(frozen=True)
class Scene:
    """One tile of a collection at one sensing time. Picklable: it travels to the workers."""

    id: str
    sensing_time: datetime
    created: datetime | None
    bands: dict[str, BandSource]
    cover_wkb: bytes | None = None  # coverGeometry in lon/lat; pixels outside it are no data
    gdal_options: dict[str, str] = field(default_factory=dict)
    cloud_cover: float | None = None  # percent, for maxCloudCoverage and leastCC
    properties: dict[str, Any] = field(default_factory=dict)  # item properties units read


MOSAICKING_ORDERS = ("mostRecent", "leastRecent", "leastCC")


def filter_time(
    scenes: Iterable[Scene], start: datetime | None, end: datetime | None
) -> list[Scene]:
    """Scenes sensed within [start, end]; both ends inclusive, like the Process API."""
    return [
        s
        for s in scenes
        if (start is None or s.sensing_time >= start) and (end is None or s.sensing_time <= end)
    ]


def filter_cloud_cover(scenes: Iterable[Scene], max_cloud_cover: float | None) -> list[Scene]:
    """Scenes with at most `max_cloud_cover` percent cloud; scenes without a cloud cover (BYOC
    tiles) always pass, as on Sentinel Hub."""
    if max_cloud_cover is None or max_cloud_cover >= 100:
        return list(scenes)
    return [s for s in scenes if s.cloud_cover is None or s.cloud_cover <= max_cloud_cover]


def order_scenes(scenes: Iterable[Scene], order: str) -> list[Scene]:
    """Scenes in mosaicking priority: the first scene with data at a pixel wins.

    `leastCC` puts the least cloudy first, the most recent first among equals. Remaining ties are
    broken by tile id so every run, and every retry, picks the same pixel.
    """
    if order not in MOSAICKING_ORDERS:
        raise ValueError(f"mosaickingOrder {order!r} is not one of {', '.join(MOSAICKING_ORDERS)}")
    by_id = sorted(scenes, key=lambda s: s.id)
    ordered = sorted(by_id, key=lambda s: s.sensing_time, reverse=order != "leastRecent")
    if order == "leastCC":  # stable: keeps newest first among equal cloud cover
        ordered.sort(key=lambda s: 101.0 if s.cloud_cover is None else s.cloud_cover)
    return ordered
