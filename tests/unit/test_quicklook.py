"""The quicklook renderer on small GeoTIFFs with known values: stretch, transparency, overviews."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile
from rasterio.transform import from_origin

from eobatch.web.quicklook import render

LAEA = "EPSG:3035"


def _write(
    path: Path, data: np.ndarray, crs: str = LAEA, nodata: float | None = None, res: float = 20.0
) -> str:
    bands, height, width = data.shape
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": bands,
        "dtype": data.dtype.name,
        "crs": crs,
        "nodata": nodata,
        "transform": from_origin(4_500_000, 2_800_000, res, res),
    }
    if crs == "EPSG:3857":
        profile["transform"] = from_origin(1_500_000, 6_000_000, res, res)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return str(path)


def _decode(png: bytes) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile(png) as memory, memory.open() as image:
            return image.read()


def test_grey_stretch_between_the_2nd_and_98th_percentile_nan_transparent(tmp_path: Path) -> None:
    values = np.arange(100 * 100, dtype="float32").reshape(1, 100, 100)
    values[0, :10] = np.nan
    look = render(_write(tmp_path / "a.tif", values, crs="EPSG:3857"), {}, 100)
    image = _decode(look.png)
    assert image.shape == (4, 100, 100)
    valid = values[0][10:]
    ((low, high),) = look.stretch
    assert (low, high) == pytest.approx(tuple(np.percentile(valid, [2, 98])))
    assert (image[3, :10] == 0).all() and (image[3, 10:] == 255).all()
    assert (image[:3, :10] == 0).all()
    assert (image[0] == image[1]).all() and (image[1] == image[2]).all()
    expected = np.clip(np.rint((values[0][10:] - low) / (high - low) * 255), 0, 255)
    assert (image[0, 10:] == expected).all()
    west, south, east, north = look.bounds
    assert west == pytest.approx(1_500_000 / 6378137 * 180 / np.pi)
    assert east - west == pytest.approx(2_000 / 6378137 * 180 / np.pi)
    assert south < north


def test_three_bands_as_rgb_with_nodata_transparent(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    values = rng.integers(1, 5000, size=(4, 64, 64)).astype("uint16")
    values[:, 30:34, :] = 0  # a no-data stripe in every band
    values[1, 0, 0] = 0  # and one pixel of one band
    look = render(_write(tmp_path / "b.tif", values, crs="EPSG:3857", nodata=0), {}, 64)
    image = _decode(look.png)
    assert len(look.stretch) == 3  # bands 1-3, the 4th is not drawn
    assert (image[3, 30:34] == 0).all() and image[3, 0, 0] == 0
    assert image[3].sum() == 255 * (64 * 64 - 4 * 64 - 1)
    for band in range(3):
        inside = values[band][image[3] > 0]
        low, high = look.stretch[band]
        assert (low, high) == pytest.approx(tuple(np.percentile(inside, [2, 98])))
        assert image[band][image[3] > 0][inside >= high].min() == 255


def test_reprojected_integer_raster_without_nodata(tmp_path: Path) -> None:
    """A LAEA raster in Web Mercator: the corners outside it are transparent (alpha band)."""
    values = np.full((1, 200, 200), 7, dtype="uint8")
    look = render(_write(tmp_path / "c.tif", values), {}, 128)
    image = _decode(look.png)
    assert max(image.shape[1:]) == 128
    opaque = image[3] == 255
    assert 0.8 < opaque.mean() < 1.0  # a rotated square inside its bounding box
    assert (image[0][opaque] == 128).all()  # a constant band is mid-grey
    assert look.stretch == ((7.0, 7.0),)


def test_reads_the_overview_nearest_the_quicklook_size(tmp_path: Path) -> None:
    """Overviews are built from 1..N, then full resolution is overwritten with 5000: a quicklook
    at an eighth of the size shows the overview's values, a full-size one the new ones."""
    path = tmp_path / "d.tif"
    ramp = np.linspace(1, 1000, 1024 * 1024, dtype="float32").reshape(1, 1024, 1024)
    _write(path, ramp, crs="EPSG:3857")
    with rasterio.open(path, "r+") as dst:
        dst.build_overviews([2, 4, 8])
        dst.write(np.full((1, 1024, 1024), 5000, dtype="float32"))
    small = render(str(path), {}, 128)
    assert small.stretch[0][1] < 1000
    full = render(str(path), {}, 1024)
    assert full.stretch == ((5000.0, 5000.0),)
