"""The feature manifest: valid per GDAL (pyogrio and `ogrinfo`), one table per CRS, right rows."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pyogrio
import pytest
import shapely

from eobatch.planning import ManifestRow, feature_manifest_bytes, parse_aoi, plan_tiling_grid

HAMBURG = [9.8, 53.45, 10.3, 53.75]


def manifest(tmp_path: Path) -> tuple[Path, dict[int, list[ManifestRow]]]:
    aoi = parse_aoi(HAMBURG, None, None)
    by_crs: dict[int, list[ManifestRow]] = {}
    for grid, res in ((7, 20.0), (3, 0.001)):
        for f in plan_tiling_grid(grid, res, 0, 0, aoi):
            for out in ("ndvi", "rgb"):
                row = ManifestRow(
                    out,
                    f.name,
                    f"s3://b/run/{f.name}/{out}.tiff",
                    f.width,
                    f.height,
                    f.epsg,
                    f.geometry,
                )
                by_crs.setdefault(f.epsg, []).append(row)
    path = tmp_path / "featureManifest-x.gpkg"
    path.write_bytes(feature_manifest_bytes([r for rows in by_crs.values() for r in rows]))
    return path, by_crs


def test_manifest_has_one_table_per_crs_with_every_row(tmp_path: Path) -> None:
    path, by_crs = manifest(tmp_path)
    assert sorted(pyogrio.list_layers(path)[:, 0]) == ["feature_3035", "feature_4326"]
    for epsg, rows in by_crs.items():
        meta, fids, geometry, fields = pyogrio.raw.read(
            path, layer=f"feature_{epsg}", return_fids=True
        )
        assert meta["crs"] == f"EPSG:{epsg}"
        assert meta["fields"].tolist() == ["outputId", "identifier", "path", "width", "height"]
        assert fids.tolist() == list(range(1, len(rows) + 1))
        assert fields[0].tolist() == [r.output_id for r in rows]
        assert fields[1].tolist() == [r.identifier for r in rows]
        assert fields[2].tolist() == [r.path for r in rows]
        assert fields[3].tolist() == [r.width for r in rows]
        assert [shapely.from_wkb(g).bounds for g in geometry] == [r.geometry.bounds for r in rows]
    assert len(by_crs[3035]) == 2 * 9 and len(by_crs[4326]) == 2 * 2
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA application_id").fetchone() == (0x47504B47,)  # 'GPKG'
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        contents = dict(db.execute("SELECT table_name, srs_id FROM gpkg_contents").fetchall())
    assert contents == {"feature_3035": 3035, "feature_4326": 4326}


# CI installs gdal-bin (.ci/run) and must run this check; elsewhere it is optional.
@pytest.mark.skipif(
    shutil.which("ogrinfo") is None and not os.environ.get("CI"),
    reason="GDAL's ogrinfo is not installed (apt-get install gdal-bin)",
)
def test_manifest_opens_with_ogrinfo(tmp_path: Path) -> None:
    path, by_crs = manifest(tmp_path)
    report = subprocess.run(
        ["ogrinfo", "-ro", "-so", "-al", str(path)], capture_output=True, text=True, check=True
    ).stdout
    counts = dict(re.findall(r"Layer name: (\w+).*?Feature Count: (\d+)", report, re.S))
    assert counts == {f"feature_{epsg}": str(len(rows)) for epsg, rows in by_crs.items()}
    assert "ERROR" not in report


def test_empty_manifest_is_still_a_geopackage(tmp_path: Path) -> None:
    path = tmp_path / "empty.gpkg"
    path.write_bytes(feature_manifest_bytes([]))
    assert pyogrio.read_info(path, layer="feature_4326")["features"] == 0
