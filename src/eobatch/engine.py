"""The Dask side: the cluster the controller submits to, and the feature job that runs there.

A feature job is a plain function of its inputs; it writes the same object keys every time, so a
retry or a re-run after a crash overwrites instead of duplicating.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from distributed import Client, LocalCluster

from eobatch.config import Settings
from eobatch.errors import FeatureError
from eobatch.planning import Feature
from eobatch.script import EvalscriptError, ScriptSetup, get_runtime
from eobatch.sinks import DEFAULT_PROFILE, CogOptions, CompressionProfile, encode_geotiff
from eobatch.sinks.zarr import ZarrLayout, feature_chunks
from eobatch.sources import PixelGrid, Scene, read_mosaic
from eobatch.storage import Location

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutputTarget:
    """One GeoTIFF to deliver: the script output id and the key under the delivery root."""

    output_id: str
    key: str


@dataclass(frozen=True)
class FeatureJob:
    """Everything a worker needs to process one feature; picklable, no store access needed."""

    task_id: str
    feature: Feature
    evalscript: str
    setup: ScriptSetup
    scenes: tuple[Scene, ...]  # already filtered to the feature and ordered by priority
    upsampling: str
    downsampling: str
    targets: tuple[OutputTarget, ...]
    delivery: Location
    script_timeout_s: float
    script_heap_mb: int
    compression: CompressionProfile = DEFAULT_PROFILE
    cog: CogOptions | None = None  # None: plain tiled GeoTIFFs
    zarr: ZarrLayout | None = None  # zarr output: chunks of the task's group, no GeoTIFFs


@dataclass(frozen=True)
class FeatureOutcome:
    task_id: str
    feature_id: int
    ok: bool
    no_data: bool = False
    error: str | None = None
    retryable: bool = True
    bytes_written: int = 0


def run_feature(job: FeatureJob) -> FeatureOutcome:
    """Read, evaluate, encode and deliver one feature. Never raises: failures are outcomes."""
    feature = job.feature
    try:
        return _run(job)
    except EvalscriptError as exc:
        return FeatureOutcome(job.task_id, feature.id, False, error=str(exc), retryable=False)
    except FeatureError as exc:
        return FeatureOutcome(job.task_id, feature.id, False, error=str(exc),
                              retryable=exc.retryable)  # fmt: skip
    except Exception as exc:  # I/O and GDAL errors: worth another attempt
        log.exception("feature %s of task %s failed", feature.id, job.task_id)
        return FeatureOutcome(job.task_id, feature.id, False, error=f"{type(exc).__name__}: {exc}")


def _run(job: FeatureJob) -> FeatureOutcome:
    feature = job.feature
    grid = PixelGrid(feature.epsg, feature.transform, feature.width, feature.height)
    wanted = [b for b in job.setup.bands if b != "dataMask"]
    bands, mask = read_mosaic(
        job.scenes, wanted, grid, upsampling=job.upsampling, downsampling=job.downsampling
    )
    if not mask.any():
        return FeatureOutcome(job.task_id, feature.id, True, no_data=True, error="No data")
    inputs = {name: bands[name] for name in wanted}
    if "dataMask" in job.setup.bands:
        inputs["dataMask"] = mask
    runtime = get_runtime(job.script_timeout_s, job.script_heap_mb)
    results = runtime.evaluate(job.evalscript, job.setup, inputs)
    written = 0
    if job.zarr is not None:
        row, col = job.zarr.offset(feature.bounds)
        for target in job.targets:
            chunks = feature_chunks(job.zarr, target.output_id, results[target.output_id], row, col)
            for key, data in chunks.items():
                job.delivery.put(f"{target.key}/{key}", data)
                written += len(data)
        return FeatureOutcome(job.task_id, feature.id, True, bytes_written=written)
    for target in job.targets:
        output = job.setup.output(target.output_id)
        data = encode_geotiff(
            results[target.output_id],
            feature.epsg,
            feature.transform,
            output.nodata_value,
            job.compression,
            job.cog,
        )
        job.delivery.put(target.key, data)
        written += len(data)
    return FeatureOutcome(job.task_id, feature.id, True, bytes_written=written)


def start_client(settings: Settings) -> Client:
    """A client of the configured scheduler, or of a new LocalCluster (one process per worker)."""
    if settings.dask_scheduler:
        return Client(settings.dask_scheduler, set_as_default=False)
    cluster = LocalCluster(
        n_workers=settings.workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        host="127.0.0.1",
    )
    return Client(cluster, set_as_default=False)


def stop_client(client: Client) -> None:
    cluster = client.cluster
    client.close()
    if cluster is not None:
        cluster.close()
