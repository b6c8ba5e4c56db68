"""Scenes: one acquisition of a collection, as the reader sees it (files per band, time, cover)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class BandSource:
    """Where one band of a scene lives: a GDAL-readable path and the band index in that file."""

    path: str
    index: int = 1
    nodata: float | None = None


@dataclass(frozen=True)
class Scene:
    """One tile of a collection at one sensing time. Picklable: it travels to the workers."""

    id: str
    sensing_time: datetime
    created: datetime | None
    bands: dict[str, BandSource]
    cover_wkb: bytes | None = None  # coverGeometry in lon/lat; pixels outside it are no data
    gdal_options: dict[str, str] = field(default_factory=dict)


MOSAICKING_ORDERS = ("mostRecent", "leastRecent")


def filter_time(
    scenes: Iterable[Scene], start: datetime | None, end: datetime | None
) -> list[Scene]:
    """Scenes sensed within [start, end]; both ends inclusive, like the Process API."""
    return [
        s for s in scenes
        if (start is None or s.sensing_time >= start) and (end is None or s.sensing_time <= end)
    ]  # fmt: skip


def order_scenes(scenes: Iterable[Scene], order: str) -> list[Scene]:
    """Scenes in mosaicking priority: the first scene with data at a pixel wins.

    Ties on sensing time are broken by tile id so every run, and every retry, picks the same pixel.
    """
    if order not in MOSAICKING_ORDERS:
        raise ValueError(f"mosaickingOrder {order!r} is not one of {', '.join(MOSAICKING_ORDERS)}")
    newest_first = order == "mostRecent"
    by_id = sorted(scenes, key=lambda s: s.id)
    return sorted(by_id, key=lambda s: s.sensing_time, reverse=newest_first)
