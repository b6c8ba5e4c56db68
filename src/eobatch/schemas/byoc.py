"""BYOC collection and tile JSON (pu-byoc-process.md §2)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from eobatch.schemas.common import WireModel

_JS_IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")


class Band(WireModel):
    source: str | None = None
    band_index: int = Field(default=1, ge=1)
    bit_depth: Literal[8, 16, 32]
    sample_format: Literal["UINT", "INT", "FLOAT"] = "UINT"
    no_data: float | None = None


class AdditionalData(WireModel):
    bands: dict[str, Band] | None = None

    @field_validator("bands")
    @classmethod
    def _names(cls, bands: dict[str, Band] | None) -> dict[str, Band] | None:
        for name in bands or {}:
            if not _JS_IDENTIFIER.match(name) or name == "dataMask":
                raise ValueError(
                    f"band name '{name}' must be a JavaScript identifier other than dataMask"
                )
        if bands is not None and len(bands) > 100:
            raise ValueError("a collection has at most 100 bands")
        return bands


class CollectionIn(WireModel):
    name: str = Field(min_length=1, max_length=500)
    s3_bucket: str | None = Field(default=None, min_length=3, max_length=63)
    # eobatch's extension: the collection's own bucket and credentials, as an
    # ObjectStorageInfoV2 locator ({"s3": {url, accessKey, ...}} or {"gs": {url, credentials}}).
    storage: dict[str, Any] | None = None
    no_data: float | None = None
    additional_data: AdditionalData | None = None

    @model_validator(mode="after")
    def _a_bucket(self) -> CollectionIn:
        if self.s3_bucket is None and self.storage is None:
            raise ValueError(
                "s3Bucket is required (or storage, a locator with its own credentials)"
            )
        return self


class TileIn(WireModel):
    path: str = Field(min_length=1, max_length=1024)
    sensing_time: datetime | None = None
    cover_geometry: dict[str, Any] | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, path: str) -> str:
        if path.startswith("/") or "//" in path or ".." in path.split("/"):
            raise ValueError("must be a key inside the bucket: no leading '/', no '//', no '..'")
        return path

    @field_validator("sensing_time")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must carry a time zone, e.g. 2024-06-01T10:00:00Z")
        return value


class TileUpdate(WireModel):
    path: str | None = None
    sensing_time: datetime | None = None
    cover_geometry: dict[str, Any] | None = None
