"""Sinks without I/O: delivery templates, GeoTIFF encoding, the execution database."""

from __future__ import annotations

import pickle
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.io import MemoryFile

from eobatch.errors import InvalidRequest
from eobatch.sinks import DeliveryTemplate, ExecutionRow, encode_geotiff, execution_db_bytes

P = "output->delivery->s3->url"


# -- delivery templates ---------------------------------------------------------------------


@pytest.mark.parametrize("url", ["s3://bucket/folder", "s3://bucket/folder/"])
def test_plain_prefix_is_the_default_layout(url: str) -> None:
    template = DeliveryTemplate.parse(url, ["default", "ndvi"], P)
    assert template.root == "s3://bucket/folder"
    assert template.key("req", "30TXM_0_1", 7, "ndvi", "tiff") == "req/30TXM_0_1/ndvi.tiff"


def test_bucket_only_prefix() -> None:
    template = DeliveryTemplate.parse("s3://bucket", ["default"], P)
    assert template.root == "s3://bucket"
    assert template.key("r", "t", 1, "default", "tiff") == "r/t/default.tiff"


def test_template_with_placeholders() -> None:
    url = "s3://bucket/a/b/<requestId>/fixed/<tileName>_<tileId>-<outputId>.<format>"
    template = DeliveryTemplate.parse(url, ["x", "y"], P)
    assert template.root == "s3://bucket/a/b"
    assert template.key("r1", "T9", 42, "y", "tiff") == "r1/fixed/T9_42-y.tiff"


def test_placeholder_right_after_the_bucket() -> None:
    template = DeliveryTemplate.parse("s3://bucket/<tileName>.tiff", ["only"], P)
    assert template.root == "s3://bucket"
    assert template.key("r", "T1", 1, "only", "tiff") == "T1.tiff"


def test_single_output_needs_no_output_id() -> None:
    template = DeliveryTemplate.parse("s3://b/out/<requestId>/<tileId>.tif", ["default"], P)
    assert template.key("r", "name", 5, "default", "tiff") == "r/5.tif"


def test_template_pickles() -> None:
    template = DeliveryTemplate.parse("s3://b/<tileName>/<outputId>.<format>", ["a", "b"], P)
    assert pickle.loads(pickle.dumps(template)) == template


@pytest.mark.parametrize(
    ("url", "outputs", "message"),
    [
        ("s3://b/<featureId>/<tileName>.tiff", ["a"], "unknown placeholder"),
        ("s3://b/<tileName>.tiff", ["a", "b"], "<outputId>"),
        ("s3://b/<requestId>/<outputId>.tiff", ["a"], "<tileName> or <tileId>"),
        ("s3://<requestId>/<tileName>.tiff", ["a"], "bucket name"),
        ("s3://b/<tileName>/", ["a"], "file name"),
        ("s3://b/<tileName>//<outputId>.tiff", ["a"], "empty path segment"),
        ("s3://b/<tileName/<outputId>.tiff", ["a"], "unbalanced"),
        ("s3://b/<tileName>>.tiff", ["a"], "unbalanced"),
        ("bucket/<tileName>.tiff", ["a"], "not a URL"),
        ("s3:///<tileName>.tiff", ["a"], "no bucket"),
    ],
)
def test_invalid_templates(url: str, outputs: list[str], message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        DeliveryTemplate.parse(url, outputs, P)
    violation = caught.value.errors[0]
    assert violation.parameter == P
    assert message in violation.violation


# -- GeoTIFF ----------------------------------------------------------------------------------


def _open(data: bytes):  # type: ignore[no-untyped-def]
    memory = MemoryFile(data)
    return memory, memory.open()


@pytest.mark.parametrize(
    ("dtype", "nodata", "predictor"),
    [("uint8", 255, 2), ("uint16", 0, 2), ("int16", -1, 2), ("float32", np.nan, 3),
     ("float32", None, 3)],
)  # fmt: skip
def test_geotiff_round_trip(dtype: str, nodata: float | None, predictor: int) -> None:
    rng = np.random.default_rng(1)
    data = rng.integers(0, 200, size=(3, 70, 90)).astype(dtype)
    transform = Affine(10.0, 0.0, 600000.0, 0.0, -10.0, 5200000.0)
    memory, src = _open(encode_geotiff(data, 32633, transform, nodata))
    with memory, src:
        np.testing.assert_array_equal(src.read(), data)
        assert src.crs.to_epsg() == 32633
        assert src.transform == transform
        assert src.dtypes == (dtype,) * 3
        if nodata is None:
            assert src.nodata is None
        elif np.isnan(nodata):
            assert np.isnan(src.nodata)
        else:
            assert src.nodata == nodata
        assert src.profile["tiled"] is True
        assert src.block_shapes[0] == (256, 256)
        assert src.compression == rasterio.enums.Compression.deflate
        assert src.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == str(predictor)


def test_geotiff_of_a_large_single_band_in_geographic_crs() -> None:
    data = np.linspace(-1, 1, 600 * 520, dtype=np.float64).reshape(600, 520)
    transform = Affine(0.0001, 0.0, 14.2, 0.0, -0.0001, 48.3)
    memory, src = _open(encode_geotiff(data, 4326, transform, None))
    with memory, src:
        assert src.count == 1
        assert src.block_shapes[0] == (512, 512)
        assert src.crs.to_epsg() == 4326
        assert src.transform == transform
        np.testing.assert_array_equal(src.read(1), data)


def test_geotiff_refuses_unrepresentable_nodata() -> None:
    with pytest.raises(ValueError, match="not representable"):
        encode_geotiff(np.zeros((1, 4, 4), "uint8"), 4326, Affine.identity(), -1)


# -- execution database -------------------------------------------------------------------------


def test_execution_database(tmp_path: Path) -> None:
    rows = [
        (0, "30TXM_0_0", "DONE", None, True, 1.271566),
        (1, "30TXM_0_1", "DONE", "No data", False, 1.271566),
        (2, "30TXM_0_2", "FATAL", "Evalscript error: boom", False, 0.0),
        (3, "30TXM_0_3", "PENDING", None, False, 0.0),
    ]
    path = tmp_path / "execution.sqlite"
    path.write_bytes(execution_db_bytes(ExecutionRow(*row) for row in rows))
    connection = sqlite3.connect(path)
    try:
        columns = connection.execute("PRAGMA table_info(features)").fetchall()
        assert [(c[1], c[2]) for c in columns] == [
            ("id", "INTEGER"),
            ("name", "TEXT"),
            ("status", "TEXT"),
            ("error", "TEXT"),
            ("delivered", "BOOLEAN"),
            ("costPU", "REAL"),  # our extra column, after the documented ones
        ]
        stored = connection.execute("SELECT * FROM features ORDER BY id").fetchall()
        assert stored == [(i, n, s, e, int(d), c) for i, n, s, e, d, c in rows]
    finally:
        connection.close()


def test_empty_execution_database(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite"
    path.write_bytes(execution_db_bytes([]))
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("SELECT count(*) FROM features").fetchone() == (0,)
    finally:
        connection.close()
