"""Building blocks shared by the public JSON schemas."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel


class WireModel(BaseModel):
    """A JSON object of the public API: camelCase on the wire, unknown keys and nulls ignored.

    sentinelhub-py sends `null` for unset optional fields and extra keys it knows nothing about,
    so both must be accepted silently.
    """

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )

    def wire(self) -> dict[str, Any]:
        """The object as JSON-ready data with camelCase keys and no nulls."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class S3Storage(WireModel):
    url: str = Field(min_length=1)
    access_key: str | None = None
    secret_access_key: str | None = None
    iam_role_arn: str | None = Field(default=None, alias="iamRoleARN")
    region: str | None = None


class GSStorage(WireModel):
    url: str = Field(min_length=1)
    credentials: str = Field(min_length=1)


class ObjectStorage(WireModel):
    """`ObjectStorageInfoV2`: exactly one of `s3` or `gs`."""

    s3: S3Storage | None = None
    gs: GSStorage | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ObjectStorage:
        given = [k for k in ("s3", "gs") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "exactly one storage kind must be given: either 's3' or 'gs'"
                + (f", got {' and '.join(given)}" if given else "")
            )
        return self


class Link(WireModel):
    """The `View` object of paginated lists (batch-v2-api.md §2.1)."""

    current_token: str
    next_token: str | None = None
    id: str = Field(alias="@id")
    next: str | None = None
