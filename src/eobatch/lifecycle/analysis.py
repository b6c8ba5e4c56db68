"""Analysis of a task: check the script against the request, plan the features, write the manifest.

Re-running an analysis (e.g. after a controller crash) replaces its features, so it is idempotent.
"""

from __future__ import annotations

import numpy as np
import shapely
from sqlalchemy import delete, insert, update

from eobatch.config import Settings
from eobatch.engine import USERDATA
from eobatch.errors import AnalysisError
from eobatch.lifecycle.billing import estimate
from eobatch.lifecycle.context import TaskContext
from eobatch.planning import Feature, ManifestRow, feature_manifest_bytes, plan_tiling_grid
from eobatch.planning.geopackage import SizeDefaults, plan_geopackage_input
from eobatch.schemas.batch import GeoPackageDefaults, GeoPackageInput, TilingGridInput
from eobatch.script import EvalscriptError, ScriptSetup, parse_setup
from eobatch.store import Database
from eobatch.store.models import Feature as FeatureRow
from eobatch.store.models import Task

MANIFEST_FILE = "featureManifest-{request_id}.gpkg"


def check_script(source: str, context: TaskContext) -> ScriptSetup:
    """Parse `setup()` and check it against the request's outputs and the collection's bands."""
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
        if response.format.type != "image/tiff":
            raise AnalysisError(
                f"Output '{response.identifier}' must have format image/tiff "
                f"(got {response.format.type}); only 'userdata' is application/json"
            )
    missing = [b for b in setup.bands if b != "dataMask" and b not in context.bands]
    if missing:
        raise AnalysisError(
            f"Evalscript input band(s) {', '.join(missing)} not in the collection; available: "
            f"{', '.join(sorted(context.bands)) or 'none (the collection has no bands yet)'}"
        )
    return setup


def plan_features(context: TaskContext) -> list[Feature]:
    grid = context.request.input
    if isinstance(grid, GeoPackageInput):
        assert context.features is not None
        defaults = grid.defaults or GeoPackageDefaults()
        return plan_geopackage_input(
            *context.features,
            SizeDefaults(defaults.width, defaults.height, defaults.resolution),
            context.aoi,
        )
    assert isinstance(grid, TilingGridInput) and context.aoi is not None
    return plan_tiling_grid(
        grid.id, grid.resolution, grid.buffer_x or 0, grid.buffer_y or 0, context.aoi
    )


def analyse_task(db: Database, settings: Settings, task: Task) -> int:
    """Analyse `task`, store its features (PENDING) and upload the manifest; returns the count."""
    context = TaskContext.build(db, settings, task)
    setup = check_script(context.evalscript, context)
    features = plan_features(context)
    samples = context.sample_bounds(setup, features)
    cost = estimate(
        context.pricing(setup),
        ((f.width, f.height, low, high) for f, (low, high) in zip(features, samples, strict=True)),
        context.crossing(settings),
        context.output_bands(setup),
    )
    rows = [
        ManifestRow(
            output_id=target.output_id,
            identifier=feature.name,
            path=context.delivery.url_for(target.key),
            width=feature.width,
            height=feature.height,
            epsg=feature.epsg,
            geometry=feature.geometry,
        )
        for feature in features
        for target in context.targets(feature)
    ]
    context.delivery.put(MANIFEST_FILE.format(request_id=task.id), feature_manifest_bytes(rows))
    with db.session() as session:
        session.execute(delete(FeatureRow).where(FeatureRow.task_id == task.id))
        session.execute(update(Task).where(Task.id == task.id).values(estimate=cost.as_json()))
        if features:
            # Core executemany with WKB made in one vectorised call: 700 000 rows in seconds
            wkb = shapely.to_wkb(np.array([f.geometry for f in features], dtype=object))
            session.execute(
                insert(FeatureRow.__table__),
                [
                    {
                        "task_id": task.id,
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
                        "status": "PENDING",
                        "attempts": 0,
                        "delivered": False,
                        "max_samples": most,
                        "bytes_written": 0,
                        "cost_micro_pu": 0,
                        "surcharge_micro_pu": 0,
                        "reserved_micro_pu": 0,
                        "billed": False,
                    }
                    for f, geometry, (_, most) in zip(features, wkb.tolist(), samples, strict=True)
                ],
            )
    return len(features)
