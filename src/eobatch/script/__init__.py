"""Evalscript V3: parsing `setup()` and evaluating `evaluatePixel` over rasters in V8."""

from __future__ import annotations

from eobatch.script.errors import EvalscriptError
from eobatch.script.runtime import EvalscriptRuntime, get_runtime
from eobatch.script.sample_types import SUPPORTED_SAMPLE_TYPES, sample_dtype, to_sample_type
from eobatch.script.setup import ScriptInput, ScriptOutput, ScriptSetup, parse_setup

__all__ = [
    "SUPPORTED_SAMPLE_TYPES",
    "EvalscriptError",
    "EvalscriptRuntime",
    "ScriptInput",
    "ScriptOutput",
    "ScriptSetup",
    "get_runtime",
    "parse_setup",
    "sample_dtype",
    "to_sample_type",
]
