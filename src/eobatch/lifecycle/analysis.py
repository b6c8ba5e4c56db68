"""Analysis of a task: check the script against the request, plan the features, write the manifest.

Re-running an analysis (e.g. after a controller crash) replaces its features, so it is idempotent.

Memory and store locks stay bounded whatever the task's size: the plan is kept as columns and
made into features a chunk at a time (`FeaturePlan`); each chunk goes into the manifest file on
local disk and into the store in its own short transaction, so the API's writes wait for one
chunk at most. A failed analysis removes the features it stored.
"""

from __future__ import annotations

import contextlib
import posixpath
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import numpy as np
import shapely
from sqlalchemy import Table, delete, insert, update
from sqlalchemy.orm import Session

from eobatch.config import Settings
from eobatch.engine import USERDATA
from eobatch.errors import AnalysisError
from eobatch.lifecycle.billing import estimate
from eobatch.lifecycle.context import TaskContext
from eobatch.lifecycle.fencing import LeaseLost
from eobatch.lifecycle.inputs import check_inputs, check_mosaicking, pin_items
from eobatch.limits import path_violations, shown, too_many_features
from eobatch.planning import Feature, FeaturePlan, ManifestRow, tiling_grid_plan
from eobatch.planning.geopackage import SizeDefaults, geopackage_input_plan
from eobatch.planning.manifest import ManifestWriter
from eobatch.schemas.batch import (
    GeoPackageDefaults,
    GeoPackageInput,
    RasterOutput,
    TilingGridInput,
    ZarrOutput,
)
from eobatch.script import EvalscriptError, ScriptSetup, parse_setup
from eobatch.sinks.byoc import collection_bands, new_collection_id, prepare_collection
from eobatch.sinks.zarr import group_objects, parse_arrays
from eobatch.store import Database
from eobatch.store.models import Feature as FeatureRow
from eobatch.store.models import Task

MANIFEST_FILE = "featureManifest-{request_id}.gpkg"
_LISTED = 10  # existing outputs named in an analysis error


def check_script(source: str, context: TaskContext) -> ScriptSetup:
    """Parse `setup()` and check it against the request's outputs and the sources' bands."""
    try:
        setup = parse_setup(source)
    except EvalscriptError as exc:
        raise AnalysisError(f"Evalscript error: {exc}") from exc
    output_ids = {o.id for o in setup.outputs}
    for response in context.request.process_request.output.responses:
        if response.identifier == USERDATA:
            if response.format.type != "application/json":
                raise AnalysisError(
                    "The 'userdata' response must have format application/json "
                    f"(got {response.format.type})"
                )
            continue
        if response.identifier not in output_ids:
            raise AnalysisError(
                f"Output '{response.identifier}' requested in processRequest.output.responses is "
                "not defined in the evalscript's setup() "
                f"(outputs: {', '.join(sorted(output_ids))})"
            )
    output = context.request.output
    if isinstance(output, ZarrOutput):
        _check_zarr_outputs(setup, context)
    if isinstance(output, RasterOutput) and (output.create_collection or output.collection_id):
        _check_ingestion(context)
    if isinstance(output, RasterOutput) and output.cog_output:
        int8 = [o.id for o in setup.outputs if o.sample_type == "INT8"]
        if int8:
            raise AnalysisError(
                f"cogOutput does not allow sampleType INT8 (output(s) {', '.join(int8)}); "
                "use INT16 or UINT8"
            )
    for response in context.request.process_request.output.responses:
        if response.identifier != USERDATA and response.format.type == "image/tiff":
            declared = setup.output(response.identifier)
            if declared.bands == 0 and not setup.updates_output:
                raise AnalysisError(
                    f"Output '{declared.id}' has bands: 0, so no image/tiff can be written for "
                    "it; request only the userdata response, or give it bands"
                )
    setup = check_inputs(setup, context.sources)
    check_mosaicking(setup, context.sources)
    return setup


def _check_ingestion(context: TaskContext) -> None:
    """BYOC ingestion needs the delivery in the deployment's cloud and region (or a local
    folder bucket, which is the deployment's own storage)."""
    delivery, settings = context.delivery, context.settings
    assert settings is not None  # a context built from the store has its settings
    if delivery.cloud is None:
        return
    if delivery.cloud != settings.cloud or delivery.region != settings.region:
        raise AnalysisError(
            f"BYOC ingestion needs the delivery bucket in this deployment's cloud and region "
            f"({settings.cloud} {settings.region}); {delivery.url} is in {delivery.cloud} "
            f"{delivery.region}. Deliver there, or drop createCollection/collectionId."
        )


def byoc_collection(context: TaskContext, setup: ScriptSetup, account_id: str) -> str | None:
    """Create or check the task's BYOC collection; its id, or None without ingestion."""
    output = context.request.output
    if not isinstance(output, RasterOutput) or not (
        output.create_collection or output.collection_id
    ):
        return None
    ids = [r.identifier for r in context.request.process_request.output.responses]
    bands = collection_bands(setup, ids)
    collection_id = (output.collection_id or "").lower() or new_collection_id(context.task_id)
    assert context.db is not None  # a context built from the store has its database
    prepare_collection(
        context.db,
        account_id,
        collection_id,
        output.collection_id is None,
        f"batch-{context.task_id}",
        context.delivery.bucket,
        bands,
    )
    return collection_id


def _check_zarr_outputs(setup: ScriptSetup, context: TaskContext) -> None:
    output = context.request.output
    assert isinstance(output, ZarrOutput)
    ids = [r.identifier for r in context.request.process_request.output.responses]
    specs = parse_arrays(output.array_parameters, output.array_overrides, ids, None)
    for output_id in ids:
        script_output = setup.output(output_id)
        if script_output.bands != 1:
            raise AnalysisError(
                f"Zarr output '{output_id}' has {script_output.bands} bands; zarr output needs "
                "one band per output"
            )
        if not specs[output_id].compatible_with(script_output.sample_type):
            raise AnalysisError(
                f"Zarr array '{output_id}' has dtype {specs[output_id].dtype}, which cannot hold "
                f"sampleType {script_output.sample_type} values"
            )


def write_zarr_group(context: TaskContext, plan: FeaturePlan) -> None:
    """Lay out the task's zarr group (metadata and coordinates) in its empty folder."""
    group = context.template.key(context.task_id, "", 0, "", "")
    present = context.delivery.list(group)
    if present:
        shown = ", ".join(context.delivery.url_for(k) for k in present[:_LISTED])
        raise AnalysisError(
            f"The zarr output folder {context.delivery.url_for(group)} must be "
            f"empty; it holds {shown}"
        )
    if not plan.count:
        return
    bounds = np.array(list(plan.extents.values()))
    extent = (*bounds[:, :2].min(axis=0).tolist(), *bounds[:, 2:].max(axis=0).tolist())
    epsg = next(iter(plan.extents))  # zarr output is on a single-CRS grid
    context.zarr = context.zarr_layout(tuple(extent), epsg)  # type: ignore[arg-type]
    for key, data in group_objects(context.zarr, context.task_id).items():
        context.delivery.put(f"{group}/{key}", data)


def plan_features(context: TaskContext) -> FeaturePlan:
    grid = context.request.input
    if isinstance(grid, GeoPackageInput):
        assert context.features is not None
        defaults = grid.defaults or GeoPackageDefaults()
        return geopackage_input_plan(
            *context.features,
            SizeDefaults(defaults.width, defaults.height, defaults.resolution),
            context.aoi,
        )
    assert isinstance(grid, TilingGridInput) and context.aoi is not None
    return tiling_grid_plan(
        grid.id, grid.resolution, grid.buffer_x or 0, grid.buffer_y or 0, context.aoi
    )


def check_planned(context: TaskContext, plan: FeaturePlan, settings: Settings) -> None:
    """The planned features within the limits, before anything is written: how many there are,
    and for GeoPackage input (whose names are only known now) the longest output path."""
    many = too_many_features(plan.count, settings, estimated=False)
    if many is not None:
        raise AnalysisError(many[0].upper() + many[1:])
    if not isinstance(context.request.input, GeoPackageInput) or not plan.count:
        return
    features = (f for chunk in plan.chunks() for f in chunk)
    longest = max(features, key=lambda f: len(f.name.encode()))
    for target in context.targets(longest):
        found = path_violations(
            context.delivery.url_for(target.key),
            "output->delivery",
            settings,
            what=f"output path of feature {shown(longest.name)}",
        )
        if found:
            raise AnalysisError(found[0].violation[0].upper() + found[0].violation[1:])


def skipped_features(context: TaskContext, plan: FeaturePlan) -> set[int]:
    """Ids of features to skip because their outputs exist (`skipExisting`).

    Existing outputs are a failure unless the request allows them (batch-v2-api.md §4.4):
    `skipExisting` skips a feature whose outputs all exist; `overwrite` rewrites the others.
    Raises `AnalysisError` listing the existing outputs the request does not allow.
    """
    output = context.request.output
    if not isinstance(output, RasterOutput):
        return set()
    existing = set(context.delivery.list(_output_folder(context)))
    if not existing:
        return set()
    skipped = set()
    refused: list[str] = []
    for feature in plan:
        feature_keys = [t.key for t in context.targets(feature)]
        present = [k for k in feature_keys if k in existing]
        if not present:
            continue
        if output.skip_existing and len(present) == len(feature_keys):
            skipped.add(feature.id)
        elif not output.overwrite:
            refused.extend(present)
    if refused:
        shown = ", ".join(context.delivery.url_for(k) for k in sorted(refused)[:_LISTED])
        more = f" and {len(refused) - _LISTED} more" if len(refused) > _LISTED else ""
        hint = (
            "set output.overwrite to replace them"
            if output.skip_existing
            else "set output.overwrite to replace them or output.skipExisting to skip features "
            "whose outputs all exist"
        )
        raise AnalysisError(f"Output files already exist: {shown}{more}; {hint}")
    return skipped


def _output_folder(context: TaskContext) -> str:
    """The deepest folder the delivery template puts every output file in: the fixed start of
    its keys (one listing there finds the outputs that exist already, without a pass over the
    plan). Two keys that differ in every per-feature value share just that start."""
    one = context.template.key(context.task_id, "a", 0, "a", "a")
    other = context.template.key(context.task_id, "b", 1, "b", "b")
    fixed = posixpath.commonprefix([one, other])
    return fixed[: fixed.rfind("/")] if "/" in fixed else ""


def analyse_task(
    db: Database, settings: Settings, task: Task, fence: Callable[[Session], None] | None = None
) -> tuple[int, TaskContext, ScriptSetup]:
    """Analyse `task`, store its features (PENDING) and upload the manifest; returns the count,
    and the context and setup processing goes on with (so its scenes are not searched again).

    `fence` is called first in every transaction that writes the task's features: it raises to
    refuse the write (the controller lost the task meanwhile)."""
    context = TaskContext.build(db, settings, task, with_scenes=False)
    setup = check_script(context.evalscript, context)
    plan = plan_features(context)
    check_planned(context, plan, settings)
    context.load_scenes(list(plan.extents.items()))  # over the features' extent
    byoc_collection(context, setup, task.account_id)
    skipped = skipped_features(context, plan)
    if isinstance(context.request.output, ZarrOutput):
        write_zarr_group(context, plan)
    with tempfile.TemporaryDirectory(prefix="eobatch-analysis-") as folder:
        manifest = ManifestWriter(Path(folder) / "manifest.gpkg", plan.extents)
        _forget_features(db, task.id, fence)  # an earlier analysis's, if any
        try:
            cost = estimate(  # skipped features are final and free
                context.pricing(setup),
                _store_plan(db, context, setup, plan, skipped, manifest, fence),
                context.crossing(settings),
                context.output_bands(setup),
            )
            context.delivery.put_file(MANIFEST_FILE.format(request_id=task.id), manifest.path)
            with db.session() as session:
                if fence is not None:
                    fence(session)
                session.execute(
                    update(Task).where(Task.id == task.id).values(estimate=cost.as_json())
                )
                pin_items(session, task.id, context.sources)  # processing reads these scenes
        except LeaseLost:
            raise  # the task is another controller's now: its features are not ours to touch
        except BaseException:
            with contextlib.suppress(LeaseLost):  # else another controller's job
                _forget_features(db, task.id, fence)  # a failed analysis leaves no features
            raise
    return plan.count, context, setup


def _store_plan(
    db: Database,
    context: TaskContext,
    setup: ScriptSetup,
    plan: FeaturePlan,
    skipped: set[int],
    manifest: ManifestWriter,
    fence: Callable[[Session], None] | None,
) -> Iterator[tuple[int, int, int, int]]:
    """Write the plan a chunk at a time into the manifest file and the store; yields every
    billable feature's (width, height, fewest samples, most samples) for the estimate."""
    for chunk in plan.chunks():
        samples = context.sample_bounds(setup, chunk)
        manifest.append(
            [
                ManifestRow(
                    output_id=target.output_id,
                    identifier=feature.name,
                    path=context.delivery.url_for(target.key),
                    width=feature.width,
                    height=feature.height,
                    epsg=feature.epsg,
                    geometry=feature.geometry,
                )
                for feature in chunk
                for target in context.targets(feature)
            ]
        )
        store_features(db, context.task_id, chunk, samples, skipped, fence)
        for feature, (low, high) in zip(chunk, samples, strict=True):
            if feature.id not in skipped:
                yield feature.width, feature.height, low, high


def store_features(
    db: Database,
    task_id: str,
    features: list[Feature],
    samples: list[tuple[int, int]],
    skipped: set[int],
    fence: Callable[[Session], None] | None,
) -> None:
    """Insert `features` (PENDING, or DONE if skipped) in one short transaction of their own."""
    # Core executemany with WKB made in one vectorised call
    wkb = shapely.to_wkb(np.array([f.geometry for f in features], dtype=object))
    with db.session() as session:
        if fence is not None:
            fence(session)
        session.execute(
            insert(cast(Table, FeatureRow.__table__)),
            [
                {
                    "task_id": task_id,
                    "id": f.id,
                    "name": f.name,
                    "epsg": f.epsg,
                    "minx": f.bounds[0],
                    "miny": f.bounds[1],
                    "maxx": f.bounds[2],
                    "maxy": f.bounds[3],
                    "width": f.width,
                    "height": f.height,
                    "geometry": geometry,
                    # A skipped feature is final and free: its outputs are already there.
                    "status": "DONE" if f.id in skipped else "PENDING",
                    "attempts": 0,
                    "delivered": f.id in skipped,
                    "max_samples": most,
                    "bytes_written": 0,
                    "cost_micro_pu": 0,
                    "surcharge_micro_pu": 0,
                    "reserved_micro_pu": 0,
                    "billed": f.id in skipped,
                }
                for f, geometry, (_, most) in zip(features, wkb.tolist(), samples, strict=True)
            ],
        )


def _forget_features(db: Database, task_id: str, fence: Callable[[Session], None] | None) -> None:
    with db.session() as session:
        if fence is not None:
            fence(session)
        session.execute(delete(FeatureRow).where(FeatureRow.task_id == task_id))
