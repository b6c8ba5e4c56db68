"""Processing-unit prices (pu-byoc-process.md §1): pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Iterable

PIXELS_PER_PU = 512 * 512
BATCH_DISCOUNT_MIN_PIXELS = 10_000
BATCH_DISCOUNT = 1 / 3


def band_factor(bands: Iterable[str]) -> float:
    """Input bands / 3; dataMask is free unless it is the only band."""
    names = list(dict.fromkeys(bands))
    counted = [b for b in names if b != "dataMask"] or names
    return len(counted) / 3


def format_factor(sample_types: Iterable[str]) -> float:
    """×2 when any output is FLOAT32 (the largest factor of mixed outputs), else ×1."""
    return 2.0 if "FLOAT32" in set(sample_types) else 1.0


def feature_pu(
    width: int,
    height: int,
    bands: Iterable[str],
    sample_types: Iterable[str],
    samples: int = 1,
) -> float:
    """PUs of one batch feature of width × height output pixels."""
    pixels = width * height
    area = max(0.01, pixels / PIXELS_PER_PU)
    pu = max(0.005, area * band_factor(bands) * format_factor(sample_types) * samples)
    return pu * BATCH_DISCOUNT if pixels >= BATCH_DISCOUNT_MIN_PIXELS else pu
