"""When a task completes: its results catalogue, from the store's delivered features."""

from __future__ import annotations

import logging

import shapely
from sqlalchemy import select

from eobatch.lifecycle.analysis import MANIFEST_FILE
from eobatch.lifecycle.context import TaskContext
from eobatch.lifecycle.inputs import utc
from eobatch.lifecycle.tasks import REQUEST_FILE
from eobatch.planning import Feature
from eobatch.schemas.batch import ZarrOutput
from eobatch.script import ScriptSetup
from eobatch.sinks.catalogue import DeliveredFeature, TaskResults, write_catalogue
from eobatch.sinks.execution_db import EXECUTION_FILE
from eobatch.store.models import Feature as FeatureRow
from eobatch.store.models import Task

log = logging.getLogger(__name__)


def publish_results(context: TaskContext, setup: ScriptSetup, task: Task) -> None:
    """Write the task's STAC catalogue and VRT mosaics beside its outputs (sinks/catalogue.py).

    A failure is logged, never raised: the outputs are delivered whatever becomes of their index.
    """
    try:
        write_catalogue(context.delivery, task_results(context, setup, task))
    except Exception:
        log.exception("could not write the results catalogue of task %s", context.task_id)


def task_results(context: TaskContext, setup: ScriptSetup, task: Task) -> TaskResults:
    """What the task delivered: its outputs and every feature stored as delivered."""
    assert context.db is not None
    with context.db.reading() as session:
        rows = session.scalars(
            select(FeatureRow)
            .where(FeatureRow.task_id == context.task_id, FeatureRow.delivered)
            .order_by(FeatureRow.id)
        ).all()
    zarr = isinstance(context.request.output, ZarrOutput)
    delivered = []
    for row in rows:
        feature = Feature(
            row.id,
            row.name,
            row.epsg,
            (row.minx, row.miny, row.maxx, row.maxy),
            row.width,
            row.height,
            shapely.from_wkb(row.geometry),
        )
        files = {} if zarr else {t.output_id: t.key for t in context.targets(feature)}
        delivered.append(DeliveredFeature(feature, files))
    source = context.request.process_request.input.data[0]
    time_range = source.data_filter.time_range if source.data_filter else None
    return TaskResults(
        task_id=context.task_id,
        description=context.request.description,
        time_range=(utc(time_range.from_), utc(time_range.to)) if time_range else (None, None),
        created=task.created,
        outputs=tuple(context.delivered_outputs(setup)),
        features=tuple(delivered),
        cog=context.cog_options,
        zarr_epsg=(context.zarr.epsg if context.zarr else rows[0].epsg if rows else None)
        if zarr
        else None,
        bookkeeping=tuple(
            name.format(request_id=context.task_id)
            for name in (REQUEST_FILE, MANIFEST_FILE, EXECUTION_FILE)
        ),
    )
