"""Scenes as ORBIT and TILE mosaicking hand them to evalscripts: one slice per orbit or tile.

ORBIT merges the scenes acquired on one UTC day (one satellite pass) into one slice, mosaicked in
the task's priority order; TILE keeps every scene as its own slice. The slices keep that priority
order (`mostRecent`: index 0 is the newest), and each has the metadata dict the script sees in
`scenes.orbits[i]` / `scenes.tiles[i]`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from posixpath import dirname
from typing import Any

import numpy as np

from eobatch.script.inputs import SourceData
from eobatch.sources.mosaic import PixelGrid, read_mosaic
from eobatch.sources.scenes import Scene
from eobatch.sources.units import Conversion


@dataclass(frozen=True)
class Slice:
    """The scenes merged into one sample (one for TILE, a day's for ORBIT) and its metadata."""

    scenes: tuple[Scene, ...]
    metadata: dict


def tile_metadata(scene: Scene) -> dict:
    """`scenes.tiles[i]` of a scene (and `scenes.orbits[i].tiles[j]`)."""
    first = next(iter(scene.bands.values()), None)
    metadata: dict[str, Any] = {
        "date": _iso(scene),
        "shId": scene.id,
        "tileOriginalId": scene.id,
        "dataPath": dirname(first.path) if first is not None else "",
    }
    if scene.cloud_cover is not None:
        metadata["cloudCoverage"] = scene.cloud_cover
    return metadata


def slices(scenes: Sequence[Scene], mosaicking: str) -> list[Slice]:
    """The samples of a feature's scenes (already in priority order) for ORBIT or TILE."""
    if mosaicking == "TILE":
        return [Slice((s,), tile_metadata(s)) for s in scenes]
    if mosaicking != "ORBIT":
        raise ValueError(f"mosaicking {mosaicking!r} has no per-scene samples")
    days: dict[str, list[Scene]] = {}
    for scene in scenes:  # dicts keep the order of first appearance: priority order
        days.setdefault(utc_day(scene), []).append(scene)
    return [
        Slice(
            tuple(group),
            {
                "dateFrom": f"{day}T00:00:00Z",
                "dateTo": f"{day}T23:59:59Z",
                "tiles": [tile_metadata(s) for s in group],
            },
        )
        for day, group in days.items()
    ]


def read_slices(
    chosen: Sequence[Slice],
    bands: Sequence[str],
    grid: PixelGrid,
    upsampling: str = "NEAREST",
    downsampling: str = "NEAREST",
    scales: Mapping[str, Conversion] | None = None,
    fill: float | None = None,
) -> SourceData:
    """Read every slice onto the feature grid: bands (and dataMask) as (S, H, W) stacks.

    A slice without data at a pixel still has its entry there, with dataMask 0 (and NaN bands).
    """
    wanted = [b for b in bands if b != "dataMask"]
    shape = (len(chosen), grid.height, grid.width)
    stacks: dict[str, np.ndarray] = {
        name: np.full(shape, np.nan, dtype=np.float32) for name in wanted
    }
    mask = np.zeros(shape, dtype=np.uint8)
    for n, item in enumerate(chosen):
        values, valid = read_mosaic(
            item.scenes, wanted, grid, upsampling, downsampling, scales=scales, fill=fill
        )
        for name in wanted:
            stacks[name][n] = values[name]
        mask[n] = valid
    if "dataMask" in bands:
        stacks["dataMask"] = mask
    return SourceData(stacks, [item.metadata for item in chosen])


def utc_day(scene: Scene) -> str:
    """The UTC day of a scene's acquisition: what one orbit is for ORBIT mosaicking."""
    return scene.sensing_time.astimezone(UTC).strftime("%Y-%m-%d")


def _iso(scene: Scene) -> str:
    return scene.sensing_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
