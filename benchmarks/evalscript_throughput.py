"""Evalscript throughput: the zero-copy V8 path against a naive JSON-through-eval baseline.

Run: python benchmarks/evalscript_throughput.py [size]   (default 512 -> 512x512 pixels)
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

import numpy as np
from py_mini_racer import MiniRacer

from eobatch.script import EvalscriptRuntime, parse_setup, to_sample_type

BANDS = ("B02", "B03", "B04", "B08")
WORKLOADS = {
    "NDVI, FLOAT32": """//VERSION=3
function setup() {
  return {input: ["B02", "B03", "B04", "B08"], output: {bands: 1, sampleType: "FLOAT32"}};
}
function evaluatePixel(s) { return [(s.B08 - s.B04) / (s.B08 + s.B04)]; }
""",
    "true colour, AUTO": """//VERSION=3
function setup() {
  return {input: ["B02", "B03", "B04", "B08"], output: {bands: 3}};
}
function evaluatePixel(s) { return [2.5 * s.B04, 2.5 * s.B03, 2.5 * s.B02]; }
""",
}

# The baseline: inputs go in as JSON literals, results come back as a JSON string.
NAIVE_LOOP = """
(function () {
  const names = Object.keys(__inputs);
  const n = __inputs[names[0]].length;
  const out = new Array(n);
  for (let i = 0; i < n; i++) {
    const sample = {};
    for (const name of names) sample[name] = __inputs[name][i];
    out[i] = evaluatePixel(sample, {}, {}, {}, {});
  }
  return JSON.stringify(out);
})()
"""


def naive(source: str, bands: dict[str, np.ndarray]) -> np.ndarray:
    setup = parse_setup(source)
    ctx = MiniRacer()
    try:
        ctx.eval(source)
        literal = json.dumps({name: a.reshape(-1).tolist() for name, a in bands.items()})
        ctx.eval(f"var __inputs = {literal};")
        values = np.array(json.loads(ctx.eval(NAIVE_LOOP)), dtype=np.float64).T
    finally:
        ctx.close()
    height, width = next(iter(bands.values())).shape
    output = setup.outputs[0]
    return to_sample_type(values.reshape(output.bands, height, width), output.sample_type)


def best_of(repeats: int, fn: Callable[[], object]) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> None:
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 512
    rng = np.random.default_rng(0)
    bands = {name: rng.uniform(0.01, 0.6, (size, size)).astype(np.float32) for name in BANDS}
    pixels = size * size
    runtime = EvalscriptRuntime(timeout_s=60, heap_mb=2048)
    print(f"{size}x{size} pixels, {len(BANDS)} input bands; best of 5 (zero-copy) / 3 (naive)")
    header = f"{'workload':<20} {'zero-copy px/s':>16} {'naive px/s':>14} {'ratio':>8}"
    print(header)
    print("-" * len(header))
    for name, source in WORKLOADS.items():
        setup = parse_setup(source)
        runtime.evaluate(source, setup, bands)  # compile and warm up once
        fast_s, fast = best_of(5, lambda s=source, st=setup: runtime.evaluate(s, st, bands))
        slow_s, slow = best_of(3, lambda s=source: naive(s, bands))
        assert isinstance(fast, dict)
        np.testing.assert_array_equal(fast[setup.outputs[0].id], slow)
        print(
            f"{name:<20} {pixels / fast_s:>16,.0f} {pixels / slow_s:>14,.0f} "
            f"{slow_s / fast_s:>7.1f}x"
        )
    runtime.close()


if __name__ == "__main__":
    main()
