"""Evaluating `evaluatePixel` over whole rasters in V8, without per-pixel Python.

Inputs are copied once into ArrayBuffers allocated inside V8 (mini-racer hands them back as
writable memoryviews, so numpy writes straight into V8 memory); a JS loop then calls
`evaluatePixel` per pixel and writes into output ArrayBuffers that numpy reads the same way.
"""

from __future__ import annotations

import json
import os
import threading

import numpy as np

from eobatch.script._v8 import FIRST_LINE_OFFSET, ScriptContext
from eobatch.script.errors import from_report
from eobatch.script.sample_types import to_sample_type
from eobatch.script.setup import ScriptSetup

# numpy dtype name -> the TypedArray the prelude views the buffer with
_INPUT_DTYPES = ("float32", "float64", "uint8", "uint16", "int16")


class EvalscriptRuntime:
    """One reusable V8 context with time (`timeout_s` per call) and heap (`heap_mb`) limits."""

    def __init__(self, timeout_s: float, heap_mb: int) -> None:
        self.timeout_s = timeout_s
        self.heap_mb = heap_mb
        self._lock = threading.Lock()
        self._context: ScriptContext | None = None

    def close(self) -> None:
        with self._lock:
            self._discard()

    def evaluate(
        self, source: str, setup: ScriptSetup, bands: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Run `evaluatePixel` on every pixel of `bands` (name -> (H, W) array).

        Returns output id -> (output.bands, H, W) array, already of the output's sample type.
        """
        height, width = _check_bands(setup, bands)
        with self._lock:
            try:
                return self._evaluate(source, setup, bands, height, width)
            finally:
                if self._context is not None and self._context.broken:
                    # After a timeout or OOM the isolate's state is unknown: start afresh.
                    self._discard()

    def _evaluate(
        self,
        source: str,
        setup: ScriptSetup,
        bands: dict[str, np.ndarray],
        height: int,
        width: int,
    ) -> dict[str, np.ndarray]:
        context = self._ensure_context()
        key = context.load(source)
        npix = height * width
        layout: dict = {"bands": [], "outputs": []}
        for n, name in enumerate(setup.bands):
            data = bands[name]
            dtype = _input_dtype(data.dtype)
            slot = f"in{n}"
            view = _view(context, slot, npix, dtype)
            view[:] = data.reshape(-1)
            layout["bands"].append([name, slot, dtype.name])
        raw: list[np.ndarray] = []
        for n, output in enumerate(setup.outputs):
            # FLOAT32 outputs are rounded to float32 by the TypedArray store, exactly as a
            # numpy cast would; the others keep the double values until their conversion.
            dtype = np.dtype(np.float32 if output.sample_type == "FLOAT32" else np.float64)
            slot = f"out{n}"
            raw.append(_view(context, slot, npix * output.bands, dtype))
            layout["outputs"].append([output.id, slot, dtype.name, output.bands])
        report = context.call("run", key, json.dumps(layout), npix, width)
        if report:
            raise from_report(report, FIRST_LINE_OFFSET)
        # to_sample_type copies, so nothing returned points into V8 memory.
        return {
            output.id: to_sample_type(
                values.reshape(output.bands, height, width), output.sample_type
            )
            for output, values in zip(setup.outputs, raw, strict=True)
        }

    def _ensure_context(self) -> ScriptContext:
        if self._context is None:
            self._context = ScriptContext(self.timeout_s, self.heap_mb)
        return self._context

    def _discard(self) -> None:
        if self._context is not None:
            self._context.close()
            self._context = None


def _view(context: ScriptContext, slot: str, count: int, dtype: np.dtype) -> np.ndarray:
    """A numpy array over an ArrayBuffer that V8 owns (and keeps referenced until release)."""
    buffer = context.call("alloc", slot, count * dtype.itemsize)
    return np.frombuffer(buffer, dtype=dtype, count=count)


def _input_dtype(dtype: np.dtype) -> np.dtype:
    if dtype.name in _INPUT_DTYPES:
        return dtype
    # A boolean mask reaches the script as 0/1 integers, like dataMask in Sentinel Hub.
    return np.dtype(np.uint8 if dtype == np.bool_ else np.float32)


def _check_bands(setup: ScriptSetup, bands: dict[str, np.ndarray]) -> tuple[int, int]:
    missing = [b for b in setup.bands if b not in bands]
    if missing:
        raise ValueError(f"no data given for evalscript input band(s) {', '.join(missing)}")
    shapes = {np.shape(bands[b]) for b in setup.bands}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"input bands must be 2-D arrays of one shape, got {sorted(shapes)}")
    height, width = next(iter(shapes))
    return height, width


_runtimes: dict[tuple[int, float, int], EvalscriptRuntime] = {}
_runtimes_lock = threading.Lock()


def get_runtime(timeout_s: float, heap_mb: int) -> EvalscriptRuntime:
    """The process's runtime for these limits (created on first use, reused afterwards)."""
    # Keyed by pid too: a forked child must not reuse its parent's V8 isolate.
    key = (os.getpid(), float(timeout_s), int(heap_mb))
    with _runtimes_lock:
        runtime = _runtimes.get(key)
        if runtime is None:
            runtime = _runtimes[key] = EvalscriptRuntime(timeout_s, heap_mb)
        return runtime
