"""Sinks: where results go — delivery path templates, GeoTIFF encoding, the execution database."""

from __future__ import annotations

from eobatch.sinks.execution_db import ExecutionRow, execution_db_bytes, write_execution_db
from eobatch.sinks.geotiff import (
    DEFAULT_PROFILE,
    CogOptions,
    CompressionProfile,
    band_names,
    encode_geotiff,
    encode_output,
    output_nodata,
)
from eobatch.sinks.template import PLACEHOLDERS, DeliveryTemplate

__all__ = [
    "DEFAULT_PROFILE",
    "PLACEHOLDERS",
    "CogOptions",
    "CompressionProfile",
    "DeliveryTemplate",
    "ExecutionRow",
    "band_names",
    "encode_geotiff",
    "encode_output",
    "execution_db_bytes",
    "output_nodata",
    "write_execution_db",
]
