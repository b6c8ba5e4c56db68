"""Conversion of evaluatePixel values to output sample types (spec §5); pure numpy."""

from __future__ import annotations

import numpy as np

from eobatch.script.errors import EvalscriptError

# sampleType -> (numpy dtype, clamp range or None for floats)
_INTEGER_RANGES: dict[str, tuple[np.dtype, float, float]] = {
    "AUTO": (np.dtype(np.uint8), 0, 255),
    "UINT8": (np.dtype(np.uint8), 0, 255),
    "INT8": (np.dtype(np.int8), -128, 127),
    "UINT16": (np.dtype(np.uint16), 0, 65535),
    "INT16": (np.dtype(np.int16), -32768, 32767),
}
SUPPORTED_SAMPLE_TYPES: tuple[str, ...] = ("AUTO", "UINT8", "INT8", "UINT16", "INT16", "FLOAT32")


def sample_dtype(sample_type: str) -> np.dtype:
    """The numpy dtype of rasters of `sample_type` (AUTO is UINT8)."""
    if sample_type == "FLOAT32":
        return np.dtype(np.float32)
    if sample_type in _INTEGER_RANGES:
        return _INTEGER_RANGES[sample_type][0]
    raise EvalscriptError(_unsupported(sample_type))


def to_sample_type(values: np.ndarray, sample_type: str) -> np.ndarray:
    """Convert evaluatePixel values to `sample_type`: integers are rounded half away from zero
    and clamped to the type's range (non-finite values become 0); AUTO scales 0..1 to 0..255."""
    if sample_type == "FLOAT32":
        return np.array(values, dtype=np.float32)
    if sample_type not in _INTEGER_RANGES:
        raise EvalscriptError(_unsupported(sample_type))
    dtype, low, high = _INTEGER_RANGES[sample_type]
    v = np.array(values, dtype=np.float64)
    if sample_type == "AUTO":
        v *= 255.0
    v[~np.isfinite(v)] = 0.0
    np.clip(v, low, high, out=v)
    whole = np.trunc(v)
    # Exact half-away-from-zero: compare the fractional part, never add 0.5 (which can round up
    # values just below .5 in floating point).
    whole += np.where(np.abs(v - whole) >= 0.5, np.sign(v), 0.0)
    return whole.astype(dtype)


def _unsupported(sample_type: str) -> str:
    supported = ", ".join(SUPPORTED_SAMPLE_TYPES)
    return f"sampleType '{sample_type}' is not supported yet; supported: {supported}"
