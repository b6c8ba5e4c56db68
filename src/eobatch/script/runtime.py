"""Evaluating `evaluatePixel` over whole rasters in V8, without per-pixel Python.

Inputs are copied once into ArrayBuffers allocated inside V8 (mini-racer hands them back as
writable memoryviews, so numpy writes straight into V8 memory); a JS loop then calls
`evaluatePixel` per pixel and writes into output ArrayBuffers that numpy reads the same way.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from eobatch.script._v8 import FIRST_LINE_OFFSET, ScriptContext
from eobatch.script.errors import EvalscriptError, from_report
from eobatch.script.inputs import DEFAULT_SOURCE, SourceData
from eobatch.script.sample_types import sample_dtype
from eobatch.script.setup import ScriptOutput, ScriptSetup, band_count

# A data source's `timeRange` (from, to); None where the request leaves it open.
TimeRange = tuple[datetime | None, datetime | None]

# numpy dtype name -> the TypedArray the prelude views the buffer with
_INPUT_DTYPES = ("float32", "float64", "uint8", "uint16", "int16")


@dataclass
class Evaluation:
    """What one evaluation produced: output id -> (bands, H, W) array of its sample type, and
    the `userdata` JSON value the script set in `updateOutputMetadata` (None if it did not)."""

    rasters: dict[str, np.ndarray]
    userdata: Any = None


class EvalscriptRuntime:
    """V8 contexts with time (`timeout_s` per call) and heap (`heap_mb`) limits, one per owner.

    An owner is whatever must not see another's JavaScript state: the engine binds each feature
    to its task, so a script that replaces a built-in or leaves a global behind affects only the
    features of its own task, never another task or account. The contexts of the last `keep`
    owners stay alive, so features of tasks that take turns on a worker do not each pay for a
    new isolate and a cold JIT; a context that hit a limit or an error is never reused.
    """

    def __init__(self, timeout_s: float, heap_mb: int, keep: int = 3) -> None:
        self.timeout_s = timeout_s
        self.heap_mb = heap_mb
        self.keep = max(1, keep)
        self._lock = threading.Lock()
        self._owner: str | None = None
        self._contexts: OrderedDict[str | None, ScriptContext] = OrderedDict()

    @property
    def _context(self) -> ScriptContext | None:
        return self._contexts.get(self._owner)

    def close(self) -> None:
        with self._lock:
            for context in self._contexts.values():
                context.close()
            self._contexts.clear()

    def bind(self, owner: str) -> None:
        """Evaluate from now on in `owner`'s own context (a new one if it has none).

        Arrays from `stage_inputs` and rasters returned with `copy=False` are only valid until
        the next call on this runtime, so binding another owner never exposes them.
        """
        with self._lock:
            self._owner = owner
            if owner in self._contexts:
                self._contexts.move_to_end(owner)

    def evaluate(
        self, source: str, setup: ScriptSetup, bands: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """SIMPLE mosaicking from one source: `bands` maps name -> (H, W) array.

        Returns output id -> (output.bands, H, W) array, already of the output's sample type.
        """
        _check_bands(setup, bands)
        data = {DEFAULT_SOURCE: SourceData({b: np.asarray(bands[b])[None] for b in setup.bands})}
        return self.evaluate_sources(source, setup, data).rasters

    def evaluate_sources(
        self,
        source: str,
        setup: ScriptSetup,
        data: dict[str, SourceData],
        custom_data: dict[str, Any] | None = None,
        copy: bool = True,
    ) -> Evaluation:
        """Run `evaluatePixel` on every pixel of `data` (data source id -> its scenes' bands).

        SIMPLE: each source has one (mosaicked) scene and `samples` is one object per pixel;
        ORBIT/TILE: `samples` is an array over the source's scenes. With several sources (or
        inputs naming a `datasource`), `samples` and `scenes` are keyed by source id.
        Then `updateOutputMetadata` runs once; `outputMetadata.userData` is returned as userdata.
        With `copy=False` the rasters are views of V8 memory, valid until the next evaluation
        (the engine encodes them at once; it saves a pass over every output).
        """
        height, width = _check_sources(setup, data)
        with self._lock:
            try:
                return self._evaluate(source, setup, data, custom_data or {}, height, width, copy)
            except BaseException:
                # The script failed part-way: whatever it changed, the next call starts afresh.
                self._discard()
                raise
            finally:
                if self._context is not None and self._context.broken:
                    # After a timeout or OOM the isolate's state is unknown: start afresh.
                    self._discard()

    def stage_inputs(
        self, setup: ScriptSetup, scene_count: int, height: int, width: int
    ) -> dict[str, np.ndarray]:
        """(S, H, W) arrays living in V8 memory for each input band of a single-source script
        (float32; dataMask uint8), for a reader to write into. `evaluate_sources` given these
        very arrays copies nothing. They are valid until the next evaluation by this runtime."""
        with self._lock:
            context = self._ensure_context()
            staged = {}
            for n, name in enumerate(setup.bands_of(None)):
                dtype = np.dtype(np.uint8 if name == "dataMask" else np.float32)
                view = _view(context, f"in0_{n}", scene_count * height * width, dtype)
                staged[name] = view.reshape(scene_count, height, width)
            return staged

    def pre_process_scenes(
        self,
        source: str,
        setup: ScriptSetup,
        scenes: dict[str, list[dict[str, Any]]],
        time_ranges: dict[str, TimeRange] | None = None,
    ) -> dict[str, list[int]]:
        """The scenes `preProcessScenes` keeps, as indices into each source's list, in the order
        the script returns them; every scene when the script has no such function, and for
        sources with SIMPLE mosaicking. `time_ranges`: each source's `timeRange` (from, to),
        which the script gets as `collections.from` / `collections.to` (JavaScript Dates)."""
        everything = {sid: list(range(len(items))) for sid, items in scenes.items()}
        fused = _fused(setup, scenes)
        per_scene = [
            (n, sid, items)
            for n, (sid, items) in enumerate(scenes.items())
            if setup.mosaicking_of(sid if fused else None) != "SIMPLE"
        ]
        if not per_scene:
            return everything
        ranges = time_ranges or {}
        layout = {
            "fused": fused,
            "sources": [
                {
                    "keys": _keys(setup, sid, n, fused),
                    "mode": setup.mosaicking_of(sid if fused else None),
                    "meta": items,
                    "from": _iso(ranges.get(sid, (None, None))[0]),
                    "to": _iso(ranges.get(sid, (None, None))[1]),
                }
                for n, sid, items in per_scene
            ],
        }
        answer = self._call("preProcess", source, json.dumps(layout))
        if answer["kept"] is None:
            return everything
        kept = dict(everything)
        for (_, sid, items), indices in zip(per_scene, answer["kept"], strict=True):
            if any(not 0 <= n < len(items) for n in indices):
                raise EvalscriptError(
                    "preProcessScenes() returned scenes that were not in its input; filter the "
                    "given scene objects instead of building new ones"
                )
            kept[sid] = indices
        return kept

    def _call(self, function: str, source: str, *args: Any) -> dict[str, Any]:
        """Call a bridge function about `source` (loaded first); its JSON answer, or the
        script's error raised (the context is then discarded: the script failed part-way)."""
        with self._lock:
            try:
                context = self._ensure_context()
                key = context.load(source)
                answer: dict[str, Any] = json.loads(context.call(function, key, *args))
                if "error" in answer:
                    self._discard()
            except BaseException:
                self._discard()
                raise
            finally:
                if self._context is not None and self._context.broken:
                    self._discard()
        if "error" in answer:
            raise from_report(json.dumps(answer["error"]), FIRST_LINE_OFFSET)
        return answer

    def _evaluate(
        self,
        source: str,
        setup: ScriptSetup,
        data: dict[str, SourceData],
        custom_data: dict[str, Any],
        height: int,
        width: int,
        copy: bool = True,
    ) -> Evaluation:
        context = self._ensure_context()
        key = context.load(source)
        npix = height * width
        fused = _fused(setup, data)
        sources = []
        for j, (sid, source_data) in enumerate(data.items()):
            count = source_data.scene_count
            bands = []
            for n, name in enumerate(setup.bands_of(sid if fused else None)):
                values = source_data.bands[name]
                dtype = _input_dtype(values.dtype)
                slot = f"in{j}_{n}"
                view = _view(context, slot, count * npix, dtype)
                if not _same_memory(view, values):  # staged inputs are already in place
                    view[:] = values.reshape(-1)
                bands.append([name, slot, dtype.name])
            mask = source_data.bands.get("dataMask")
            mode = setup.mosaicking_of(sid if fused else None)
            sources.append(
                {
                    "id": sid,
                    "keys": _keys(setup, sid, j, fused),
                    "count": count,
                    # A fused SIMPLE source without data for the feature is an empty array.
                    "present": mask is None or bool(np.any(mask)),
                    "mode": mode,
                    "bands": bands,
                    "meta": _metadata(source_data) if mode != "SIMPLE" else [],
                    "normalization": source_data.normalization,
                }
            )
        outputs = setup.outputs
        if setup.updates_output:
            outputs = self._updated_outputs(context, key, setup, data, fused)
        raw: list[np.ndarray] = []
        layout_outputs = []
        for n, output in enumerate(outputs):
            # The JS loop converts each value to the output's sample type as it stores it.
            dtype = sample_dtype(output.sample_type)
            slot = f"out{n}"
            raw.append(_view(context, slot, npix * output.bands, dtype))
            fill = 0.0 if output.nodata_value is None else output.nodata_value
            layout_outputs.append(
                [output.id, slot, dtype.name, output.bands, output.sample_type, _number(fill)]
            )
        layout = {"fused": fused, "sources": sources, "outputs": layout_outputs}
        report = context.call("run", key, json.dumps(layout), npix, width, json.dumps(custom_data))
        answer = json.loads(report)
        if "userData" not in answer:
            raise from_report(report, FIRST_LINE_OFFSET)
        # Copies by default: V8's buffers are reused by the next call.
        rasters = {
            output.id: values.reshape(output.bands, height, width)
            for output, values in zip(outputs, raw, strict=True)
        }
        if copy:
            rasters = {k: v.copy() for k, v in rasters.items()}
        return Evaluation(rasters, answer["userData"])

    def _updated_outputs(
        self,
        context: ScriptContext,
        key: str,
        setup: ScriptSetup,
        data: dict[str, SourceData],
        fused: bool,
    ) -> tuple[ScriptOutput, ...]:
        """The outputs with the band counts `updateOutput(outputs, collection)` sets, given the
        scenes of this feature (for SIMPLE, those that make up the mosaic)."""
        sources = []
        for j, (sid, source_data) in enumerate(data.items()):
            mode = setup.mosaicking_of(sid if fused else None)
            meta = source_data.scenes if mode == "SIMPLE" else _metadata(source_data)
            sources.append({"keys": _keys(setup, sid, j, fused), "mode": mode, "meta": meta})
        layout = {"fused": fused, "sources": sources}
        declared = [[o.id, o.bands] for o in setup.outputs]
        answer = json.loads(
            context.call("updateOutput", key, json.dumps(layout), json.dumps(declared))
        )
        if "error" in answer:
            raise from_report(json.dumps(answer["error"]), FIRST_LINE_OFFSET)
        outputs = []
        for output in setup.outputs:
            value = answer["bands"][output.id]
            bands = band_count(value)
            if bands is None:
                raise EvalscriptError(
                    f"updateOutput() set outputs.{output.id}.bands to {json.dumps(value)}; it "
                    "must be a whole number of bands (0 or more)"
                )
            outputs.append(replace(output, bands=bands))
        return tuple(outputs)

    def _ensure_context(self) -> ScriptContext:
        context = self._contexts.get(self._owner)
        if context is None:
            context = self._contexts[self._owner] = ScriptContext(self.timeout_s, self.heap_mb)
            while len(self._contexts) > self.keep:
                self._contexts.popitem(last=False)[1].close()
        return context

    def _discard(self) -> None:
        context = self._contexts.pop(self._owner, None)
        if context is not None:
            context.close()


def _view(context: ScriptContext, slot: str, count: int, dtype: np.dtype) -> np.ndarray:
    """A numpy array over an ArrayBuffer that V8 owns (and keeps referenced until release)."""
    return np.frombuffer(context.buffer(slot, count * dtype.itemsize), dtype=dtype, count=count)


def _same_memory(view: np.ndarray, values: np.ndarray) -> bool:
    return (
        values.dtype == view.dtype
        and values.size == view.size
        and values.flags.c_contiguous
        and values.__array_interface__["data"][0] == view.__array_interface__["data"][0]
    )


def _input_dtype(dtype: np.dtype) -> np.dtype:
    if dtype.name in _INPUT_DTYPES:
        return dtype
    # A boolean mask reaches the script as 0/1 integers, like dataMask in Sentinel Hub.
    return np.dtype(np.uint8 if dtype == np.bool_ else np.float32)


def _fused(setup: ScriptSetup, data: dict[str, Any]) -> bool:
    """Samples are keyed by data source id when there are several, or inputs name one."""
    return len(data) > 1 or any(i.datasource for i in setup.inputs)


def _keys(setup: ScriptSetup, sid: str, position: int, fused: bool) -> list[str]:
    """The names a fused script sees a source under: its id, and its position ("0", "1", ...)
    when setup() pairs inputs with sources by position (Sentinel Hub's data fusion docs)."""
    if fused and setup.positional and str(position) != sid:
        return [sid, str(position)]
    return [sid]


def _metadata(data: SourceData) -> list[dict[str, Any]]:
    """One metadata dict per scene (empty ones when the caller gave none)."""
    return data.scenes or [{} for _ in range(data.scene_count)]


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _number(value: float) -> float | str:
    """A number for JSON: non-finite ones as the text JavaScript's Number() reads."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _check_sources(setup: ScriptSetup, data: dict[str, SourceData]) -> tuple[int, int]:
    if not data:
        raise ValueError("no data source given to evaluate")
    fused = _fused(setup, data)
    shapes = set()
    for sid, source_data in data.items():
        wanted = setup.bands_of(sid if fused else None)
        missing = [b for b in wanted if b not in source_data.bands]
        if missing:
            raise ValueError(
                f"no data given for evalscript input band(s) {', '.join(missing)} of source {sid}"
            )
        mode = setup.mosaicking_of(sid if fused else None)
        # The grid comes from every band given (a script may read none: `bands: []`).
        for name, values in source_data.bands.items():
            shape = np.shape(values)
            if len(shape) != 3:
                raise ValueError(f"band {name} of source {sid} must be (scenes, H, W), got {shape}")
            if shape[0] != source_data.scene_count:
                raise ValueError(f"band {name} of source {sid} has another number of scenes")
            if mode == "SIMPLE" and shape[0] != 1:
                raise ValueError("SIMPLE mosaicking takes one (mosaicked) scene per source")
            if mode != "SIMPLE" and source_data.scenes and len(source_data.scenes) != shape[0]:
                raise ValueError(f"source {sid}: one metadata dict per scene is needed")
            shapes.add(shape[1:])
    if len(shapes) > 1:
        raise ValueError(f"input bands must all cover one (H, W) grid, got {sorted(shapes)}")
    if not shapes:
        raise ValueError("no band given to evaluate (not even dataMask)")
    height, width = next(iter(shapes))
    return height, width


def _check_bands(setup: ScriptSetup, bands: dict[str, np.ndarray]) -> tuple[int, int]:
    missing = [b for b in setup.bands if b not in bands]
    if missing:
        raise ValueError(f"no data given for evalscript input band(s) {', '.join(missing)}")
    shapes = {np.shape(bands[b]) for b in setup.bands}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"input bands must be 2-D arrays of one shape, got {sorted(shapes)}")
    height, width = next(iter(shapes))
    return height, width


_runtimes: dict[tuple[int, int, float, int], EvalscriptRuntime] = {}
_runtimes_lock = threading.Lock()


@atexit.register
def _close_runtimes() -> None:
    """Close the V8 contexts before the interpreter tears down: a MiniRacer context left to
    its finaliser at exit can hang the process forever."""
    with _runtimes_lock:
        for runtime in _runtimes.values():
            runtime.close()
        _runtimes.clear()


def get_runtime(timeout_s: float, heap_mb: int) -> EvalscriptRuntime:
    """The calling thread's runtime for these limits (created on first use, reused afterwards).

    One isolate per worker thread: V8 runs one thread per isolate anyway, threads of one worker
    then evaluate in parallel, and inputs a reader stages in a runtime's memory cannot be
    overwritten by another thread before they are evaluated.
    """
    # Keyed by pid too: a forked child must not reuse its parent's V8 isolate.
    key = (os.getpid(), threading.get_ident(), float(timeout_s), int(heap_mb))
    with _runtimes_lock:
        runtime = _runtimes.get(key)
        if runtime is None:
            runtime = _runtimes[key] = EvalscriptRuntime(timeout_s, heap_mb)
        return runtime
