"""Sinks: where results go — delivery path templates, GeoTIFF encoding, the execution database."""

from __future__ import annotations

from eobatch.sinks.execution_db import ExecutionRow, execution_db_bytes
from eobatch.sinks.geotiff import encode_geotiff
from eobatch.sinks.template import PLACEHOLDERS, DeliveryTemplate

__all__ = [
    "PLACEHOLDERS",
    "DeliveryTemplate",
    "ExecutionRow",
    "encode_geotiff",
    "execution_db_bytes",
]
