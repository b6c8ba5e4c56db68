"""The Dask side: the cluster the controller submits to, and the feature job that runs there.

A feature job is a plain function of its inputs; it writes the same object keys every time, so a
retry or a re-run after a crash overwrites instead of duplicating.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np
from distributed import Client, LocalCluster

from eobatch.config import Settings
from eobatch.errors import FeatureError, describe
from eobatch.planning import Feature
from eobatch.script import (
    EvalscriptError,
    EvalscriptRuntime,
    ScriptSetup,
    SourceData,
    get_runtime,
)
from eobatch.sinks import DEFAULT_PROFILE, CogOptions, CompressionProfile, encode_output
from eobatch.sinks.zarr import ZarrLayout, feature_chunks
from eobatch.sources import PixelGrid, Scene, read_mosaic, read_slices, slices
from eobatch.sources.stack import tile_metadata
from eobatch.sources.units import Conversion
from eobatch.storage import Location

log = logging.getLogger(__name__)


USERDATA = "userdata"  # the response identifier of `updateOutputMetadata`'s JSON


@dataclass(frozen=True)
class OutputTarget:
    """One file to deliver: the script output id (or `userdata`) and its key under the root."""

    output_id: str
    key: str


@dataclass(frozen=True)
class JobSource:
    """One data source of a feature: its scenes meeting the feature, in priority order."""

    id: str  # the key the script sees it under (DEFAULT_SOURCE without data fusion)
    scenes: tuple[Scene, ...]
    upsampling: str = "NEAREST"
    downsampling: str = "NEAREST"
    scales: dict[str, Conversion] = field(default_factory=dict)  # band -> its units
    fill: float | None = None  # value where no scene has data (timeless data such as the DEM)
    # dataFilter.timeRange (from, to): preProcessScenes gets it as collections.from/to
    time_range: tuple[datetime | None, datetime | None] = (None, None)


@dataclass(frozen=True)
class FeatureJob:
    """Everything a worker needs to process one feature; picklable, no store access needed."""

    task_id: str
    feature: Feature
    evalscript: str
    setup: ScriptSetup
    sources: tuple[JobSource, ...]  # one per processRequest.input.data entry
    targets: tuple[OutputTarget, ...]
    delivery: Location
    script_timeout_s: float
    script_heap_mb: int
    compression: CompressionProfile = DEFAULT_PROFILE
    cog: CogOptions | None = None  # None: plain tiled GeoTIFFs
    zarr: ZarrLayout | None = None  # zarr output: chunks of the task's group, no GeoTIFFs
    # What needs every feature's outputs to keep the band counts setup() declares (zarr
    # output, BYOC ingestion), though updateOutput may change them per feature; None: nothing
    fixed_bands: str | None = None


@dataclass(frozen=True)
class FeatureOutcome:
    task_id: str
    feature_id: int
    ok: bool
    no_data: bool = False
    error: str | None = None
    retryable: bool = True
    bytes_written: int = 0
    samples: int = 1  # data samples per pixel the script saw: 1 for SIMPLE, scenes for ORBIT/TILE
    seconds: float = 0.0  # time the worker spent on the feature


def run_features(jobs: Sequence[FeatureJob]) -> list[FeatureOutcome]:
    """Several features in one Dask job, one after the other: small features share the job's
    fixed costs (scheduling, the controller's bookkeeping per job)."""
    return [run_feature(job) for job in jobs]


def run_feature(job: FeatureJob) -> FeatureOutcome:
    """Read, evaluate, encode and deliver one feature. Never raises: failures are outcomes."""
    started = time.perf_counter()
    outcome = _attempt(job)
    return replace(outcome, seconds=time.perf_counter() - started)


def _attempt(job: FeatureJob) -> FeatureOutcome:
    feature = job.feature
    try:
        return _run(job)
    except EvalscriptError as exc:
        return FeatureOutcome(job.task_id, feature.id, False, error=str(exc), retryable=False)
    except FeatureError as exc:
        return FeatureOutcome(
            job.task_id, feature.id, False, error=str(exc), retryable=exc.retryable
        )
    except Exception as exc:  # I/O and GDAL errors: worth another attempt
        log.exception("feature %s of task %s failed", feature.id, job.task_id)
        return FeatureOutcome(job.task_id, feature.id, False, error=describe(exc))


def _run(job: FeatureJob) -> FeatureOutcome:
    feature = job.feature
    grid = PixelGrid(feature.epsg, feature.transform, feature.width, feature.height)
    runtime = get_runtime(job.script_timeout_s, job.script_heap_mb)
    runtime.bind(job.task_id)  # no JavaScript state is ever shared with another task
    data, samples = read_inputs(job.evalscript, job.setup, job.sources, grid, runtime)
    # dataMask is always read (the runtime passes on only the bands the script asks for).
    if samples == 0 or not any(d.bands["dataMask"].any() for d in data.values()):
        # Nothing evaluated, nothing delivered: no sample is charged, whatever the mosaicking
        # ("you are only charged PUs for the features that are processed").
        return FeatureOutcome(
            job.task_id, feature.id, True, no_data=True, error="No data", samples=0
        )
    # copy=False: the rasters are encoded below, before this runtime evaluates anything else.
    result = runtime.evaluate_sources(job.evalscript, job.setup, data, copy=False)
    for target in job.targets:  # before anything is written
        if target.output_id != USERDATA:
            _check_bands(job, target.output_id, result.rasters[target.output_id])
    written = 0
    for target in job.targets:
        if target.output_id == USERDATA:
            files = {target.key: json.dumps(result.userdata, allow_nan=False).encode()}
        elif job.zarr is not None:  # this feature's chunks of the task's arrays
            row, col = job.zarr.offset(feature.bounds)
            raster = result.rasters[target.output_id]
            chunks = feature_chunks(job.zarr, target.output_id, raster, row, col)
            files = {f"{target.key}/{key}": data for key, data in chunks.items()}
        else:
            output = job.setup.output(target.output_id)
            files = {
                target.key: encode_output(
                    result.rasters[target.output_id],
                    output,
                    feature.epsg,
                    feature.transform,
                    job.compression,
                    job.cog,
                )
            }
        for key, payload in files.items():
            job.delivery.put(key, payload)
            written += len(payload)
    return FeatureOutcome(job.task_id, feature.id, True, bytes_written=written, samples=samples)


def read_inputs(
    evalscript: str,
    setup: ScriptSetup,
    sources: tuple[JobSource, ...],
    grid: PixelGrid,
    runtime: EvalscriptRuntime,
) -> tuple[dict[str, SourceData], int]:
    """Every source read onto `grid` as the script sees it, and the data samples per pixel
    (1 for SIMPLE, the scenes kept for ORBIT/TILE). Batch features and Process API requests
    both come through here, so a preview has a batch task's pixels."""
    fused = len(sources) > 1 or bool(setup.datasources)
    modes = {s.id: setup.mosaicking_of(s.id if fused else None) for s in sources}
    per_scene = _read_per_scene(evalscript, setup, sources, grid, runtime, fused, modes)
    # A single SIMPLE source is read straight into the script's memory; fused ones apart.
    stage = runtime if len(sources) == 1 else None
    data = {
        s.id: per_scene[s.id] if s.id in per_scene else _read_simple(setup, s, fused, grid, stage)
        for s in sources
    }  # in the request's order: fused scripts may name the sources by position
    samples = max(1 if modes[sid] == "SIMPLE" else d.scene_count for sid, d in data.items())
    return data, samples


def _check_bands(job: FeatureJob, output_id: str, raster: np.ndarray) -> None:
    """An output whose band count `updateOutput` changed must still be writable."""
    declared, bands = job.setup.output(output_id).bands, raster.shape[0]
    if bands == 0:
        raise FeatureError(
            f"Output '{output_id}' has no bands for this feature (updateOutput() set 0), so "
            "there is nothing to write",
            retryable=False,
        )
    if job.fixed_bands and bands != declared:
        raise FeatureError(
            f"updateOutput() gave output '{output_id}' {bands} band(s) for this feature, but "
            f"{job.fixed_bands} needs the {declared} band(s) setup() declares in every feature; "
            "keep the band count fixed, or deliver GeoTIFFs without ingestion",
            retryable=False,
        )


def _bands(setup: ScriptSetup, source: JobSource, fused: bool) -> list[str]:
    """The bands the script reads from `source`, dataMask always included."""
    return list(dict.fromkeys([*setup.bands_of(source.id if fused else None), "dataMask"]))


def _read_simple(
    setup: ScriptSetup,
    source: JobSource,
    fused: bool,
    grid: PixelGrid,
    stage: EvalscriptRuntime | None,
) -> SourceData:
    """SIMPLE: the scenes mosaicked into one sample; with `stage` (a single source), read
    straight into the script's memory."""
    wanted = [b for b in _bands(setup, source, fused) if b != "dataMask"]
    staged = stage.stage_inputs(setup, 1, grid.height, grid.width) if stage else {}
    bands_read, mask = read_mosaic(
        source.scenes,
        wanted,
        grid,
        upsampling=source.upsampling,
        downsampling=source.downsampling,
        out={name: staged[name][0] for name in wanted} if staged else None,
        scales=source.scales,
        fill=source.fill,
    )
    stacks = {name: bands_read[name][None] for name in wanted}
    # dataMask is always returned (the no-data check needs it); in place when the script reads it.
    stacks["dataMask"] = staged.get("dataMask", np.empty((1, *mask.shape), dtype=np.uint8))
    stacks["dataMask"][0] = mask
    # The scenes behind the mosaic: what updateOutput counts under SIMPLE.
    return SourceData(stacks, [tile_metadata(scene) for scene in source.scenes])


def _read_per_scene(
    evalscript: str,
    setup: ScriptSetup,
    job_sources: tuple[JobSource, ...],
    grid: PixelGrid,
    runtime: EvalscriptRuntime,
    fused: bool,
    modes: dict[str, str],
) -> dict[str, SourceData]:
    """ORBIT/TILE sources: the samples `preProcessScenes` keeps (all without it), each read
    apart. SIMPLE sources are left out."""
    sources = [s for s in job_sources if modes[s.id] != "SIMPLE"]
    if not sources:
        return {}
    candidates = {s.id: slices(s.scenes, modes[s.id]) for s in sources}
    metadata = {sid: [c.metadata for c in cs] for sid, cs in candidates.items()}
    ranges = {s.id: s.time_range for s in sources}
    kept = runtime.pre_process_scenes(evalscript, setup, metadata, ranges)
    data = {}
    for s in sources:
        chosen = [candidates[s.id][n] for n in kept[s.id]]
        bands = _bands(setup, s, fused)
        data[s.id] = read_slices(
            chosen, bands, grid, s.upsampling, s.downsampling, s.scales, s.fill
        )
    return data


def start_client(settings: Settings, timeout: float | None = None) -> Client:
    """A client of the configured scheduler (giving up after `timeout` s), or of a new
    LocalCluster: one process per worker, its dashboard at `settings.dashboard_address`."""
    if settings.dask_scheduler:
        connect = {"timeout": timeout} if timeout is not None else {}
        return Client(settings.dask_scheduler, set_as_default=False, **connect)
    cluster = LocalCluster(
        n_workers=settings.workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=settings.dashboard_address or None,
        host="127.0.0.1",
    )
    return Client(cluster, set_as_default=False)
