"""Evalscript V3: parsing `setup()` and evaluating `evaluatePixel` over rasters in V8."""

from __future__ import annotations

from eobatch.script.errors import EvalscriptError
from eobatch.script.inputs import DEFAULT_SOURCE, SourceData
from eobatch.script.runtime import EvalscriptRuntime, Evaluation, get_runtime
from eobatch.script.sample_types import SUPPORTED_SAMPLE_TYPES, sample_dtype, to_sample_type
from eobatch.script.setup import ScriptInput, ScriptOutput, ScriptSetup, parse_setup

__all__ = [
    "DEFAULT_SOURCE",
    "SUPPORTED_SAMPLE_TYPES",
    "EvalscriptError",
    "EvalscriptRuntime",
    "Evaluation",
    "ScriptInput",
    "ScriptOutput",
    "ScriptSetup",
    "SourceData",
    "get_runtime",
    "parse_setup",
    "sample_dtype",
    "to_sample_type",
]
