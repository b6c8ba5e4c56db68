"""Everything checked when a task is created: the request must be runnable except its script.

Each problem becomes one `Violation`; all of them are reported together in one 400.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from eobatch.config import Settings
from eobatch.errors import InvalidRequest, Violation
from eobatch.limits import path_violations, shown, too_many_features
from eobatch.planning import AOI, GRIDS, parse_aoi, validate_tiling_input
from eobatch.planning.estimate import estimate_features
from eobatch.planning.geopackage import GeoPackageError, SizeDefaults, fetch_feature_tables
from eobatch.schemas.batch import (
    BatchRequest,
    DataSource,
    GeoPackageDefaults,
    GeoPackageInput,
    RasterOutput,
    TilingGridInput,
    ZarrOutput,
)
from eobatch.sinks import DeliveryTemplate
from eobatch.sinks.zarr import ZARR_FORMATS, parse_arrays
from eobatch.sources.stac import (
    ALIASES,
    StacCollection,
    check_source,
    load_mapping,
    requested_options,
)
from eobatch.storage import Location, open_location

log = logging.getLogger(__name__)

_BYOC_TYPE = re.compile(r"^byoc-(?P<id>[0-9a-fA-F-]{36})$")
# Data collections of Sentinel Hub that this deployment does not serve (yet).
_KNOWN_SH_TYPES = frozenset(
    {
        "sentinel-2-l1c",
        "sentinel-2-l2a",
        "sentinel-1-grd",
        "landsat-8-l1c",
        "landsat-ot-l1",
        "landsat-ot-l2",
        "landsat-etm-l1",
        "landsat-etm-l2",
        "landsat-tm-l1",
        "landsat-tm-l2",
        "landsat-mss-l1",
        "modis",
        "dem",
        "hls",
        "sentinel-3-olci",
        "sentinel-3-olci-l2",
        "sentinel-3-slstr",
        "sentinel-5p-l2",
        "S2L1C",
        "S2L2A",
    }
)


@dataclass(frozen=True)
class ValidatedRequest:
    """A request that passed every create-time check, with what those checks derived."""

    request: BatchRequest
    aoi: AOI | None  # None only for a GeoPackage input without bounds: all its features
    delivery: Location  # the delivery root: bookkeeping files go here, outputs below it
    template: DeliveryTemplate
    sources: tuple[SourceRef, ...]  # one per processRequest.input.data entry
    features: tuple[Location, str] | None = None  # GeoPackage input: its folder and file name


@dataclass(frozen=True)
class SourceRef:
    """What one `input.data` entry reads: a BYOC collection of the account or a STAC data type."""

    kind: str  # "byoc" or "stac"
    key: str  # the BYOC collection id, or the data type (e.g. sentinel-2-l2a)


def stac_collections(settings: Settings) -> dict[str, StacCollection]:
    """The data types the deployment serves from its STAC source."""
    return load_mapping(settings.stac_mapping)


def collection_id_of(source_type: str, filter_collection_id: str | None) -> str | None:
    """The BYOC collection id a data source refers to (`byoc-<id>` or the legacy aliases)."""
    match = _BYOC_TYPE.match(source_type)
    if match:
        return match["id"].lower()
    if source_type in ("CUSTOM", "byoc") and filter_collection_id:
        return filter_collection_id.lower()
    return None


def check_data_source(
    i: int, source: DataSource, settings: Settings, owned: set[str], found: list[Violation]
) -> SourceRef | None:
    """The source entry `i` refers to, or None after adding its violations to `found`."""
    where = f"processRequest->input->data->{i}"
    data_filter, processing = source.data_filter, source.processing
    filter_id = data_filter.collection_id if data_filter else None
    collection_id = collection_id_of(source.type, filter_id)
    if collection_id is not None:
        if collection_id not in owned:
            found.append(Violation(f"{where}->type", f"BYOC collection {collection_id} not found"))
            return None
        if data_filter and data_filter.mosaicking_order == "leastCC":
            found.append(
                Violation(
                    f"{where}->dataFilter->mosaickingOrder",
                    "leastCC needs cloud cover, which BYOC tiles lack; use mostRecent or "
                    "leastRecent",
                )
            )
        if processing and processing.harmonize_values is not None:
            found.append(
                Violation(
                    f"{where}->processing->harmonizeValues", "applies to Sentinel-2 data only"
                )
            )
        options = requested_options(
            data_filter.wire() if data_filter else {}, processing.wire() if processing else {}
        )
        found.extend(
            Violation(f"{where}->{option.replace('.', '->')}", "BYOC collections have no option")
            for option in options
        )
        return SourceRef("byoc", collection_id)
    data_type = ALIASES.get(source.type, source.type)
    try:
        served = stac_collections(settings)
    except (OSError, ValueError, KeyError):
        log.exception("the STAC mapping %s cannot be read", settings.stac_mapping)
        found.append(
            Violation(
                f"{where}->type",
                "the deployment's STAC mapping cannot be read (a server configuration problem; "
                "the operator finds the details in the server log)",
            )
        )
        return None
    if data_type in served:
        for parameter, violation in check_source(
            served[data_type],
            data_filter.wire() if data_filter else {},
            processing.wire() if processing else {},
        ):
            found.append(Violation(f"{where}->{parameter}", violation))
        return SourceRef("stac", data_type)
    if data_type in _KNOWN_SH_TYPES:
        offered = ", ".join(sorted(served)) or "none"
        found.append(
            Violation(
                f"{where}->type",
                f"data collection '{source.type}' is not available on this deployment "
                f"(served: {offered}, and BYOC collections as byoc-<collectionId>)",
            )
        )
    else:
        found.append(
            Violation(
                f"{where}->type",
                f"unknown data collection type '{source.type}'; expected one of "
                f"{', '.join(sorted(served))} or byoc-<collectionId>",
            )
        )
    return None


def check_fusion(sources: list[DataSource]) -> list[Violation]:
    """Fused sources are told apart by their ids (optional: without one, a source is known by
    its position, as on Sentinel Hub), so ids must be unique."""
    if len(sources) < 2:
        return []
    ids = [s.id for s in sources]
    problems = []
    for i, source_id in enumerate(ids):
        if source_id and ids.count(source_id) > 1 and ids.index(source_id) == i:
            problems.append(
                Violation(f"processRequest->input->data->{i}->id", f"duplicate id '{source_id}'")
            )
    return problems


T = TypeVar("T")


def validate_request(
    request: BatchRequest,
    settings: Settings,
    owned_collections: set[str],
    *,
    read_geopackage: bool = False,
) -> ValidatedRequest:
    """Check `request` for the account owning `owned_collections`; raises `InvalidRequest`.

    `read_geopackage` (task creation) also fetches a GeoPackage input and checks its rules;
    the analysis reads it anyway, and reports a file broken since with its own message."""
    found: list[Violation] = []

    def check(fn: Callable[..., T], *args: Any) -> T | None:
        try:
            return fn(*args)
        except InvalidRequest as exc:
            found.extend(exc.errors or [Violation("body", exc.message)])
            return None

    refused = _path_problems(request, settings)
    if refused:  # checked first: the other checks open these locations
        raise InvalidRequest(
            f"Invalid request: {refused[0].parameter}: {refused[0].violation}", refused
        )

    process = request.process_request
    if not (process.evalscript or "").strip():
        found.append(Violation("processRequest->evalscript", "Missing or empty evalscript."))

    aoi = features = None
    if isinstance(request.input, TilingGridInput):
        grid = request.input
        check(
            validate_tiling_input, grid.id, grid.resolution, grid.buffer_x or 0, grid.buffer_y or 0
        )
        bounds = process.input.bounds
        if bounds is None or (bounds.bbox is None and bounds.geometry is None):
            found.append(
                Violation(
                    "processRequest->input->bounds",
                    "is required for tiling-grid input: give a bbox and/or a geometry",
                )
            )
        else:
            crs = bounds.properties.crs if bounds.properties else None
            aoi = check(parse_aoi, bounds.bbox, bounds.geometry, crs)
            if aoi is not None and grid.id in GRIDS:
                many = too_many_features(estimate_features(grid.id, aoi), settings, estimated=True)
                if many is not None:
                    found.append(Violation("processRequest->input->bounds", many))
    else:
        features = check(_check_geopackage_input, request.input, settings, read_geopackage)
        bounds = process.input.bounds
        if bounds is not None and (bounds.bbox is not None or bounds.geometry is not None):
            crs = bounds.properties.crs if bounds.properties else None
            aoi = check(parse_aoi, bounds.bbox, bounds.geometry, crs)

    sources = tuple(
        found_source
        for i, source in enumerate(process.input.data)
        if (found_source := check_data_source(i, source, settings, owned_collections, found))
    )
    found.extend(check_fusion(process.input.data))

    responses = process.output.responses
    ids = [r.identifier for r in responses]
    for i, response in enumerate(responses):
        where = f"processRequest->output->responses->{i}"
        if ids.count(response.identifier) > 1:
            found.append(
                Violation(f"{where}->identifier", f"duplicate identifier '{response.identifier}'")
            )
        kind = response.format.type
        if isinstance(request.output, RasterOutput) and kind == "zarr/array":
            found.append(
                Violation(
                    f"{where}->format->type",
                    "zarr/array needs output type zarr; raster output allows "
                    "image/tiff and application/json",
                )
            )
        if kind == "application/json" and response.identifier != "userdata":
            found.append(
                Violation(
                    f"{where}->format->type",
                    "application/json is only allowed for the 'userdata' output",
                )
            )

    delivery = template = None
    output = request.output
    if isinstance(output, RasterOutput):
        delivery, template = _check_delivery(output, responses, settings, found)
        if template is not None:
            found.extend(_output_path_problems(template, responses, settings))
        if output.create_collection and not output.cog_output:
            found.append(Violation("output->createCollection", "requires cogOutput: true"))
        if output.collection_id is not None and (
            collection_id_of(f"byoc-{output.collection_id}", None) not in owned_collections
        ):
            found.append(
                Violation("output->collectionId", f"collection {output.collection_id} not found")
            )
        ingest = output.create_collection or output.collection_id
        if ingest and template is not None and "<outputId>" not in template.pattern:
            found.append(
                Violation(
                    "output->delivery",
                    "BYOC ingestion needs <outputId> in the delivery path (the collection "
                    "finds each band's file by it)",
                )
            )
        found.extend(_check_cog(output, responses))
    else:
        delivery, template = _check_zarr(request, responses, settings, found)

    if found:
        summary = "; ".join(f"{v.parameter}: {v.violation}" for v in found[:5])
        more = f" (and {len(found) - 5} more)" if len(found) > 5 else ""
        raise InvalidRequest(f"Invalid request: {summary}{more}", found)
    assert delivery is not None and template is not None
    assert aoi is not None or isinstance(request.input, GeoPackageInput)
    return ValidatedRequest(request, aoi, delivery, template, sources, features)


def _path_problems(request: BatchRequest, settings: Settings) -> list[Violation]:
    """Length, control characters and `.`/`..` parts of the delivery and GeoPackage URLs."""
    locators = [("output->delivery", request.output.delivery)]
    if isinstance(request.input, GeoPackageInput):
        locators.append(("input->features", request.input.features))
    found = []
    for where, locator in locators:
        kind = "s3" if locator.s3 is not None else "gs"
        url = locator.wire()[kind]["url"]
        found.extend(path_violations(url, f"{where}->{kind}->url", settings, what="URL"))
    return found


# The longest values placeholders take for tiling grids (names such as 20kmE216N160 or
# 33UVP_4_4, 64-bit ids); GeoPackage identifiers are checked against them at analysis.
_LONGEST_TILE_NAME = "x" * 16
_LONGEST_TILE_ID = 2**63 - 1


def _output_path_problems(
    template: DeliveryTemplate, responses: list, settings: Settings
) -> list[Violation]:
    """The delivery paths with every placeholder at its longest must fit the path limits."""
    kind = template.url.partition("://")[0]
    where = f"output->delivery->{kind}->url"
    for response in responses:
        key = template.key(
            "0" * 36, _LONGEST_TILE_NAME, _LONGEST_TILE_ID, response.identifier, "tiff"
        )
        found = path_violations(
            f"{template.root}/{key}",
            where,
            settings,
            what=f"path of output {shown(response.identifier)} (placeholders filled in)",
        )
        if found:
            return found
    return []


def _check_zarr(
    request: BatchRequest, responses: list, settings: Settings, found: list[Violation]
) -> tuple[Location | None, DeliveryTemplate | None]:
    """Zarr rules of batch-v2-api.md §4.5; returns the delivery root and group template."""
    output = request.output
    assert isinstance(output, ZarrOutput)
    for i, response in enumerate(responses):
        if response.format.type != "zarr/array":
            found.append(
                Violation(
                    f"processRequest->output->responses->{i}->format->type",
                    "zarr output needs every response to be zarr/array",
                )
            )
    if output.group.zarr_format not in ZARR_FORMATS:
        found.append(
            Violation(
                "output->group->zarr_format",
                f"must be 2 (or 3, this server's extension), not {output.group.zarr_format}",
            )
        )
    tile_px = None
    if isinstance(request.input, TilingGridInput):
        grid = GRIDS.get(request.input.id)
        if grid is not None and grid.epsg is None:
            found.append(
                Violation(
                    "input->id",
                    f"zarr output needs a single-CRS grid (3, 6 or "
                    f"7); grid {grid.id} spans UTM zones",
                )
            )
        elif grid is not None:
            tile_px = round(grid.tile_width / request.input.resolution)
        if request.input.buffer_x or request.input.buffer_y:
            found.append(
                Violation(
                    "input->bufferX",
                    "zarr output does not allow buffers: features must not overlap",
                )
            )
    else:
        found.append(Violation("input->type", "zarr output needs a tiling-grid input (3, 6 or 7)"))
    ids = [r.identifier for r in responses]
    try:
        parse_arrays(output.array_parameters, output.array_overrides, ids, tile_px)
    except InvalidRequest as exc:
        found.extend(exc.errors)
    locator = output.delivery.wire()
    kind = "s3" if output.delivery.s3 is not None else "gs"
    url = locator[kind]["url"].rstrip("/")
    where = f"output->delivery->{kind}->url"
    if url.endswith("/<requestId>"):
        url = url.removesuffix("/<requestId>")
    if "<" in url or ">" in url:
        found.append(
            Violation(
                where,
                "a zarr delivery is a folder, or a folder followed by "
                "/<requestId>; no other placeholder is allowed",
            )
        )
        return None, None
    try:
        root = open_location({kind: {**locator[kind], "url": url}}, settings, "output->delivery")
    except InvalidRequest as exc:
        found.extend(exc.errors or [Violation("output->delivery", exc.message)])
        return None, None
    return root, DeliveryTemplate(url=url, root=url, pattern="<requestId>")


def _check_cog(output: RasterOutput, responses: list) -> list[Violation]:
    """`cogOutput` needs TIFF outputs only; COG blocks are multiples of 16 pixels."""
    found = []
    params = output.cog_parameters
    if params is not None:
        for name in ("blockxsize", "blockysize"):
            size = getattr(params, name)
            if size is not None and size % 16:
                found.append(
                    Violation(
                        f"output->cogParameters->{name}",
                        f"{size} is not a multiple of 16 (allowed: 16, 32, ..., 4096)",
                    )
                )
    if output.cog_output:
        for i, response in enumerate(responses):
            if response.format.type != "image/tiff":
                found.append(
                    Violation(
                        f"processRequest->output->responses->{i}->format->type",
                        f"cogOutput needs every output to be image/tiff, "
                        f"not {response.format.type}",
                    )
                )
    return found


def _check_geopackage_input(
    source: GeoPackageInput, settings: Settings, read: bool
) -> tuple[Location, str]:
    """The folder and file name of the GeoPackage, which must exist, and consistent defaults;
    with `read`, its content too (`planning.geopackage`, which reads the whole file)."""
    found: list[Violation] = []
    defaults = source.defaults
    if defaults is not None:
        if (defaults.width is None) != (defaults.height is None):
            found.append(Violation("input->defaults", "give both width and height, or neither"))
        if defaults.resolution is not None and (defaults.width or defaults.height) is not None:
            found.append(
                Violation(
                    "input->defaults",
                    "give either width and height or resolution, not both kinds",
                )
            )
    locator = source.features.wire()
    kind = "s3" if source.features.s3 is not None else "gs"
    url = locator[kind]["url"]
    where = f"input->features->{kind}->url"
    parts = urlsplit(url)
    folder, _, name = parts.path.strip("/").rpartition("/")
    location = None
    if parts.scheme != kind or not parts.netloc or not name:
        found.append(
            Violation(
                where,
                f"'{url}' must be the URL of a .gpkg object, e.g. {kind}://bucket/features.gpkg",
            )
        )
    else:
        # the folder of the file is opened like a delivery location (same checks, same stores)
        folder_url = f"{kind}://{parts.netloc}/{folder}".rstrip("/")
        try:
            location = open_location(
                {kind: {**locator[kind], "url": folder_url}}, settings, "input->features"
            )
        except InvalidRequest as exc:
            found.extend(exc.errors)
        else:
            if not location.exists(name):
                found.append(Violation(where, f"no GeoPackage at {url}"))
            elif read and not found:  # the seed: create validates everything but the script
                sizes = defaults or GeoPackageDefaults()
                try:
                    fetch_feature_tables(
                        location, name, SizeDefaults(sizes.width, sizes.height, sizes.resolution)
                    )
                except GeoPackageError as exc:
                    found.append(Violation(where, str(exc)))
    if found:
        raise InvalidRequest(f"Invalid GeoPackage input: {found[0].violation}", found)
    assert location is not None
    return location, name


def _check_delivery(
    output: RasterOutput, responses: list, settings: Settings, found: list[Violation]
) -> tuple[Location | None, DeliveryTemplate | None]:
    """The delivery root location and path template, or (None, None) with violations added."""
    locator = output.delivery.wire()
    try:
        kind = "s3" if output.delivery.s3 is not None else "gs"
        ids = [r.identifier for r in responses if r.format.type == "image/tiff"]
        template = DeliveryTemplate.parse(
            locator[kind]["url"],
            ids or [r.identifier for r in responses],
            f"output->delivery->{kind}->url",
        )
        root = {kind: {**locator[kind], "url": template.root}}
        return open_location(root, settings, "output->delivery"), template
    except InvalidRequest as exc:
        found.extend(exc.errors or [Violation("output->delivery", exc.message)])
        return None, None
