"""Processing-unit prices (pu-byoc-process.md §1): pure functions, no I/O.

Amounts that are stored or added up are integer micro-PU (1 PU = 1 000 000 µPU): a balance, a
task's `costPU` and the ledger then add up exactly, to the last decimal the API shows (6), on
SQLite and PostgreSQL alike. Each charge is rounded to the micro-PU once, when it is made.
Where the spec leaves a rule UNCERTAIN, the choice made is its recommendation (docs/billing.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

MICRO = 1_000_000
PIXELS_PER_PU = 512 * 512
MIN_AREA_FACTOR = 0.01
MIN_REQUEST_PU = 0.005
BATCH_DISCOUNT_MIN_PIXELS = 10_000
BATCH_DISCOUNT = 1 / 3
TASK_MINIMUM_PU = 100.0
BYTES_PER_MB = 1_000_000  # UNCERTAIN in the spec (10^6 vs 2^20): 10^6, its recommendation


class Crossing(StrEnum):
    """Where the outputs go relative to the deployment: it decides the transfer surcharge."""

    NONE = "none"  # same cloud and region, or a local folder
    REGION = "cross-region"  # 0.03 PU per MB
    CLOUD = "cross-cloud"  # 0.1 PU per MB


SURCHARGE_PU_PER_MB = {Crossing.NONE: 0.0, Crossing.REGION: 0.03, Crossing.CLOUD: 0.1}


def to_micro(pu: float) -> int:
    return round(pu * MICRO)


def to_pu(micro: int) -> float:
    """Micro-PU as the API shows them: a float that rounds to exactly 6 decimals."""
    return round(micro / MICRO, 6)


def band_factor(bands: Iterable[str]) -> float:
    """Input bands / 3; dataMask is free unless it is the only band.

    With data fusion, `bands` holds the bands of every source (a band requested from two
    sources counts twice: the spec's recommended reading of an UNCERTAIN rule).
    """
    names = list(bands)
    counted = [b for b in names if b != "dataMask"]
    return max(len(counted), 1 if names else 0) / 3


def format_factor(sample_types: Iterable[str]) -> float:
    """×2 when any output is FLOAT32 (the largest factor of mixed outputs), else ×1."""
    return 2.0 if "FLOAT32" in set(sample_types) else 1.0


def fusion_factor(local_collections: int, remote_collections: int = 0) -> float:
    """1 for one collection; with several, local ones count 1 and remote ones 2 each."""
    if local_collections + remote_collections <= 1:
        return 1.0
    return float(local_collections + 2 * remote_collections)


@dataclass(frozen=True)
class Pricing:
    """What a task's features are priced by, fixed at analysis (bands, outputs, sources)."""

    bands: tuple[str, ...]  # input bands over all data sources, dataMask included if asked
    sample_types: tuple[str, ...]  # of the outputs that are delivered
    fusion: float = 1.0

    def feature_pu(self, width: int, height: int, samples: int = 1) -> float:
        """PUs of one batch feature of width × height output pixels and `samples` data samples."""
        pu = self.request_pu(width, height, samples) if samples > 0 else 0.0
        return pu * BATCH_DISCOUNT if width * height >= BATCH_DISCOUNT_MIN_PIXELS else pu

    def request_pu(self, width: int, height: int, samples: int = 1) -> float:
        """PUs of one Process API request of width × height pixels: no batch discount, and
        never less than the 0.005 PU minimum (even without data samples)."""
        area = max(MIN_AREA_FACTOR, width * height / PIXELS_PER_PU)
        factors = band_factor(self.bands) * format_factor(self.sample_types) * self.fusion
        return max(MIN_REQUEST_PU, area * factors * samples)

    def feature_micro(self, width: int, height: int, samples: int = 1) -> int:
        return to_micro(self.feature_pu(width, height, samples))


def feature_pu(
    width: int,
    height: int,
    bands: Iterable[str],
    sample_types: Iterable[str],
    samples: int = 1,
    fusion: float = 1.0,
) -> float:
    """PUs of one batch feature (see `Pricing.feature_pu`)."""
    return Pricing(tuple(bands), tuple(sample_types), fusion).feature_pu(width, height, samples)


def crossing(
    location_cloud: str | None,
    location_region: str | None,
    deployment_cloud: str,
    deployment_region: str,
) -> Crossing:
    """How a delivery location relates to the deployment. Local folders never cross anything."""
    if location_cloud is None:
        return Crossing.NONE
    if location_cloud != deployment_cloud:
        return Crossing.CLOUD
    if location_region and location_region != deployment_region:
        return Crossing.REGION
    return Crossing.NONE


def surcharge_micro(bytes_written: int, where: Crossing) -> int:
    """Transfer surcharge on the output volume; never discounted (the spec's recommendation)."""
    return to_micro(bytes_written / BYTES_PER_MB * SURCHARGE_PU_PER_MB[where])


def task_minimum_micro(cost_micro: int) -> int:
    """What a finished task pays on top to reach the 100 PU minimum; nothing if nothing ran."""
    if cost_micro <= 0:
        return 0
    return max(0, to_micro(TASK_MINIMUM_PU) - cost_micro)


def max_output_bytes(width: int, height: int, bands_by_output: Sequence[tuple[int, str]]) -> int:
    """An upper bound of the bytes a feature delivers: raw pixels, overviews (+1/3) and headers.

    Compression only makes files smaller, except for incompressible data, where a compressed
    block can exceed its raw size by a few bytes: the 1/2 on top covers that and the overviews.
    """
    raw = sum(
        width * height * bands * _bytes_per_sample(sample_type)
        for bands, sample_type in bands_by_output
    )
    return math.ceil(raw * 1.5) + 65_536 * max(1, len(bands_by_output))


def _bytes_per_sample(sample_type: str) -> int:
    return {"INT8": 1, "UINT8": 1, "AUTO": 1, "INT16": 2, "UINT16": 2, "FLOAT32": 4}.get(
        sample_type, 4
    )


@dataclass(frozen=True)
class Estimate:
    """What a task will cost, known after analysis: bounds and the expected figure, in PU."""

    feature_count: int
    min_pu: float
    expected_pu: float
    max_pu: float

    def as_json(self) -> dict[str, float | int]:
        return {
            "featureCount": self.feature_count,
            "minPU": self.min_pu,
            "expectedPU": self.expected_pu,
            "maxPU": self.max_pu,
        }


def estimate(
    pricing: Pricing,
    features: Iterable[tuple[int, int, int, int]],
    where: Crossing,
    output_bands: Iterable[tuple[int, str]],
) -> Estimate:
    """Estimate a task from its features as (width, height, min_samples, max_samples).

    min: every feature at its fewest samples, no transfer surcharge; expected: every feature at
    its most samples (all scenes found), surcharge on the raw output size; max: as expected,
    surcharge on the bound of `max_output_bytes`. All three include the 100 PU task minimum.
    """
    outputs = list(output_bands)
    count = low = mid = high = 0
    for width, height, min_samples, max_samples in features:
        count += 1
        if max_samples == 0:  # no scene meets it: nothing evaluated, nothing delivered
            continue
        low += pricing.feature_micro(width, height, min_samples)
        most = pricing.feature_micro(width, height, max_samples)
        raw = sum(width * height * b * _bytes_per_sample(t) for b, t in outputs)
        mid += most + surcharge_micro(raw, where)
        high += most + surcharge_micro(max_output_bytes(width, height, outputs), where)
    return Estimate(
        count,
        *(to_pu(v + task_minimum_micro(v)) for v in (low, mid, high)),
    )
