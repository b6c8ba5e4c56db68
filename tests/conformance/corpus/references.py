"""Independent numpy versions of corpus scripts: what each must produce from the inputs it
saw, written from the script's maths and Sentinel Hub's documented helper semantics, never
through eobatch's runtime. Keyed by the corpus id (`<repo name>/<path>`).

Arithmetic follows the script's order of operations in float64, as V8 computes; values then
go through the sample-type conversion of spec §5 (`convert`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import numpy as np

from tests.conformance.cases import convert
from tests.conformance.corpus.runner import Run

Expected = dict[str, np.ndarray]
REFERENCES: dict[str, Callable[[Run], Expected]] = {}
# References whose maths goes through Math.log/exp/pow: V8 and numpy may differ in the last
# bit there, so these compare within a tolerance (in output units) instead of exactly.
TOLERANCE: dict[str, float] = {}


def reference(name: str, tolerance: float = 0.0):  # type: ignore[no-untyped-def]
    def register(fn: Callable[[Run], Expected]) -> Callable[[Run], Expected]:
        REFERENCES[name] = fn
        if tolerance:
            TOLERANCE[name] = tolerance
        return fn

    return register


# -- inputs and helpers as Sentinel Hub documents them ------------------------------------------


def bands(run: Run, name: str, source: str = "default") -> np.ndarray:
    """(S, H, W) float64: the band as the script saw it."""
    return run.data[source].bands[name].astype(np.float64)


def band(run: Run, name: str, source: str = "default") -> np.ndarray:
    """(H, W) float64 of a SIMPLE source."""
    return bands(run, name, source)[0]


def index(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """index(x, y): (x - y) / (x + y), 0 where x + y is 0."""
    total = x + y
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total == 0, 0.0, (x - y) / np.where(total == 0, 1, total))


def rgb(color: int) -> list[int]:
    return [(color >> 16) & 255, (color >> 8) & 255, color & 255]


def ramp(value: np.ndarray, pairs: Sequence[tuple[float, int | Sequence[float]]]) -> np.ndarray:
    """ColorRampVisualizer: stops sorted; hex colours lerped per channel in 0..255 and rounded
    (Math.round), array colours lerped as they are; below the first stop the first colour,
    above the last (and NaN) the last. Returns (3, H, W)."""
    pairs = sorted(pairs, key=lambda p: p[0])
    stops = np.array([p[0] for p in pairs], dtype=np.float64)
    hexes = [isinstance(p[1], int) for p in pairs]
    colors = np.array([rgb(p[1]) if isinstance(p[1], int) else p[1] for p in pairs], np.float64)
    v = np.asarray(value, dtype=np.float64)
    out = np.empty((colors.shape[1], *v.shape))
    flat_v, flat_out = v.reshape(-1), out.reshape(colors.shape[1], -1)
    for k, x in enumerate(flat_v):
        if x <= stops[0]:
            flat_out[:, k] = colors[0] / 255 if hexes[0] else colors[0]
            continue
        above = np.nonzero(x < stops)[0]
        if not above.size:  # at or above the last stop, or NaN
            flat_out[:, k] = colors[-1] / 255 if hexes[-1] else colors[-1]
            continue
        n = int(above[0])
        t = (x - stops[n - 1]) / (stops[n] - stops[n - 1])
        if hexes[n - 1] and hexes[n]:
            a, b = colors[n - 1], colors[n]
            flat_out[:, k] = np.floor(a + t * (b - a) + 0.5) / 255
        else:  # array colours (a hex one among them taken in 0..1)
            a = colors[n - 1] / 255 if hexes[n - 1] else colors[n - 1]
            b = colors[n] / 255 if hexes[n] else colors[n]
            flat_out[:, k] = a + t * (b - a)
    return out


def color_map(
    value: np.ndarray, pairs: Sequence[tuple[float, int | Sequence[float]]]
) -> np.ndarray:
    """ColorMapVisualizer: the colour of the last threshold at or below the value, the first
    below every threshold. Returns (3, H, W)."""
    v = np.asarray(value, dtype=np.float64)
    chosen = np.zeros(v.shape, dtype=int)
    for n in range(1, len(pairs)):
        chosen = np.where(pairs[n][0] <= v, n, chosen)
    colors = np.array(
        [np.array(rgb(c)) / 255 if isinstance(c, int) else np.array(c) for _, c in pairs]
    )
    return np.moveaxis(colors[chosen], -1, 0)


def value_interpolate(value: np.ndarray, stops: Sequence[float], values: np.ndarray) -> np.ndarray:
    """valueInterpolate with colour arrays: values[0] up to the first stop, linear on
    (stops[i-1], stops[i]], the last value above. `values`: (n, C, H, W). Returns (C, H, W)."""
    v = np.asarray(value, dtype=np.float64)
    out = values[-1].copy()
    for i in range(len(stops) - 1, 0, -1):
        inside = (v > stops[i - 1]) & (v <= stops[i])
        t = (v - stops[i - 1]) / (stops[i] - stops[i - 1])
        out = np.where(inside, values[i - 1] + t * (values[i] - values[i - 1]), out)
    return np.where(v <= stops[0], values[0], out)


def auto(*channels: np.ndarray) -> np.ndarray:
    return np.stack([convert(c, "AUTO") for c in channels])


def stack(sample_type: str, *channels: np.ndarray) -> np.ndarray:
    return np.stack([convert(c, sample_type) for c in channels])


def dates(run: Run, source: str = "default") -> list[datetime]:
    return [datetime.fromisoformat(d).replace(tzinfo=UTC) for d in run.days[source]]


NDVI_RAMP = [
    (-0.5, 0x0C0C0C),
    (-0.2, 0xBFBFBF),
    (-0.1, 0xDBDBDB),
    (0, 0xEAEAEA),
    (0.025, 0xFFF9CC),
    (0.05, 0xEDE8B5),
    (0.075, 0xDDD89B),
    (0.1, 0xCCC682),
    (0.125, 0xBCB76B),
    (0.15, 0xAFC160),
    (0.175, 0xA3CC59),
    (0.2, 0x91BF51),
    (0.25, 0x7FB247),
    (0.3, 0x70A33F),
    (0.35, 0x609635),
    (0.4, 0x4F892D),
    (0.45, 0x3F7C23),
    (0.5, 0x306D1C),
    (0.55, 0x216011),
    (0.6, 0x0F540A),
    (1, 0x004400),
]
NDVI_CLASSES = [
    (-1.1, [0, 0, 0]),
    (-0.2, [0.75, 0.75, 0.75]),
    (-0.1, [0.86, 0.86, 0.86]),
    (0, [1, 1, 0.88]),
    (0.025, [1, 0.98, 0.8]),
    (0.05, [0.93, 0.91, 0.71]),
    (0.075, [0.87, 0.85, 0.61]),
    (0.1, [0.8, 0.78, 0.51]),
    (0.125, [0.74, 0.72, 0.42]),
    (0.15, [0.69, 0.76, 0.38]),
    (0.175, [0.64, 0.8, 0.35]),
    (0.2, [0.57, 0.75, 0.32]),
    (0.25, [0.5, 0.7, 0.28]),
    (0.3, [0.44, 0.64, 0.25]),
    (0.35, [0.38, 0.59, 0.21]),
    (0.4, [0.31, 0.54, 0.18]),
    (0.45, [0.25, 0.49, 0.14]),
    (0.5, [0.19, 0.43, 0.11]),
    (0.55, [0.13, 0.38, 0.07]),
    (0.6, [0.06, 0.33, 0.04]),
]


def classes(value: np.ndarray, table: list, last: list[float]) -> np.ndarray:
    """An if/else-if chain of `value < limit` returning colours: (3, H, W)."""
    out = np.empty((3, *value.shape))
    out[:] = np.array(last)[:, None, None]
    for limit, color in reversed(table):
        out = np.where(value < limit, np.array(color)[:, None, None], out)
    return out


# -- Sentinel-2 ----------------------------------------------------------------------------------

S2 = "custom-scripts/sentinel-2"


@reference(f"{S2}/ndvi/raw.js")
def _(run: Run) -> Expected:  # a bare number for a one-band output
    return {"default": stack("FLOAT32", index(band(run, "B08"), band(run, "B04")))}


@reference(f"{S2}/ndvi/script.js")
def _(run: Run) -> Expected:
    colour = ramp(index(band(run, "B08"), band(run, "B04")), NDVI_RAMP)
    return {"default": auto(*colour, band(run, "dataMask"))}


@reference(f"{S2}/true_color/script.js")
def _(run: Run) -> Expected:
    return {
        "default": auto(*(band(run, b) * 2.5 for b in ("B04", "B03", "B02")), band(run, "dataMask"))
    }


@reference(f"{S2}/evi/raw.js")
def _(run: Run) -> Expected:
    b02, b04, b08 = (band(run, b) for b in ("B02", "B04", "B08"))
    return {"default": stack("FLOAT32", 2.5 * (b08 - b04) / ((b08 + 6.0 * b04 - 7.5 * b02) + 1.0))}


@reference(f"{S2}/barren_soil/script.js")
def _(run: Run) -> Expected:
    b02, b04, b08, b11 = (band(run, b) for b in ("B02", "B04", "B08", "B11"))
    val = 2.5 * ((b11 + b04) - (b08 + b02)) / ((b11 + b04) + (b08 + b02))
    return {"default": auto(2.5 * val, b08, b11)}


SCL_COLOURS = [
    (0, 0, 0),
    (255, 0, 0),
    (47, 47, 47),
    (100, 50, 0),
    (0, 160, 0),
    (255, 230, 90),
    (0, 0, 255),
    (128, 128, 128),
    (192, 192, 192),
    (255, 255, 255),
    (100, 200, 255),
    (255, 150, 255),
]


@reference(f"{S2}/scene-classification/script.js")
def _(run: Run) -> Expected:
    scl = band(run, "SCL").astype(int)
    colour = np.array(SCL_COLOURS, dtype=np.float64)[scl] / 255
    return {"default": auto(*np.moveaxis(colour, -1, 0), band(run, "dataMask"))}


@reference(f"{S2}/cloudless_mosaic/L2A-first_quartile_4bands.js")
def _(run: Run) -> Expected:  # multi-temporal: the first quartile of the cloud-free samples
    names = ("B04", "B03", "B02", "B08")
    values = {b: bands(run, b) for b in names}
    scl = bands(run, "SCL")
    out = np.zeros((4, *scl.shape[1:]))
    for r, c in np.ndindex(scl.shape[1:]):
        usable = [k for k in range(scl.shape[0]) if all(values[b][k, r, c] > 0 for b in names)]
        valid = [k for k in usable if scl[k, r, c] not in (3, 9, 8, 10, 11, 1)]
        invalid = [k for k in usable if k not in valid]
        chosen = valid or invalid
        for n, b in enumerate(names):
            picks = sorted(values[b][k, r, c] for k in chosen)
            out[n, r, c] = picks[len(picks) // 4] if picks else 0
    return {"default": stack("UINT16", *out)}


def _nbr(b08: np.ndarray, b12: np.ndarray) -> np.ndarray:
    denom = b08 + b12
    return np.where(denom != 0, (b08 - b12) / np.where(denom != 0, denom, 1), 0.0)


@reference(f"{S2}/burned_area/script.js")
def _(run: Run) -> Expected:  # multi-temporal: preProcessScenes keeps two fixed dates
    assert run.days["default"] == ["2017-06-24", "2017-05-15"]
    b = {name: bands(run, name) for name in ("B02", "B03", "B04", "B05", "B08", "B12")}
    dnbr = _nbr(b["B08"][1], b["B12"][1]) - _nbr(b["B08"][0], b["B12"][0])

    def stretch(v: np.ndarray) -> np.ndarray:
        return (v - 0.05) / (1.00 - 0.05)

    red = stretch(2.8 * b["B04"][0] + 0.1 * b["B05"][0])
    green = stretch(2.8 * b["B03"][0] + 0.15 * b["B08"][0])
    blue = stretch(2.8 * b["B02"][0])
    natural = np.stack([red, green, blue])
    moderate = np.stack([red + 0.5, green + 0.5, blue])
    severe = np.stack([red + 0.5, green, blue])
    chosen = np.where(dnbr < 0.27, natural, np.where(dnbr < 0.66, moderate, severe))
    return {"default": auto(*chosen)}


@reference(f"{S2}/cloud_statistics/script.js")
def _(run: Run) -> Expected:  # multi-temporal: share of cloud-free acquisitions
    clm, scl, mask = bands(run, "CLM"), bands(run, "SCL"), bands(run, "dataMask")
    clear = (clm != 1) & ~np.isin(scl, (1, 3, 8, 9, 10))
    seen = (mask != 0).sum(axis=0)
    clear_seen = ((mask != 0) & clear).sum(axis=0)
    avg = clear_seen / np.maximum(seen, 1)
    colours = (
        np.array(
            [
                [0, 0, 0],
                [141, 0, 0],
                [219, 36, 36],
                [236, 125, 0],
                [236, 199, 0],
                [111, 161, 32],
                [75, 126, 39],
                [72, 168, 146],
                [63, 142, 185],
                [133, 78, 144],
                [85, 34, 115],
            ],
            dtype=np.float64,
        )
        / 255
    )
    stops = [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    values = np.broadcast_to(colours[:, :, None, None], (11, 3, *avg.shape))
    colour = value_interpolate(avg, stops, values)
    alpha = np.ones(avg.shape)
    out = np.where(seen == 0, 0.0, np.concatenate([colour, alpha[None]]))
    return {"default": auto(*out)}


@reference(f"{S2}/agriculture_growth_stage/script.js")
def _(run: Run) -> Expected:  # multi-temporal: mean NDVI of this month, last, and before
    days = dates(run)
    assert all((days[0] - d).days < 93 for d in days)  # the 3 * 31 days preProcessScenes keeps
    b04, b08 = bands(run, "B04"), bands(run, "B08")
    denom = b04 + b08
    ndvi = np.where(denom != 0, (b08 - b04) / np.where(denom != 0, denom, 1), 0.0)
    end = days[0].month - 1  # getMonth()
    groups = [[], [], []]
    for k, day in enumerate(days):
        month = day.month - 1
        groups[2 if month == end else 1 if month == end - 1 else 0].append(k)
    avgs = []
    for group in groups:  # summed in sample order, as the script does
        total = np.zeros(ndvi.shape[1:])
        for k in group:
            total = total + ndvi[k]
        with np.errstate(invalid="ignore"):
            avgs.append(total / len(group) if group else np.full(ndvi.shape[1:], np.nan))
    return {"default": auto(*((a - 0.1) / (0.7 - 0.1) for a in avgs))}


@reference(f"{S2}/fire_boundary/script.js")
def _(run: Run) -> Expected:  # HighlightCompressVisualizerSingle(-1, 1)
    b11, b12 = band(run, "B11"), band(run, "B12")
    val = 8.5 * (b12 - b11) / (b12 + b11 + 0.25)
    return {"default": auto(np.clip(1 * (val - -1.0) / (1.0 - -1.0) + 0, 0, 1))}


# -- Sentinel-1 ----------------------------------------------------------------------------------


@reference(
    "custom-scripts/sentinel-1/sar_multi-temporal_backscatter_coefficient_composite/script.js",
    tolerance=1,
)
def _(run: Run) -> Expected:  # multi-temporal: three fixed dates as R, G, B
    assert run.days["default"] == ["2018-08-21", "2018-06-10", "2018-04-11"]
    vv = bands(run, "VV")
    db = np.maximum(0, np.log(vv) * 0.21714724095 + 1)
    return {"default": auto(*((db[k] - 0.0) / (1.1 - 0.0) for k in (2, 1, 0)))}


@reference("custom-scripts/sentinel-1/flood_mapping/script.js")
def _(run: Run) -> Expected:  # multi-temporal, values returned as one-element arrays
    assert run.days["default"] == ["2019-03-23", "2019-03-11"]
    vv = bands(run, "VV")
    return {"default": auto(1.5 * vv[1], 1.5 * vv[0], 1.5 * vv[0])}


# -- PlanetScope, SkySat -------------------------------------------------------------------------

PS = "custom-scripts/planet_scope"


@reference(f"{PS}/cloudless_mosaic/script.js")
def _(run: Run) -> Expected:  # multi-temporal: the last 7 days, "median" of unsorted values
    days = dates(run)
    to = datetime(2024, 6, 20, 23, 59, 59, tzinfo=UTC)
    assert all(d.timestamp() >= to.timestamp() - 7 * 24 * 3600 for d in days)
    red, green, blue = (bands(run, b) for b in ("red", "green", "blue"))
    clear = (bands(run, "dataMask") * bands(run, "clear")) == 1
    out = np.zeros((4, *red.shape[1:]))
    for r, c in np.ndindex(red.shape[1:]):
        picked = [k for k in range(red.shape[0]) if clear[k, r, c]]
        if picked:
            k = picked[len(picked) // 2]
            out[:, r, c] = [red[k, r, c] / 3000, green[k, r, c] / 3000, blue[k, r, c] / 3000, 1]
        else:
            out[:, r, c] = [1 / 3000, 1 / 3000, 1 / 3000, 0]
    return {"default": auto(*out)}


@reference(f"{PS}/max_ndvi/script.js")
def _(run: Run) -> Expected:  # multi-temporal: highest NDVI of the last 3 months, classed
    red, nir = bands(run, "Red"), bands(run, "NIR")
    denom = red + nir
    ndvi = np.where(denom != 0, (nir - red) / np.where(denom != 0, denom, 1), 0.0)
    best = np.zeros(ndvi.shape[1:])
    for k in range(ndvi.shape[0]):
        best = np.where(ndvi[k] > best, ndvi[k], best)
    return {"default": auto(*classes(best, NDVI_CLASSES, [0, 0.27, 0]))}


@reference(f"{PS}/ndvi_difference/raw.js")
def _(run: Run) -> Expected:  # multi-temporal: the latest against the one ~10 days before
    assert run.days["default"] == ["2024-06-20", "2024-06-11"]
    red, nir, mask = bands(run, "Red"), bands(run, "NIR"), bands(run, "dataMask")
    both = mask[0] * mask[1] == 1
    diff = index(nir[0], red[0]) - index(nir[1], red[1])
    return {"default": stack("FLOAT32", np.where(both, diff, np.nan))}


@reference(f"{PS}/ndwi/raw.js")
def _(run: Run) -> Expected:
    return {"default": stack("FLOAT32", index(band(run, "green"), band(run, "nir")))}


@reference(f"{PS}/true_color/script.js")
def _(run: Run) -> Expected:
    return {"default": auto(*(band(run, b) / 3000 for b in ("red", "green", "blue")))}


@reference("custom-scripts/skysat/ndvi/script.js")
def _(run: Run) -> Expected:  # valueInterpolate with RGBA arrays holding dataMask
    ndvi = index(band(run, "NIR") / 10000, band(run, "Red") / 10000)
    mask = band(run, "dataMask")
    palette = [
        [1, 1, 0.88],
        [0.57, 0.75, 0.32],
        [0.44, 0.64, 0.25],
        [0.31, 0.54, 0.18],
        [0.19, 0.43, 0.11],
        [0.06, 0.33, 0.04],
        [0, 0.27, 0],
    ]
    values = np.stack(
        [
            np.concatenate(
                [np.broadcast_to(np.array(c)[:, None, None], (3, *mask.shape)), mask[None]]
            )
            for c in palette
        ]
    )
    colour = value_interpolate(ndvi, [0, 0.2, 0.3, 0.4, 0.5, 1.0], values)
    return {"default": auto(*colour)}


# -- Sentinel-5P, DEM, Landsat -------------------------------------------------------------------

BLUE_RED = [
    (1.0, 0x000080),
    (0.875, 0x0000FF),
    (0.625, 0x00FFFF),
    (0.375, 0xFFFF00),
    (0.125, 0xFF0000),
    (0.0, 0x800000),
]


@reference("custom-scripts/sentinel-5p/nitrogen-dioxide/script.js")
def _(run: Run) -> Expected:  # ColorRampVisualizer.createBlueRed(0, 0.0001)
    pairs = [(0.0 * p + 0.0001 * (1 - p), c) for p, c in BLUE_RED]
    colour = ramp(band(run, "NO2"), pairs)
    return {"default": auto(*colour, band(run, "dataMask"))}


@reference("custom-scripts/sentinel-5p/no2_monthly_mean/script.js")
def _(run: Run) -> Expected:  # multi-temporal mean of the clear acquisitions
    no2, mask = bands(run, "NO2"), bands(run, "dataMask")
    clear = mask == 1
    total = np.zeros(no2.shape[1:])
    for k in range(no2.shape[0]):
        total = total + np.where(clear[k], no2[k], 0.0)
    count = clear.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
    stops = [0 + ((s - 0) / 5) * (0.0001 - 0.0) for s in range(6)]  # the ramp moved to 0..1e-4
    pairs = list(
        zip(stops, [0x00007F, 0x0000FF, 0x00FFFF, 0xFFFF00, 0xFF0000, 0x7F0000], strict=True)
    )
    colour = ramp(mean, pairs)
    seen = (count > 0).astype(np.float64)
    return {
        "default": auto(*colour, seen),
        "index": stack("FLOAT32", mean),
        "eobrowserStats": stack("FLOAT32", mean),
        "dataMask": auto(seen),
    }


DEM_COLOR = [
    (9000, 0xFFFFFF),
    (7000, 0xDCEFFF),
    (5000, 0xBDC7F9),
    (3000, 0x9FAAEF),
    (1000, 0x788BB4),
    (500, 0x8B6D00),
    (400, 0xD292B4),
    (300, 0x78385A),
    (200, 0xAA5F00),
    (50, 0x8B4B28),
    (30, 0x782D28),
    (10, 0x63383B),
    (0, 0xC7C7C7),
    (-10, 0x9F9FFF),
    (-20, 0x7878EB),
    (-50, 0x5A54F9),
    (-200, 0x3B50F5),
    (-500, 0x3B3BE6),
    (-1000, 0x2831B4),
    (-6000, 0x1E1E78),
    (-9000, 0x1E005A),
    (-12000, 0x000028),
]


@reference("custom-scripts/dem/dem-color/script.js")
def _(run: Run) -> Expected:  # a descending ramp, moved to [min, max] (here: unchanged)
    return {"default": auto(*ramp(band(run, "DEM"), DEM_COLOR), band(run, "dataMask"))}


@reference("custom-scripts/dem/dem-difference/script.js")
def _(run: Run) -> Expected:  # fusion of two SIMPLE sources; colours in 0..255 for UINT8
    diff = band(run, "DEM", "map") - band(run, "DEM", "cop")
    pairs = [
        (-300, [202, 0, 32]),
        (-100, [244, 128, 85]),
        (-40, [255, 160, 125]),
        (-10, [255, 211, 195]),
        (-5, [255, 255, 255]),
        (5, [255, 255, 255]),
        (10, [196, 209, 255]),
        (40, [155, 127, 255]),
        (100, [73, 98, 222]),
        (300, [8, 0, 176]),
    ]
    return {"default": stack("UINT8", *ramp(diff, pairs))}


@reference("custom-scripts/landsat-8/false-color/script.js")
def _(run: Run) -> Expected:  # DefaultVisualizer(0, 0.4).processList
    channels = [np.clip((band(run, b) - 0.0) / (0.4 - 0.0), 0, 1) for b in ("B05", "B04", "B03")]
    return {"default": auto(*channels, band(run, "dataMask"))}


@reference("custom-scripts/landsat-8/bqa/script.js")
def _(run: Run) -> Expected:  # decodeL8C2Qa
    qa = band(run, "BQA").astype(np.int64)

    def bit(n: int) -> np.ndarray:
        return (qa >> n) & 1 == 1

    clear_colour = np.stack([1000 * band(run, b) for b in ("B04", "B03", "B02")])
    out = np.zeros((3, *qa.shape))
    for flag, colour in [
        (bit(6), clear_colour),
        (bit(0), [255, 0, 0]),
        (bit(2), [102, 255, 255]),
        (bit(4), [153, 102, 51]),
        (bit(1), [175, 175, 175]),
        (bit(3), [225, 225, 225]),
        (bit(5), [255, 0, 255]),
        (bit(7), [0, 0, 204]),
    ]:
        value = colour if isinstance(colour, np.ndarray) else np.array(colour)[:, None, None]
        out = np.where(flag, value, out)
    return {"default": stack("UINT8", *out)}


# -- BYOC collections (CLMS) ---------------------------------------------------------------------

CS = "custom-scripts/copernicus_services"


@reference(f"{CS}/vi-ndvi/script.js")
def _(run: Run) -> Expected:  # ColorMapVisualizer on an int16 stored as uint16
    raw = band(run, "NDVI").astype(np.int64) & 0xFFFF
    ndvi = np.where(raw >= 32768, raw - 65536, raw)
    pairs = [
        (-1, 0xFFFFFF),
        (-0.5, 0xFEFEF3),
        (0.00, 0xFFFFE5),
        (0.10, 0xF7FCB9),
        (0.20, 0xD9F0A3),
        (0.35, 0xADDD8E),
        (0.50, 0x78C679),
        (0.65, 0x41AB5D),
        (0.80, 0x238443),
        (0.90, 0x006837),
        (1.00, 0x004529),
    ]
    return {"default": auto(*color_map(ndvi * 0.0001, pairs), band(run, "dataMask"))}


@reference(f"{CS}/st-ppi/script.js")
def _(run: Run) -> Expected:  # TILE: the first tile with data; no result without one
    ppi, mask = bands(run, "PPI"), bands(run, "dataMask")
    pairs = [
        (0.0, 0xFFFFE5),
        (0.375, 0xF7FCB9),
        (0.75, 0xD9F0A3),
        (1.125, 0xADDD8E),
        (1.5, 0x78C679),
        (1.875, 0x41AB5D),
        (2.25, 0x238443),
        (2.625, 0x006837),
        (3.0, 0x004529),
    ]
    out = np.zeros((4, *ppi.shape[1:]))  # nothing returned: 0 (no nodataValue)
    for k in range(ppi.shape[0] - 1, -1, -1):
        colour = color_map(ppi[k] * 0.0001, pairs)
        out = np.where(mask[k] == 1, np.concatenate([colour, mask[k][None]]), out)
    return {"default": auto(*out)}


CORINE = [
    (1, 0xE6004D),
    (2, 0xFF0000),
    (3, 0xCC4DF2),
    (4, 0xCC0000),
    (5, 0xE6CCCC),
    (6, 0xE6CCE6),
    (7, 0xA600CC),
    (8, 0xA64D00),
    (9, 0xFF4DFF),
    (10, 0xFFA6FF),
    (11, 0xFFE6FF),
    (12, 0xFFFFA8),
    (13, 0xFFFF00),
    (14, 0xE6E600),
    (15, 0xE68000),
    (16, 0xF2A64D),
    (17, 0xE6A600),
    (18, 0xE6E64D),
    (19, 0xFFE6A6),
    (20, 0xFFE64D),
    (21, 0xE6CC4D),
    (22, 0xF2CCA6),
    (23, 0x80FF00),
    (24, 0x00A600),
    (25, 0x4DFF00),
    (26, 0xCCF24D),
    (27, 0xA6FF80),
    (28, 0xA6E64D),
    (29, 0xA6F200),
    (30, 0xE6E6E6),
    (31, 0xCCCCCC),
    (32, 0xCCFFCC),
    (33, 0x000000),
    (34, 0xA6E6CC),
    (35, 0xA6A6FF),
    (36, 0x4D4DFF),
    (37, 0xCCCCFF),
    (38, 0xE6E6FF),
    (39, 0xA6A6E6),
    (40, 0x00CCF2),
    (41, 0x80F2E6),
    (42, 0x00FFA6),
    (43, 0xA6FFE6),
    (44, 0xE6F2FF),
    (48, 0xFFFFFF),
]


@reference(f"{CS}/corine_land_cover/script.js")
def _(run: Run) -> Expected:
    return {"default": auto(*color_map(band(run, "CLC"), CORINE), band(run, "dataMask"))}


# -- data fusion, updateOutput -------------------------------------------------------------------

NDVI_MAP = [
    (0.0, 0xA50026),
    (0.0, 0xD73027),
    (0.2, 0xF46D43),
    (0.3, 0xFDAE61),
    (0.4, 0xFEE08B),
    (0.5, 0xFFFFBF),
    (0.6, 0xD9EF8B),
    (0.7, 0xA6D96A),
    (0.8, 0x66BD63),
    (0.9, 0x1A9850),
    (1.0, 0x006837),
]


@reference("custom-scripts/data-fusion/ndvi_s1_s2/script.js")
def _(run: Run) -> Expected:  # samples.<id>[0] of two fused SIMPLE sources
    vv, vh = band(run, "VV", "S1GRD"), band(run, "VH", "S1GRD")
    vh_db, vv_db = 10 * np.log(10) * vh, 10 * np.log(10) * vv
    nrpb = (vh_db - vv_db) / (vh_db + vv_db)
    s1_ndvi = 2.572 - 0.05047 * vh_db + 0.176 * vv_db + 3.422 * nrpb
    ndvi = index(band(run, "B08", "S2L2A"), band(run, "B04", "S2L2A"))
    cloudy = np.isin(band(run, "SCL", "S2L2A"), (7, 8, 9, 10))
    return {
        "default": auto(*np.where(cloudy, color_map(s1_ndvi, NDVI_MAP), color_map(ndvi, NDVI_MAP)))
    }


@reference("field-delineation/fd/evalscripts/data_evalscript.js")
def _(run: Run) -> Expected:  # updateOutput: one band per orbit in every output
    out = {b: stack("UINT16", *bands(run, b)) for b in ("B02", "B03", "B04", "B08")}
    out["dataMask"] = stack("UINT8", *bands(run, "dataMask"))
    out["CLP"] = stack("UINT8", *bands(run, "CLP"))
    return out


def field_delineation_userdata(run: Run) -> dict[str, str]:
    """scenes.forEach(scene => scene.date): each orbit's day as a Date, in JSON."""
    days = [f"{d}T00:00:00.000Z" for d in run.days["default"]]
    return {"dates": json.dumps(days, separators=(",", ":"))}


USERDATA = {"field-delineation/fd/evalscripts/data_evalscript.js": field_delineation_userdata}
