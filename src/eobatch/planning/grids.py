"""The tiling grids the API lists, and the checks on a tiling-grid input (tiling-grids.md §1).

Grids 3, 6 and 7 are pure arithmetic: cells of a fixed size in one CRS, aligned to a fixed origin.
The UTM grids 0–2 are cut from the Sentinel-2 tiles, each tile in its own UTM zone (`utm.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from eobatch.errors import InvalidRequest, Violation

MAX_BUFFER_PX = 32767  # bufferX/bufferY are int16 in the API


@dataclass(frozen=True)
class TilingGrid:
    """One tiling grid: `tile_width` and resolutions in `unit`s of the grid CRS."""

    id: int
    name: str
    tile_width: float
    resolutions: tuple[float, ...]
    unit: str  # "m" or "deg"
    epsg: int | None  # None: each tile in its own UTM zone
    chunk: tuple[int, int]

    def descriptor(self) -> dict:
        """The `BatchV2TilingGridDescriptor` JSON, as the live service returns it."""
        return {
            "id": self.id,
            "name": self.name,
            "properties": {
                "tileWidth": self.tile_width,
                "tileHeight": self.tile_width,
                "resolutions": list(self.resolutions),
                "unit": "METRE" if self.unit == "m" else "DEGREE",
                "chunkWidth": self.chunk[0],
                "chunkHeight": self.chunk[1],
                "singleCrs": self.epsg is not None,
            },
        }

    def allowed(self, resolution: float) -> float | None:
        """The grid's own value for `resolution` (float noise tolerated), or None."""
        for value in self.resolutions:
            if math.isclose(resolution, value, rel_tol=1e-9, abs_tol=0.0):
                return value
        return None


GRIDS: dict[int, TilingGrid] = {
    g.id: g
    for g in (
        TilingGrid(0, "20km grid", 20040.0, (10.0, 20.0, 60.0), "m", None, (334, 167)),
        TilingGrid(1, "10km grid", 10000.0, (1.0, 10.0, 20.0, 1.4999), "m", None, (500, 500)),
        TilingGrid(2, "100km grid", 100080.0, (360.0, 60.0, 120.0, 240.0), "m", None, (278, 278)),
        TilingGrid(
            3,
            "WGS84 1 degree grid",
            1.0,
            (5.0e-4, 0.001, 0.002, 0.005, 0.008, 1.0e-4, 2.0e-4, 8.0e-4),
            "deg",
            4326,
            (500, 500),
        ),
        TilingGrid(6, "LAEA 100km grid", 100000.0, (40.0, 50.0, 100.0), "m", 3035, (0, 0)),
        TilingGrid(7, "LAEA 20km grid", 20000.0, (10.0, 20.0), "m", 3035, (0, 0)),
    )
}


def validate_tiling_input(
    grid_id: int, resolution: float, buffer_x: int, buffer_y: int
) -> TilingGrid:
    """The grid of a tiling-grid input, or InvalidRequest naming every bad field."""
    found: list[Violation] = []
    grid = GRIDS.get(grid_id)
    if grid is None:
        found.append(
            Violation(
                "input->id",
                f"unknown tiling grid {grid_id}; available: {', '.join(map(str, GRIDS))}",
            )
        )
    elif grid.allowed(resolution) is None:
        allowed = ", ".join(f"{r:g}" for r in sorted(grid.resolutions))
        found.append(
            Violation(
                "input->resolution",
                f"{resolution:g} is not a resolution of grid "
                f"{grid_id} ({grid.name}); allowed: {allowed}",
            )
        )
    for name, value in (("bufferX", buffer_x), ("bufferY", buffer_y)):
        if not 0 <= value <= MAX_BUFFER_PX:
            found.append(
                Violation(
                    f"input->{name}", f"must be a whole number of pixels in 0..{MAX_BUFFER_PX}"
                )
            )
    if found:
        raise InvalidRequest(f"Invalid tiling grid input: {found[0].violation}", found)
    assert grid is not None
    return grid
