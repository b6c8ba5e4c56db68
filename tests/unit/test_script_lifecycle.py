"""The evalscript lifecycle as Sentinel Hub documents it (spec §1-6, §11): version lines,
setup() forms, preProcessScenes with the time range, updateOutput, what evaluatePixel may
return, and data fusion shaped as on Sentinel Hub. Every result is checked value by value."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from eobatch.script import EvalscriptError, ScriptInput, SourceData, get_runtime, parse_setup

H, W = 3, 4


def runtime():  # type: ignore[no-untyped-def]
    return get_runtime(10, 256)


def orbits(days: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "dateFrom": f"{day}T00:00:00Z",
            "dateTo": f"{day}T23:59:59Z",
            "tiles": [{"date": f"{day}T10:00:00Z", "shId": n, "tileOriginalId": f"t{n}"}],
        }
        for n, day in enumerate(days)
    ]


def per_scene(values: list[float], dtype: type = np.float32) -> np.ndarray:
    return np.broadcast_to(np.array(values, dtype)[:, None, None], (len(values), H, W)).copy()


def evaluate(script: str, data: dict[str, SourceData], ranges=None):  # type: ignore[no-untyped-def]
    """As the engine does: preProcessScenes on the metadata, then the kept scenes evaluated."""
    setup = parse_setup(script)
    kept = runtime().pre_process_scenes(
        script, setup, {sid: d.scenes for sid, d in data.items()}, ranges
    )
    chosen = {}
    for sid, d in data.items():
        if setup.mosaicking_of(sid if len(data) > 1 or setup.datasources else None) == "SIMPLE":
            chosen[sid] = d
        else:
            rows = kept[sid]
            chosen[sid] = SourceData(
                {k: v[rows] for k, v in d.bands.items()}, [d.scenes[n] for n in rows]
            )
    return setup, kept, runtime().evaluate_sources(script, setup, chosen)


# -- the version line (spec §1, check 1) --------------------------------------------------------

BODY = (
    'function setup() { return { input: ["B04"], output: { bands: 1, sampleType: "FLOAT32" } }; }\n'
)


@pytest.mark.parametrize(
    "head",
    [
        "//VERSION=3\n",
        "\n   //VERSION=3\n",
        "//VERSION=3 (auto-converted from 1)\n",
        "// VERSION=3\n",
        "////VERSION=3 (auto-converted from 1)\n",
        "//version=3\r\n",
        "//Sentinel-2 L1C or L2A\n\n//VERSION=3\n",
        "/* NDVI\n   by someone */\n//VERSION=3\n",
        "\ufeff//VERSION=3\n",
    ],
)
def test_every_version_line_variant_is_v3(head: str) -> None:
    source = head + BODY + "function evaluatePixel(s) { return [s.B04 * 2]; }"
    result = runtime().evaluate(source, parse_setup(source), {"B04": np.full((H, W), 0.25)})
    assert (result["default"] == 0.5).all()


@pytest.mark.parametrize(
    ("head", "message"),
    [
        ("//VERSION=2\n", "declares VERSION=2; only version 3"),
    ],
)
def test_scripts_declaring_another_version_are_refused(head: str, message: str) -> None:
    with pytest.raises(EvalscriptError, match=message):
        parse_setup(head + BODY + "function evaluatePixel(s) { return [0]; }")


@pytest.mark.parametrize(
    "source",
    [
        "return [B04 * 2.5, B03 * 2.5, B02 * 2.5];",  # a V1 script
        "let gain = 2.5;\nreturn [B08, B04, B03].map(a => gain * a);",
        "//VERSION=2\nfunction setup() {}",
    ],
)
def test_v1_and_v2_scripts_are_refused_with_the_version_line_named(source: str) -> None:
    with pytest.raises(EvalscriptError, match="VERSION"):
        parse_setup(source)


def test_a_script_defining_setup_without_its_version_line_is_v3() -> None:
    source = "// a public script that forgot its first line\n" + BODY.replace(
        "function setup()", "function setup ()"
    )
    source += "function evaluatePixel(s) { return [s.B04 + 1]; }"
    result = runtime().evaluate(source, parse_setup(source), {"B04": np.full((H, W), 0.5)})
    assert (result["default"] == 1.5).all()


# -- setup() ---------------------------------------------------------------------------------------


def test_units_per_band_in_any_letter_case_and_per_input_mosaicking() -> None:
    setup = parse_setup(
        "//VERSION=3\nfunction setup() { return { input: ["
        '{ datasource: "s2", bands: ["B02", "B03", "B08"], units: ["reflectance", '
        '"reflectance", "DN"] }, { datasource: "s1", bands: ["VV"], mosaicking: "ORBIT" }], '
        "output: { bands: 0 } }; }\nfunction evaluatePixel(s) {}"
    )
    assert setup.inputs[0] == ScriptInput(
        ("B02", "B03", "B08"), ("REFLECTANCE", "REFLECTANCE", "DN"), "s2"
    )
    assert setup.unit_of("B08", "s2") == "DN"
    assert setup.unit_of("VV", "s1") is None
    assert (setup.mosaicking_of("s2"), setup.mosaicking_of("s1")) == ("SIMPLE", "ORBIT")
    assert setup.output("default").bands == 0


@pytest.mark.parametrize(("written", "bands"), [("3", 3), ("2.0", 2), ('"4"', 4), ("0", 0)])
def test_output_bands_as_public_scripts_write_them(written: str, bands: int) -> None:
    setup = parse_setup(
        f'//VERSION=3\nfunction setup() {{ return {{ input: ["B04"], output: {{ bands: {written}'
        " } }; }\nfunction evaluatePixel(s) { return [0]; }"
    )
    assert setup.output("default").bands == bands


def test_a_misspelt_key_asking_for_the_default_anyway_is_accepted() -> None:
    # custom-scripts dem/dem-color/script.js writes `sampleTYPE: "AUTO"`
    setup = parse_setup(
        '//VERSION=3\nfunction setup() { return { input: ["DEM"], output: { bands: 4, '
        'sampleTYPE: "AUTO" } }; }\nfunction evaluatePixel(s) { return [0, 0, 0, 1]; }'
    )
    assert setup.output("default").sample_type == "AUTO"
    with pytest.raises(EvalscriptError, match="did you mean 'sampleType'"):
        parse_setup(
            '//VERSION=3\nfunction setup() { return { input: ["DEM"], output: { bands: 1, '
            'sampleTYPE: "FLOAT32" } }; }\nfunction evaluatePixel(s) { return [0]; }'
        )


def test_unknown_setup_keys_that_misspell_nothing_are_ignored() -> None:
    setup = parse_setup(
        '//VERSION=3\nfunction setup() { return { input: [{ bands: ["B04"], note: "x" }], '
        'output: { bands: 1, format: "image/tiff" }, processing: {} }; }\n'
        "function evaluatePixel(s) { return [0]; }"
    )
    assert setup.bands == ("B04",)


# -- what evaluatePixel may return (spec §4, check 6) ---------------------------------------------


@pytest.mark.parametrize(
    ("returned", "expected"),
    [
        ("0.42", np.float32(0.42)),
        ("[0.42]", np.float32(0.42)),
        ("{ default: [0.42] }", np.float32(0.42)),
        ("[[0.42]]", np.float32(0.42)),
        ("true", np.float32(1)),
        ("[null]", np.float32(0)),
        ("undefined", np.float32(-1)),  # no result: the output's nodataValue
    ],
)
def test_a_one_band_output_takes_a_bare_number_and_more(returned: str, expected: float) -> None:
    source = (
        '//VERSION=3\nfunction setup() { return { input: ["B04"], output: { bands: 1, '
        'sampleType: "FLOAT32", nodataValue: -1 } }; }\n'
        f"function evaluatePixel(s) {{ return {returned}; }}"
    )
    result = runtime().evaluate(source, parse_setup(source), {"B04": np.zeros((H, W))})
    assert (result["default"] == expected).all()


def test_nothing_returned_gives_nodata_or_zero_in_every_output() -> None:
    source = (
        '//VERSION=3\nfunction setup() { return { input: ["B04"], output: ['
        '{ id: "a", bands: 2, sampleType: "UINT8", nodataValue: 255 }, '
        '{ id: "b", bands: 1, sampleType: "FLOAT32" }] }; }\n'
        "function evaluatePixel(s) { if (s.B04 > 0.5) return { a: [1, 2], b: [3] }; }"
    )
    b04 = np.array([[0.1, 0.9, 0.1, 0.9]] * H)
    result = runtime().evaluate(source, parse_setup(source), {"B04": b04})
    high = b04 > 0.5
    assert (result["a"][0] == np.where(high, 1, 255)).all()
    assert (result["a"][1] == np.where(high, 2, 255)).all()
    assert (result["b"][0] == np.where(high, 3, 0)).all()


def test_a_bare_number_for_a_three_band_output_is_refused() -> None:
    source = (
        '//VERSION=3\nfunction setup() { return { input: ["B04"], output: { bands: 3 } }; }\n'
        "function evaluatePixel(s) { return 0.5; }"
    )
    with pytest.raises(EvalscriptError, match=r"must be an array of 3 value\(s\).*got 0.5"):
        runtime().evaluate(source, parse_setup(source), {"B04": np.zeros((H, W))})


# -- preProcessScenes and updateOutput (spec §6, checks 4, 5, 12) ---------------------------------

LAST_DAYS = """//VERSION=3
function setup() {
  return { input: ["B04", "dataMask"], output: { id: "series", bands: 1, sampleType: "FLOAT32" },
           mosaicking: Mosaicking.ORBIT };
}
let seen;
function preProcessScenes(collections) {
  seen = { from: collections.from.toISOString(), to: collections.to.toISOString(),
           dates: collections.to instanceof Date && collections.from instanceof Date,
           all: collections.scenes.orbits.map(o => o.dateFrom) };
  collections.scenes.orbits = collections.scenes.orbits.filter(function (orbit) {
    return new Date(orbit.dateFrom).getTime() >= collections.to.getTime() - 10 * 24 * 3600 * 1000;
  });
  return collections;
}
function updateOutput(outputs, collection) {
  Object.values(outputs).forEach(o => { o.bands = collection.scenes.length; });
  seen.updated = collection.scenes.map(s => s.date instanceof Date && s.date.getUTCDate());
}
function evaluatePixel(samples) { return samples.map(s => s.dataMask ? s.B04 : NaN); }
function updateOutputMetadata(scenes, inputMetadata, outputMetadata) {
  outputMetadata.userData = { seen: seen, kept: scenes.orbits.map(o => o.dateFrom),
                              deprecated: scenes.map(o => o.date.getUTCDate()) };
}
"""


def test_last_days_filter_with_the_request_time_range_and_one_band_per_scene() -> None:
    days = ["2024-06-28", "2024-06-21", "2024-06-14", "2024-06-02"]
    data = {
        "default": SourceData(
            {"B04": per_scene([0.1, 0.2, 0.3, 0.4]), "dataMask": per_scene([1, 0, 1, 1], np.uint8)},
            orbits(days),
        )
    }
    ranges = {
        "default": (datetime(2024, 6, 1, tzinfo=UTC), datetime(2024, 6, 30, 23, 59, 59, tzinfo=UTC))
    }
    _, kept, result = evaluate(LAST_DAYS, data, ranges)
    assert kept == {"default": [0, 1]}  # June 28 and 21: within 10 days of June 30
    series = result.rasters["series"]
    assert series.shape == (2, H, W)
    assert (series[0] == np.float32(0.1)).all() and np.isnan(series[1]).all()
    assert result.userdata == {
        "seen": {
            "from": "2024-06-01T00:00:00.000Z",
            "to": "2024-06-30T23:59:59.000Z",
            "dates": True,
            "all": [f"{d}T00:00:00Z" for d in days],
            "updated": [28, 21],
        },
        "kept": ["2024-06-28T00:00:00Z", "2024-06-21T00:00:00Z"],
        "deprecated": [28, 21],  # scenes[i].date of the deprecated form: a Date
    }


def test_update_output_under_simple_counts_the_scenes_of_the_mosaic() -> None:
    source = (
        '//VERSION=3\nfunction setup() { return { input: ["B04"], output: { bands: 1, '
        'sampleType: "UINT8" } }; }\n'
        "function updateOutput(outputs, collection) { outputs.default.bands = "
        "collection.scenes.length + 1; }\n"
        "function evaluatePixel(s) { return [7, 8, 9]; }"
    )
    tiles = [{"date": "2024-06-02T10:00:00Z"}, {"date": "2024-06-01T10:00:00Z"}]
    data = {"default": SourceData({"B04": np.zeros((1, H, W), np.float32)}, tiles)}
    result = runtime().evaluate_sources(source, parse_setup(source), data)
    assert [int(band[0, 0]) for band in result.rasters["default"]] == [7, 8, 9]


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ('"many"', 'set outputs.default.bands to "many"'),
        ("-2", "set outputs.default.bands to -2"),
        ("undefined", 'set outputs.default.bands to "undefined"'),
    ],
)
def test_update_output_must_leave_whole_band_counts(assignment: str, message: str) -> None:
    source = (
        '//VERSION=3\nfunction setup() { return { input: ["B04"], output: { bands: 1 } }; }\n'
        f"function updateOutput(outputs) {{ outputs.default.bands = {assignment}; }}\n"
        "function evaluatePixel(s) { return [0]; }"
    )
    data = {"default": SourceData({"B04": np.zeros((1, H, W), np.float32)})}
    with pytest.raises(EvalscriptError, match=message):
        runtime().evaluate_sources(source, parse_setup(source), data)


def test_pre_process_scenes_under_tile_gets_the_time_range_too() -> None:
    source = (
        '//VERSION=3\nfunction setup() { return { input: ["B04"], output: { bands: 1 }, '
        'mosaicking: "TILE" }; }\n'
        "function preProcessScenes(c) { c.scenes.tiles = c.scenes.tiles.filter("
        "t => new Date(t.date) < c.to && new Date(t.date) > c.from); return c; }\n"
        "function evaluatePixel(s) { return [s.length]; }"
    )
    tiles = [
        {"date": d}
        for d in ("2024-07-02T10:00:00Z", "2024-06-20T10:00:00Z", "2024-05-30T10:00:00Z")
    ]
    kept = runtime().pre_process_scenes(
        source,
        parse_setup(source),
        {"default": tiles},
        {"default": (datetime(2024, 6, 1, tzinfo=UTC), datetime(2024, 7, 1, tzinfo=UTC))},
    )
    assert kept == {"default": [1]}


# -- data fusion (spec §3.2, check 2) -----------------------------------------------------------

FUSION = """//VERSION=3
function setup() {
  return {
    input: [{ datasource: "l2a", bands: ["B04", "dataMask"] },
            { datasource: "s1", bands: ["VV", "dataMask"], mosaicking: "ORBIT" }],
    output: { bands: 5, sampleType: "FLOAT32" }
  };
}
function evaluatePixel(samples, scenes) {
  const s2 = samples.l2a;
  return [Array.isArray(s2) ? s2.length : -1, s2.length ? s2[0].B04 : NaN, samples.l2a.B04,
          samples.s1.length ? samples.s1[samples.s1.length - 1].VV : NaN,
          scenes.s1.scenes[0].date.getUTCDate() * 100 + scenes.s1.scenes.length
            + scenes.l2a.scenes.length * 1000];
}
"""


def fusion_data(l2a_mask: int) -> dict[str, SourceData]:
    return {
        "l2a": SourceData(
            {
                "B04": np.full((1, H, W), 0.3, np.float32),
                "dataMask": np.full((1, H, W), l2a_mask, np.uint8),
            },
        ),
        "s1": SourceData(
            {"VV": per_scene([0.05, 0.07]), "dataMask": per_scene([1, 1], np.uint8)},
            orbits(["2024-06-20", "2024-06-08"]),
        ),
    }


def test_fusion_sources_are_arrays_even_under_simple_each_with_its_own_mosaicking() -> None:
    _, _, result = evaluate(FUSION, fusion_data(1))
    got = result.rasters["default"][:, 0, 0]
    assert got[0] == 1  # the one SIMPLE mosaic, in an array
    assert got[1] == got[2] == np.float32(0.3)  # samples.l2a[0].B04, and the older l2a.B04
    assert got[3] == np.float32(0.07)  # the last orbit of the ORBIT source
    assert got[4] == 20 * 100 + 2  # scenes.s1.scenes[i].date is a Date; l2a has no scenes


def test_a_fused_simple_source_without_data_is_an_empty_array() -> None:
    _, _, result = evaluate(FUSION, fusion_data(0))
    got = result.rasters["default"][:, 0, 0]
    assert got[0] == 0 and np.isnan(got[1]) and np.isnan(got[2])


def test_fusion_paired_by_position_is_keyed_by_position_and_by_id() -> None:
    source = (
        "//VERSION=3\nfunction setup() { return { input: [{ bands: ['B04'] }, "
        "{ bands: ['SCL'], units: 'DN' }], output: { bands: 3, sampleType: 'FLOAT32' } }; }\n"
        "function evaluatePixel(samples) { return [samples['0'][0].B04, samples['1'][0].SCL, "
        "samples.l2a[0].SCL]; }"
    )
    setup = parse_setup(source).for_sources(["l1c", "l2a"])
    assert [i.datasource for i in setup.inputs] == ["l1c", "l2a"] and setup.positional
    data = {
        "l1c": SourceData({"B04": np.full((1, H, W), 0.25, np.float32)}),
        "l2a": SourceData({"SCL": np.full((1, H, W), 4, np.float32)}),
    }
    result = runtime().evaluate_sources(source, setup, data)
    assert result.rasters["default"][:, 0, 0].tolist() == [0.25, 4, 4]


def test_fusion_by_position_needs_one_input_object_per_source() -> None:
    source = (
        "//VERSION=3\nfunction setup() { return { input: ['B04'] }; }\nfunction evaluatePixel() {}"
    )
    with pytest.raises(EvalscriptError, match="1 input object\\(s\\) for 2 data sources"):
        parse_setup(source).for_sources(["a", "b"])


def test_pre_process_scenes_with_fusion_gets_each_source_under_its_id() -> None:
    source = FUSION.replace(
        "function evaluatePixel",
        "function preProcessScenes(c) { c.s1.scenes.orbits = c.s1.scenes.orbits.filter("
        "o => new Date(o.dateFrom) >= c.s1.from && c.from.getTime() === c.s1.from.getTime() "
        "&& o.dateFrom < '2024-06-10'); return c; }\nfunction evaluatePixel",
    )
    ranges = {"s1": (datetime(2024, 6, 5, tzinfo=UTC), None)}
    _, kept, result = evaluate(source, fusion_data(1), ranges)
    assert kept["s1"] == [1]  # the SIMPLE source is not filtered
    assert result.rasters["default"][3, 0, 0] == np.float32(0.07)


def test_scripts_see_dates_in_utc_whatever_the_worker_time_zone() -> None:
    """A worker in New York evaluates `getDate()`/`new Date(y, m, d)` as Sentinel Hub does, in
    UTC (V8 takes the zone once per process, so this runs in a fresh interpreter)."""
    code = (
        "import numpy as np\n"
        "from eobatch.script import get_runtime, parse_setup\n"
        'src = (\'//VERSION=3\\nfunction setup() { return { input: ["B04"], output: { bands: 2,'
        ' sampleType: "UINT8" } }; }\\nfunction evaluatePixel(s) { return ['
        'new Date("2024-06-01T00:00:00Z").getDate(), new Date(2024, 0, 1).getUTCHours()]; }\')\n'
        "r = get_runtime(10, 128).evaluate(src, parse_setup(src), {'B04': np.zeros((1, 1))})\n"
        "print(r['default'].ravel().tolist())\n"
    )
    env = {**os.environ, "TZ": "America/New_York"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[1, 0]"


def test_scenes_serialise_as_documented_in_either_form() -> None:
    source = (
        '//VERSION=3\nfunction setup() { return { input: ["B04"], output: { bands: 0 }, '
        'mosaicking: "TILE" }; }\nfunction evaluatePixel(s) { return []; }\n'
        "function updateOutputMetadata(scenes, im, om) { om.userData = { whole: scenes, "
        "tiles: scenes.tiles, first: scenes[0].date, n: scenes.length }; }"
    )
    tiles = [
        {"date": "2024-06-02T10:00:00Z", "shId": 1},
        {"date": "2024-06-01T10:00:00Z", "shId": 2},
    ]
    data = {"default": SourceData({"B04": np.zeros((2, H, W), np.float32)}, tiles)}
    result = runtime().evaluate_sources(source, parse_setup(source), data)
    listed = [{**t, "__idx": n} for n, t in enumerate(tiles)]
    assert result.userdata == {
        "whole": {"tiles": listed},
        "tiles": listed,
        "first": "2024-06-02T10:00:00Z",
        "n": 2,
    }
