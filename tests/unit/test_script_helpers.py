"""The helper functions and visualizers scripts get (spec §8-10), checked against the values
Sentinel Hub's documentation lists (spec §11) and against numpy where it lists none."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from eobatch.script._v8 import ScriptContext


@pytest.fixture(scope="module")
def js() -> Iterator[Any]:
    context = ScriptContext(10, 128)

    def evaluate(expression: str) -> Any:
        return json.loads(context.eval(f"JSON.stringify({expression})"))

    yield evaluate
    context.close()


def rgb(*channels: int) -> list[float]:
    return [c / 255 for c in channels]


def close(got: Any, want: Any) -> None:
    np.testing.assert_allclose(np.array(got, dtype=float), np.array(want, dtype=float), rtol=1e-12)


# -- ColorMapVisualizer, ColorRampVisualizer (§8.1, §8.2; check 7) -------------------------------


@pytest.mark.parametrize(
    ("value", "color"),
    [
        (150, [1, 0, 0]),
        (199, [1, 0, 0]),
        (200, [1, 0, 0]),
        (250, [1, 0, 0]),
        (299, [1, 0, 0]),
        (300, [0, 0, 1]),
        (1e9, [0, 0, 1]),
    ],
)
def test_color_map_takes_the_last_threshold_at_or_below(js, value: float, color: list) -> None:  # type: ignore[no-untyped-def]
    got = js(f"new ColorMapVisualizer([[200, 0xff0000], [300, 0x0000ff]]).process({value})")
    assert got == color


def test_color_map_process_list_default_map_and_array_colours(js) -> None:  # type: ignore[no-untyped-def]
    assert js(
        "new ColorMapVisualizer([[0, [0.1, 0.2, 0.3]], [1, 0x00ff00]]).processList([0.5, 3])"
    ) == [
        [0.1, 0.2, 0.3],
        [0, 1, 0],
    ]
    assert js("ColorMapVisualizer.createDefaultColorMap().process(0.15)") == rgb(0xFF, 0xFF, 0x33)
    # a returned colour is a copy: pushing an alpha onto it changes nothing for the next pixel
    assert js(
        "(() => { const v = new ColorMapVisualizer([[0, 0xffffff]]); v.process(1).push(1); "
        "return v.process(1); })()"
    ) == [1, 1, 1]


@pytest.mark.parametrize(
    ("value", "color"),
    [
        (100, rgb(255, 0, 0)),
        (200, rgb(255, 0, 0)),
        (250, rgb(128, 0, 128)),
        (299, rgb(3, 0, 252)),
        (300, rgb(0, 0, 255)),
        (400, rgb(0, 0, 255)),
    ],
)
def test_color_ramp_rounds_hex_channels_as_the_docs_list(js, value: float, color: list) -> None:  # type: ignore[no-untyped-def]
    assert (
        js(f"new ColorRampVisualizer([[200, 0xff0000], [300, 0x0000ff]]).process({value})") == color
    )


def test_color_ramp_descending_rescaled_inverse_and_array_colours(js) -> None:  # type: ignore[no-untyped-def]
    # given in descending order, as dem-color scripts do
    assert js("new ColorRampVisualizer([[1, 0xffffff], [0, 0x000000]]).process(0.25)") == rgb(
        64, 64, 64
    )
    assert js("new ColorRampVisualizer([[0, 0x000000], [1, 0xffffff]], 10, 20).process(15)") == rgb(
        128, 128, 128
    )
    assert js("new ColorRampVisualizer([[0, 0x000000], [1, 0xffffff]]).inverse().process(0)") == [
        1,
        1,
        1,
    ]
    close(
        js("new ColorRampVisualizer([[0, [0, 10, 200]], [1, [100, 20, 0]]]).process(0.3)"),
        [30, 13, 140],
    )
    assert js("new ColorRampVisualizer([[0, 0x000000], [1, 0xffffff]]).process(NaN)") == [1, 1, 1]


PRESETS = {
    "createBlueRed": [
        rgb(0, 0, 128),
        rgb(0, 179, 255),
        rgb(128, 255, 128),
        rgb(255, 76, 0),
        rgb(128, 0, 0),
    ],
    "createWhiteGreen": [
        rgb(0, 0, 0),
        rgb(0, 76, 0),
        rgb(43, 128, 0),
        rgb(170, 204, 85),
        rgb(255, 255, 255),
    ],
    "createRedTemperature": [
        rgb(0, 0, 0),
        rgb(110, 0, 0),
        rgb(183, 12, 0),
        rgb(255, 158, 51),
        rgb(255, 255, 255),
    ],
}


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("kind", ["ColorRampVisualizer", "ColorGradientVisualizer"])
def test_presets_give_the_documented_colours(js, kind: str, preset: str) -> None:  # type: ignore[no-untyped-def]
    got = js(f"{kind}.{preset}(0, 1).processList([0, 0.3, 0.5, 0.8, 1])")
    assert got == PRESETS[preset]
    assert js(f"{kind}.{preset}().process(0.3)") == PRESETS[preset][1]  # defaults: 0 to 1


def test_blue_red_process_list_of_the_ends(js) -> None:  # type: ignore[no-untyped-def]
    assert js("ColorRampVisualizer.createBlueRed(0, 1).processList([0, 1])") == [
        rgb(0, 0, 128),
        rgb(128, 0, 0),
    ]


def test_ocean_colour_runs_purple_to_dark_red(js) -> None:  # type: ignore[no-untyped-def]
    close(js("ColorRampVisualizer.createOceanColor(0, 10).process(0)"), rgb(147, 0, 108))
    close(js("ColorRampVisualizer.createOceanColor(0, 10).process(10)"), rgb(105, 0, 0))
    close(js("ColorRampVisualizer.createOceanColor(0, 10).process(2)"), rgb(0, 10, 255))


# -- HighlightCompress, Default, Identity (§8.4-8.7; check 9) -------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (0.1, 0),
        (0.25, 0.5),
        (0.376, 0.92),
        (0.4, 0.92 + 0.08 * 0.08 / 1.08),
        (0.7, 1),
        (1.1, 1),
    ],
)
def test_highlight_compress_checks_of_the_docs(js, value: float, expected: float) -> None:  # type: ignore[no-untyped-def]
    assert js(f"new HighlightCompressVisualizer(0.1, 0.4).process({value})") == pytest.approx(
        expected, abs=1e-12
    )


def test_gain_offset_gamma_single_default_and_identity(js) -> None:  # type: ignore[no-untyped-def]
    assert js("new HighlightCompressVisualizer(0, 2, 2, 0.1, 2).process(0.5)") == pytest.approx(
        0.36
    )  # (2 * 0.25 + 0.1)^2, no compression for a maximum of 2
    assert js("new HighlightCompressVisualizerSingle().process(0.5)") == [0.5]
    assert js("new HighlightCompressVisualizerSingle(0, 1).processList([0.2, 2])") == [[0.2], [1]]
    assert js("new DefaultVisualizer(0, 1, 1, 0, 0.5).process(4)") == 2  # with gamma: unclamped
    assert js("new DefaultVisualizer(0.1, 0.3).process(0.4)") == 1
    assert js("[new Identity().process(3), new Identity().process([1, 2])]") == [[3], [1, 2]]


# -- functions (§9; check 10) ---------------------------------------------------------------------

SEVEN = [
    [0, 0, 0],
    [0.1, 0.2, 0.5],
    [0.2, 0.4, 0.6],
    [0.3, 0.5, 0.7],
    [0.4, 0.6, 0.8],
    [0.5, 0.7, 0.9],
    [1, 1, 1],
]


@pytest.mark.parametrize("name", ["valueInterpolate", "colorBlend"])
def test_value_interpolate_with_numbers_and_colour_arrays(js, name: str) -> None:  # type: ignore[no-untyped-def]
    assert js(f"{name}(9, [-10, -5, 0, 5, 10], [-1000, -50, 0, 50, 1000])") == pytest.approx(810)
    stops = "[0, 0.2, 0.3, 0.4, 0.5, 1.0]"
    close(js(f"{name}(0.1, {stops}, {SEVEN})"), [0.05, 0.1, 0.25])
    assert js(f"{name}(1.5, {stops}, {SEVEN})") == SEVEN[6]  # above the last stop: the 7th
    assert js(f"{name}(1.0, {stops}, {SEVEN})") == SEVEN[5]  # at the last stop: the 6th
    assert js(f"{name}(-1, {stops}, {SEVEN})") == SEVEN[0]
    # RGBA colours, and a new array every time
    close(js(f"{name}(0.5, [0, 1], [[0, 0, 0, 1], [1, 0.5, 0, 0]])"), [0.5, 0.25, 0, 0.5])
    assert js(f"(() => {{ const c = [[1, 1, 1]]; {name}(5, [0], c).push(0); return c; }})()") == [
        [1, 1, 1]
    ]


def test_value_map_color_map_and_the_colour_functions(js) -> None:  # type: ignore[no-untyped-def]
    limits, values = "[1, 3, 5, 7, 10]", "[100, 300, 500, 700, 900]"
    assert js(f"[5, 2, 12, 0].map(v => valueMap(v, {limits}, {values}))") == [500, 300, 900, 100]
    assert js("valueMap(4)") == 4
    assert js("colorMap(4, [3, 5], [[1, 0, 0], [0, 1, 0], [0, 0, 1]])") == [0, 1, 0]
    assert js("[int2rgb(255), int2rgb(256), int2rgb(65537)]") == [[0, 0, 255], [0, 1, 0], [1, 0, 1]]
    assert js("rgb2int([1, 0, 1])") == 65537
    assert js("normalizeRGB([255, 0, 51])") == [1, 0, 0.2]
    assert js("combine([100, 0, 0], [0, 100, 0], 0.5)") == [50, 50, 0]
    assert js("combine(0xff0000, 0x0000ff, 0.5)") == 0x800080
    assert js("[index(0.6, 0.4), index(0, 0), inverse(0) === JAVA_DOUBLE_MAX_VAL, inverse(4)]") == [
        pytest.approx(0.2),
        0,
        True,
        0.25,
    ]


def test_quality_flag_decoders(js) -> None:  # type: ignore[no-untyped-def]
    qa = js("decodeL8C2Qa(55052)")  # the documentation's example
    assert qa == {
        "fill": 0,
        "dilatedCloud": 0,
        "cirrus": 1,
        "cloud": 1,
        "cloudShadow": 0,
        "snow": 0,
        "clear": 0,
        "water": 0,
        "cloudConfidence": 3,
        "cloudShadowConfidence": 1,
        "snowIceConfidence": 1,
        "cirrusConfidence": 3,
    }
    flags = js("decodeS3OLCIQualityFlags((1 << 31) >>> 0 | 1 << 25 | 1 << 20 | 1)")
    assert flags["land"] == 1 and flags["invalid"] == 1 and flags["coastline"] == 0
    assert flags["saturatedB01"] == 1 and flags["saturatedB21"] == 1 and flags["saturatedB02"] == 0
    assert (
        js("decodeLs8Qa(16 | 96)")["cloud"] == 1 and js("decodeLs8Qa(96)")["cloudConfidence"] == 3
    )


def test_constants_and_enums(js) -> None:  # type: ignore[no-untyped-def]
    assert js("[SampleType.UINT16, Mosaicking.TILE, Object.isFrozen(SampleType)]") == [
        "UINT16",
        "TILE",
        True,
    ]
    assert js("[blueRed.length, redTemperature[1], greenWhite[3], oceanColor.length]") == [
        6,
        [0.525, 0xAE0000],
        [0, 0xFFFFFF],
        21,
    ]
