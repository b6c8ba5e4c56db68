"""Evalscript V3: setup() parsing, evaluatePixel over rasters in V8, sample-type conversion."""

from __future__ import annotations

import pickle
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eobatch.script import (
    EvalscriptError,
    EvalscriptRuntime,
    ScriptInput,
    ScriptOutput,
    ScriptSetup,
    SourceData,
    get_runtime,
    parse_setup,
    to_sample_type,
)

NDVI = """//VERSION=3
function setup() {
  return {
    input: ["B04", "B08", "dataMask"],
    output: { bands: 1, sampleType: "FLOAT32" },
  };
}
function evaluatePixel(sample) {
  return [(sample.B08 - sample.B04) / (sample.B08 + sample.B04)];
}
"""


def script(setup: str, evaluate: str) -> str:
    return (
        f"//VERSION=3\nfunction setup() {{ return {setup}; }}\n"
        f"function evaluatePixel(s) {{ {evaluate} }}\n"
    )


def run(source: str, bands: dict[str, np.ndarray], timeout_s: float = 5.0) -> dict[str, np.ndarray]:
    return get_runtime(timeout_s, 256).evaluate(source, parse_setup(source), bands)


def ones(value: float, shape: tuple[int, int] = (2, 3)) -> np.ndarray:
    return np.full(shape, value, dtype=np.float32)


# --- parse_setup -------------------------------------------------------------------------------


def test_parse_setup_band_name_shorthand_and_defaults() -> None:
    setup = parse_setup(script('{input: ["B04", "B08", "dataMask"]}', "return [1];"))
    assert setup == ScriptSetup(
        inputs=(ScriptInput(("B04", "B08", "dataMask"), None),),
        outputs=(ScriptOutput("default", 1, "AUTO", None),),
        mosaicking="SIMPLE",
    )
    assert setup.bands == ("B04", "B08", "dataMask")
    assert setup.output("default").bands == 1


def test_parse_setup_input_objects_units_outputs_and_constants() -> None:
    source = script(
        """{
          input: [{bands: ["B08", "B04"], units: "DN"}, {bands: ["B04", "dataMask"]}],
          output: [
            {id: "ndvi", bands: 1, sampleType: SampleType.FLOAT32, nodataValue: NaN},
            {id: "rgb", bands: 3, sampleType: "UINT16", nodataValue: 0},
          ],
          mosaicking: Mosaicking.ORBIT,
        }""",
        "return {};",
    )
    setup = parse_setup(source)
    assert setup.inputs == (
        ScriptInput(("B08", "B04"), ("DN", "DN")),
        ScriptInput(("B04", "dataMask")),
    )
    assert setup.bands == ("B08", "B04", "dataMask")
    assert setup.output("ndvi").sample_type == "FLOAT32"
    assert np.isnan(setup.output("ndvi").nodata_value)
    assert setup.output("rgb") == ScriptOutput("rgb", 3, "UINT16", 0.0)
    assert setup.mosaicking == "ORBIT"
    with pytest.raises(KeyError, match="nope"):
        setup.output("nope")


def test_parse_setup_single_input_object_and_units_array() -> None:
    setup = parse_setup(
        script('{input: {bands: ["B02", "B03"], units: ["DN", "DN"]}}', "return [0];")
    )
    assert setup.inputs == (ScriptInput(("B02", "B03"), ("DN", "DN")),)


def test_setup_is_picklable() -> None:
    setup = parse_setup(NDVI)
    assert pickle.loads(pickle.dumps(setup)) == setup
    error = EvalscriptError("boom", 3, 4)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.message, copy.line, copy.column) == ("boom", 3, 4)


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("42", "setup() must return an object, got 42"),
        ("{output: {bands: 1}}", "must return an 'input'"),
        ("{input: []}", "setup().input must be a non-empty array"),
        ("{input: [1, 2]}", "setup().input[0] must be an object"),
        ('{input: [{units: "DN"}]}', "setup().input[0] must have 'bands'"),
        (
            '{input: ["B04"], output: {bands: -1}}',
            "setup().output.bands (output 'default') must be a whole number of bands (0 or more)"
            ", got -1",
        ),
        ('{input: ["B04"], output: {bands: 1.5}}', "must be a whole number of bands (0 or more)"),
        ('{input: ["B04"], output: {bands: "three"}}', 'got "three"'),
        ('{input: ["B04"], output: {bands: true}}', "got true"),
        ('{input: ["B04"], output: [{id: "a"}, {id: "b"}, {id: "a"}]}', "duplicate output id(s) a"),
        (
            '{input: ["B04"], output: {sampleType: "FLOAT64"}}',
            "sampleType 'FLOAT64' (output 'default') is not supported yet",
        ),
        ('{input: ["B04"], output: {id: 7}}', "setup().output.id must be a non-empty string"),
        (
            '{input: ["B04"], mosaicking: "DAILY"}',
            "setup().mosaicking must be one of SIMPLE, ORBIT, TILE",
        ),
        (
            '{input: [{bands: ["B04", "B08"], units: ["DN"]}]}',
            "setup().input[0].units has 1 unit(s) for 2 band(s)",
        ),
        ('{input: [{bands: ["B04"], units: 3}]}', "units must be a string or an array"),
        (
            '{input: ["B04"], output: {bands: 1, noDataValue: 0}}',
            "setup().output.noDataValue is not a setup() property; did you mean 'nodataValue'?",
        ),
        (
            '{input: ["B04"], output: {bands: 1, sampletype: "UINT8"}}',
            "did you mean 'sampleType'?",
        ),
        ('{input: [{bands: ["B04"], unit: "DN"}]}', "setup().input[0].unit is not a"),
        (  # an output's key beside `output` would be ignored silently: refused, with the place
            '{input: ["B04"], output: {bands: 1}, noDataValue: 0}',
            "setup().noDataValue is not a property of setup()'s result (allowed: input, output, "
            "mosaicking); 'nodataValue' belongs in each object of setup().output (allowed "
            "there: id, bands, sampleType, nodataValue)",
        ),
        ('{input: ["B04"], sampleType: "UINT8"}', "'sampleType' belongs in each object of"),
        ('{input: ["B04"], units: "DN"}', "'units' belongs in each object of setup().input"),
        ('{input: ["B04"], mosaicing: "ORBIT"}', "did you mean 'mosaicking'?"),
        (
            '{input: [{bands: ["B04"], mosaicking: "ORBIT"}, {bands: ["B08"], mosaicking: '
            '"TILE"}]}',
            "ask for different mosaicking (ORBIT, TILE)",
        ),
    ],
)
def test_parse_setup_rejects_invalid_results(setup: str, expected: str) -> None:
    with pytest.raises(EvalscriptError) as info:
        parse_setup(script(setup, "return [0];"))
    assert expected in str(info.value)


def test_unknown_top_level_keys_stay_ignored() -> None:
    """evalscript-v3 recommends ignoring keys it does not document (`processing`)."""
    parsed = parse_setup(script('{input: ["B04"], processing: {x: 1}}', "return [0];"))
    assert parsed.outputs[0].id == "default"


def test_parse_setup_requires_version_line() -> None:
    with pytest.raises(EvalscriptError, match="VERSION=3"):
        parse_setup("return [B04];")  # a V1 script (see test_script_lifecycle.py for more)


def test_parse_setup_requires_setup_function() -> None:
    with pytest.raises(EvalscriptError, match=r"no setup\(\) function"):
        parse_setup("//VERSION=3\nfunction evaluatePixel(s) { return [0]; }\n")


def test_syntax_error_reports_line_and_column() -> None:
    source = '//VERSION=3\nfunction setup() {\n  return {input: ["B04"]};\n}\nvar x = ;\n'
    with pytest.raises(EvalscriptError) as info:
        parse_setup(source)
    error = info.value
    assert error.line == 5
    assert error.column == 9
    assert "SyntaxError: Unexpected token ';'" in error.message
    assert str(error) == "SyntaxError: Unexpected token ';' (evalscript line 5, column 9)"


def test_exception_in_setup_reports_message_and_line() -> None:
    source = "//VERSION=3\nfunction setup() {\n  return notDefined;\n}\n"
    with pytest.raises(EvalscriptError) as info:
        parse_setup(source)
    assert info.value.line == 3
    assert "ReferenceError: notDefined is not defined in setup()" in str(info.value)
    assert "line 3" in str(info.value)


def test_exception_in_top_level_code_reports_line() -> None:
    source = "//VERSION=3\nconst ramp = null;\nramp.process(1);\nfunction setup() {}\n"
    with pytest.raises(EvalscriptError) as info:
        parse_setup(source)
    assert info.value.line == 3
    assert "TypeError" in info.value.message


def test_parse_setup_times_out_on_endless_top_level_code() -> None:
    with pytest.raises(EvalscriptError, match="exceeded the time limit"):
        parse_setup("//VERSION=3\nwhile (true) {}\n", timeout_s=0.2)


# --- evaluate ----------------------------------------------------------------------------------


def test_ndvi_equals_numpy_in_float32() -> None:
    rng = np.random.default_rng(42)
    b04 = rng.uniform(0.01, 0.5, (64, 80)).astype(np.float32)
    b08 = rng.uniform(0.01, 0.9, (64, 80)).astype(np.float32)
    mask = np.ones((64, 80), dtype=np.uint8)
    result = run(NDVI, {"B04": b04, "B08": b08, "dataMask": mask})
    # JS computes in double precision; the Float32 output rounds once, as this cast does.
    expected = ((b08.astype(np.float64) - b04) / (b08.astype(np.float64) + b04)).astype(np.float32)
    assert result["default"].dtype == np.float32
    assert result["default"].shape == (1, 64, 80)
    np.testing.assert_array_equal(result["default"][0], expected)


def test_spec_example_ndvi_value() -> None:
    result = run(
        NDVI, {"B04": ones(0.05), "B08": ones(0.35), "dataMask": np.ones((2, 3), np.uint8)}
    )
    assert result["default"][0, 0, 0] == np.float32(0.75)


def test_auto_true_colour_spec_example() -> None:
    source = script(
        '{input: ["B02", "B03", "B04"], output: {bands: 3}}',
        "return [2.5 * s.B04, 2.5 * s.B03, 2.5 * s.B02];",
    )
    result = run(source, {"B02": ones(0.06), "B03": ones(0.08), "B04": ones(0.1)})
    assert result["default"].dtype == np.uint8
    assert result["default"][:, 1, 2].tolist() == [64, 51, 38]


def test_multiple_outputs_and_datamask_passed_through() -> None:
    source = script(
        """{input: ["B04", "B08", "dataMask"], output: [
             {id: "ndvi", bands: 1, sampleType: "FLOAT32"},
             {id: "mask", bands: 1, sampleType: "UINT8"},
             {id: "both", bands: 2, sampleType: "UINT16"}]}""",
        "return {ndvi: [index(s.B08, s.B04)], mask: [s.dataMask],"
        " both: [s.B04 * 1000, s.dataMask * 7]};",
    )
    mask = np.array([[1, 0, 1], [0, 0, 1]], dtype=np.uint8)
    b04 = np.array([[0.1, 0.2, 0.3], [0.0, 0.5, 0.6]], dtype=np.float32)
    b08 = np.array([[0.3, 0.2, 0.1], [0.0, 0.5, 0.9]], dtype=np.float32)
    result = run(source, {"B04": b04, "B08": b08, "dataMask": mask})
    assert set(result) == {"ndvi", "mask", "both"}
    np.testing.assert_array_equal(result["mask"][0], mask)
    assert result["mask"].dtype == np.uint8
    with np.errstate(invalid="ignore"):
        ratio = (b08.astype(np.float64) - b04) / (b08.astype(np.float64) + b04)
    expected = np.where(b08 + b04 == 0, 0, ratio)
    np.testing.assert_array_equal(result["ndvi"][0], expected.astype(np.float32))
    assert result["both"].shape == (2, 2, 3)
    assert result["both"].dtype == np.uint16
    np.testing.assert_array_equal(result["both"][0], np.round(b04.astype(np.float64) * 1000))
    np.testing.assert_array_equal(result["both"][1], mask * 7)


def test_boolean_mask_reaches_script_as_zero_and_one() -> None:
    source = script(
        '{input: ["dataMask"], output: {sampleType: "FLOAT32"}}', "return [s.dataMask];"
    )
    mask = np.array([[True, False]])
    assert run(source, {"dataMask": mask})["default"][0].tolist() == [[1.0, 0.0]]


def test_uint8_and_uint16_clamp_and_round_half_away_from_zero() -> None:
    source = script(
        """{input: ["B01"], output: [{id: "u8", sampleType: "UINT8"},
                                      {id: "u16", sampleType: "UINT16"}]}""",
        "return {u8: [s.B01], u16: [s.B01 * 1000]};",
    )
    values = np.array([[-5, 300, 12.5, 12.49, 0.5, 70.6]], dtype=np.float32)
    result = run(source, {"B01": values})
    assert result["u8"][0].tolist() == [[0, 255, 13, 12, 1, 71]]
    assert result["u16"][0].tolist() == [[0, 65535, 12500, 12490, 500, 65535]]


def test_nan_into_integer_type_is_zero_but_float32_keeps_it() -> None:
    source = script(
        """{input: ["B01"], output: [{id: "i", sampleType: "UINT8"},
                                      {id: "f", sampleType: "FLOAT32"}]}""",
        "return {i: [NaN], f: [NaN]};",
    )
    result = run(source, {"B01": ones(1.0, (1, 2))})
    assert result["i"][0].tolist() == [[0, 0]]
    assert np.isnan(result["f"]).all()


def test_single_output_may_be_returned_keyed_by_id() -> None:
    source = script(
        '{input: ["B01"], output: {id: "x", sampleType: "FLOAT32"}}', "return {x: [s.B01 * 2]};"
    )
    assert run(source, {"B01": ones(1.5, (1, 1))})["x"].tolist() == [[[3.0]]]


def test_prelude_helpers_available() -> None:
    source = """//VERSION=3
const ramp = new ColorRampVisualizer([[0, 0x000000], [1, 0xffffff]]);
function setup() { return {input: ["B01"], output: {bands: 4, sampleType: "FLOAT32"}}; }
function evaluatePixel(s) {
  return [...ramp.process(s.B01), valueInterpolate(s.B01, [0, 1], [10, 20])];
}
"""
    result = run(source, {"B01": np.array([[0.5, -1.0, 2.0]], dtype=np.float32)})
    half = 128 / 255  # hex colours: each channel interpolated in 0..255 and rounded
    np.testing.assert_allclose(
        result["default"][:, 0, :].T,
        np.array([[half, half, half, 15], [0, 0, 0, 10], [1, 1, 1, 20]], dtype=np.float32),
    )


def test_js_exception_reports_message_line_and_pixel() -> None:
    source = """//VERSION=3
function setup() { return {input: ["B01"], output: {sampleType: "FLOAT32"}}; }
function evaluatePixel(s) {
  if (s.B01 > 1) {
    throw new Error("too bright: " + s.B01);
  }
  return [s.B01];
}
"""
    values = np.array([[0.5, 0.5], [0.5, 2.0]], dtype=np.float32)
    with pytest.raises(EvalscriptError) as info:
        run(source, {"B01": values})
    error = info.value
    assert error.line == 5
    assert error.column == 11
    assert "Error: too bright: 2" in error.message
    assert "pixel (row 1, column 1)" in error.message
    assert "line 5" in str(error)


def test_wrong_number_of_values_names_output_and_band_count() -> None:
    source = script('{input: ["B01"], output: {id: "rgb", bands: 3}}', "return [s.B01, s.B01];")
    with pytest.raises(EvalscriptError) as info:
        run(source, {"B01": ones(0.5)})
    message = str(info.value)
    assert "output 'rgb' has bands: 3" in message
    assert "must be an array of 3 value(s)" in message
    assert "got an array of 2 value(s)" in message


def test_missing_output_in_multi_output_result() -> None:
    source = script(
        '{input: ["B01"], output: [{id: "a"}, {id: "b", bands: 2}]}', "return {a: [1]};"
    )
    with pytest.raises(EvalscriptError, match=r"evaluatePixel\(\) result has no output 'b'"):
        run(source, {"B01": ones(0.5)})


def test_non_number_value_is_refused() -> None:
    source = script('{input: ["B01"]}', 'return ["red"];')
    with pytest.raises(EvalscriptError, match="output 'default' must be a number, got \"red\""):
        run(source, {"B01": ones(0.5)})


def test_missing_evaluate_pixel() -> None:
    source = "//VERSION=3\nfunction setup() { return {input: ['B01']}; }\n"
    with pytest.raises(EvalscriptError, match=r"no evaluatePixel\(\) function"):
        run(source, {"B01": ones(0.5)})


def test_timeout_then_recovery() -> None:
    runtime = EvalscriptRuntime(timeout_s=0.3, heap_mb=256)
    endless = script('{input: ["B01"]}', "while (true) {}")
    started = time.monotonic()
    with pytest.raises(EvalscriptError, match=r"exceeded the time limit of 0.3 s"):
        runtime.evaluate(endless, parse_setup(endless), {"B01": ones(0.5)})
    assert time.monotonic() - started < 5
    ok = script('{input: ["B01"], output: {sampleType: "FLOAT32"}}', "return [s.B01 + 1];")
    result = runtime.evaluate(ok, parse_setup(ok), {"B01": ones(0.5)})
    assert (result["default"] == 1.5).all()
    runtime.close()


def test_memory_limit_then_recovery() -> None:
    runtime = EvalscriptRuntime(timeout_s=10, heap_mb=32)
    hungry = script(
        '{input: ["B01"]}', "const a = []; while (true) a.push(new Array(1e5).fill(1.5));"
    )
    with pytest.raises(EvalscriptError, match=r"exceeded the memory limit of 32 MB"):
        runtime.evaluate(hungry, parse_setup(hungry), {"B01": ones(0.5)})
    ok = script('{input: ["B01"], output: {sampleType: "FLOAT32"}}', "return [s.B01 * 4];")
    assert (runtime.evaluate(ok, parse_setup(ok), {"B01": ones(0.5)})["default"] == 2).all()
    runtime.close()


def test_scripts_sharing_a_runtime_do_not_clash() -> None:
    first = script('{input: ["B01"], output: {sampleType: "FLOAT32"}}', "return [s.B01 + 1];")
    second = script('{input: ["B01"], output: {sampleType: "FLOAT32"}}', "return [s.B01 + 2];")
    bands = {"B01": ones(0.5)}
    assert (run(first, bands)["default"] == 1.5).all()
    assert (run(second, bands)["default"] == 2.5).all()
    assert (run(first, bands)["default"] == 1.5).all()


def test_get_runtime_is_cached_per_limits() -> None:
    assert get_runtime(3.0, 128) is get_runtime(3.0, 128)
    assert get_runtime(3.0, 128) is not get_runtime(4.0, 128)


def test_512_square_ndvi_is_fast() -> None:
    rng = np.random.default_rng(1)
    bands = {
        name: rng.random((512, 512), dtype=np.float32) for name in ("B02", "B03", "B04", "B08")
    }
    source = script(
        '{input: ["B02", "B03", "B04", "B08"], output: {sampleType: "FLOAT32"}}',
        "return [(s.B08 - s.B04) / (s.B08 + s.B04)];",
    )
    setup = parse_setup(source)
    runtime = get_runtime(10, 256)
    runtime.evaluate(source, setup, bands)  # compile once
    started = time.perf_counter()
    runtime.evaluate(source, setup, bands)
    assert time.perf_counter() - started < 1.0


# --- to_sample_type ----------------------------------------------------------------------------


def test_to_sample_type_examples() -> None:
    values = np.array([-5, 300, 12.5, -12.5, 2.4999, np.nan, np.inf])
    assert to_sample_type(values, "UINT8").tolist() == [0, 255, 13, 0, 2, 0, 0]
    assert to_sample_type(values, "INT16").tolist() == [-5, 300, 13, -13, 2, 0, 0]
    auto = to_sample_type(np.array([0.25, 0.2, 0.15, 1.2, -0.1]), "AUTO")
    assert auto.tolist() == [64, 51, 38, 255, 0]
    assert to_sample_type(np.array([70000.0]), "UINT16").tolist() == [65535]
    assert to_sample_type(np.array([0.1]), "FLOAT32").dtype == np.float32
    with pytest.raises(EvalscriptError, match="not supported yet"):
        to_sample_type(np.array([1.0]), "UINT32")


@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))
def test_to_sample_type_rounds_half_away_from_zero_and_clamps(value: float) -> None:
    got = int(to_sample_type(np.array([value]), "INT16")[0])
    # Reference via exact decimal arithmetic.
    from decimal import ROUND_HALF_UP, Decimal

    rounded = int(Decimal(value).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    assert got == min(32767, max(-32768, rounded))


@pytest.mark.parametrize("sample_type", ["AUTO", "UINT8", "INT8", "UINT16", "INT16", "FLOAT32"])
def test_in_loop_conversion_equals_to_sample_type_on_edge_values(sample_type: str) -> None:
    # The JS loop converts values as it stores them; to_sample_type is the numpy statement of
    # the same rules. Halves of both signs, the double just below 0.5, range ends, non-finite.
    edges = [
        0.49999999999999994,
        -0.49999999999999994,
        0.5,
        -0.5,
        1.5,
        -1.5,
        2.5,
        -2.5,
        12.5,
        -12.5,
        127.5,
        -128.5,
        254.5,
        255.5,
        32767.5,
        -32768.5,
        65534.5,
        65535.5,
        1e12,
        -1e12,
        0.0,
        -0.0,
        1 / 255,
        0.998,
        1.002,
        0.0019607843137254902,
    ]
    values = np.array(edges + [v / 255 for v in edges], dtype=np.float64)
    script = f"""//VERSION=3
const V = [{", ".join(repr(float(v)) for v in values)}, NaN, Infinity, -Infinity];
function setup() {{
  return {{ input: ["B01"], output: {{ bands: 1, sampleType: "{sample_type}" }} }};
}}
function evaluatePixel(s) {{ return [V[s.B01]]; }}
"""
    expected_values = np.concatenate([values, [np.nan, np.inf, -np.inf]])
    index = np.arange(expected_values.size, dtype=np.uint16).reshape(1, -1)
    got = run(script, {"B01": index})["default"][0, 0]
    want = to_sample_type(expected_values, sample_type)
    np.testing.assert_array_equal(got, want)


def test_staged_inputs_are_evaluated_in_place_with_the_same_result() -> None:
    source = script(
        '{input: ["B04", "B08", "dataMask"], output: {bands: 1, sampleType: "FLOAT32"}}',
        "return [s.dataMask ? (s.B08 - s.B04) / (s.B08 + s.B04) : -1];",
    )
    setup = parse_setup(source)
    rng = np.random.default_rng(3)
    bands = {b: rng.uniform(0.01, 0.5, (1, 4, 5)).astype(np.float32) for b in ("B04", "B08")}
    bands["dataMask"] = (rng.uniform(0, 1, (1, 4, 5)) > 0.3).astype(np.uint8)
    runtime = EvalscriptRuntime(5, 256)
    expected = runtime.evaluate_sources(source, setup, {"default": SourceData(bands)})
    staged = runtime.stage_inputs(setup, 1, 4, 5)
    for name, values in bands.items():
        staged[name][:] = values  # what a reader does: write straight into V8 memory
    got = runtime.evaluate_sources(source, setup, {"default": SourceData(staged)}, copy=False)
    np.testing.assert_array_equal(got.rasters["default"], expected.rasters["default"])
    runtime.close()


def test_each_thread_has_its_own_runtime() -> None:
    import threading

    seen = []
    thread = threading.Thread(target=lambda: seen.append(get_runtime(3.0, 128)))
    thread.start()
    thread.join()
    assert seen[0] is not get_runtime(3.0, 128)


# --- bands copied into the samples only once the script reads them ------------------------------
# A band the source names twice is copied from the start; these scripts reach B02 by a computed
# name (`K`), so it starts as a getter and the lazy path is what runs.

ORBIT_SETUP = (
    '{ input: ["B02", "B04", "B08", "dataMask"], output: { bands: 1, '
    'sampleType: "FLOAT32" }, mosaicking: "ORBIT" }'
)


K = 'const K = "B0" + 2;\n'


def orbit_inputs(rng: np.random.Generator, scenes: int = 3, size: int = 40) -> dict:
    bands = {
        b: rng.uniform(0, 1, (scenes, size, size)).astype(np.float32) for b in ("B02", "B04", "B08")
    }
    bands["dataMask"] = np.ones((scenes, size, size), dtype=np.uint8)
    return bands


def run_orbit(source: str, bands: dict) -> np.ndarray:
    runtime = EvalscriptRuntime(5.0, 256)
    try:
        data = {"default": SourceData(bands, [{}] * bands["B02"].shape[0])}
        return runtime.evaluate_sources(source, parse_setup(source), data).rasters["default"][0]
    finally:
        runtime.close()


def test_a_band_read_at_a_few_pixels_only_is_read_right() -> None:
    """B02 is read at 3 pixels (through the getter, never copied): the values are still exact."""
    bands = orbit_inputs(np.random.default_rng(1))
    source = script(
        ORBIT_SETUP,
        "let v = s[0].B08;\n  if (s[0].B04 > 0.995) v = s[s.length - 1][K];\n  return [v];",
    )
    source = source.replace("function evaluatePixel", K + "function evaluatePixel")
    rare = bands["B04"][0] > 0.995
    assert 0 < rare.sum() < 16
    expected = np.where(rare, bands["B02"][-1], bands["B08"][0])
    assert np.array_equal(run_orbit(source, bands), expected)


def test_a_band_read_everywhere_after_a_while_is_read_right_throughout() -> None:
    """B02 is first read only from pixel 800 on: the loop switches to copying it mid-run."""
    bands = orbit_inputs(np.random.default_rng(2))
    source = script(
        ORBIT_SETUP.replace("ORBIT", "TILE"),
        "i = (typeof i === 'number' ? i : -1) + 1;\n"
        "  return [i >= 800 ? s[1][K] + s[2].B04 : s[0].B08];",
    )
    source = source.replace("function evaluatePixel", K + "var i;\nfunction evaluatePixel")
    flat = np.arange(40 * 40).reshape(40, 40)
    expected = np.where(
        flat >= 800, bands["B02"][1].astype(np.float64) + bands["B04"][2], bands["B08"][0]
    ).astype(np.float32)
    assert np.array_equal(run_orbit(source, bands), expected)


def test_writing_into_samples_and_listing_their_bands() -> None:
    bands = orbit_inputs(np.random.default_rng(3))
    writes = script(ORBIT_SETUP, "s[0][K] = s[0][K] * 2;\n  return [s[0][K] + s[1][K]];")
    writes = writes.replace("function evaluatePixel", K + "function evaluatePixel")
    expected = bands["B02"][0].astype(np.float64) * 2 + bands["B02"][1]
    assert np.array_equal(run_orbit(writes, bands), expected.astype(np.float32))
    listing = script(
        ORBIT_SETUP,
        "return [Object.keys(s[1]).length * 10 + Object.values(s[1]).filter(v => v > 0.5).length];",
    )
    over = sum((bands[b][1] > 0.5).astype(int) for b in ("B02", "B04", "B08")) + 1  # dataMask 1
    assert np.array_equal(run_orbit(listing, bands), (40 + over).astype(np.float32))
    for_in = script(ORBIT_SETUP, "let n = 0; for (const k in s[2]) n++; return [n];")
    assert (run_orbit(for_in, bands) == 4).all()
