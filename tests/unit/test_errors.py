"""How a failure is told to the user: `errors.describe`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from eobatch.errors import describe


def test_a_read_failure_says_what_gdal_said(tmp_path: Path) -> None:
    path = tmp_path / "whole.tif"
    profile = {"driver": "GTiff", "width": 512, "height": 512, "count": 1, "dtype": "uint16"}
    with rasterio.open(
        path, "w", **profile, tiled=True, compress="deflate", transform=from_origin(0, 0, 1, 1)
    ) as dst:
        dst.write((np.arange(512 * 512) % 999).reshape(512, 512).astype("uint16"), 1)
    cut = tmp_path / "cut.tif"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # an upload cut short
    with pytest.raises(Exception) as caught, rasterio.open(cut) as src:
        src.read(1)
    text = describe(caught.value)
    # rasterio's own message only points at "the previous exception": its cause says what
    assert text.startswith("RasterioIOError: Read failed.")
    assert "caused by CPLE_AppDefinedError: cut.tif, band 1: IReadBlock failed" in text


def test_long_multi_line_errors_become_one_bounded_line() -> None:
    try:
        try:
            raise OSError("connection refused\n" + "  debug: " * 500)
        except OSError as exc:
            raise RuntimeError("upload of B04.tif failed") from exc
    except RuntimeError as exc:
        text = describe(exc, limit=200)
    assert "\n" not in text and len(text) == 200 and text.endswith("…")
    assert text.startswith("RuntimeError: upload of B04.tif failed; caused by OSError: connection")


def test_an_error_with_no_message_is_named() -> None:
    assert describe(KeyError()) == "KeyError"
    assert describe(ValueError("bad")) == "ValueError: bad"
