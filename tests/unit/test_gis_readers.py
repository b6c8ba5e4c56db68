"""Outputs as GIS tools see them: GDAL (`gdalinfo`, `ogrinfo`, rasterio), xarray and rioxarray.

GeoTIFFs carry a no-data tag for every sample type, band descriptions and overviews; Zarr groups
are georeferenced the CF way (and GDAL's way); the manifest opens without GeoPackage warnings.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine

from eobatch.planning import ManifestRow, feature_manifest_bytes
from eobatch.script import ScriptOutput
from eobatch.sinks import CogOptions, band_names, encode_output, output_nodata
from eobatch.sinks.zarr import ZarrArraySpec, ZarrLayout, feature_chunks, group_objects

TRANSFORM = Affine(20.0, 0.0, 4_000_000.0, 0.0, -20.0, 3_000_000.0)
SAMPLE_TYPES = {
    "AUTO": "uint8",
    "UINT8": "uint8",
    "INT8": "int8",
    "UINT16": "uint16",
    "INT16": "int16",
    "FLOAT32": "float32",
}

# CI installs gdal-bin (.ci/run) and must run these checks; elsewhere they are optional.
needs_gdal_cli = pytest.mark.skipif(
    shutil.which("gdalinfo") is None and not os.environ.get("CI"),
    reason="GDAL's command-line tools are not installed (apt-get install gdal-bin)",
)


def _tool(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=True)


def _raster(sample_type: str, bands: int, size: int = 600) -> np.ndarray:
    rows, cols = np.mgrid[0:size, 0:size]
    values = (rows + 3 * cols) % 120 + 1  # fits every sample type
    return np.stack([values + b for b in range(bands)]).astype(SAMPLE_TYPES[sample_type])


# -- GeoTIFF ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sample_type", list(SAMPLE_TYPES))
def test_every_sample_type_gets_a_nodata_tag(tmp_path: Path, sample_type: str) -> None:
    output = ScriptOutput("index", 1, sample_type)
    path = tmp_path / "out.tiff"
    path.write_bytes(encode_output(_raster(sample_type, 1), output, 3035, TRANSFORM))
    with rasterio.open(path) as tiff:
        if sample_type == "FLOAT32":
            assert tiff.nodata is not None and np.isnan(tiff.nodata)
        else:
            assert tiff.nodata == 0
        assert tiff.descriptions == ("index",)


def test_the_script_nodata_value_wins_and_bands_are_named_like_byoc_bands(tmp_path: Path) -> None:
    output = ScriptOutput("rgb", 3, "UINT16", nodata_value=65535)
    path = tmp_path / "rgb.tiff"
    path.write_bytes(encode_output(_raster("UINT16", 3), output, 3035, TRANSFORM))
    with rasterio.open(path) as tiff:
        assert tiff.nodata == 65535
        assert tiff.descriptions == ("rgb", "rgb2", "rgb3")
    assert band_names("rgb", 3) == ["rgb", "rgb2", "rgb3"]
    assert output_nodata(ScriptOutput("f", 1, "FLOAT32", nodata_value=-9999)) == -9999


def test_plain_geotiff_has_overviews_nearest_for_integers_average_for_floats(
    tmp_path: Path,
) -> None:
    classes = _raster("UINT8", 1, 1000)
    floats = (classes / 7).astype("float32")
    floats[0, :10, :10] = np.nan  # no-data must not spread into the overview
    for name, data, sample_type in (("c", classes, "UINT8"), ("f", floats, "FLOAT32")):
        path = tmp_path / f"{name}.tiff"
        path.write_bytes(encode_output(data, ScriptOutput(name, 1, sample_type), 3035, TRANSFORM))
        with rasterio.open(path) as tiff:
            assert tiff.overviews(1) == [2, 4]  # down to 256 px or less
            overview = tiff.read(1, out_shape=(500, 500))
        if sample_type == "UINT8":
            assert set(np.unique(overview)) <= set(np.unique(classes))  # no invented classes
        else:
            block = data[0, 10:12, 10:12]
            assert overview[5, 5] == pytest.approx(float(block.mean()), rel=1e-6)
            assert np.isnan(overview[:5, :5]).all()


def test_cog_outputs_keep_nodata_and_descriptions(tmp_path: Path) -> None:
    output = ScriptOutput("ndvi", 1, "FLOAT32")
    data = (_raster("UINT16", 1, 1000) / 100).astype("float32")
    path = tmp_path / "cog.tiff"
    path.write_bytes(encode_output(data, output, 3035, TRANSFORM, cog=CogOptions()))
    with rasterio.open(path) as tiff:
        assert np.isnan(tiff.nodata) and tiff.descriptions == ("ndvi",)
        assert tiff.overviews(1) == [2, 4]  # the COG rule: down to the 256 px block size


@needs_gdal_cli
def test_gdalinfo_shows_nodata_band_descriptions_and_overviews(tmp_path: Path) -> None:
    ndvi = tmp_path / "ndvi.tiff"
    data = (_raster("UINT16", 1, 1000) / 100).astype("float32")
    ndvi.write_bytes(encode_output(data, ScriptOutput("ndvi", 1, "FLOAT32"), 3035, TRANSFORM))
    bands = tmp_path / "bands.tiff"
    bands.write_bytes(
        encode_output(_raster("UINT16", 2), ScriptOutput("bands", 2, "UINT16"), 3035, TRANSFORM)
    )
    report = _tool("gdalinfo", str(ndvi)).stdout
    assert "Description = ndvi" in report and "NoData Value=nan" in report
    assert "Overviews: 500x500, 250x250" in report
    report = _tool("gdalinfo", str(bands)).stdout
    assert report.count("NoData Value=0") == 2
    assert "Description = bands\n" in report and "Description = bands2\n" in report


# -- Zarr --------------------------------------------------------------------------------------


def _zarr_group(folder: Path, fmt: int, origin: str) -> tuple[np.ndarray, ZarrLayout]:
    """A group of one FLOAT32 array over 2 x 1 km at 20 m in LAEA, written to `folder`."""
    spec = ZarrArraySpec("ndvi", "<f4", (1, 50, 50), float("nan"), None)
    layout = ZarrLayout(
        fmt,
        3035,
        (4_000_000.0, 3_000_000.0, 4_002_000.0, 3_001_000.0),
        20.0,
        origin,
        datetime(2024, 1, 1, tzinfo=UTC),
        (spec,),
    )
    data = np.arange(50 * 100, dtype="float32").reshape(50, 100)
    objects = group_objects(layout, "req") | feature_chunks(layout, "ndvi", data, 0, 0)
    for key, value in objects.items():
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        (folder / key).write_bytes(value)
    return data, layout


@pytest.mark.parametrize("fmt", [2, 3])
@pytest.mark.parametrize("origin", ["topLeft", "bottomLeft"])
def test_zarr_is_georeferenced_for_xarray_and_rioxarray(
    tmp_path: Path, fmt: int, origin: str
) -> None:
    import rioxarray  # noqa: F401  (registers the .rio accessor)
    import xarray as xr

    data, _ = _zarr_group(tmp_path, fmt, origin)
    ds = xr.open_zarr(tmp_path)
    assert "spatial_ref" in ds.coords  # a coordinate, not a data variable
    array = ds["ndvi"]
    assert array.attrs["grid_mapping"] == "spatial_ref"
    assert array.rio.crs.to_epsg() == 3035
    if origin == "topLeft":
        assert array.rio.transform() == Affine(20.0, 0.0, 4_000_000.0, 0.0, -20.0, 3_001_000.0)
        assert float(array.isel(time=0, y=0, x=1)) == data[0, 1]
    else:  # row 0 is the southernmost row
        assert array.rio.transform() == Affine(20.0, 0.0, 4_000_000.0, 0.0, 20.0, 3_000_000.0)
        assert float(array.isel(time=0, y=0, x=1)) == data[-1, 1]
    grid_mapping = ds["spatial_ref"].attrs
    assert grid_mapping["grid_mapping_name"] == "lambert_azimuthal_equal_area"
    assert "LAEA Europe" in grid_mapping["crs_wkt"]
    assert array.rio.bounds() == (4_000_000.0, 3_000_000.0, 4_002_000.0, 3_001_000.0)


def test_zarr_opens_georeferenced_through_gdal(tmp_path: Path) -> None:
    import rioxarray

    data, _ = _zarr_group(tmp_path, 2, "topLeft")
    with rasterio.open(f'ZARR:"{tmp_path}":/ndvi:0') as dataset:  # time index 0
        assert dataset.driver == "Zarr"
        assert dataset.crs.to_epsg() == 3035
        assert dataset.transform == Affine(20.0, 0.0, 4_000_000.0, 0.0, -20.0, 3_001_000.0)
        np.testing.assert_array_equal(dataset.read(1), data)
    opened = rioxarray.open_rasterio(f'ZARR:"{tmp_path}":/ndvi:0')
    assert opened.rio.crs.to_epsg() == 3035
    assert opened.rio.transform() == Affine(20.0, 0.0, 4_000_000.0, 0.0, -20.0, 3_001_000.0)


@needs_gdal_cli
def test_zarr_opens_georeferenced_with_the_gdal_command_line(tmp_path: Path) -> None:
    """GDAL before 3.9 reads no CF grid mapping: the `_CRS` attribute serves it."""
    _zarr_group(tmp_path, 2, "topLeft")
    report = _tool("gdalinfo", f'ZARR:"{tmp_path}":/ndvi:0').stdout
    assert 'PROJCRS["ETRS89-extended / LAEA Europe"' in report
    assert "Origin = (4000000.000000000000000,3001000.000000000000000)" in report
    assert "Pixel Size = (20.000000000000000,-20.000000000000000)" in report


# -- feature manifest ---------------------------------------------------------------------------


@needs_gdal_cli
def test_manifest_opens_without_geopackage_version_warnings(tmp_path: Path) -> None:
    rows = [
        ManifestRow(
            "default",
            f"t{i}",
            f"s3://b/r/t{i}/default.tiff",
            100,
            100,
            epsg,
            shapely.box(i, 0, i + 1, 1),
        )
        for i, epsg in enumerate((3035, 32633))
    ]
    path = tmp_path / "featureManifest-r.gpkg"
    path.write_bytes(feature_manifest_bytes(rows))
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (10300,)  # GeoPackage 1.3
    result = _tool("ogrinfo", "-ro", "-so", "-al", str(path))
    assert "Warning" not in result.stderr and "partially supported" not in result.stderr
    assert result.stdout.count("Feature Count: 1") == 2
