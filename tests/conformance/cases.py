"""Evalscript conformance cases: a script, inputs with known values, and the expected outputs
computed independently in numpy (never through eobatch's own conversion code).

Scripts are the spec's examples (evalscript-v3.md §9), well-known public custom scripts
rewritten here, and our own cases for each rule of the runtime.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eobatch.script import SourceData

H, W = 7, 9
DTYPES = {
    "AUTO": np.uint8,
    "UINT8": np.uint8,
    "INT8": np.int8,
    "UINT16": np.uint16,
    "INT16": np.int16,
    "FLOAT32": np.float32,
}
LIMITS = {"UINT8": (0, 255), "INT8": (-128, 127), "UINT16": (0, 65535), "INT16": (-32768, 32767)}

Inputs = dict[str, SourceData]


@dataclass
class Case:
    name: str
    script: str
    inputs: Callable[[np.random.Generator], Inputs]
    expected: Callable[[Inputs], dict[str, np.ndarray]]
    rtol: float = 0.0  # for FLOAT32 results of Math.* functions (last-ulp differences)
    userdata: Callable[[Inputs], Any] | None = None
    kept: dict[str, list[int]] | None = None  # what preProcessScenes must keep
    custom: dict[str, Any] = field(default_factory=dict)


def convert(values: np.ndarray, sample_type: str) -> np.ndarray:
    """Sentinel Hub's conversion (§5), written independently: half away from zero, clamp,
    non-finite -> 0 for integer types, AUTO = UINT8 of v * 255."""
    v = np.asarray(values, dtype=np.float64)
    if sample_type == "FLOAT32":
        return v.astype(np.float32)
    if sample_type == "AUTO":
        v, sample_type = v * 255, "UINT8"
    v = np.where(np.isfinite(v), v, 0.0)
    rounded = np.sign(v) * np.floor(np.abs(v) + 0.5)
    low, high = LIMITS[sample_type]
    return np.clip(rounded, low, high).astype(DTYPES[sample_type])


def reflectance(
    rng: np.random.Generator,
    *bands: str,
    scenes: int = 1,
    low: float = 0.01,
    high: float = 0.6,
    mask: bool = True,
) -> SourceData:
    """Random float32 reflectances per band, (scenes, H, W), and a mostly-1 dataMask."""
    data = {b: rng.uniform(low, high, (scenes, H, W)).astype(np.float32) for b in bands}
    if mask:
        data["dataMask"] = (rng.uniform(0, 1, (scenes, H, W)) > 0.15).astype(np.uint8)
    metadata = [orbit(n) for n in range(scenes)] if scenes > 1 else []
    return SourceData(data, metadata)


def orbit(n: int) -> dict[str, Any]:
    day = f"2024-06-{20 - n:02d}"  # index 0 is the newest, as mostRecent orders them
    return {
        "dateFrom": f"{day}T00:00:00Z",
        "dateTo": f"{day}T23:59:59Z",
        "tiles": [
            {
                "date": f"{day}T10:00:00Z",
                "shId": f"t{n}",
                "tileOriginalId": f"t{n}",
                "dataPath": f"s3://b/t{n}",
            }
        ],
    }


def tile(n: int) -> dict[str, Any]:
    day = f"2024-06-{20 - n:02d}"
    return {
        "date": f"{day}T10:00:00Z",
        "shId": f"t{n}",
        "tileOriginalId": f"t{n}",
        "dataPath": f"s3://b/t{n}",
        "cloudCoverage": 10.0 * n,
    }


def b(data: Inputs, name: str, source: str = "default") -> np.ndarray:
    """A band as float64, the precision V8 computes in; (H, W) for SIMPLE, (S, H, W) else."""
    values = data[source].bands[name].astype(np.float64)
    return values[0] if values.shape[0] == 1 and not data[source].scenes else values


def simple(*bands: str, **kw: Any) -> Callable[[np.random.Generator], Inputs]:
    return lambda rng: {"default": reflectance(rng, *bands, **kw)}


def header(inputs: str, outputs: str, mosaicking: str = "") -> str:
    extra = f", mosaicking: {mosaicking}" if mosaicking else ""
    return (
        f"//VERSION=3\nfunction setup() {{ return {{ input: {inputs}, output: {outputs}"
        f"{extra} }}; }}\n"
    )


def nd(a: np.ndarray, c: np.ndarray) -> np.ndarray:
    return (a - c) / (a + c)


def one(sample_type: str, values: np.ndarray, output: str = "default") -> dict[str, np.ndarray]:
    return {output: convert(values, sample_type)[None]}


def stack(sample_type: str, *bands: np.ndarray) -> np.ndarray:
    return np.stack([convert(x, sample_type) for x in bands])


CASES: list[Case] = []


def case(**kw: Any) -> None:
    CASES.append(Case(**kw))


# -- the spec's worked examples (§9) ------------------------------------------------------------

case(
    name="spec1_ndvi_float32",
    script=header('["B04", "B08", "dataMask"]', '{ bands: 1, sampleType: "FLOAT32" }')
    + "function evaluatePixel(s) { return [(s.B08 - s.B04) / (s.B08 + s.B04)]; }",
    inputs=simple("B04", "B08"),
    expected=lambda d: one("FLOAT32", nd(b(d, "B08"), b(d, "B04"))),
)
case(
    name="spec1_ndvi_exact_value",
    script=CASES[-1].script,
    inputs=lambda rng: {
        "default": SourceData(
            {
                "B04": np.full((1, H, W), 0.05, np.float32),
                "B08": np.full((1, H, W), 0.35, np.float32),
                "dataMask": np.ones((1, H, W), np.uint8),
            }
        )
    },
    expected=lambda d: {
        "default": np.full(
            (1, H, W),
            np.float32(
                (np.float64(np.float32(0.35)) - np.float64(np.float32(0.05)))
                / (np.float64(np.float32(0.35)) + np.float64(np.float32(0.05)))
            ),
            np.float32,
        )
    },
)
case(
    name="spec2_true_colour_auto",
    script=header('["B02", "B03", "B04"]', "{ bands: 3 }")
    + "function evaluatePixel(s) { return [2.5 * s.B04, 2.5 * s.B03, 2.5 * s.B02]; }",
    inputs=lambda rng: {
        "default": SourceData(
            {
                "B04": np.full((1, H, W), 0.1, np.float64),
                "B03": np.full((1, H, W), 0.08, np.float64),
                "B02": np.full((1, H, W), 0.06, np.float64),
            }
        )
    },
    expected=lambda d: {"default": np.stack([np.full((H, W), v, np.uint8) for v in (64, 51, 38)])},
)
case(
    name="spec3_dn_uint16",
    script=header('[{ bands: ["B08"], units: "DN" }]', '{ bands: 1, sampleType: "UINT16" }')
    + "function evaluatePixel(s) { return [s.B08]; }",
    inputs=lambda rng: {
        "default": SourceData({"B08": rng.integers(0, 12000, (1, H, W)).astype(np.uint16)})
    },
    expected=lambda d: one("UINT16", b(d, "B08")),
)
case(
    name="spec4_multi_output",
    script=header(
        '["B04", "B08", "dataMask"]',
        '[{ id: "ndvi", bands: 1, sampleType: "FLOAT32" },'
        ' { id: "mask", bands: 1, sampleType: "UINT8" }]',
    )
    + "function evaluatePixel(s) { return { ndvi: [index(s.B08, s.B04)], mask: [s.dataMask] }; }",
    inputs=simple("B04", "B08"),
    expected=lambda d: {
        **one("FLOAT32", nd(b(d, "B08"), b(d, "B04")), "ndvi"),
        **one("UINT8", b(d, "dataMask"), "mask"),
    },
)
case(
    name="spec6_clamping_and_rounding",
    script=header('["B01"]', '{ bands: 1, sampleType: "UINT8" }')
    + "function evaluatePixel(s) { return [s.B01]; }",
    inputs=lambda rng: {
        "default": SourceData(
            {
                "B01": np.resize(
                    np.array([-5, 300, 12.5, 12.49, -0.5, 254.5, 255.5, 0.5], np.float32), (1, H, W)
                )
            }
        )
    },
    expected=lambda d: one("UINT8", b(d, "B01")),
)

# -- well-known indices and composites (public custom scripts, rewritten) ------------------------

for name, formula, bands, expect in [
    (
        "ndwi",
        "(s.B03 - s.B08) / (s.B03 + s.B08)",
        ("B03", "B08"),
        lambda d: nd(b(d, "B03"), b(d, "B08")),
    ),
    (
        "ndmi",
        "(s.B08 - s.B11) / (s.B08 + s.B11)",
        ("B08", "B11"),
        lambda d: nd(b(d, "B08"), b(d, "B11")),
    ),
    (
        "nbr",
        "(s.B08 - s.B12) / (s.B08 + s.B12)",
        ("B08", "B12"),
        lambda d: nd(b(d, "B08"), b(d, "B12")),
    ),
    (
        "evi",
        "2.5 * (s.B08 - s.B04) / (s.B08 + 6 * s.B04 - 7.5 * s.B02 + 1)",
        ("B02", "B04", "B08"),
        lambda d: (
            2.5
            * (b(d, "B08") - b(d, "B04"))
            / (b(d, "B08") + 6 * b(d, "B04") - 7.5 * b(d, "B02") + 1)
        ),
    ),
    (
        "savi",
        "1.5 * (s.B08 - s.B04) / (s.B08 + s.B04 + 0.5)",
        ("B04", "B08"),
        lambda d: 1.5 * (b(d, "B08") - b(d, "B04")) / (b(d, "B08") + b(d, "B04") + 0.5),
    ),
    ("ndsi", "index(s.B03, s.B11)", ("B03", "B11"), lambda d: nd(b(d, "B03"), b(d, "B11"))),
    (
        "gndvi",
        "(s.B08 - s.B03) / (s.B08 + s.B03)",
        ("B03", "B08"),
        lambda d: nd(b(d, "B08"), b(d, "B03")),
    ),
    ("ndre", "index(s.B08, s.B05)", ("B05", "B08"), lambda d: nd(b(d, "B08"), b(d, "B05"))),
    (
        "msavi2",
        "(2 * s.B08 + 1 - Math.sqrt(Math.pow(2 * s.B08 + 1, 2) - 8 * (s.B08 - s.B04))) / 2",
        ("B04", "B08"),
        lambda d: (
            (
                2 * b(d, "B08")
                + 1
                - np.sqrt((2 * b(d, "B08") + 1) ** 2 - 8 * (b(d, "B08") - b(d, "B04")))
            )
            / 2
        ),
    ),
]:
    case(
        name=f"index_{name}_float32",
        script=header(str(list(bands)).replace("'", '"'), '{ bands: 1, sampleType: "FLOAT32" }')
        + f"function evaluatePixel(s) {{ return [{formula}]; }}",
        inputs=simple(*bands),
        expected=lambda d, expect=expect: one("FLOAT32", expect(d)),
        rtol=1e-6,
    )

for name, bands in [
    ("false_colour", ("B08", "B04", "B03")),
    ("swir", ("B12", "B8A", "B04")),
    ("agriculture", ("B11", "B08", "B02")),
]:
    case(
        name=f"composite_{name}_auto",
        script=header(str(list(bands)).replace("'", '"'), "{ bands: 3 }")
        + "function evaluatePixel(s) { return ["
        + ", ".join(f"2.5 * s.{x}" for x in bands)
        + "]; }",
        inputs=simple(*bands, high=0.45),
        expected=lambda d, bands=bands: {"default": stack("AUTO", *(2.5 * b(d, x) for x in bands))},
    )

# -- prelude helpers (§8) -------------------------------------------------------------------------

STOPS, VALUES = [-0.2, 0.0, 0.3, 0.8], [0, 40, 160, 255]


def interpolate(v: np.ndarray, stops: list[float], values: list[float]) -> np.ndarray:
    return np.interp(v, stops, values)  # clamped at both ends, like valueInterpolate


case(
    name="prelude_value_interpolate_uint8",
    script=header('["B04", "B08"]', '{ bands: 1, sampleType: "UINT8" }')
    + f"function evaluatePixel(s) {{ return [valueInterpolate(index(s.B08, s.B04), {STOPS}, "
    f"{VALUES})]; }}",
    inputs=simple("B04", "B08"),
    expected=lambda d: one("UINT8", interpolate(nd(b(d, "B08"), b(d, "B04")), STOPS, VALUES)),
)
RAMP = [
    (-0.5, (0.05, 0.05, 0.05)),
    (0.2, (0.8, 0.7, 0.4)),
    (0.6, (0.2, 0.6, 0.1)),
    (1.0, (0.0, 0.3, 0.0)),
]


def blend(v: np.ndarray, ramp: list) -> np.ndarray:
    stops = [r[0] for r in ramp]
    return np.stack([np.interp(v, stops, [r[1][c] for r in ramp]) for c in range(3)])


case(
    name="prelude_color_blend_auto",
    script=header('["B04", "B08"]', "{ bands: 3 }")
    + f"const stops = {[r[0] for r in RAMP]}; const colors = {[list(r[1]) for r in RAMP]};\n"
    + "function evaluatePixel(s) { return colorBlend(index(s.B08, s.B04), stops, colors); }",
    inputs=simple("B04", "B08"),
    expected=lambda d: {"default": convert(blend(nd(b(d, "B08"), b(d, "B04")), RAMP), "AUTO")},
)
HEX = [(-0.2, 0x0C0C0C), (0.0, 0xEAEAEA), (0.2, 0x99B718), (0.6, 0x306D1C), (1.0, 0x004400)]


def hex_blend(v: np.ndarray, ramp: list[tuple[float, int]]) -> np.ndarray:
    """A ramp of 0xRRGGBB colours: each channel interpolated in 0..255, rounded half up
    (JavaScript's Math.round), then / 255."""
    stops = [r[0] for r in ramp]
    channels = [[(h >> shift) & 255 for _, h in ramp] for shift in (16, 8, 0)]
    return np.stack([np.floor(np.interp(v, stops, c) + 0.5) / 255 for c in channels])


case(
    name="prelude_color_ramp_visualizer_hex",
    script=header('["B04", "B08", "dataMask"]', "{ bands: 4 }")
    + "const viz = new ColorRampVisualizer(["
    + ", ".join(f"[{v}, 0x{h:06X}]" for v, h in HEX)
    + "]);\nfunction evaluatePixel(s) { return [...viz.process(index(s.B08, s.B04)), "
    "s.dataMask]; }",
    inputs=simple("B04", "B08"),
    expected=lambda d: {
        "default": np.concatenate(
            [
                convert(hex_blend(nd(b(d, "B08"), b(d, "B04")), HEX), "AUTO"),
                convert(b(d, "dataMask"), "AUTO")[None],
            ]
        )
    },
)
case(
    name="prelude_color_ramp_rescaled_to_min_max",
    script=header('["B04"]', "{ bands: 3 }")
    + "const viz = new ColorRampVisualizer([[0, 0x000000], [1, 0xFFFFFF]], 0.1, 0.5);\n"
    "function evaluatePixel(s) { return viz.process(s.B04); }",
    inputs=simple("B04", mask=False),
    expected=lambda d: {
        "default": convert(
            np.repeat(hex_blend(b(d, "B04"), [(0.1, 0x000000), (0.5, 0xFFFFFF)])[:1], 3, axis=0),
            "AUTO",
        )
    },
)


def highlight(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """HighlightCompressVisualizer (spec §8.4): above 0.92 compressed linearly (max < 1)."""
    x = (v - lo) / (hi - lo)
    if 0 < hi < 1:
        x = np.where(x > 0.92, 0.92 + (x - 0.92) * (0.08 / 1.08), x)
    return np.clip(x, 0, 1)


case(
    name="prelude_highlight_compress_true_colour",
    script=header('["B02", "B03", "B04"]', "{ bands: 3 }")
    + "const viz = new HighlightCompressVisualizer(0, 0.4);\n"
    "function evaluatePixel(s) { return [s.B04, s.B03, s.B02].map(v => viz.process(v)); }",
    inputs=simple("B02", "B03", "B04", high=0.6),
    expected=lambda d: {
        "default": stack("AUTO", *(highlight(b(d, x), 0, 0.4) for x in ("B04", "B03", "B02")))
    },
)
case(
    name="prelude_default_visualizer_and_identity",
    script=header(
        '["B04"]', '[{ id: "a", bands: 1 }, { id: "b", bands: 1, sampleType: "FLOAT32" }]'
    )
    + "const v = new DefaultVisualizer(0.1, 0.3); const id = new Identity();\n"
    "function evaluatePixel(s) { return { a: [v.process(s.B04)], b: [id.process(s.B04)] }; }",
    inputs=simple("B04", mask=False),
    expected=lambda d: {
        **one("AUTO", np.clip((b(d, "B04") - 0.1) / 0.2, 0, 1), "a"),
        **one("FLOAT32", b(d, "B04"), "b"),
    },
)
case(
    name="prelude_index_of_zero_sum_is_zero",
    script=header('["B04", "B08"]', '{ bands: 1, sampleType: "FLOAT32" }')
    + "function evaluatePixel(s) { return [index(s.B08 - 0.5, s.B04 - 0.5)]; }",
    inputs=lambda rng: {
        "default": SourceData(
            {"B04": np.full((1, H, W), 0.5, np.float32), "B08": np.full((1, H, W), 0.5, np.float32)}
        )
    },
    expected=lambda d: one("FLOAT32", np.zeros((H, W))),
)

# -- sample types, NaN, nodata (§5) ---------------------------------------------------------------

for sample_type, scale in [("INT16", 10000), ("INT8", 200), ("UINT16", 70000), ("UINT8", 400)]:
    case(
        name=f"sample_type_{sample_type.lower()}_scaled_ndvi",
        script=header('["B04", "B08"]', f"{{ bands: 1, sampleType: SampleType.{sample_type} }}")
        + f"function evaluatePixel(s) {{ return [{scale} * index(s.B08, s.B04)]; }}",
        inputs=simple("B04", "B08"),
        expected=lambda d, t=sample_type, k=scale: one(t, k * nd(b(d, "B08"), b(d, "B04"))),
    )
case(
    name="nan_into_integers_is_zero_float32_keeps_it",
    script=header(
        '["B04"]',
        '[{ id: "i", bands: 1, sampleType: "UINT8" }, '
        '{ id: "f", bands: 1, sampleType: "FLOAT32", nodataValue: NaN }]',
    )
    + "function evaluatePixel(s) { const v = s.B04 > 0.3 ? NaN : s.B04 * 100; "
    "return { i: [v], f: [v] }; }",
    inputs=simple("B04", mask=False),
    expected=lambda d: {
        **one("UINT8", np.where(b(d, "B04") > 0.3, np.nan, b(d, "B04") * 100), "i"),
        **one("FLOAT32", np.where(b(d, "B04") > 0.3, np.nan, b(d, "B04") * 100), "f"),
    },
)
case(
    name="infinities_into_integers_are_zero",
    script=header('["B04"]', '{ bands: 2, sampleType: "INT16" }')
    + "function evaluatePixel(s) { return [s.B04 / 0, -s.B04 / 0]; }",
    inputs=simple("B04", mask=False),
    expected=lambda d: {"default": np.zeros((2, H, W), np.int16)},
)
case(
    name="datamask_gates_output_to_nodata",
    script=header(
        '["B04", "B08", "dataMask"]', '{ bands: 1, sampleType: "FLOAT32", nodataValue: -9999 }'
    )
    + "function evaluatePixel(s) { return s.dataMask ? [index(s.B08, s.B04)] : [-9999]; }",
    inputs=simple("B04", "B08"),
    expected=lambda d: one(
        "FLOAT32", np.where(b(d, "dataMask") == 1, nd(b(d, "B08"), b(d, "B04")), -9999)
    ),
)
case(
    name="booleans_count_as_zero_and_one",
    script=header('["B04", "B08"]', '{ bands: 2, sampleType: "UINT8" }')
    + "function evaluatePixel(s) { return [s.B08 > s.B04, s.B04 > 0.3]; }",
    inputs=simple("B04", "B08", mask=False),
    expected=lambda d: {"default": stack("UINT8", b(d, "B08") > b(d, "B04"), b(d, "B04") > 0.3)},
)
case(
    name="single_output_returned_keyed_by_id",
    script=header('["B04"]', '{ id: "red", bands: 1, sampleType: "FLOAT32" }')
    + "function evaluatePixel(s) { return { red: [s.B04] }; }",
    inputs=simple("B04", mask=False),
    expected=lambda d: one("FLOAT32", b(d, "B04"), "red"),
)

# -- plain JavaScript in scripts -------------------------------------------------------------


def classes(v: np.ndarray) -> np.ndarray:
    return np.select([v < 0, v < 0.2, v < 0.4, v < 0.6], [1, 2, 3, 4], 5)


case(
    name="ndvi_classes_if_else",
    script=header('["B04", "B08"]', '{ bands: 1, sampleType: "UINT8" }')
    + "function cls(v) { if (v < 0) return 1; else if (v < 0.2) return 2; else if (v < 0.4) "
    "return 3; else if (v < 0.6) return 4; return 5; }\n"
    "function evaluatePixel(s) { return [cls(index(s.B08, s.B04))]; }",
    inputs=simple("B04", "B08", mask=False),
    expected=lambda d: one("UINT8", classes(nd(b(d, "B08"), b(d, "B04")))),
)
SCL_COLOURS = {
    0: [0, 0, 0],
    4: [0, 160, 0],
    5: [255, 230, 90],
    6: [0, 0, 255],
    8: [120, 120, 120],
    9: [200, 200, 200],
}


def scl_colours(scl: np.ndarray) -> np.ndarray:
    out = np.zeros((3, *scl.shape), np.float64)
    for value, rgb in SCL_COLOURS.items():
        for c in range(3):
            out[c][scl == value] = rgb[c]
    return out


case(
    name="scene_classification_lookup_table",
    script=header('[{ bands: ["SCL"], units: "DN" }]', '{ bands: 3, sampleType: "UINT8" }')
    + f"const table = {{{', '.join(f'{k}: {v}' for k, v in SCL_COLOURS.items())}}};\n"
    "function evaluatePixel(s) { return table[s.SCL] || [0, 0, 0]; }",
    inputs=lambda rng: {
        "default": SourceData(
            {"SCL": rng.choice([0, 3, 4, 5, 6, 8, 9, 10], (1, H, W)).astype(np.uint8)}
        )
    },
    expected=lambda d: {"default": convert(scl_colours(b(d, "SCL")), "UINT8")},
)
case(
    name="math_functions_and_top_level_constants",
    script=header('["B04", "B08"]', '{ bands: 2, sampleType: "FLOAT32" }')
    + "const GAIN = 3.5; const OFFSET = Math.log(2);\n"
    "function evaluatePixel(s) { return [Math.sqrt(s.B08) * GAIN + OFFSET, "
    "Math.exp(-s.B04) * Math.atan2(s.B08, s.B04)]; }",
    inputs=simple("B04", "B08", mask=False),
    expected=lambda d: {
        "default": np.stack(
            [
                (np.sqrt(b(d, "B08")) * 3.5 + np.log(2)).astype(np.float32),
                (np.exp(-b(d, "B04")) * np.arctan2(b(d, "B08"), b(d, "B04"))).astype(np.float32),
            ]
        )
    },
    rtol=1e-6,
)
case(
    name="four_outputs_of_mixed_types",
    script=header(
        '["B02", "B03", "B04", "B08", "dataMask"]',
        '[{ id: "rgb", bands: 3 }, { id: "ndvi", bands: 1, sampleType: "FLOAT32" }, '
        '{ id: "ndwi", bands: 1, sampleType: "INT16" }, '
        '{ id: "mask", bands: 1, sampleType: "UINT8" }]',
    )
    + "function evaluatePixel(s) { return { rgb: [2.5 * s.B04, 2.5 * s.B03, 2.5 * s.B02], "
    "ndvi: [index(s.B08, s.B04)], ndwi: [1000 * index(s.B03, s.B08)], mask: [s.dataMask] }; }",
    inputs=simple("B02", "B03", "B04", "B08", high=0.4),
    expected=lambda d: {
        "rgb": stack("AUTO", *(2.5 * b(d, x) for x in ("B04", "B03", "B02"))),
        **one("FLOAT32", nd(b(d, "B08"), b(d, "B04")), "ndvi"),
        **one("INT16", 1000 * nd(b(d, "B03"), b(d, "B08")), "ndwi"),
        **one("UINT8", b(d, "dataMask"), "mask"),
    },
)
case(
    name="custom_data_is_an_object_scripts_can_read",
    script=header('["B04"]', '{ bands: 1, sampleType: "FLOAT32" }')
    + "function evaluatePixel(s, scenes, inputMetadata, customData) { "
    "return [s.B04 * customData.factor + inputMetadata.normalizationFactor]; }",
    inputs=simple("B04", mask=False),
    expected=lambda d: one("FLOAT32", b(d, "B04") * 7 + 0.0001),
    custom={"factor": 7},
)

# -- ORBIT and TILE mosaicking ---------------------------------------------------------------------

ORBIT_NDVI = header(
    '["B04", "B08", "dataMask"]', '{ bands: 1, sampleType: "FLOAT32" }', "Mosaicking.ORBIT"
)


def per_scene(values: list[float], dtype: type) -> np.ndarray:
    return np.broadcast_to(np.array(values, dtype)[:, None, None], (len(values), H, W)).copy()


def orbit_ndvi(d: Inputs) -> np.ndarray:
    valid = b(d, "dataMask") == 1
    return np.where(valid, nd(b(d, "B08"), b(d, "B04")), -np.inf)


case(
    name="spec5_orbit_max_ndvi",
    script=ORBIT_NDVI + "function evaluatePixel(samples) { let m = -1; for (const s of samples) "
    "{ if (s.dataMask) m = Math.max(m, index(s.B08, s.B04)); } return [m]; }",
    inputs=lambda rng: {
        "default": SourceData(
            {
                "B04": per_scene([0.4, 0.2, 0.3], np.float32),
                "B08": per_scene([0.6, 0.8, 0.9], np.float32),
                "dataMask": per_scene([1, 1, 0], np.uint8),
            },
            [orbit(n) for n in range(3)],
        )
    },
    # NDVI 0.2, 0.6 and no data: 0.6, from the second orbit
    expected=lambda d: one("FLOAT32", nd(b(d, "B08")[1], b(d, "B04")[1])),
)
case(
    name="orbit_samples_length_and_valid_count",
    script=header('["dataMask"]', '{ bands: 2, sampleType: "UINT8" }', '"ORBIT"')
    + "function evaluatePixel(samples) { let n = 0; for (let i = 0; i < samples.length; i++) "
    "n += samples[i].dataMask; return [samples.length, n]; }",
    inputs=lambda rng: {"default": reflectance(rng, scenes=5)},
    expected=lambda d: {"default": stack("UINT8", np.full((H, W), 5), b(d, "dataMask").sum(0))},
)
case(
    name="orbit_mean_of_valid_samples",
    script=header('["B04", "dataMask"]', '{ bands: 1, sampleType: "FLOAT32" }', '"ORBIT"')
    + "function evaluatePixel(samples) { let sum = 0, n = 0; for (const s of samples) { "
    "if (s.dataMask === 1) { sum += s.B04; n++; } } return [n ? sum / n : NaN]; }",
    inputs=lambda rng: {"default": reflectance(rng, "B04", scenes=4)},
    expected=lambda d: one(
        "FLOAT32",
        np.where(
            b(d, "dataMask").sum(0) > 0,
            (b(d, "B04") * b(d, "dataMask")).sum(0) / np.maximum(b(d, "dataMask").sum(0), 1),
            np.nan,
        ),
    ),
    rtol=1e-6,
)


def first_valid(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    index = np.argmax(mask == 1, axis=0)
    chosen = np.take_along_axis(values, index[None], axis=0)[0]
    return np.where(mask.any(axis=0), chosen, 0)


case(
    name="orbit_most_recent_valid_pixel",
    script=header(
        '[{ bands: ["B08", "dataMask"], units: "DN" }]',
        '{ bands: 1, sampleType: "UINT16" }',
        '"ORBIT"',
    )
    + "function evaluatePixel(samples) { for (const s of samples) if (s.dataMask) "
    "return [s.B08]; return [0]; }",
    inputs=lambda rng: {
        "default": SourceData(
            {
                "B08": rng.integers(0, 10000, (4, H, W)).astype(np.uint16),
                "dataMask": (rng.uniform(0, 1, (4, H, W)) > 0.6).astype(np.uint8),
            },
            [orbit(n) for n in range(4)],
        )
    },
    expected=lambda d: one("UINT16", first_valid(b(d, "B08"), b(d, "dataMask"))),
)
case(
    name="orbit_median_ndvi",
    script=ORBIT_NDVI + "function evaluatePixel(samples) { const v = []; for (const s of samples)"
    " if (s.dataMask) v.push(index(s.B08, s.B04)); if (!v.length) return [NaN]; "
    "v.sort((a, b) => a - b); const m = v.length >> 1; "
    "return [v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2]; }",
    inputs=lambda rng: {"default": reflectance(rng, "B04", "B08", scenes=5)},
    expected=lambda d: one(
        "FLOAT32",
        np.nanmedian(np.where(b(d, "dataMask") == 1, nd(b(d, "B08"), b(d, "B04")), np.nan), axis=0),
    ),
    rtol=1e-6,
)
case(
    name="orbit_max_ndvi_12_bands_5_dates",
    script=header(
        '["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", '
        '"B11", "B12", "dataMask"]',
        '{ bands: 1, sampleType: "FLOAT32" }',
        '"ORBIT"',
    )
    + "function evaluatePixel(samples) { let m = -1; for (let i = 0; i < samples.length; i++) { "
    "const s = samples[i]; if (s.dataMask === 1) { const v = (s.B08 - s.B04) / (s.B08 + s.B04);"
    " if (v > m) m = v; } } return [m]; }",
    inputs=lambda rng: {
        "default": reflectance(
            rng,
            "B01",
            "B02",
            "B03",
            "B04",
            "B05",
            "B06",
            "B07",
            "B08",
            "B8A",
            "B09",
            "B11",
            "B12",
            scenes=5,
        )
    },
    expected=lambda d: one("FLOAT32", np.maximum(orbit_ndvi(d).max(axis=0), -1)),
)
case(
    name="orbit_scenes_argument_dates",
    script=header('["dataMask"]', '{ bands: 1, sampleType: "UINT8" }', '"ORBIT"')
    + "function evaluatePixel(samples, scenes) { for (let i = 0; i < samples.length; i++) "
    "if (samples[i].dataMask) return [Number(scenes.orbits[i].dateFrom.slice(8, 10))]; "
    "return [0]; }",
    inputs=lambda rng: {"default": reflectance(rng, scenes=3)},
    expected=lambda d: one(
        "UINT8",
        first_valid(
            np.stack([np.full((H, W), 20 - n) for n in range(3)]).astype(np.float64),
            b(d, "dataMask"),
        ),
    ),
)


def tiles_data(rng: np.random.Generator) -> Inputs:
    data = reflectance(rng, "B04", scenes=4)
    return {"default": SourceData(data.bands, [tile(n) for n in range(4)])}


case(
    name="tile_least_cloudy_valid_tile",
    script=header('["B04", "dataMask"]', '{ bands: 2, sampleType: "FLOAT32" }', '"TILE"')
    + "function evaluatePixel(samples, scenes) { let best = -1; for (let i = 0; i < "
    "samples.length; i++) { if (!samples[i].dataMask) continue; if (best < 0 || "
    "scenes.tiles[i].cloudCoverage < scenes.tiles[best].cloudCoverage) best = i; } "
    "return best < 0 ? [NaN, NaN] : [samples[best].B04, scenes.tiles[best].cloudCoverage]; }",
    inputs=tiles_data,
    expected=lambda d: {
        "default": np.stack(
            [
                np.where(
                    b(d, "dataMask").any(0), first_valid(b(d, "B04"), b(d, "dataMask")), np.nan
                ),
                np.where(
                    b(d, "dataMask").any(0), 10.0 * np.argmax(b(d, "dataMask") == 1, axis=0), np.nan
                ),
            ]
        ).astype(np.float32)
    },
)

PRE = header('["B04", "dataMask"]', '{ bands: 1, sampleType: "UINT8" }', '"ORBIT"')
case(
    name="pre_process_scenes_keeps_even_days",
    script=PRE + "function preProcessScenes(collections) { collections.scenes.orbits = "
    "collections.scenes.orbits.filter(o => Number(o.dateFrom.slice(8, 10)) % 2 === 0); "
    "return collections; }\nfunction evaluatePixel(samples) { return [samples.length]; }",
    inputs=lambda rng: {"default": reflectance(rng, "B04", scenes=5)},
    kept={"default": [0, 2, 4]},  # days 20, 18, 16
    expected=lambda d: one("UINT8", np.full((H, W), 3)),
)
case(
    name="pre_process_scenes_reorders_oldest_first",
    script=PRE + "function preProcessScenes(c) { c.scenes.orbits.reverse(); return c; }\n"
    "function evaluatePixel(samples) { return [100 * samples[0].B04]; }",
    inputs=lambda rng: {"default": reflectance(rng, "B04", scenes=3)},
    kept={"default": [2, 1, 0]},
    expected=lambda d: one("UINT8", 100 * b(d, "B04")[0]),
)
case(
    name="update_output_metadata_userdata",
    script=header('["B04", "dataMask"]', '{ bands: 1, sampleType: "UINT8" }', '"ORBIT"')
    + "let seen = 0;\nfunction evaluatePixel(samples) { seen++; return [samples.length]; }\n"
    "function updateOutputMetadata(scenes, inputMetadata, outputMetadata) { "
    "outputMetadata.userData = { pixels: seen, dates: scenes.orbits.map(o => o.dateFrom), "
    "version: inputMetadata.serviceVersion }; seen = 0; }",
    inputs=lambda rng: {"default": reflectance(rng, "B04", scenes=2)},
    expected=lambda d: one("UINT8", np.full((H, W), 2)),
    userdata=lambda d: {
        "pixels": H * W,
        "dates": [o["dateFrom"] for o in d["default"].scenes],
        "version": "3.0",
    },
)

# -- data fusion -----------------------------------------------------------------------------------


def fused(rng: np.random.Generator, scenes: int = 1) -> Inputs:
    s1 = {
        "VV": rng.uniform(0.001, 0.5, (scenes, H, W)).astype(np.float32),
        "dataMask": np.ones((scenes, H, W), np.uint8),
    }
    meta = [orbit(n) for n in range(scenes)] if scenes > 1 else []
    l2a = reflectance(rng, "B04", "B08", scenes=1)
    if scenes > 1:  # ORBIT: one orbit of L2A beside several of S1
        l2a = SourceData(l2a.bands, [orbit(0)])
    return {"s1": SourceData(s1, meta), "l2a": l2a}


case(
    name="fusion_simple_two_sources",
    script=header(
        '[{ datasource: "s1", bands: ["VV"] }, '
        '{ datasource: "l2a", bands: ["B04", "B08", "dataMask"] }]',
        '{ bands: 2, sampleType: "FLOAT32" }',
    )
    + "function evaluatePixel(samples) { return [10 * Math.log(samples.s1.VV) / Math.LN10, "
    "samples.l2a.dataMask ? index(samples.l2a.B08, samples.l2a.B04) : NaN]; }",
    inputs=fused,
    expected=lambda d: {
        "default": np.stack(
            [
                (10 * np.log10(b(d, "VV", "s1"))).astype(np.float32),
                np.where(
                    b(d, "dataMask", "l2a") == 1, nd(b(d, "B08", "l2a"), b(d, "B04", "l2a")), np.nan
                ).astype(np.float32),
            ]
        )
    },
    rtol=1e-6,
)
case(
    name="fusion_orbit_arrays_keyed_by_source",
    script=header(
        '[{ datasource: "s1", bands: ["VV"] }, { datasource: "l2a", bands: ["B04"] }]',
        '{ bands: 2, sampleType: "FLOAT32" }',
        '"ORBIT"',
    )
    + "function evaluatePixel(samples, scenes) { let m = 0; for (const s of samples.s1) "
    "m = Math.max(m, s.VV); return [m + scenes.s1.orbits.length, samples.l2a[0].B04]; }",
    inputs=lambda rng: fused(rng, scenes=3),
    expected=lambda d: {
        "default": np.stack(
            [
                (b(d, "VV", "s1").max(0) + 3).astype(np.float32),
                d["l2a"].bands["B04"][0].astype(np.float32),
            ]
        )
    },
)
