"""The data sources of a task: for each `input.data` entry, its bands and the scenes it reads.

A BYOC source lists the ingested tiles of the account's collection; a STAC source (Sentinel-2,
Landsat, Sentinel-1, the DEM, ...) searches its catalogue over the task's extent once, at
analysis, and the items found are pinned in the store so that processing, even after a
controller restart, reads the same scenes. Either way the scenes are filtered by `dataFilter`
(time range, cloud cover) and put in mosaicking priority order once per task; each feature
then takes those whose footprint meets it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import shapely
from rasterio.warp import transform_bounds
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from eobatch.config import Settings
from eobatch.engine import JobSource
from eobatch.errors import AnalysisError, InvalidRequest
from eobatch.lifecycle.validation import SourceRef, stac_collections
from eobatch.planning import Feature
from eobatch.projection import transformer
from eobatch.schemas.batch import DataSource
from eobatch.script import DEFAULT_SOURCE, EvalscriptError, ScriptSetup
from eobatch.sources import Scene, filter_cloud_cover, filter_time, order_scenes
from eobatch.sources.byoc import bucket_location, collection_scenes
from eobatch.sources.stac import (
    StacCollection,
    item_from_record,
    item_record,
    item_scene,
    requested_options,
    search_terms,
    unit_conversion,
)
from eobatch.sources.stac_search import Retry, StacItem, StacQuery, search_items
from eobatch.sources.units import Conversion
from eobatch.storage import REMOTE_READS
from eobatch.store import Database
from eobatch.store.models import PinnedScenes

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
    items: list[StacItem] = field(default_factory=list)  # a STAC source's items, as pinned
    scenes: list[Scene] = field(default_factory=list)  # filtered, in priority order
    footprints: shapely.STRtree | None = None  # lon/lat footprint of scenes[i] at index i
    loaded: bool = False

    @property
    def upsampling(self) -> str:
        processing = self.request.processing
        return (processing.upsampling if processing else None) or "NEAREST"

    @property
    def downsampling(self) -> str:
        if self.stac is not None and self.stac.upsampling_only:
            return self.upsampling  # Sentinel-1: `upsampling` for every resampling
        processing = self.request.processing
        return (processing.downsampling if processing else None) or "NEAREST"

    @property
    def fill(self) -> float | None:
        """The value of pixels no scene covers (the DEM's sea level), or None."""
        return self.stac.fill if self.stac is not None else None

    @property
    def time_range(self) -> tuple[datetime | None, datetime | None]:
        data_filter = self.request.data_filter
        time_range = data_filter.time_range if data_filter else None
        if time_range is None:
            return None, None
        return utc(time_range.from_), utc(time_range.to)

    def load(
        self,
        db: Database,
        settings: Settings,
        account_id: str,
        extent: tuple | None,
        pinned: list[StacItem] | None = None,
    ) -> None:
        """Find, filter and order the scenes; a STAC source takes its `pinned` items, or
        searches `extent` (lon/lat)."""
        start, end = self.time_range
        if self.ref.kind == "byoc":
            with_footprints, _ = collection_scenes(db, settings, account_id, self.ref.key)
        else:
            assert self.stac is not None
            self.items = pinned if pinned is not None else _search(self, settings, extent)
            with_footprints = self._item_scenes(settings)
        data_filter = self.request.data_filter
        kept = [scene for scene, _ in with_footprints]
        if self.stac is None or not self.stac.timeless:
            kept = filter_time(kept, start, end)
        kept = filter_cloud_cover(kept, data_filter.max_cloud_coverage if data_filter else None)
        order = (data_filter.mosaicking_order if data_filter else None) or "mostRecent"
        # Timeless data (the DEM) comes in the order of its collections (GLO-30, then GLO-90).
        self.scenes = (
            kept if self.stac is not None and self.stac.timeless else order_scenes(kept, order)
        )
        footprint_of = {scene.id: fp for scene, fp in with_footprints}
        self.footprints = shapely.STRtree([footprint_of[s.id] or _WORLD for s in self.scenes])
        self.loaded = True

    def _item_scenes(self, settings: Settings) -> list[tuple[Scene, shapely.Geometry]]:
        assert self.stac is not None
        processing = self.request.processing
        harmonize = processing.harmonize_values if processing else None
        locate = _asset_locator(settings)
        items = self.items
        if self.stac.timeless:
            collections, _ = search_terms(self.stac, self.options)
            rank = {name: n for n, name in enumerate(collections)}
            items = sorted(items, key=lambda i: (rank.get(i.collection or "", len(rank)), i.id))
        return [
            (item_scene(item, self.stac, harmonize is not False, locate), item.geometry)
            for item in items
        ]

    @property
    def options(self) -> dict[str, Any]:
        """The type-specific `dataFilter`/`processing` options the request sets."""
        data_filter, processing = self.request.data_filter, self.request.processing
        return requested_options(
            data_filter.wire() if data_filter else {}, processing.wire() if processing else {}
        )

    def meets(self, areas: np.ndarray) -> np.ndarray:
        """For each of `areas` (lon/lat), whether a scene's footprint meets it."""
        assert self.loaded and self.footprints is not None, "load() the source first"
        met = np.zeros(len(areas), dtype=bool)
        met[self.footprints.query(areas, predicate="intersects")[0]] = True
        return met

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

    def unit_factors(self, setup: ScriptSetup) -> dict[str, Conversion]:
        """The conversion of each band into the units the script asks for, band by band (a
        script may read some bands in REFLECTANCE and others in DN); none for BYOC bands,
        whose only units are their stored values."""
        if self.stac is None:
            return {}
        factors = {}
        for script_input in setup.inputs:
            if script_input.datasource not in (None, self.id):
                continue
            for name in script_input.bands:
                if name in self.stac.bands:
                    factors[name] = unit_conversion(self.stac, name, script_input.unit_of(name))
        return factors


def input_sources(
    db: Database,
    settings: Settings,
    account_id: str,
    request_sources: Sequence[DataSource],
    refs: Sequence[SourceRef],
) -> list[InputSource]:
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


def job_sources(
    sources: Sequence[InputSource], area: shapely.Geometry, setup: ScriptSetup
) -> tuple[JobSource, ...]:
    """What a job reads of each source over `area` (lon/lat): its scenes meeting the area,
    resampling, units and time range."""
    return tuple(
        JobSource(
            s.id,
            s.scenes_for(area),
            upsampling=s.upsampling,
            downsampling=s.downsampling,
            scales=s.unit_factors(setup),
            fill=s.fill,
            time_range=s.script_time_range,
        )
        for s in sources
    )


def priced_bands(setup: ScriptSetup, sources: Sequence[InputSource]) -> tuple[str, ...]:
    """The input bands PUs are counted by: with data fusion each source's own, so a band read
    from two sources counts twice (`billing.band_factor`)."""
    if len(sources) < 2 and not setup.datasources:
        return setup.bands
    return tuple(band for s in sources for band in setup.bands_of(s.id))


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


def check_mosaicking(setup: ScriptSetup, sources: Sequence[InputSource]) -> None:
    """The script's mosaicking against what each source's data type allows (Sentinel-1 has no
    TILE mosaicking: its scenes are not tiled)."""
    for source in sources:
        mosaicking = setup.mosaicking_of(source.id if len(sources) > 1 else None)
        if source.stac is not None and mosaicking not in source.stac.mosaicking:
            raise AnalysisError(
                f"{source.request.type} has no {mosaicking} mosaicking; use "
                f"{' or '.join(source.stac.mosaicking)}"
            )


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
    boxes_wgs84 = np.array(wgs84)
    west, south = boxes_wgs84[:, :2].min(axis=0).tolist()
    east, north = boxes_wgs84[:, 2:].max(axis=0).tolist()
    return west, south, east, north


def _search(source: InputSource, settings: Settings, extent: tuple | None) -> list[StacItem]:
    """The items of a STAC source's catalogue over `extent` that its request selects."""
    assert source.stac is not None
    if extent is None:  # no features planned: nothing to search for
        return []
    collections, accepted = search_terms(source.stac, source.options)
    start, end = (None, None) if source.stac.timeless else source.time_range
    catalogue = source.stac.source or settings.stac_source
    query = StacQuery(collections, extent, start, end, accepted, source.stac.alternate_href)
    retry = Retry(settings.stac_attempts, settings.stac_backoff_s)
    try:
        return search_items(catalogue, query, retry)
    except Exception as exc:  # HTTP, DuckDB and file errors all mean "no catalogue"
        # The source may be a private path or carry a token: details go to the operator's log.
        log.exception("searching the STAC source %s failed", catalogue)
        raise AnalysisError(
            f"The STAC catalogue of {source.request.type} could not be searched "
            f"({type(exc).__name__}). This is a server-side problem: try again later, or ask "
            "the operator to check EOBATCH_STAC_SOURCE and EOBATCH_STAC_MAPPING (the server "
            "log has the details)."
        ) from exc


def pin_items(session: Session, task_id: str, sources: Sequence[InputSource]) -> None:
    """Keep the items each STAC source found, replacing what an earlier analysis kept."""
    session.execute(delete(PinnedScenes).where(PinnedScenes.task_id == task_id))
    rows = [
        {
            "task_id": task_id,
            "source": n,
            "items": [item_record(item, source.stac) for item in source.items],
        }
        for n, source in enumerate(sources)
        if source.stac is not None
    ]
    if rows:
        session.execute(insert(PinnedScenes), rows)


def pinned_items(db: Database, task_id: str) -> dict[int, list[StacItem]]:
    """The items pinned for each STAC source of a task (by its index in `input.data`)."""
    with db.reading() as session:
        rows = session.execute(
            select(PinnedScenes.source, PinnedScenes.items).where(PinnedScenes.task_id == task_id)
        ).all()
    return {source: [item_from_record(r) for r in records] for source, records in rows}


def _asset_locator(settings: Settings) -> Callable[[str], tuple[str, dict[str, str]]]:
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


def footprints_wgs84(features: Sequence[Feature]) -> np.ndarray:
    """`footprint_wgs84` of many features, one coordinate transformation per CRS."""
    footprints = np.empty(len(features), dtype=object)
    by_epsg: dict[int, list[int]] = {}
    for n, feature in enumerate(features):
        by_epsg.setdefault(feature.epsg, []).append(n)
    for epsg, members in by_epsg.items():
        bounds = np.array([features[n].bounds for n in members], dtype=float)
        boxes = shapely.segmentize(shapely.box(*bounds.T), (bounds[:, 2] - bounds[:, 0]) / 8)
        if epsg != 4326:
            to_wgs = transformer(epsg, 4326)
            boxes = shapely.transform(
                boxes, lambda xy, t=to_wgs: np.column_stack(t.transform(xy[:, 0], xy[:, 1]))
            )
        footprints[members] = boxes
    return footprints


def footprint_wgs84(feature: Feature) -> shapely.Geometry:
    """A feature's bounds in lon/lat, edges densified so the curved outline is kept."""
    box = shapely.segmentize(
        shapely.box(*feature.bounds), (feature.bounds[2] - feature.bounds[0]) / 8
    )
    if feature.epsg == 4326:
        return box
    to_wgs = transformer(feature.epsg, 4326)

    def project(xy: np.ndarray) -> np.ndarray:
        x, y = to_wgs.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(box, project)
