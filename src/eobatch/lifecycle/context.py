"""What the controller derives once per task to analyse it and to build its feature jobs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import shapely
from pyproj import Transformer
from sqlalchemy import func, select

from eobatch.config import Settings
from eobatch.engine import USERDATA, FeatureJob, OutputTarget
from eobatch.errors import AnalysisError, InvalidRequest
from eobatch.lifecycle.billing import Crossing, Pricing, crossing, fusion_factor
from eobatch.lifecycle.validation import validate_request
from eobatch.planning import AOI, Feature
from eobatch.schemas.batch import BatchRequest, RasterOutput, TilingGridInput, ZarrOutput
from eobatch.script import ScriptOutput, ScriptSetup
from eobatch.sinks import CogOptions, CompressionProfile, DeliveryTemplate
from eobatch.sinks.byoc import register_tiles
from eobatch.sinks.zarr import ZarrLayout, parse_arrays
from eobatch.sources import Scene, filter_time, order_scenes
from eobatch.sources.byoc import collection_scenes
from eobatch.sources.stack import slices
from eobatch.storage import Location
from eobatch.store import Database
from eobatch.store.models import Collection, Task
from eobatch.store.models import Feature as FeatureRow


@dataclass
class TaskContext:
    task_id: str
    request: BatchRequest
    evalscript: str
    aoi: AOI | None  # None: a GeoPackage input without bounds
    delivery: Location  # delivery root
    template: DeliveryTemplate
    bands: dict
    scenes: list[Scene]  # time-filtered, in mosaicking priority order
    footprints: shapely.STRtree  # WGS84 footprint of scenes[i] at index i
    upsampling: str
    downsampling: str
    features: tuple[Location, str] | None = None  # GeoPackage input: its folder and file name
    zarr: ZarrLayout | None = None  # zarr output, once the features are planned
    db: Database | None = None
    settings: Settings | None = None

    @classmethod
    def build(cls, db: Database, settings: Settings, task: Task) -> TaskContext:
        request = BatchRequest.model_validate(task.request)
        with db.session() as session:
            owned = set(
                session.scalars(
                    select(Collection.id).where(Collection.account_id == task.account_id)
                )
            )
        try:
            checked = validate_request(request, settings, owned)
        except InvalidRequest as exc:
            raise AnalysisError(f"The request is no longer valid: {exc.message}") from exc
        source = request.process_request.input.data[0]
        with_footprints, bands = collection_scenes(
            db, settings, task.account_id, checked.collection_ids[0]
        )
        data_filter = source.data_filter
        time_range = data_filter.time_range if data_filter else None
        kept = filter_time(
            [scene for scene, _ in with_footprints],
            _utc(time_range.from_ if time_range else None),
            _utc(time_range.to if time_range else None),
        )
        order = (data_filter.mosaicking_order if data_filter else None) or "mostRecent"
        if order == "leastCC":
            raise AnalysisError("mosaickingOrder leastCC needs cloud cover, which BYOC tiles lack")
        ordered = order_scenes(kept, order)
        footprint_of = {scene.id: fp for scene, fp in with_footprints}
        processing = source.processing
        context = cls(
            task_id=task.id,
            request=request,
            evalscript=request.process_request.evalscript or "",
            aoi=checked.aoi,
            delivery=checked.delivery,
            template=checked.template,
            bands=bands,
            scenes=ordered,
            footprints=shapely.STRtree(
                [footprint_of[s.id] or shapely.box(-180, -90, 180, 90) for s in ordered]
            ),
            upsampling=(processing.upsampling if processing else None) or "NEAREST",
            downsampling=(processing.downsampling if processing else None) or "NEAREST",
            features=checked.features,
            db=db,
            settings=settings,
        )
        if isinstance(request.output, ZarrOutput):
            with db.session() as session:
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
                context.zarr = context.zarr_layout(tuple(extent[:4]), extent[4])
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
            tuple(setup.bands),
            tuple(o.sample_type for o in self.delivered_outputs(setup)),
            fusion_factor(sources),
        )

    def crossing(self, settings: Settings) -> Crossing:
        """Whether the delivery bucket is in another region or cloud than the deployment."""
        return crossing(self.delivery.cloud, self.delivery.region, settings.cloud, settings.region)

    def output_bands(self, setup: ScriptSetup) -> list[tuple[int, str]]:
        return [(o.bands, o.sample_type) for o in self.delivered_outputs(setup)]

    def sample_bounds(self, setup: ScriptSetup, features: list[Feature]) -> list[tuple[int, int]]:
        """(fewest, most) data samples per feature: 1 for SIMPLE; for ORBIT/TILE none at the
        least (no data, or all scenes dropped by the script) and at most every scene (TILE) or
        every acquisition day (ORBIT) whose footprint meets the feature."""
        if setup.mosaicking == "SIMPLE":
            return [(1, 1)] * len(features)
        # the engine's own grouping into orbits/tiles, so estimate and charge cannot disagree
        return [(0, len(slices(self.scenes_for(f), setup.mosaicking))) for f in features]

    def scenes_for(self, feature: Feature) -> tuple[Scene, ...]:
        """Scenes whose footprint meets the feature's output area, in priority order."""
        hits = self.footprints.query(_footprint_wgs84(feature), predicate="intersects")
        return tuple(self.scenes[i] for i in sorted(int(h) for h in hits))

    def job(self, feature: Feature, setup: ScriptSetup, settings: Settings) -> FeatureJob:
        return FeatureJob(
            task_id=self.task_id,
            feature=feature,
            evalscript=self.evalscript,
            setup=setup,
            scenes=self.scenes_for(feature),
            upsampling=self.upsampling,
            downsampling=self.downsampling,
            targets=self.targets(feature),
            delivery=self.delivery,
            script_timeout_s=settings.script_timeout_s,
            script_heap_mb=settings.script_heap_mb,
            compression=compression_profile(settings),
            cog=self.cog_options,
            zarr=self.zarr,
        )

    def zarr_layout(self, bounds: tuple[float, float, float, float], epsg: int) -> ZarrLayout:
        """The zarr group over features spanning `bounds` in EPSG `epsg`."""
        output = self.request.output
        assert isinstance(output, ZarrOutput) and isinstance(self.request.input, TilingGridInput)
        ids = [r.identifier for r in self.request.process_request.output.responses]
        specs = parse_arrays(output.array_parameters, output.array_overrides, ids, None)
        source = self.request.process_request.input.data[0]
        time_range = source.data_filter.time_range if source.data_filter else None
        start = _utc(time_range.from_ if time_range else None) or datetime(1970, 1, 1, tzinfo=UTC)
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
    tiles = []
    for row in rows:
        key = context.template.key(context.task_id, row.name, row.id, "(BAND)", "tiff")
        path = f"{prefix}/{key}" if prefix else key
        tiles.append((path, row.epsg, (row.minx, row.miny, row.maxx, row.maxy)))
    source = context.request.process_request.input.data[0]
    time_range = source.data_filter.time_range if source.data_filter else None
    sensing = _utc(time_range.from_ if time_range else None)
    return register_tiles(context.db, collection_id, tiles, sensing)


def compression_profile(settings: Settings) -> CompressionProfile:
    """The deployment's tile compression (EOBATCH_OUTPUT_COMPRESSION...)."""
    return CompressionProfile(
        settings.output_compression, settings.output_compression_level, settings.output_threads
    )


def _utc(value):  # type: ignore[no-untyped-def]
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _footprint_wgs84(feature: Feature) -> shapely.Geometry:
    box = shapely.segmentize(
        shapely.box(*feature.bounds), (feature.bounds[2] - feature.bounds[0]) / 8
    )
    if feature.epsg == 4326:
        return box
    to_wgs = Transformer.from_crs(feature.epsg, 4326, always_xy=True)

    def project(xy: np.ndarray) -> np.ndarray:
        x, y = to_wgs.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(box, project)
