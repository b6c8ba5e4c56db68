"""The data sources of a task: for each `input.data` entry, its bands and the scenes it reads.

A BYOC source lists the ingested tiles of the account's collection; a STAC source (Sentinel-2)
searches the deployment's STAC source over the task's extent. Either way the scenes are filtered
by `dataFilter` (time range, cloud cover) and put in mosaicking priority order once per task;
each feature then takes those whose footprint meets it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import shapely
from pyproj import Transformer
from rasterio.warp import transform_bounds

from eobatch.config import Settings
from eobatch.errors import AnalysisError, InvalidRequest
from eobatch.lifecycle.validation import SourceRef, stac_collections
from eobatch.planning import Feature
from eobatch.schemas.batch import DataSource
from eobatch.script import DEFAULT_SOURCE, EvalscriptError, ScriptSetup
from eobatch.sources import Scene, filter_cloud_cover, filter_time, order_scenes
from eobatch.sources.byoc import bucket_location, collection_scenes
from eobatch.sources.stac import StacCollection, StacQuery, item_scene, search_items
from eobatch.storage import REMOTE_READS
from eobatch.store import Database

log = logging.getLogger(__name__)

_WORLD = shapely.box(-180, -90, 180, 90)


@dataclass
class InputSource:
    """One `input.data` entry as the task reads it."""

    id: str  # the key the script sees it under (with data fusion): its `id`, else "default"
    request: DataSource
    ref: SourceRef
    bands: dict[str, dict[str, Any]]  # band name -> properties (`units`: the units it offers)
    stac: StacCollection | None = None
    scenes: list[Scene] = field(default_factory=list)  # filtered, in priority order
    footprints: shapely.STRtree | None = None  # lon/lat footprint of scenes[i] at index i
    loaded: bool = False

    @property
    def upsampling(self) -> str:
        processing = self.request.processing
        return (processing.upsampling if processing else None) or "NEAREST"

    @property
    def downsampling(self) -> str:
        processing = self.request.processing
        return (processing.downsampling if processing else None) or "NEAREST"

    @property
    def time_range(self) -> tuple[datetime | None, datetime | None]:
        data_filter = self.request.data_filter
        time_range = data_filter.time_range if data_filter else None
        if time_range is None:
            return None, None
        return utc(time_range.from_), utc(time_range.to)

    def load(self, db: Database, settings: Settings, account_id: str, extent: tuple | None) -> None:
        """Find, filter and order the scenes; a STAC source searches `extent` (lon/lat)."""
        start, end = self.time_range
        if self.ref.kind == "byoc":
            with_footprints, _ = collection_scenes(db, settings, account_id, self.ref.key)
        else:
            assert self.stac is not None
            with_footprints = _stac_scenes(self, settings, extent, start, end)
        data_filter = self.request.data_filter
        kept = filter_time([scene for scene, _ in with_footprints], start, end)
        kept = filter_cloud_cover(kept, data_filter.max_cloud_coverage if data_filter else None)
        order = (data_filter.mosaicking_order if data_filter else None) or "mostRecent"
        self.scenes = order_scenes(kept, order)
        footprint_of = {scene.id: fp for scene, fp in with_footprints}
        self.footprints = shapely.STRtree([footprint_of[s.id] or _WORLD for s in self.scenes])
        self.loaded = True

    def scenes_for(self, area: shapely.Geometry) -> tuple[Scene, ...]:
        """Scenes whose footprint meets `area` (lon/lat), in priority order."""
        assert self.loaded and self.footprints is not None, "load() the source first"
        hits = self.footprints.query(area, predicate="intersects")
        return tuple(self.scenes[i] for i in sorted(int(h) for h in hits))

    @property
    def script_time_range(self) -> tuple[datetime | None, datetime | None]:
        """What preProcessScenes gets as collections.from/to: the request's timeRange, else
        the first and last acquisition of the task's scenes."""
        start, end = self.time_range
        if self.scenes and start is None:
            start = min(s.sensing_time for s in self.scenes)
        if self.scenes and end is None:
            end = max(s.sensing_time for s in self.scenes)
        return start, end

    def unit_factors(self, setup: ScriptSetup) -> dict[str, float]:
        """Factor per band for the units the script asks for, band by band (a script may read
        some bands in REFLECTANCE and others in DN); DN, the stored values, is factor 1."""
        if self.stac is None:
            return {}
        factors = {}
        for script_input in setup.inputs:
            if script_input.datasource not in (None, self.id):
                continue
            for name in script_input.bands:
                band = self.stac.bands.get(name)
                if band is not None:
                    factors[name] = band.units[script_input.unit_of(name) or band.default_units]
        return factors


def input_sources(
    db: Database, settings: Settings, account_id: str, request_sources: Sequence[DataSource],
    refs: Sequence[SourceRef],
) -> list[InputSource]:  # fmt: skip
    """The task's sources with their bands; scenes come with `InputSource.load`."""
    sources = []
    fused = len(request_sources) > 1
    for position, (request, ref) in enumerate(zip(request_sources, refs, strict=True)):
        # Without an id, a fused source is known by its position ("0", "1", ...), as on SH.
        source_id = request.id or (str(position) if fused else DEFAULT_SOURCE)
        if ref.kind == "byoc":
            _, bands = collection_scenes(db, settings, account_id, ref.key, with_tiles=False)
            sources.append(InputSource(source_id, request, ref, dict(bands)))
        else:
            stac = stac_collections(settings)[ref.key]
            sources.append(InputSource(source_id, request, ref, stac.band_info(), stac))
    return sources


def check_inputs(setup: ScriptSetup, sources: Sequence[InputSource]) -> ScriptSetup:
    """The script's inputs against the sources: data sources named (or paired by position),
    bands present, units known. Returns the setup with every input paired with its source."""
    try:
        setup = setup.for_sources([s.id for s in sources])
    except EvalscriptError as exc:
        raise AnalysisError(f"Evalscript error: {exc}") from exc
    by_id = {s.id: s for s in sources}
    for script_input in setup.inputs:
        name = script_input.datasource
        if name is not None and name not in by_id:
            ids = ", ".join(s.request.id for s in sources if s.request.id) or "none given"
            raise AnalysisError(
                f"setup() input datasource '{name}' is not the id of any "
                f"processRequest.input.data entry (ids: {ids})"
            )
        source = by_id[name] if name is not None else sources[0]
        missing = [b for b in script_input.bands if b != "dataMask" and b not in source.bands]
        if missing:
            available = ", ".join(sorted(source.bands)) or "none (the collection has no bands yet)"
            raise AnalysisError(
                f"Evalscript input band(s) {', '.join(missing)} not in the collection "
                f"{source.request.type}; available: {available}"
            )
        for band in script_input.bands:
            units = script_input.unit_of(band)
            if band == "dataMask" or units is None:
                continue
            offered = [u.upper() for u in source.bands[band].get("units", ["DN"])]
            if units not in offered:
                raise AnalysisError(
                    f"Band {band} of {source.request.type} has no units {units}; "
                    f"available: {', '.join(offered)}"
                )
    asked: dict[tuple[str | None, str], set[str]] = {}
    for script_input in setup.inputs:
        for band in script_input.bands:
            unit = script_input.unit_of(band)
            asked.setdefault((script_input.datasource, band), set()).update([unit] if unit else [])
    for (_, band), several in asked.items():
        if len(several) > 1:
            raise AnalysisError(
                f"Evalscript input band {band} is asked for in several units "
                f"({', '.join(sorted(several))}) from one data source; a sample has one value per "
                "band, so ask for it in one unit"
            )
    return setup


def extent_of(boxes: Sequence[tuple[int, tuple]]) -> tuple[float, float, float, float] | None:
    """The lon/lat bounds of (EPSG code, bounds) boxes, reprojected with densified edges."""
    if not boxes:
        return None
    by_epsg: dict[int, list[tuple]] = {}
    for epsg, box in boxes:
        by_epsg.setdefault(epsg, []).append(box)
    wgs84 = []
    for epsg, group in by_epsg.items():  # one reprojection per CRS: the union of its boxes
        array = np.array(group, dtype=float)
        union = (*array[:, :2].min(axis=0), *array[:, 2:].max(axis=0))
        wgs84.append(
            transform_bounds(epsg, 4326, *union, densify_pts=21) if epsg != 4326 else union
        )
    wgs84 = np.array(wgs84)
    return (*wgs84[:, :2].min(axis=0).tolist(), *wgs84[:, 2:].max(axis=0).tolist())


def _stac_scenes(
    source: InputSource,
    settings: Settings,
    extent: tuple | None,
    start: datetime | None,
    end: datetime | None,
) -> list[tuple[Scene, shapely.Geometry]]:
    assert source.stac is not None
    if extent is None:  # no features planned: nothing to search for
        return []
    processing = source.request.processing
    harmonize = processing.harmonize_values if processing else None
    locate = _asset_locator(settings)
    try:
        query = StacQuery(source.stac.stac_collection, extent, start, end)
        items = search_items(settings.stac_source, query)
    except Exception as exc:  # rustac and DuckDB raise their own kinds; all mean "no catalogue"
        # The source may be a private path or carry a token: details go to the operator's log.
        log.exception("searching the STAC source %s failed", settings.stac_source)
        raise AnalysisError(
            f"The deployment's STAC catalogue could not be searched for {source.request.type} "
            f"({type(exc).__name__}). This is a server-side problem: try again later, or ask "
            "the operator to check EOBATCH_STAC_SOURCE (the server log has the details)."
        ) from exc
    return [
        (item_scene(item, source.stac, harmonize is not False, locate), item.geometry)
        for item in items
    ]


def _asset_locator(settings: Settings):  # type: ignore[no-untyped-def]
    """href -> (GDAL path, rasterio.Env options): s3:// through the deployment's S3 settings,
    http(s) anonymously through /vsicurl/, anything else as a local path."""
    buckets: dict[str, Any] = {}

    def locate(href: str) -> tuple[str, dict[str, str]]:
        if href.startswith("s3://"):
            bucket, _, key = href[5:].partition("/")
            if bucket not in buckets:
                try:
                    buckets[bucket] = bucket_location(settings, bucket)
                except InvalidRequest as exc:
                    raise AnalysisError(f"STAC asset bucket {bucket}: {exc.message}") from exc
            location = buckets[bucket]
            return location.gdal_path(key), location.gdal_options()
        if href.startswith(("http://", "https://")):
            return f"/vsicurl/{href}", dict(REMOTE_READS)
        return href.removeprefix("file://"), {}

    return locate


def utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def footprint_wgs84(feature: Feature) -> shapely.Geometry:
    """A feature's bounds in lon/lat, edges densified so the curved outline is kept."""
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
