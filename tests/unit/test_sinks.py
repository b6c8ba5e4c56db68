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
from rio_cogeo.cogeo import cog_validate

from eobatch.errors import InvalidRequest
from eobatch.sinks import (
    CogOptions,
    CompressionProfile,
    DeliveryTemplate,
    ExecutionRow,
    encode_geotiff,
    execution_db_bytes,
)

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
    [
        ("uint8", 255, 2),
        ("uint16", 0, 2),
        ("int16", -1, 2),
        ("float32", np.nan, 3),
        ("float32", None, 3),
    ],
)
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
        assert src.compression == rasterio.enums.Compression.zstd  # the default profile
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


@pytest.mark.parametrize(
    ("compress", "level", "expected"),
    [("DEFLATE", 6, "deflate"), ("LZW", None, "lzw"), ("ZSTD", 9, "zstd"), ("NONE", None, None)],
)
def test_compression_profile_is_applied(
    compress: str, level: int | None, expected: str | None
) -> None:
    data = np.arange(300 * 200, dtype="uint16").reshape(1, 300, 200)
    encoded = encode_geotiff(
        data, 32633, Affine(10, 0, 0, 0, -10, 0), None, CompressionProfile(compress, level, 1)
    )
    memory, src = _open(encoded)
    with memory, src:
        np.testing.assert_array_equal(src.read(), data)
        if expected is None:
            assert src.compression is None
            assert "PREDICTOR" not in src.tags(ns="IMAGE_STRUCTURE")
        else:
            assert src.compression.name == expected
            assert src.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "2"


def test_unknown_compression_is_refused() -> None:
    with pytest.raises(ValueError, match="compression"):
        CompressionProfile("JPEG2000")


# -- COG ---------------------------------------------------------------------------------------


def _smooth(shape: tuple[int, int, int], dtype: str) -> np.ndarray:
    bands, height, width = shape
    yy, xx = np.mgrid[0:height, 0:width]
    one = 1000 + 400 * np.sin(xx / 37.0) + 300 * np.cos(yy / 23.0)
    return np.stack([one + 10 * b for b in range(bands)]).astype(dtype)


def _cog(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "out.tif"
    path.write_bytes(data)
    valid, errors, _ = cog_validate(str(path))
    assert valid, errors
    return path


def test_cog_defaults(tmp_path: Path) -> None:
    """No cogParameters: 256 blocks, average overviews down to one block, predictor on."""
    data = _smooth((2, 1100, 900), "uint16")
    transform = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4600000.0)
    path = _cog(tmp_path, encode_geotiff(data, 32632, transform, 0, cog=CogOptions()))
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(src.read(), data)
        assert (src.crs.to_epsg(), src.transform, src.nodata) == (32632, transform, 0)
        assert src.block_shapes == [(256, 256)] * 2
        # 1100 -> 550 -> 275 -> 137.5: factor 8 is the first overview within 256 pixels
        assert src.overviews(1) == [2, 4, 8]
        assert src.compression.name == "zstd"
        tags = src.tags(ns="IMAGE_STRUCTURE")
        assert tags["PREDICTOR"] == "2" and tags["LAYOUT"] == "COG"
        # average resampling: the 2x2 mean of the full-resolution pixels
        overview = src.read(1, out_shape=(550, 450))
        expected = data[0].reshape(550, 2, 450, 2).astype(float).mean(axis=(1, 3))
        assert np.abs(overview.astype(float) - expected).max() <= 1


@pytest.mark.parametrize("dtype", ["uint8", "int16", "float32"])
def test_cog_every_parameter(tmp_path: Path, dtype: str) -> None:
    data = _smooth((1, 1024, 768), "float64")
    data = (data % 256 if dtype == "uint8" else data).astype(dtype)
    options = CogOptions(
        overview_levels=(3, 9),
        resampling="nearest",
        blockxsize=512,
        blockysize=128,
        use_predictor=False,
    )
    nodata = np.nan if dtype == "float32" else 7
    transform = Affine(0.001, 0.0, 14.0, 0.0, -0.001, 46.0)
    path = _cog(tmp_path, encode_geotiff(data, 4326, transform, nodata, cog=options))
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(src.read(), data)
        assert src.dtypes == (dtype,)
        assert src.block_shapes == [(128, 512)]  # (rows, cols)
        assert src.overviews(1) == [3, 9]
        assert "PREDICTOR" not in src.tags(ns="IMAGE_STRUCTURE")
        # nearest: every overview pixel is one of the source pixels
        overview = src.read(1, out_shape=(114, 86))
        assert np.isin(overview, data[0]).all()
        assert np.isnan(src.nodata) if dtype == "float32" else src.nodata == 7


def test_cog_float_predictor_and_min_size(tmp_path: Path) -> None:
    data = _smooth((1, 2048, 2048), "float32") / 1000
    options = CogOptions(overview_min_size=600, blockxsize=128, blockysize=128, resampling="cubic")
    path = _cog(
        tmp_path, encode_geotiff(data, 3035, Affine(10, 0, 4e6, 0, -10, 3e6), None, cog=options)
    )
    with rasterio.open(path) as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "3"
        assert src.block_shapes == [(128, 128)]
        assert src.overviews(1) == [2, 4]  # 2048 -> 1024 -> 512 (<= 600): stop
        np.testing.assert_array_equal(src.read(), data)


@pytest.mark.parametrize(
    ("algorithm", "levels"),
    [
        ("gauss", (2,)),
        ("cubicspline", (2,)),
        ("lanczos", (2,)),
        ("mode", (2,)),
        ("average_magphase", (2,)),
    ],
)
def test_cog_resampling_algorithms(tmp_path: Path, algorithm: str, levels: tuple[int]) -> None:
    data = np.zeros((1, 512, 512), "uint8")
    data[:, :, 256:] = 200
    options = CogOptions(overview_levels=levels, resampling=algorithm)
    path = _cog(
        tmp_path, encode_geotiff(data, 32633, Affine(10, 0, 0, 0, -10, 0), None, cog=options)
    )
    with rasterio.open(path) as src:
        assert src.overviews(1) == [2]
        overview = src.read(1, out_shape=(256, 256))
        # away from the edge every algorithm keeps the two flat halves
        assert (overview[:, :100] == 0).all() and (overview[:, 160:] == 200).all()


def test_small_cog_has_no_overviews(tmp_path: Path) -> None:
    data = _smooth((1, 200, 150), "uint16")
    path = _cog(
        tmp_path, encode_geotiff(data, 32633, Affine(10, 0, 0, 0, -10, 0), None, cog=CogOptions())
    )
    with rasterio.open(path) as src:
        assert src.overviews(1) == []
        np.testing.assert_array_equal(src.read(), data)


def test_cog_options_refuse_bad_values() -> None:
    with pytest.raises(ValueError, match="multiples of 16"):
        CogOptions(blockxsize=100)
    with pytest.raises(ValueError, match="resampling"):
        CogOptions(resampling="bilinear")


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


# -- zarr ----------------------------------------------------------------------------------------


def _layout(fmt: int, origin: str = "topLeft", chunks: tuple = (1, 50, 50)):  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from eobatch.sinks.zarr import ZarrArraySpec, ZarrLayout

    spec = ZarrArraySpec("v", "<i2", chunks, -1, {"id": "zstd", "level": 1})
    return ZarrLayout(
        fmt,
        3035,
        (0.0, 0.0, 2000.0, 1000.0),
        10.0,
        origin,
        datetime(2024, 5, 1, tzinfo=UTC),
        (spec,),
    )


@pytest.mark.parametrize("fmt", [2, 3])
@pytest.mark.parametrize("origin", ["topLeft", "bottomLeft"])
def test_zarr_features_write_disjoint_chunks(tmp_path: Path, fmt: int, origin: str) -> None:
    import xarray as xr

    from eobatch.sinks.zarr import feature_chunks, group_objects

    layout = _layout(fmt, origin)
    objects = group_objects(layout, "req")
    written: list[set[str]] = []
    tiles = {}
    for i, bounds in enumerate([(0.0, 0.0, 1000.0, 1000.0), (1000.0, 0.0, 2000.0, 1000.0)]):
        data = (np.arange(100 * 100).reshape(100, 100) % 300 + 100 * i).astype("int16")
        tiles[i] = data
        chunks = feature_chunks(layout, "v", data, *layout.offset(bounds))
        written.append(set(chunks))
        objects |= chunks
    assert written[0] and written[1] and not written[0] & written[1]
    for key, value in objects.items():
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(value)
    ds = xr.open_zarr(tmp_path, mask_and_scale=False)
    values = ds.v.isel(time=0).values
    north_up = values if origin == "topLeft" else values[::-1]
    np.testing.assert_array_equal(north_up, np.hstack([tiles[0], tiles[1]]))
    assert ds.x.values[0] == 5.0 and ds.x.values[-1] == 1995.0
    assert ds.y.values[0] == (995.0 if origin == "topLeft" else 5.0)


def test_zarr_chunk_left_out_when_all_fill() -> None:
    from eobatch.sinks.zarr import feature_chunks

    layout = _layout(2)
    data = np.full((100, 100), -1, "int16")
    data[:50, :50] = 7
    chunks = feature_chunks(layout, "v", data, 0, 0)
    assert sorted(chunks) == ["v/0.0.0"]


def test_zarr_array_parameters() -> None:
    from eobatch.sinks.zarr import DEFAULT_COMPRESSOR, parse_arrays

    specs = parse_arrays(
        {"dtype": "<u2", "order": "C", "chunks": [1, 250, 500], "fill_value": 0},
        {
            "b": {
                "dtype": ">f8",
                "fill_value": "NaN",
                "compressor": None,
                "customAttributes": {"units": "1"},
            }
        },
        ["a", "b"],
        1000,
    )
    assert specs["a"].compressor == DEFAULT_COMPRESSOR and specs["a"].chunks == (1, 250, 500)
    assert specs["b"].dtype == ">f8" and np.isnan(specs["b"].fill_value)
    assert specs["b"].compressor is None and specs["b"].attributes == {"units": "1"}
    assert specs["a"].compatible_with("UINT16") and not specs["a"].compatible_with("FLOAT32")
    assert specs["b"].compatible_with("INT16")


@pytest.mark.parametrize(
    ("params", "field", "text"),
    [
        ({"fill_value": 65536}, "fill_value", "not a value"),
        ({"fill_value": 1.5}, "fill_value", "not a value"),
        ({"fill_value": True}, "fill_value", "not a value"),
        ({"chunks": [1, 300, 250]}, "chunks", "divide"),
        ({"chunks": [1, 250]}, "chunks", "three positive"),
        ({"dtype": "float32"}, "dtype", "not one of"),
    ],
)
def test_zarr_bad_array_parameters(params: dict, field: str, text: str) -> None:
    from eobatch.sinks.zarr import parse_arrays

    base = {"dtype": "<u2", "order": "C", "chunks": [1, 250, 500], "fill_value": 0}
    with pytest.raises(InvalidRequest) as caught:
        parse_arrays(base | params, None, ["a"], 1000)
    violation = caught.value.errors[0]
    assert violation.parameter == f"output->arrayParameters->{field}"
    assert text in violation.violation


# -- BYOC bands ----------------------------------------------------------------------------------


def test_byoc_band_names_and_clash() -> None:
    from eobatch.errors import AnalysisError
    from eobatch.script.setup import ScriptOutput, ScriptSetup
    from eobatch.sinks.byoc import check_collection, collection_bands

    outputs = (ScriptOutput("result", 3, "UINT16", 0), ScriptOutput("ndvi", 1, "FLOAT32"))
    setup = ScriptSetup((), outputs)
    bands = collection_bands(setup, ["result", "ndvi"])
    assert list(bands) == ["result", "result2", "result3", "ndvi"]
    assert bands["result3"] == {
        "source": "result",
        "bandIndex": 3,
        "bitDepth": 16,
        "sampleFormat": "UINT",
        "noData": 0,
    }
    assert bands["ndvi"]["bitDepth"] == 32 and bands["ndvi"]["sampleFormat"] == "FLOAT"
    clash = ScriptSetup((), (ScriptOutput("result", 3), ScriptOutput("result2", 1)))
    with pytest.raises(AnalysisError, match=r"'result2'.*clashes"):
        collection_bands(clash, ["result", "result2"])
    check_collection({}, bands, "c")  # a collection without bands takes them
    with pytest.raises(AnalysisError, match="no band 'ndvi'"):
        check_collection({k: v for k, v in bands.items() if k != "ndvi"}, bands, "c")
