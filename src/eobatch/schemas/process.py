"""The synchronous Process API request (pu-byoc-process.md §3, catalog-process.md §2)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from eobatch.schemas.batch import ProcessInput
from eobatch.schemas.common import WireModel

MAX_PIXELS = 2500  # per side of a synchronous request
ImageType = Literal["image/tiff", "image/png", "image/jpeg", "application/json"]


class ProcessFormat(WireModel):
    type: ImageType = "image/png"
    quality: int | None = Field(default=None, ge=0, le=100)  # image/jpeg only


class ProcessResponse(WireModel):
    identifier: str = Field(default="default", min_length=1)
    format: ProcessFormat = ProcessFormat()


class ProcessApiOutput(WireModel):
    width: int | None = Field(default=None, ge=1, le=MAX_PIXELS)
    height: int | None = Field(default=None, ge=1, le=MAX_PIXELS)
    resx: float | None = Field(default=None, gt=0)
    resy: float | None = Field(default=None, gt=0)
    responses: list[ProcessResponse] = Field(default_factory=lambda: [ProcessResponse()])


class ProcessApiRequest(WireModel):
    """What a client posts to `/api/v1/process`."""

    input: ProcessInput
    output: ProcessApiOutput = ProcessApiOutput()
    evalscript: str | None = None


def open_time_bounds(body: Any) -> Any:
    """`..` (an open end, as sentinelhub-py writes it) in every `timeRange` becomes null."""
    data = body.get("input", {}).get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        return body
    for source in data:
        data_filter = source.get("dataFilter") if isinstance(source, dict) else None
        time_range = data_filter.get("timeRange") if isinstance(data_filter, dict) else None
        if isinstance(time_range, dict):
            for end in ("from", "to"):
                if time_range.get(end) == "..":
                    time_range[end] = None
    return body
