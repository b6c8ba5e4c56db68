"""Evalscript speed: eobatch's V8 runtime against hand-written numpy of the same maths.

Both run side by side in one process on the same 3500 × 3500 inputs (float32 reflectances and a
dataMask). numpy gets them in numpy memory; eobatch gets them where the engine's reader puts them,
in the script runtime's memory (`stage_inputs`), and returns views of its outputs (`copy=False`)
as the engine does before encoding. The eobatch time is a whole `evaluate_sources` call: the
per-pixel JS loop and the sample-type conversion. The script is compiled once (a warm-up call),
as a worker does once per task. Single-date: SIMPLE; ORBIT inputs are staged the same way.

Run: python benchmarks/evalscript.py [size] [repeats]   (default 3500, best of 5)
     python benchmarks/evalscript.py --smoke             (300 x 300, best of 3: seconds)
Goal: >= 1.0 x numpy on single-date scripts, >= 0.5 x on ORBIT/TILE scripts.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from rich.console import Console
from rich.table import Table

from eobatch.script import EvalscriptRuntime, SourceData, parse_setup

S2_12 = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")


@dataclass
class Workload:
    name: str
    script: str
    bands: tuple[str, ...]
    dates: int
    numpy: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def _auto(values: np.ndarray) -> np.ndarray:
    """AUTO: UINT8 of v * 255, rounded half away from zero and clamped."""
    v = values * 255
    return np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5), 0, 255).astype(np.uint8)


def ndvi_numpy(b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    b04, b08 = b["B04"][0].astype(np.float64), b["B08"][0].astype(np.float64)
    return {"default": ((b08 - b04) / (b08 + b04)).astype(np.float32)[None]}


def true_colour_numpy(b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {
        "default": np.stack(
            [_auto(2.5 * b[x][0].astype(np.float64)) for x in ("B04", "B03", "B02")]
        )
    }


def orbit_max_ndvi_numpy(b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    b04, b08 = b["B04"].astype(np.float64), b["B08"].astype(np.float64)
    ndvi = np.where(b["dataMask"] == 1, (b08 - b04) / (b08 + b04), -1.0)
    return {"default": ndvi.max(axis=0).astype(np.float32)[None]}


def multi_output_numpy(b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    b02, b03, b04, b08 = (b[x][0].astype(np.float64) for x in ("B02", "B03", "B04", "B08"))
    return {
        "rgb": np.stack([_auto(2.5 * x) for x in (b04, b03, b02)]),
        "ndvi": ((b08 - b04) / (b08 + b04)).astype(np.float32)[None],
        "mask": b["dataMask"][0][None].astype(np.uint8),
    }


HEAD = "//VERSION=3\nfunction setup() {{ return {{ input: {i}, output: {o}{m} }}; }}\n"
WORKLOADS = [
    Workload(
        "NDVI, FLOAT32",
        HEAD.format(i='["B04", "B08"]', o='{ bands: 1, sampleType: "FLOAT32" }', m="")
        + "function evaluatePixel(s) { return [(s.B08 - s.B04) / (s.B08 + s.B04)]; }",
        ("B04", "B08"),
        1,
        ndvi_numpy,
    ),
    Workload(
        "true colour x2.5, AUTO",
        HEAD.format(i='["B02", "B03", "B04"]', o="{ bands: 3 }", m="")
        + "function evaluatePixel(s) { return [2.5 * s.B04, 2.5 * s.B03, 2.5 * s.B02]; }",
        ("B02", "B03", "B04"),
        1,
        true_colour_numpy,
    ),
    Workload(
        "ORBIT max NDVI, 12 bands x 5 dates",
        HEAD.format(
            i=str([*S2_12, "dataMask"]).replace("'", '"'),
            o='{ bands: 1, sampleType: "FLOAT32" }',
            m=", mosaicking: Mosaicking.ORBIT",
        )
        + "function evaluatePixel(samples) { let m = -1;\n"
        "  for (let i = 0; i < samples.length; i++) { const s = samples[i];\n"
        "    if (s.dataMask === 1) { const v = (s.B08 - s.B04) / (s.B08 + s.B04);"
        " if (v > m) m = v; } }\n  return [m]; }",
        S2_12,
        5,
        orbit_max_ndvi_numpy,
    ),
    Workload(
        "multi-output (rgb AUTO, ndvi FLOAT32, mask UINT8)",
        HEAD.format(
            i='["B02", "B03", "B04", "B08", "dataMask"]',
            o='[{ id: "rgb", bands: 3 }, { id: "ndvi", bands: 1, sampleType: "FLOAT32" },'
            ' { id: "mask", bands: 1, sampleType: "UINT8" }]',
            m="",
        )
        + "function evaluatePixel(s) { return { rgb: [2.5 * s.B04, 2.5 * s.B03, 2.5 * s.B02],"
        " ndvi: [(s.B08 - s.B04) / (s.B08 + s.B04)], mask: [s.dataMask] }; }",
        ("B02", "B03", "B04", "B08"),
        1,
        multi_output_numpy,
    ),
]


def inputs(workload: Workload, size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    shape = (workload.dates, size, size)
    bands = {b: rng.uniform(0.01, 0.5, shape).astype(np.float32) for b in workload.bands}
    bands["dataMask"] = (rng.uniform(0, 1, shape) > 0.1).astype(np.uint8)
    return bands


def best_of(repeats: int, run: Callable[[], object]) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return min(times), result


def main(size: int = 3500, repeats: int = 5) -> None:
    console = Console()
    runtime = EvalscriptRuntime(timeout_s=600, heap_mb=4096)
    rng = np.random.default_rng(7)
    table = Table(title=f"evalscripts on {size} x {size} px, best of {repeats}")
    for column in ("workload", "numpy Mpx/s", "eobatch Mpx/s", "eobatch / numpy", "same result"):
        table.add_column(column, justify="left" if column == "workload" else "right")
    mpx = size * size / 1e6
    for workload in WORKLOADS:
        console.print(f"[dim]running {workload.name} ...[/]")
        bands = inputs(workload, size, rng)
        setup = parse_setup(workload.script)
        scenes = [{"dateFrom": f"2024-06-{20 - n:02d}T00:00:00Z"} for n in range(workload.dates)]
        staged = runtime.stage_inputs(setup, workload.dates, size, size)
        for name, array in staged.items():  # the reader writes here, in V8 memory
            array[:] = bands[name]
        data = {"default": SourceData(staged, scenes if workload.dates > 1 else [])}

        def evaluate(s=setup, w=workload, d=data):  # type: ignore[no-untyped-def]
            return runtime.evaluate_sources(w.script, s, d, copy=False)

        evaluate()  # compile once, like a worker
        t_numpy, expected = best_of(repeats, lambda w=workload, b=bands: w.numpy(b))
        t_v8, got = best_of(repeats, evaluate)
        same = all(
            np.array_equal(got.rasters[k], v, equal_nan=True)  # type: ignore[union-attr]
            for k, v in expected.items()
        )  # type: ignore[union-attr]
        table.add_row(
            workload.name,
            f"{mpx / t_numpy:,.0f}",
            f"{mpx / t_v8:,.0f}",
            f"{t_numpy / t_v8:.2f} x",
            "yes" if same else "[red]NO[/]",
        )
        del bands, data
    runtime.close()
    console.print(table)


if __name__ == "__main__":
    if "--smoke" in sys.argv[1:]:
        main(300, 3)
    else:
        main(*(int(a) for a in sys.argv[1:3]))
