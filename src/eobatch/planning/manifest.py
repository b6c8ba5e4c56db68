"""The feature manifest: `featureManifest-<requestId>.gpkg`, one `feature_<epsg>` layer per CRS."""

from __future__ import annotations

import tempfile
from collections import defaultdict
from collections.abc import Iterable
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
    by_crs: dict[int, list[ManifestRow]] = defaultdict(list)
    for row in rows:
        by_crs[row.epsg].append(row)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "manifest.gpkg"
        if not by_crs:  # still a valid GeoPackage, with an empty layer
            by_crs[4326] = []
        for index, (epsg, layer_rows) in enumerate(sorted(by_crs.items())):
            pyogrio.raw.write(
                path,
                geometry=_wkb([r.geometry for r in layer_rows]),
                field_data=[
                    np.array([r.output_id for r in layer_rows], dtype=object),
                    np.array([r.identifier for r in layer_rows], dtype=object),
                    np.array([r.path for r in layer_rows], dtype=object),
                    np.array([r.width for r in layer_rows], dtype=np.int64),
                    np.array([r.height for r in layer_rows], dtype=np.int64),
                ],
                fields=["outputId", "identifier", "path", "width", "height"],
                layer=f"feature_{epsg}",
                driver="GPKG",
                geometry_type="Unknown",  # a generic GEOMETRY column, as SH's manifest has
                crs=f"EPSG:{epsg}",
                append=index > 0,
                layer_options={"GEOMETRY_NAME": "geometry"},
                # GDAL >= 3.7 writes GeoPackage 1.4, which GDAL 3.6 and older (still in Debian
                # 12 and QGIS LTR builds) open with a "partially supported" warning.
                dataset_options={"VERSION": GEOPACKAGE_VERSION},
            )
        return path.read_bytes()


def _wkb(geometries: list[shapely.Geometry]) -> np.ndarray:
    """WKB of many geometries in one vectorised call."""
    return np.asarray(shapely.to_wkb(np.array(geometries, dtype=object)), dtype=object)
