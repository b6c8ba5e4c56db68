"""Pydantic models mirroring the public JSON (camelCase on the wire)."""

from eobatch.schemas.batch import BatchRequest, DescriptionUpdate
from eobatch.schemas.common import ObjectStorage, WireModel
from eobatch.schemas.parsing import parse_json, parse_model, violations

__all__ = [
    "BatchRequest",
    "DescriptionUpdate",
    "ObjectStorage",
    "WireModel",
    "parse_json",
    "parse_model",
    "violations",
]
