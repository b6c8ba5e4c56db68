"""What an evalscript's `setup()` declares: its inputs, outputs and mosaicking (spec §2)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from eobatch.script._v8 import FIRST_LINE_OFFSET, ScriptContext
from eobatch.script.errors import EvalscriptError, from_report
from eobatch.script.sample_types import SUPPORTED_SAMPLE_TYPES

MOSAICKINGS = ("SIMPLE", "ORBIT", "TILE")
DEFAULT_OUTPUT_ID = "default"


@dataclass(frozen=True)
class ScriptInput:
    """Bands requested by one `setup().input` entry, with their units (None: collection default)."""

    bands: tuple[str, ...]
    units: str | None = None
    datasource: str | None = None  # the `id` of a processRequest.input.data entry (fusion)


@dataclass(frozen=True)
class ScriptOutput:
    """One raster the script produces: `bands` values per pixel of `sample_type`."""

    id: str = DEFAULT_OUTPUT_ID
    bands: int = 1
    sample_type: str = "AUTO"
    nodata_value: float | None = None


@dataclass(frozen=True)
class ScriptSetup:
    """The validated result of `setup()`."""

    inputs: tuple[ScriptInput, ...]
    outputs: tuple[ScriptOutput, ...]
    mosaicking: str = "SIMPLE"

    @property
    def bands(self) -> tuple[str, ...]:
        """Band names over all inputs, in order of first appearance (may include dataMask)."""
        return tuple(dict.fromkeys(b for i in self.inputs for b in i.bands))

    def bands_of(self, datasource: str | None) -> tuple[str, ...]:
        """Bands requested from one data source (None: from every input, unfused scripts)."""
        if datasource is None:
            return self.bands
        return tuple(
            dict.fromkeys(b for i in self.inputs if i.datasource == datasource for b in i.bands)
        )

    @property
    def datasources(self) -> tuple[str, ...]:
        """Data source ids the inputs name, in order (empty for single-source scripts)."""
        return tuple(dict.fromkeys(i.datasource for i in self.inputs if i.datasource))

    def output(self, output_id: str) -> ScriptOutput:
        for output in self.outputs:
            if output.id == output_id:
                return output
        raise KeyError(
            f"output '{output_id}' is not declared in setup(); outputs: "
            + ", ".join(o.id for o in self.outputs)
        )


def parse_setup(source: str, *, timeout_s: float = 10.0, heap_mb: int = 256) -> ScriptSetup:
    """Run the script in a fresh V8 context, call `setup()` and validate what it returns."""
    context = ScriptContext(timeout_s, heap_mb)
    try:
        key = context.load(source)
        answer = json.loads(context.call("setup", key))
    finally:
        context.close()
    if "error" in answer:
        raise from_report(json.dumps(answer["error"]), FIRST_LINE_OFFSET)
    return setup_from_json(answer["ok"])


def setup_from_json(value: Any) -> ScriptSetup:
    """Validate the JSON form of a `setup()` result."""
    if not isinstance(value, dict):
        raise EvalscriptError(f"setup() must return an object, got {_shown(value)}")
    if "input" not in value:
        raise EvalscriptError("setup() must return an 'input' listing the bands to read")
    inputs = _inputs(value["input"])
    outputs = _outputs(value.get("output", {}))
    mosaicking = value.get("mosaicking", "SIMPLE")
    if isinstance(mosaicking, str):
        mosaicking = mosaicking.upper()
    if mosaicking not in MOSAICKINGS:
        raise EvalscriptError(
            f"setup().mosaicking must be one of {', '.join(MOSAICKINGS)}, got {_shown(mosaicking)}"
        )
    return ScriptSetup(inputs, outputs, mosaicking)


def _inputs(value: Any) -> tuple[ScriptInput, ...]:
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not value:
        raise EvalscriptError(
            "setup().input must be a non-empty array of band names or of {bands: [...]} objects, "
            f"got {_shown(value)}"
        )
    if all(isinstance(v, str) for v in value):
        return (ScriptInput(tuple(_band_names(value, "setup().input")), None),)
    inputs = []
    for n, entry in enumerate(value):
        where = f"setup().input[{n}]"
        if not isinstance(entry, dict):
            raise EvalscriptError(
                f"{where} must be an object {{bands: [...]}} (or input an array of band names), "
                f"got {_shown(entry)}"
            )
        if "bands" not in entry:
            raise EvalscriptError(f"{where} must have 'bands', an array of band names")
        bands = _band_names(entry["bands"], f"{where}.bands")
        datasource = entry.get("datasource")
        if datasource is not None and (not isinstance(datasource, str) or not datasource):
            raise EvalscriptError(
                f"{where}.datasource must be the id of a processRequest.input.data entry, "
                f"got {_shown(datasource)}"
            )
        inputs.append(
            ScriptInput(tuple(bands), _units(entry.get("units"), bands, where), datasource)
        )
    named = [i.datasource is not None for i in inputs]
    if any(named) and not all(named):
        raise EvalscriptError(
            "setup().input: when one input object names a datasource, every one must "
            "(data fusion needs to know where each band comes from)"
        )
    return tuple(inputs)


def _band_names(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise EvalscriptError(
            f"{where} must be a non-empty array of band names, got {_shown(value)}"
        )
    for name in value:
        if not isinstance(name, str) or not name:
            raise EvalscriptError(f"{where} must contain band names (strings), got {_shown(name)}")
    return value


def _units(value: Any, bands: list[str], where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) == len(bands):
        if all(isinstance(u, str) for u in value) and len(set(value)) == 1:
            return value[0]
        if all(isinstance(u, str) for u in value):
            raise EvalscriptError(
                f"{where}.units: different units per band are not supported yet; split the bands "
                "into several input objects, one per unit"
            )
    raise EvalscriptError(
        f"{where}.units must be a string or an array of strings aligned with bands, "
        f"got {_shown(value)}"
    )


def _outputs(value: Any) -> tuple[ScriptOutput, ...]:
    entries = value if isinstance(value, list) else [value]
    if not entries:
        raise EvalscriptError("setup().output must not be an empty array")
    outputs: list[ScriptOutput] = []
    for n, entry in enumerate(entries):
        where = "setup().output" if not isinstance(value, list) else f"setup().output[{n}]"
        outputs.append(_output(entry, where))
    ids = [o.id for o in outputs]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise EvalscriptError(
            f"setup().output: duplicate output id(s) {', '.join(duplicates)}; ids must be unique"
        )
    return tuple(outputs)


def _output(entry: Any, where: str) -> ScriptOutput:
    if not isinstance(entry, dict):
        raise EvalscriptError(
            f"{where} must be an object {{id, bands, sampleType}}, got {_shown(entry)}"
        )
    output_id = entry.get("id", DEFAULT_OUTPUT_ID)
    if not isinstance(output_id, str) or not output_id:
        raise EvalscriptError(f"{where}.id must be a non-empty string, got {_shown(output_id)}")
    bands = entry.get("bands", 1)
    if not _is_positive_int(bands):
        raise EvalscriptError(
            f"{where}.bands (output '{output_id}') must be a positive integer, got {_shown(bands)}"
        )
    sample_type = entry.get("sampleType", "AUTO")
    if not isinstance(sample_type, str):
        raise EvalscriptError(f"{where}.sampleType must be a string, got {_shown(sample_type)}")
    sample_type = sample_type.upper()
    if sample_type not in SUPPORTED_SAMPLE_TYPES:
        raise EvalscriptError(
            f"{where}.sampleType '{sample_type}' (output '{output_id}') is not supported yet; "
            f"supported: {', '.join(SUPPORTED_SAMPLE_TYPES)}"
        )
    return ScriptOutput(
        output_id, int(bands), sample_type, _nodata(entry.get("nodataValue"), where)
    )


def _is_positive_int(value: Any) -> bool:
    # JSON numbers may arrive as floats (3.0); booleans are ints in Python but not band counts.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value) and value == int(value) and value >= 1


def _nodata(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity"):
        return float(value.replace("Infinity", "inf"))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise EvalscriptError(f"{where}.nodataValue must be a number, got {_shown(value)}")
    return float(value)


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."
