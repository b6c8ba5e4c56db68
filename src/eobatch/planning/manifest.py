"""The feature manifest: `featureManifest-<requestId>.gpkg`, one `feature_<epsg>` layer per CRS."""

from __future__ import annotations

import tempfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyogrio
import shapely

GEOPACKAGE_VERSION = "1.3"


@dataclass(frozen=True)
class ManifestRow:
    output_id: str
    identifier: str
    path: str  # where the output is delivered, as the user addresses it (s3://…)
    width: int
    height: int
    epsg: int
    geometry: shapely.Geometry  # tile without buffer, in `epsg`


def feature_manifest_bytes(rows: Iterable[ManifestRow]) -> bytes:
    """A GeoPackage with columns fid, outputId, identifier, path, width, height, geometry.

    One layer `feature_<epsg>` per CRS; geometries are the tiles without buffer, in that CRS.
    """
    rows = list(rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "manifest.gpkg"
        ManifestWriter(path, {row.epsg for row in rows}).append(rows)
        return path.read_bytes()


class ManifestWriter:
    """The feature manifest written into a GeoPackage file a chunk of rows at a time.

    Every layer is created (empty) up front, in EPSG order, so the file is the one a single
    write of all rows makes; `append` adds rows to their layers in the order given.
    """

    def __init__(self, path: Path, epsg_codes: Iterable[int]) -> None:
        self.path = path
        for epsg in sorted(epsg_codes) or [4326]:  # no rows: still a GeoPackage, one empty layer
            self._write(epsg, [])

    def append(self, rows: Sequence[ManifestRow]) -> None:
        by_crs: dict[int, list[ManifestRow]] = defaultdict(list)
        for row in rows:
            by_crs[row.epsg].append(row)
        for epsg, layer_rows in by_crs.items():
            self._write(epsg, layer_rows)

    def _write(self, epsg: int, rows: list[ManifestRow]) -> None:
        pyogrio.raw.write(
            self.path,
            geometry=_wkb([r.geometry for r in rows]),
            field_data=[
                np.array([r.output_id for r in rows], dtype=object),
                np.array([r.identifier for r in rows], dtype=object),
                np.array([r.path for r in rows], dtype=object),
                np.array([r.width for r in rows], dtype=np.int64),
                np.array([r.height for r in rows], dtype=np.int64),
            ],
            fields=["outputId", "identifier", "path", "width", "height"],
            layer=f"feature_{epsg}",
            driver="GPKG",
            geometry_type="Unknown",  # a generic GEOMETRY column, as SH's manifest has
            crs=f"EPSG:{epsg}",
            append=self.path.exists(),
            layer_options={"GEOMETRY_NAME": "geometry"},
            # GDAL >= 3.7 writes GeoPackage 1.4, which GDAL 3.6 and older (still in Debian
            # 12 and QGIS LTR builds) open with a "partially supported" warning.
            dataset_options={"VERSION": GEOPACKAGE_VERSION},
        )


def _wkb(geometries: list[shapely.Geometry]) -> np.ndarray:
    """WKB of many geometries in one vectorised call."""
    return np.asarray(shapely.to_wkb(np.array(geometries, dtype=object)), dtype=object)
