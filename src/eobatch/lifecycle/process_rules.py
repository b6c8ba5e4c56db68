"""The rules of a Process API request that need neither data nor store: output size,
responses, the Accept header, pixel size in metres (pu-byoc-process.md §3, catalog-process.md §2).
"""

from __future__ import annotations

from collections.abc import Sequence

from eobatch.engine import USERDATA
from eobatch.errors import InvalidRequest, Violation
from eobatch.planning import Feature
from eobatch.projection import pixel_meters
from eobatch.schemas.process import MAX_PIXELS, ProcessApiOutput, ProcessResponse
from eobatch.sinks.images import EXTENSIONS

DEFAULT_SIZE = 256  # pixels per side when the request gives neither size nor resolution
TAR_TYPES = ("application/x-tar", "application/tar")


def output_size(
    bbox: tuple[float, ...], output: ProcessApiOutput, found: list[Violation]
) -> tuple[int, int] | None:
    """Width and height in pixels: given, derived from resx/resy (rounded, at least 1), or
    one side from the other by the bbox's aspect ratio; None after adding violations."""
    extent_x, extent_y = bbox[2] - bbox[0], bbox[3] - bbox[1]
    derived: dict[str, tuple[int, str | None]]
    sizes = output.width is not None or output.height is not None
    resolutions = output.resx is not None or output.resy is not None
    if sizes and resolutions:
        found.append(Violation("output", "give width and height, or resx and resy, not both kinds"))
        return None
    if resolutions:
        resx = output.resx or output.resy
        resy = output.resy or output.resx
        assert resx is not None and resy is not None
        width, height = max(1, round(extent_x / resx)), max(1, round(extent_y / resy))
        derived = {"width": (width, "resx"), "height": (height, "resy")}
    elif sizes:
        width = output.width or max(1, round(output.height * extent_x / extent_y))  # type: ignore[operator]
        height = output.height or max(1, round(width * extent_y / extent_x))
        derived = {
            "width": (width, "height" if output.width is None else None),
            "height": (height, "width" if output.height is None else None),
        }
    else:
        return DEFAULT_SIZE, DEFAULT_SIZE
    ok = True
    for side, (pixels, source) in derived.items():
        if source is not None and pixels > MAX_PIXELS:
            found.append(
                Violation(
                    f"output->{source}",
                    f"`{side} = {pixels}`, calculated from {source}, is larger than allowed "
                    f"{MAX_PIXELS}.",
                )
            )
            ok = False
    return (width, height) if ok else None


def check_responses(responses: Sequence[ProcessResponse]) -> list[Violation]:
    found = []
    ids = [r.identifier for r in responses]
    for i, response in enumerate(responses):
        where = f"output->responses->{i}"
        if ids.count(response.identifier) > 1 and ids.index(response.identifier) == i:
            found.append(
                Violation(f"{where}->identifier", f"duplicate identifier '{response.identifier}'")
            )
        is_json = response.format.type == "application/json"
        if is_json != (response.identifier == USERDATA):
            found.append(
                Violation(
                    f"{where}->format->type",
                    "application/json is the format of the 'userdata' response, and only of it",
                )
            )
    return found


def negotiate(accept: str | None, responses: Sequence[ProcessResponse]) -> str:
    """The media type of the answer: the `Accept` header's if it names one this API serves
    (several responses only come as a tar), else the single response's format."""
    kinds = [r.format.type for r in responses]
    default = kinds[0] if len(kinds) == 1 else TAR_TYPES[0]
    wanted = [part.split(";")[0].strip().lower() for part in (accept or "").split(",")]
    wanted = [media for media in wanted if media]
    for media in wanted:
        if media in TAR_TYPES:
            return media
        if media in EXTENSIONS:
            if len(kinds) > 1:
                raise InvalidRequest.at(
                    "Accept",
                    f"{len(kinds)} responses come as one tar archive: accept "
                    f"application/x-tar or application/tar, not {media}",
                )
            return media
        if media in ("*/*", "image/*", "application/*"):
            return default
    if wanted:
        raise InvalidRequest.at(
            "Accept",
            f"'{accept}' names no format of this API; allowed: {', '.join(EXTENSIONS)}, "
            f"or {' or '.join(TAR_TYPES)} for several responses",
        )
    return default


def meters_per_pixel(feature: Feature) -> float:
    """The coarser of the two pixel sizes in metres; degrees count at the bbox's centre."""
    latitude = (feature.bounds[1] + feature.bounds[3]) / 2
    return pixel_meters(*feature.resolution, feature.epsg, latitude)
