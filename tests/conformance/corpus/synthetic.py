"""Synthetic inputs for a corpus script: every band it asks for, with values of the range and
kind the band has in its collection (reflectances, DN, class codes, backscatter, temperatures),
and scene metadata as the engine gives it for ORBIT/TILE mosaicking."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from eobatch.script import ScriptSetup, SourceData

H, W = 6, 8

Generator = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]


def _uniform(low: float, high: float) -> Generator:
    return lambda rng, shape: rng.uniform(low, high, shape)


def _integers(low: int, high: int) -> Generator:
    return lambda rng, shape: rng.integers(low, high + 1, shape).astype(np.float64)


def _choice(*values: float) -> Generator:
    return lambda rng, shape: rng.choice(np.array(values, dtype=np.float64), shape)


# (band name pattern, units or None for the default, generator); the first match wins.
BANDS: list[tuple[str, str | None, Generator]] = [
    (r"dataMask", None, lambda rng, shape: (rng.uniform(0, 1, shape) > 0.1).astype(np.float64)),
    # Sentinel-2, Landsat, MODIS, OLCI/SLSTR optical bands, Harmonized Landsat Sentinel
    (r"B\d\d|B8A|B\d|S[1-6]|Oa\d\d", "DN", _integers(50, 6000)),
    (r"B\d\d|B8A|B\d|S[1-6]|Oa\d\d", None, _uniform(0.01, 0.6)),
    (r"S[7-9]|F[12]|B1[01]_?BT|BT", None, _uniform(250.0, 320.0)),  # brightness temperatures
    (r"SCL", None, _integers(0, 11)),
    (r"CLM", None, _choice(0, 1)),
    (r"CLP|QM", None, _integers(0, 255)),
    (r"SNW|CLD", None, _integers(0, 100)),
    (r"AOT", None, _uniform(0.0, 0.6)),
    (r"WVP", None, _uniform(0.0, 5.0)),
    (r"sun(Zenith|Azimuth)Angles?", None, _uniform(20.0, 70.0)),
    (r"view(Zenith|Azimuth)(Mean|Angles)", None, _uniform(2.0, 12.0)),
    # Sentinel-1 backscatter (linear power) and its angles
    (r"VV|HH", None, _uniform(0.005, 0.5)),
    (r"VH|HV", None, _uniform(0.001, 0.1)),
    (r"localIncidenceAngle|scatteringArea|shadowMask", None, _uniform(0.0, 60.0)),
    # Landsat quality bands
    (r"BQA|QA_PIXEL", None, _choice(21824, 21952, 22280, 23888, 54596, 1)),
    (r"QA_RADSAT|SAA|SZA|VAA|VZA", None, _uniform(0.0, 90.0)),
    (r"ST_B10|B10_ST|ST", None, _uniform(270.0, 320.0)),
    # Sentinel-5P
    (r"NO2|SO2|O3|HCHO", None, _uniform(0.0, 0.0003)),
    (r"CO", None, _uniform(0.0, 0.1)),
    (r"CH4", None, _uniform(1700.0, 2000.0)),
    (r"AER_AI_\w+", None, _uniform(-2.0, 4.0)),
    (r"CLOUD_\w+", None, _uniform(0.0, 1.0)),
    # Copernicus DEM
    (r"DEM", None, _uniform(-50.0, 3000.0)),
    # PlanetScope, SkySat, Pleiades, SPOT (DN) and their masks
    (r"clear|snow|shadow|haze_light|haze_heavy|cloud|UDM|udm\w*", None, _choice(0, 1)),
    (
        r"(?i)red|green|blue|nir|rededge|coastal_blue|green_i|yellow|PAN|Red|Green|Blue|NIR",
        None,
        _integers(100, 4000),
    ),
]


def generator(band: str, units: str | None) -> Generator:
    for pattern, wanted, make in BANDS:
        if re.fullmatch(pattern, band) and (wanted is None or wanted == units):
            return make
    return _uniform(0.0, 1.0)  # a band of another collection: a plain fraction


def default_days(count: int) -> list[str]:
    """Acquisition days, newest first (mostRecent), over about a year and a half."""
    days = [
        "2024-06-20",
        "2024-06-12",
        "2024-05-28",
        "2024-04-15",
        "2024-03-02",
        "2023-09-18",
        "2023-06-15",
        "2023-05-10",
        "2023-04-02",
    ]
    return days[:count]


def orbit_metadata(day: str, n: int) -> dict[str, Any]:
    tile = tile_metadata(f"{day}T10:05:00Z", n)
    return {"dateFrom": f"{day}T00:00:00Z", "dateTo": f"{day}T23:59:59Z", "tiles": [tile]}


def tile_metadata(date: str, n: int) -> dict[str, Any]:
    granule = f"S2A_MSIL2A_{date[:10].replace('-', '')}T100559_N0510_R022_T33TUL_{n:04d}"
    return {
        "date": date,
        "shId": 1000 + n,
        "cloudCoverage": float(10 * (n % 7)),
        "dataPath": f"s3://sentinel-s2-l2a/tiles/33/T/UL/{date[:10].replace('-', '/')}/0",
        "tileOriginalId": granule,
        "productId": granule,
    }


def source_data(
    setup: ScriptSetup,
    datasource: str | None,
    mode: str,
    days: Sequence[str],
    rng: np.random.Generator,
    ranges: dict[str, Any] | None = None,
) -> SourceData:
    """One source's bands (float32, or uint8 for dataMask) and scene metadata; `ranges` gives
    the values of bands whose names do not tell (band -> [low, high])."""
    count = 1 if mode == "SIMPLE" else len(days)
    bands = {}
    for band in setup.bands_of(datasource):
        make = generator(band, setup.unit_of(band, datasource))
        if ranges and band in ranges:
            low, high = ranges[band]
            whole = isinstance(low, int) and isinstance(high, int)
            make = _integers(low, high) if whole else _uniform(low, high)
        values = make(rng, (count, H, W))
        bands[band] = values.astype(np.uint8 if band == "dataMask" else np.float32)
    if mode == "ORBIT":
        scenes = [orbit_metadata(day, n) for n, day in enumerate(days)]
    elif mode == "TILE":
        scenes = [tile_metadata(f"{day}T10:05:00Z", n) for n, day in enumerate(days)]
    else:  # the tiles behind the mosaic, for updateOutput
        scenes = [tile_metadata(f"{days[0]}T10:05:00Z", 0)] if days else []
    return SourceData(bands, scenes)


def time_range(days: Sequence[str]) -> tuple[datetime, datetime]:
    """The request's timeRange around `days`: from the first of the oldest day's month to the
    end of the newest day."""
    oldest, newest = min(days), max(days)
    start = datetime.fromisoformat(oldest[:8] + "01").replace(tzinfo=UTC)
    end = datetime.fromisoformat(newest).replace(hour=23, minute=59, second=59, tzinfo=UTC)
    return start, end
