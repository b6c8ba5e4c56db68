"""The results catalogue of whole tasks: a STAC collection that pystac reads and validates, one
item per delivered feature pointing at the real files, and VRT mosaics that GDAL opens over every
delivered feature with the same pixels."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pytest
import rasterio
from pyproj import Transformer
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import RasterExtension
from pystac.validation import JsonSchemaSTACValidator
from rasterio.windows import from_bounds

from tests.integration.harness import Service
from tests.integration.test_outputs_raster import TWO_OUTPUTS, delivery
from tests.integration.test_outputs_zarr import IDS, THREE_OUTPUTS, zarr_output


class CoreSchemaValidator(JsonSchemaSTACValidator):
    """pystac's validator against the core STAC schemas it ships (no network needed).

    The projection and raster extension schemas are published only online and tests stay on
    loopback, so those fields are checked through pystac's extension classes instead.
    """

    def validate_extension(self, *args: Any, **kwargs: Any) -> None:
        return None


def validated(path: Path) -> pystac.Collection:
    """The collection at `path`, every object of it validated against the core schemas."""
    pystac.validation.set_validator(CoreSchemaValidator())
    collection = pystac.Collection.from_file(str(path))
    collection.validate()
    for item in collection.get_items():
        assert item.validate()  # the list of schemas it was checked against
    pystac.validation.RegisteredValidator.set_validator(JsonSchemaSTACValidator())
    return collection


def test_raster_task_has_a_valid_catalogue_and_mosaics(service: Service) -> None:
    body = service.request(TWO_OUTPUTS, ["bands", "ndvi"], delivery("s3://results/cat"))
    body["description"] = "two outputs over the demo data"
    task = service.run(body)
    assert task["status"] == "DONE", task
    root = service.buckets / "results" / "cat"
    folder = root / task["id"]
    collection = validated(folder / "collection.json")
    assert collection.id == task["id"]
    assert collection.description == "two outputs over the demo data"
    interval = collection.extent.temporal.intervals[0]
    assert [t.isoformat() for t in interval] == [
        "2024-01-01T00:00:00+00:00",
        "2024-12-31T23:59:59+00:00",
    ]

    delivered = [f for f in service.features(task["id"]) if f.delivered]
    items = {item.id: item for item in collection.get_items()}
    assert sorted(items) == sorted(f.name for f in delivered) and len(items) == 4
    lon_lat = np.array([item.bbox for item in items.values()])
    assert collection.extent.spatial.bboxes[0] == pytest.approx(
        [*lon_lat[:, :2].min(axis=0), *lon_lat[:, 2:].max(axis=0)]
    )
    for item in items.values():
        projection = ProjectionExtension.ext(item)
        assert projection.code == "EPSG:3035" and projection.shape == [1000, 1000]
        assert item.properties["start_datetime"].startswith("2024-01-01")
        assert (folder / item.id / f"{item.id}.json").is_file()  # next to its outputs
        for name, bands, dtype, nodata in (
            ("bands", 2, "uint16", 0),
            ("ndvi", 1, "float32", "nan"),
        ):
            asset = item.assets[name]
            path = Path(asset.get_absolute_href())
            assert path == folder / item.id / f"{name}.tiff" and path.is_file()
            assert asset.media_type == "image/tiff; application=geotiff"
            raster = RasterExtension.ext(asset).bands
            assert [b.data_type for b in raster] == [dtype] * bands
            assert [b.nodata for b in raster] == [nodata] * bands
            with rasterio.open(path) as tiff:
                assert list(tiff.transform)[:6] == projection.transform
                assert list(tiff.bounds) == projection.bbox
    assets = collection.assets
    assert Path(assets["request"].get_absolute_href()) == root / f"request-{task['id']}.json"
    assert Path(assets["featureManifest"].get_absolute_href()).is_file()

    for name in ("bands", "ndvi"):
        vrt = Path(assets[f"mosaic-{name}-3035"].get_absolute_href())
        assert vrt == folder / f"mosaic-{name}-3035.vrt"
        check_mosaic(vrt, [folder / f.name / f"{name}.tiff" for f in delivered])


def check_mosaic(vrt: Path, sources: list[Path]) -> None:
    """The VRT covers every source exactly and reads the same pixels as each of them."""
    with rasterio.open(vrt) as mosaic:
        bounds = []
        for source in sources:
            with rasterio.open(source) as tiff:
                expected, box = tiff.read(), tiff.bounds
                assert mosaic.descriptions == tiff.descriptions
                assert mosaic.dtypes == tiff.dtypes
                assert mosaic.nodata == tiff.nodata or np.isnan(mosaic.nodata)
            bounds.append(box)
            window = from_bounds(*box, mosaic.transform)
            np.testing.assert_array_equal(mosaic.read(window=window), expected)
        assert mosaic.crs.to_epsg() == 3035
        b = np.array(bounds)
        assert tuple(mosaic.bounds) == (b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max())
        assert mosaic.overviews(1) == [2, 4]  # the sources' overviews, seen through the VRT


@pytest.mark.skipif(
    shutil.which("gdalinfo") is None and not os.environ.get("CI"),
    reason="GDAL's command-line tools are not installed (apt-get install gdal-bin)",
)
def test_cog_task_mosaic_opens_with_gdalinfo_through_a_path_template(service: Service) -> None:
    url = "s3://results/tpl/<tileName>/<outputId>-<requestId>.<format>"
    body = service.request(TWO_OUTPUTS, ["bands", "ndvi"], delivery(url, cogOutput=True))
    task = service.run(body)
    assert task["status"] == "DONE", task
    root = service.buckets / "results" / "tpl"
    collection = validated(root / task["id"] / "collection.json")
    item = next(iter(collection.get_items()))
    assert item.assets["ndvi"].media_type.endswith("profile=cloud-optimized")
    assert Path(item.assets["ndvi"].get_absolute_href()) == root / item.id / (
        f"ndvi-{task['id']}.tiff"
    )
    vrt = root / task["id"] / "mosaic-ndvi-3035.vrt"
    report = subprocess.run(
        ["gdalinfo", "-json", str(vrt)], capture_output=True, text=True, check=True
    ).stdout
    info = json.loads(report)
    assert len([f for f in info["files"] if f.endswith(".tiff")]) == 4
    band = info["bands"][0]
    assert band["description"] == "ndvi" and band["noDataValue"] == "NaN"
    assert info["size"] == [2000, 2000]  # four 1000-px features, 2 x 2
    # GDAL places the mosaic where pyproj does (x is easting: no swapped axes)
    corner = info["cornerCoordinates"]["upperLeft"]
    expected = Transformer.from_crs(3035, 4326, always_xy=True).transform(*corner)
    assert info["wgs84Extent"]["coordinates"][0][0] == pytest.approx(expected, abs=1e-6)
    assert band["overviews"] == [{"size": [1000, 1000]}, {"size": [500, 500]}]  # COGs' 2, 4


def test_zarr_task_catalogue_points_at_the_group(service: Service) -> None:
    task = service.run(service.request(THREE_OUTPUTS, IDS, zarr_output(), fmt="zarr/array"))
    assert task["status"] == "DONE", task
    group = service.buckets / "results" / "zarr" / task["id"]
    collection = validated(group / "collection.json")
    assert list(collection.get_items()) == []
    asset = collection.assets["zarr"]
    assert Path(asset.get_absolute_href()) == group
    assert ProjectionExtension.ext(asset).code == "EPSG:3035"
    assert not list(group.glob("*.vrt"))
    attrs = json.loads((group / ".zattrs").read_text())
    to_wgs84 = Transformer.from_crs(3035, 4326, always_xy=True)
    west, south, east, north = to_wgs84.transform_bounds(*attrs["extent"])
    assert collection.extent.spatial.bboxes[0] == pytest.approx(
        [west, south, east, north], abs=0.01
    )
