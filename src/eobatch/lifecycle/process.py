"""The synchronous Process API: one request rendered exactly as one batch feature is.

A request becomes a single feature (its bbox, CRS and size) and goes through the batch path:
the same sources (`lifecycle.inputs`), reader and mosaicking, and script runtime
(`engine.read_inputs`), so a preview holds the pixels a batch task delivers for the same grid.
What differs is the wrapping: the synchronous API's checks and limits, its image formats and
the tar of several responses, and PUs by the Process rules (no batch discount).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import shapely
from rasterio.features import geometry_mask
from sqlalchemy import select

from eobatch import ledger
from eobatch.config import Settings
from eobatch.engine import USERDATA, read_inputs
from eobatch.errors import AnalysisError, EobatchError, Forbidden, InvalidRequest, Violation
from eobatch.lifecycle.billing import Pricing, fusion_factor, to_micro, to_pu
from eobatch.lifecycle.inputs import (
    InputSource,
    check_inputs,
    check_mosaicking,
    extent_of,
    footprint_wgs84,
    input_sources,
    job_sources,
    priced_bands,
)
from eobatch.lifecycle.process_rules import (
    TAR_TYPES,
    check_responses,
    meters_per_pixel,
    negotiate,
    output_size,
)
from eobatch.lifecycle.validation import SourceRef, check_data_source, check_fusion
from eobatch.planning import Feature, parse_aoi
from eobatch.schemas import parse_model
from eobatch.schemas.process import (
    ProcessApiRequest,
    ProcessResponse,
    open_time_bounds,
)
from eobatch.script import EvalscriptError, ScriptSetup, get_runtime, parse_setup
from eobatch.sinks.images import (
    EXTENSIONS,
    IMAGE_BANDS,
    IMAGE_SAMPLE_TYPES,
    encode_image,
    tar_archive,
)
from eobatch.sources import PixelGrid
from eobatch.sources.byoc import collection_max_meters_per_pixel
from eobatch.store import Database
from eobatch.store.models import Account, Collection

MAX_METERS_PER_PIXEL = 1500.0  # of the STAC collections (Sentinel Hub's limit for S2 L2A)
PROCESS = "process"  # the ledger kind of Process API charges


class RenderingError(EobatchError):
    """The evalscript failed while rendering (400, as Sentinel Hub reports script errors)."""

    status = 400
    code = "RENDERER_EXCEPTION"


class ResolutionLimit(InvalidRequest):
    """Pixels coarser than a collection allows (400 COMMON_EXCEPTION, as Sentinel Hub has it)."""

    code = "COMMON_EXCEPTION"


class SourceUnavailable(EobatchError):
    """A data source could not be searched: the server's problem, not the request's."""

    status = 503
    code = "COMMON_EXCEPTION"


@dataclass(frozen=True)
class ProcessResult:
    """A rendered request: the response body, its media type and what it was charged."""

    body: bytes
    media_type: str
    cost_micro: int
    width: int
    height: int

    @property
    def cost_pu(self) -> float:
        return to_pu(self.cost_micro)


@dataclass(frozen=True)
class _Checked:
    """A request that passed every check that needs no data: what they derived."""

    request: ProcessApiRequest
    evalscript: str
    feature: Feature
    geometry: shapely.Geometry | None  # pixels outside it have no data; None: the whole bbox
    refs: tuple[SourceRef, ...]
    media_type: str  # of the response body: one format, or a tar


def process(
    db: Database,
    settings: Settings,
    account_id: str,
    body: Any,
    evalscript: str | None,
    accept: str | None,
) -> ProcessResult:
    """Render the request `body` (the evalscript may come apart, from a multipart form) for
    `account_id` and charge it; raises `InvalidRequest` (nothing charged) for a bad request."""
    started = time.monotonic()
    checked = _check(db, settings, account_id, body, evalscript, accept)
    sources = input_sources(db, settings, account_id, checked.request.input.data, checked.refs)
    setup = _check_script(checked, sources)
    feature = checked.feature
    _check_resolution(db, feature, sources)
    extent = extent_of([(feature.epsg, feature.bounds)])
    for source in sources:
        try:
            source.load(db, settings, account_id, extent)
        except AnalysisError as exc:
            raise SourceUnavailable(str(exc)) from exc
    pricing = _pricing(checked, setup, sources)
    # Known before reading (exactly for SIMPLE, at its least for ORBIT/TILE): refuse early.
    fused = len(sources) > 1
    simple = all(setup.mosaicking_of(s.id if fused else None) == "SIMPLE" for s in sources)
    least = pricing.request_pu(feature.width, feature.height, int(simple))
    _check_balance(db, account_id, to_micro(least))
    rasters, userdata, samples = _render(checked, setup, sources, settings, account_id, started)
    files = _encode(checked, setup, rasters, userdata)
    payload = tar_archive(files) if checked.media_type in TAR_TYPES else files[0][1]
    cost = to_micro(pricing.request_pu(feature.width, feature.height, samples))
    _charge(db, account_id, cost, f"Process API {feature.width}x{feature.height} px")
    return ProcessResult(payload, checked.media_type, cost, feature.width, feature.height)


def _render(
    checked: _Checked,
    setup: ScriptSetup,
    sources: list[InputSource],
    settings: Settings,
    account_id: str,
    started: float,
) -> tuple[dict[str, np.ndarray], Any, int]:
    """The script's rasters, its userdata and the data samples it saw: read and evaluated
    exactly as a batch feature is (`engine.read_inputs`), pixels outside the geometry without
    data."""
    feature = checked.feature
    grid = PixelGrid(feature.epsg, feature.transform, feature.width, feature.height)
    limit = min(settings.process_timeout_s, settings.script_timeout_s)
    runtime = get_runtime(limit, settings.script_heap_mb)
    # One JavaScript context per account: no script ever sees another account's globals.
    runtime.bind(f"process:{account_id}")
    reading = job_sources(sources, footprint_wgs84(feature), setup)
    try:
        data, samples = read_inputs(checked.evalscript, setup, reading, grid, runtime)
        if checked.geometry is not None:
            outside = geometry_mask([checked.geometry], (grid.height, grid.width), grid.transform)
            for source_data in data.values():
                for values in source_data.bands.values():
                    values[:, outside] = 0
        if time.monotonic() - started > settings.process_timeout_s:
            raise RenderingError(
                f"The request took longer than {settings.process_timeout_s:g} s to read its "
                "data; ask for a smaller area or fewer pixels"
            )
        result = runtime.evaluate_sources(checked.evalscript, setup, data)
    except EvalscriptError as exc:
        raise RenderingError(f"Evalscript error: {exc}") from exc
    return result.rasters, result.userdata, samples


# -- checks that need no data ----------------------------------------------------------------


def _check(
    db: Database,
    settings: Settings,
    account_id: str,
    body: Any,
    evalscript: str | None,
    accept: str | None,
) -> _Checked:
    request = parse_model(ProcessApiRequest, open_time_bounds(body))
    script = evalscript if evalscript is not None else request.evalscript
    found: list[Violation] = []
    if not (script or "").strip():
        found.append(Violation("evalscript", "Missing or empty evalscript."))
    feature = geometry = None
    bounds = request.input.bounds
    if bounds is None or (bounds.bbox is None and bounds.geometry is None):
        found.append(Violation("input->bounds", "is required: give a bbox and/or a geometry"))
    else:
        crs = bounds.properties.crs if bounds.properties else None
        try:
            aoi = parse_aoi(bounds.bbox, bounds.geometry, crs)
        except InvalidRequest as exc:
            found.extend(_unprefixed(exc.errors))
        else:
            box = tuple(bounds.bbox) if bounds.bbox is not None else aoi.geometry.bounds
            geometry = aoi.geometry if bounds.geometry is not None else None
            size = output_size(box, request.output, found)
            if size is not None:
                feature = Feature(0, "process", aoi.epsg, box, *size, shapely.box(*box))  # type: ignore[arg-type]
    with db.reading() as session:
        owned = set(
            session.scalars(select(Collection.id).where(Collection.account_id == account_id))
        )
    refs = []
    for i, source in enumerate(request.input.data):
        source_found: list[Violation] = []
        ref = check_data_source(i, source, settings, owned, source_found)
        found.extend(_unprefixed(source_found))
        if ref is not None:
            refs.append(ref)
    found.extend(_unprefixed(check_fusion(request.input.data)))
    found.extend(check_responses(request.output.responses))
    media_type = None
    try:
        media_type = negotiate(accept, request.output.responses)
    except InvalidRequest as exc:
        found.extend(exc.errors)
    if found:
        summary = "; ".join(f"{v.parameter}: {v.violation}" for v in found[:5])
        more = f" (and {len(found) - 5} more)" if len(found) > 5 else ""
        raise InvalidRequest(f"Invalid request: {summary}{more}", found)
    assert feature is not None and media_type is not None and script is not None
    return _Checked(request, script, feature, geometry, tuple(refs), media_type)


def _unprefixed(found: Sequence[Violation]) -> list[Violation]:
    """Violations of the batch checks, named as the Process API's parameters."""
    return [Violation(v.parameter.removeprefix("processRequest->"), v.violation) for v in found]


def _responses(checked: _Checked) -> list[ProcessResponse]:
    """The responses as rendered: a single one takes the format the Accept header asks for."""
    responses = checked.request.output.responses
    if checked.media_type in TAR_TYPES or responses[0].format.type == checked.media_type:
        return list(responses)
    only = responses[0]
    return [
        only.model_copy(
            update={"format": only.format.model_copy(update={"type": checked.media_type})}
        )
    ]


# -- checks against the script and the data -------------------------------------------------


def _check_script(checked: _Checked, sources: list[InputSource]) -> ScriptSetup:
    """`setup()` against the responses, their formats and the sources' bands; 400s."""
    try:
        setup = _parsed_setup(checked.evalscript)
    except EvalscriptError as exc:
        raise InvalidRequest.at("evalscript", str(exc)) from exc
    output_ids = {o.id for o in setup.outputs}
    found = []
    for i, response in enumerate(_responses(checked)):
        where = f"output->responses->{i}"
        kind = response.format.type
        if kind == "application/json" and response.identifier != USERDATA:
            found.append(
                Violation("Accept", "application/json is the format of the 'userdata' response")
            )
            continue
        if response.identifier == USERDATA:
            if kind != "application/json":
                found.append(Violation("Accept", f"the 'userdata' response is JSON, not {kind}"))
            continue
        if response.identifier not in output_ids:
            found.append(
                Violation(
                    f"{where}->identifier",
                    f"output '{response.identifier}' is not defined in the evalscript's setup() "
                    f"(outputs: {', '.join(sorted(output_ids))})",
                )
            )
            continue
        output = setup.output(response.identifier)
        allowed = IMAGE_SAMPLE_TYPES[kind]
        if output.sample_type not in allowed:
            found.append(
                Violation(
                    f"{where}->format->type",
                    f"{kind} cannot hold sampleType {output.sample_type} (output "
                    f"'{output.id}'); allowed: {', '.join(allowed)}",
                )
            )
        bands = IMAGE_BANDS.get(kind)
        if bands and not setup.updates_output and output.bands not in bands:
            found.append(
                Violation(
                    f"{where}->format->type",
                    f"{kind} holds {' or '.join(map(str, bands))} bands, output "
                    f"'{output.id}' has {output.bands}",
                )
            )
    if found:
        raise InvalidRequest(f"Invalid request: {found[0].parameter}: {found[0].violation}", found)
    try:
        setup = check_inputs(setup, sources)
        check_mosaicking(setup, sources)
    except AnalysisError as exc:
        raise InvalidRequest.at("evalscript", str(exc)) from exc
    return setup


@lru_cache(maxsize=64)
def _parsed_setup(evalscript: str) -> ScriptSetup:
    """`setup()` of a script: a preview is run again and again with the same script while its
    area or dates change, and parsing needs a fresh V8 context (tens of ms)."""
    return parse_setup(evalscript)


def _check_resolution(db: Database, feature: Feature, sources: Sequence[InputSource]) -> None:
    """Sentinel Hub refuses pixels coarser than a collection allows (COMMON_EXCEPTION): 1500 m
    for the public types, a BYOC collection's `maxMetersPerPixel` for its own."""
    resolution = meters_per_pixel(feature)
    for source in sources:
        limit: float | None = None
        if source.stac is not None:
            limit = MAX_METERS_PER_PIXEL
        elif source.ref.kind == "byoc":
            with db.reading() as session:
                limit = collection_max_meters_per_pixel(session, source.ref.key)
        if limit is not None and resolution > limit:
            raise ResolutionLimit(
                f"Your request of {resolution:.2f} meters per pixel exceeds the limit "
                f"{limit:.2f} meters per pixel of the collection "
                f"{source.request.type}. Please revise the resolution (or corresponding "
                "width/height) to make sure it is in supported range."
            )


# -- the answer ----------------------------------------------------------------------------


def _encode(
    checked: _Checked, setup: ScriptSetup, rasters: dict[str, np.ndarray], userdata: Any
) -> list[tuple[str, bytes]]:
    """(tar member name, file) of each response, in the request's order."""
    feature = checked.feature
    files = []
    for response in _responses(checked):
        kind = response.format.type
        name = f"{response.identifier}.{EXTENSIONS[kind]}"
        if response.identifier == USERDATA:
            content = json.dumps(userdata if userdata is not None else {}, allow_nan=False)
            files.append((name, content.encode()))
            continue
        raster = rasters[response.identifier]
        bands = IMAGE_BANDS.get(kind)
        if raster.shape[0] == 0 or (bands and raster.shape[0] not in bands):
            raise RenderingError(
                f"updateOutput() gave output '{response.identifier}' {raster.shape[0]} band(s); "
                f"{kind} holds {' or '.join(map(str, bands or (1,)))} or more"
            )
        image = encode_image(raster, kind, feature.epsg, feature.transform, response.format.quality)
        files.append((name, image))
    return files


def _pricing(checked: _Checked, setup: ScriptSetup, sources: list[InputSource]) -> Pricing:
    """The PU factors of a request: input bands, FLOAT32 TIFF responses, data fusion."""
    return Pricing(
        priced_bands(setup, sources),
        tuple(
            setup.output(r.identifier).sample_type
            for r in _responses(checked)
            if r.format.type == "image/tiff"
        ),
        fusion_factor(len(sources)),
    )


def _check_balance(db: Database, account_id: str, cost_micro: int) -> None:
    with db.reading() as session:
        account = session.get(Account, account_id)
        free = account.balance_micro_pu - account.reserved_micro_pu if account else 0
    if free < cost_micro:
        raise _not_enough(cost_micro)


def _not_enough(cost_micro: int) -> Forbidden:
    return Forbidden(
        f"Not enough processing units: the request costs {to_pu(cost_micro)} PU, more than the "
        "account's free balance"
    )


def _charge(db: Database, account_id: str, cost_micro: int, note: str) -> None:
    """Charge a rendered request, if the account's free balance covers it (403 otherwise)."""
    with db.session() as session:
        if not ledger.reserve(session, account_id, cost_micro):
            raise _not_enough(cost_micro)
        ledger.release(session, account_id, cost_micro)
        ledger.post(session, account_id, -cost_micro, PROCESS, note=note)
