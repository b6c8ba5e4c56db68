"""What the controller derives once per task to analyse it and to build its feature jobs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import func, select

from eobatch.config import Settings
from eobatch.engine import USERDATA, FeatureJob, JobSource, OutputTarget
from eobatch.errors import AnalysisError, InvalidRequest
from eobatch.lifecycle.billing import Crossing, Pricing, crossing, fusion_factor
from eobatch.lifecycle.inputs import (
    InputSource,
    extent_of,
    footprint_wgs84,
    footprints_wgs84,
    input_sources,
    job_sources,
    pin_items,
    pinned_items,
    priced_bands,
    utc,
)
from eobatch.lifecycle.validation import validate_request
from eobatch.planning import AOI, Feature
from eobatch.schemas.batch import BatchRequest, RasterOutput, TilingGridInput, ZarrOutput
from eobatch.script import ScriptOutput, ScriptSetup
from eobatch.sinks import CogOptions, CompressionProfile, DeliveryTemplate
from eobatch.sinks.byoc import register_tiles
from eobatch.sinks.geotiff import output_overview_levels
from eobatch.sinks.zarr import ZarrLayout, parse_arrays
from eobatch.sources.byoc import coarsest_overview_meters
from eobatch.sources.stac_search import StacItem
from eobatch.sources.stack import slices
from eobatch.storage import Location
from eobatch.store import Database
from eobatch.store.models import Collection, Task
from eobatch.store.models import Feature as FeatureRow


@dataclass
class TaskContext:
    task_id: str
    account_id: str
    request: BatchRequest
    evalscript: str
    aoi: AOI | None  # None: a GeoPackage input without bounds
    delivery: Location  # delivery root
    template: DeliveryTemplate
    sources: list[InputSource]  # one per processRequest.input.data entry
    features: tuple[Location, str] | None = None  # GeoPackage input: its folder and file name
    zarr: ZarrLayout | None = None  # zarr output, once the features are planned
    db: Database | None = None
    settings: Settings | None = None

    @classmethod
    def build(
        cls, db: Database, settings: Settings, task: Task, with_scenes: bool = True
    ) -> TaskContext:
        """The context of a task; with `with_scenes`, the scenes its analysis pinned are loaded
        too (analysis itself builds it without and calls `load_scenes` after planning). Without
        scenes it still knows the request, delivery and outputs."""
        request = BatchRequest.model_validate(task.request)
        with db.reading() as session:
            owned = set(
                session.scalars(
                    select(Collection.id).where(Collection.account_id == task.account_id)
                )
            )
        try:
            checked = validate_request(request, settings, owned)
        except InvalidRequest as exc:
            raise AnalysisError(f"The request is no longer valid: {exc.message}") from exc
        context = cls(
            task_id=task.id,
            account_id=task.account_id,
            request=request,
            evalscript=request.process_request.evalscript or "",
            aoi=checked.aoi,
            delivery=checked.delivery,
            template=checked.template,
            sources=input_sources(
                db, settings, task.account_id, request.process_request.input.data, checked.sources
            ),
            features=checked.features,
            db=db,
            settings=settings,
        )
        if not with_scenes:
            return context
        pinned = pinned_items(db, task.id)
        if pinned or not any(s.stac for s in context.sources):
            context.load_scenes([], pinned)  # the scenes the analysis found: same pixels
        else:
            context.search_scenes(task.id)  # analysed before scenes were pinned
        if isinstance(request.output, ZarrOutput):
            with db.reading() as session:
                extent = session.execute(
                    select(
                        func.min(FeatureRow.minx),
                        func.min(FeatureRow.miny),
                        func.max(FeatureRow.maxx),
                        func.max(FeatureRow.maxy),
                        func.min(FeatureRow.epsg),
                    ).where(FeatureRow.task_id == task.id)
                ).one()
            if extent[0] is not None:
                minx, miny, maxx, maxy, epsg = extent
                context.zarr = context.zarr_layout((minx, miny, maxx, maxy), epsg)
        return context

    def targets(self, feature: Feature) -> tuple[OutputTarget, ...]:
        """The files a feature delivers: a GeoTIFF per image/tiff response and `userdata.json`;
        for zarr output, each zarr/array response with the key of the task's group."""
        if isinstance(self.request.output, ZarrOutput):
            return tuple(
                OutputTarget(r.identifier, self.template.key(self.task_id, "", 0, "", ""))
                for r in self.request.process_request.output.responses
                if r.identifier != USERDATA
            )
        return tuple(
            OutputTarget(
                r.identifier,
                self.template.key(
                    self.task_id,
                    feature.name,
                    feature.id,
                    r.identifier,
                    "json" if r.identifier == USERDATA else "tiff",
                ),
            )
            for r in self.request.process_request.output.responses
            if r.format.type == "image/tiff" or r.identifier == USERDATA
        )

    # -- billing ------------------------------------------------------------------------------

    def delivered_outputs(self, setup: ScriptSetup) -> list[ScriptOutput]:
        return [
            setup.output(r.identifier)
            for r in self.request.process_request.output.responses
            if r.format.type in ("image/tiff", "zarr/array")
        ]

    def pricing(self, setup: ScriptSetup) -> Pricing:
        """The price factors of this task's features: bands, delivered outputs, data fusion."""
        sources = len(self.request.process_request.input.data)
        return Pricing(
            priced_bands(setup, self.sources),
            tuple(o.sample_type for o in self.delivered_outputs(setup)),
            fusion_factor(sources),
        )

    def crossing(self, settings: Settings) -> Crossing:
        """Whether the delivery bucket is in another region or cloud than the deployment."""
        return crossing(self.delivery.cloud, self.delivery.region, settings.cloud, settings.region)

    def output_bands(self, setup: ScriptSetup) -> list[tuple[int, str]]:
        return [(o.bands, o.sample_type) for o in self.delivered_outputs(setup)]

    def sample_bounds(self, setup: ScriptSetup, features: list[Feature]) -> list[tuple[int, int]]:
        """(fewest, most) data samples per feature, as the engine will count them: a SIMPLE
        source gives one sample where a scene meets the feature; ORBIT/TILE sources none at the
        least (no data, or all scenes dropped by the script) and at most every scene (TILE) or
        every acquisition day (ORBIT) meeting it. A feature no scene meets costs nothing."""
        fused = len(self.sources) > 1 or bool(setup.datasources)
        modes = {s.id: setup.mosaicking_of(s.id if fused else None) for s in self.sources}
        areas = footprints_wgs84(features)
        simple = np.zeros(len(features), dtype=bool)  # a SIMPLE source has data there
        most = np.zeros(len(features), dtype=int)
        for source in self.sources:
            mode = modes[source.id]
            if mode == "SIMPLE":
                met = source.meets(areas)
                simple |= met
                most = np.maximum(most, met)
            else:  # grouped as the engine does, so that estimate and charge cannot disagree
                counts = [len(slices(source.scenes_for(area), mode)) for area in areas]
                most = np.maximum(most, counts)
        return [(int(s), int(m)) for s, m in zip(simple, most, strict=True)]

    def load_scenes(
        self, boxes: list[tuple[int, tuple]], pinned: dict[int, list[StacItem]] | None = None
    ) -> None:
        """Find every source's scenes over `boxes` (EPSG code and bounds of the planned
        features), or take the STAC items `pinned` for it (by source index)."""
        assert self.db is not None and self.settings is not None
        extent = extent_of(boxes)
        for n, source in enumerate(self.sources):
            items = (pinned or {}).get(n) if source.stac is not None else None
            source.load(self.db, self.settings, self.account_id, extent, items)

    def search_scenes(self, task_id: str) -> None:
        """Search every source's scenes over the stored features and pin them.

        The search covers the planned features, which reach past the AOI (whole grid tiles,
        buffers): a scene covering only that margin must still be found.
        """
        assert self.db is not None
        with self.db.reading() as session:
            boxes = session.execute(
                select(
                    FeatureRow.epsg,
                    func.min(FeatureRow.minx),
                    func.min(FeatureRow.miny),
                    func.max(FeatureRow.maxx),
                    func.max(FeatureRow.maxy),
                )
                .where(FeatureRow.task_id == task_id)
                .group_by(FeatureRow.epsg)
            ).all()
        self.load_scenes([(row[0], tuple(row[1:])) for row in boxes])
        if boxes:
            with self.db.session() as session:
                pin_items(session, task_id, self.sources)

    def job_sources(self, feature: Feature, setup: ScriptSetup) -> tuple[JobSource, ...]:
        return job_sources(self.sources, footprint_wgs84(feature), setup)

    def job(self, feature: Feature, setup: ScriptSetup, settings: Settings) -> FeatureJob:
        return FeatureJob(
            task_id=self.task_id,
            feature=feature,
            evalscript=self.evalscript,
            setup=setup,
            sources=self.job_sources(feature, setup),
            targets=self.targets(feature),
            delivery=self.delivery,
            script_timeout_s=settings.script_timeout_s,
            script_heap_mb=settings.script_heap_mb,
            compression=compression_profile(settings),
            cog=self.cog_options,
            zarr=self.zarr,
            fixed_bands=self.fixed_bands,
        )

    @property
    def fixed_bands(self) -> str | None:
        """What needs every feature to keep the band counts setup() declares, if anything."""
        output = self.request.output
        if isinstance(output, ZarrOutput):
            return "zarr output"
        if isinstance(output, RasterOutput) and (output.create_collection or output.collection_id):
            return "BYOC ingestion"
        return None

    def zarr_layout(self, bounds: tuple[float, float, float, float], epsg: int) -> ZarrLayout:
        """The zarr group over features spanning `bounds` in EPSG `epsg`."""
        output = self.request.output
        assert isinstance(output, ZarrOutput) and isinstance(self.request.input, TilingGridInput)
        ids = [r.identifier for r in self.request.process_request.output.responses]
        specs = parse_arrays(output.array_parameters, output.array_overrides, ids, None)
        source = self.request.process_request.input.data[0]
        time_range = source.data_filter.time_range if source.data_filter else None
        start = utc(time_range.from_ if time_range else None) or datetime(1970, 1, 1, tzinfo=UTC)
        coordinates = output.group.coordinates
        return ZarrLayout(
            zarr_format=output.group.zarr_format,
            epsg=epsg,
            bounds=bounds,
            resolution=self.request.input.resolution,
            origin=coordinates.origin if coordinates else "topLeft",
            time=start,
            arrays=tuple(specs[i] for i in ids),
            attributes=output.group.custom_attributes or {},
        )

    @property
    def cog_options(self) -> CogOptions | None:
        """`cogParameters` with defaults filled in, or None without `cogOutput`."""
        output = self.request.output
        if not isinstance(output, RasterOutput) or not output.cog_output:
            return None
        params = output.cog_parameters
        if params is None:
            return CogOptions()
        return CogOptions(
            overview_levels=tuple(params.overview_levels)
            if params.overview_levels is not None
            else None,
            overview_min_size=params.overview_min_size,
            resampling=params.resampling_algorithm or "average",
            blockxsize=params.blockxsize or 256,
            blockysize=params.blockysize or 256,
            use_predictor=True if params.use_predictor is None else params.use_predictor,
        )


def ingest_outputs(context: TaskContext, collection_id: str, rows: list) -> int:  # type: ignore[type-arg]
    """Register the delivered features (store rows) as tiles of the BYOC collection."""
    assert context.db is not None
    prefix = context.delivery.prefix
    cog = context.cog_options
    tiles = []
    for row in rows:
        key = context.template.key(context.task_id, row.name, row.id, "(BAND)", "tiff")
        path = f"{prefix}/{key}" if prefix else key
        bounds = (row.minx, row.miny, row.maxx, row.maxy)
        # The overviews the sink wrote (sinks/geotiff.py): known without reading the files.
        factors = output_overview_levels(row.width, row.height, cog)
        meters = coarsest_overview_meters(row.width, row.height, factors, bounds, row.epsg)
        tiles.append((path, row.epsg, bounds, meters))
    source = context.request.process_request.input.data[0]
    time_range = source.data_filter.time_range if source.data_filter else None
    sensing = utc(time_range.from_ if time_range else None)
    return register_tiles(context.db, collection_id, tiles, sensing)


def compression_profile(settings: Settings) -> CompressionProfile:
    """The deployment's tile compression (EOBATCH_OUTPUT_COMPRESSION...)."""
    return CompressionProfile(
        settings.output_compression,
        settings.output_compression_level,
        settings.resolved_output_threads,
    )
