"""What an evalscript's `setup()` declares: its inputs, outputs and mosaicking (spec §2)."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from difflib import get_close_matches
from typing import Any

from eobatch.script._v8 import FIRST_LINE_OFFSET, ScriptContext
from eobatch.script.errors import EvalscriptError, from_report
from eobatch.script.sample_types import SUPPORTED_SAMPLE_TYPES

log = logging.getLogger(__name__)

MOSAICKINGS = ("SIMPLE", "ORBIT", "TILE")
DEFAULT_OUTPUT_ID = "default"

# The keys Sentinel Hub documents (spec §2); a near miss of one is refused with a suggestion.
SETUP_KEYS = ("input", "output", "mosaicking")
INPUT_KEYS = ("bands", "units", "metadata", "datasource", "mosaicking")
OUTPUT_KEYS = ("id", "bands", "sampleType", "nodataValue")


@dataclass(frozen=True)
class ScriptInput:
    """Bands requested by one `setup().input` entry.

    `units`: one unit name per band (upper case), or None for the collection's default units.
    `datasource`: the `id` of a processRequest.input.data entry (data fusion).
    `mosaicking`: this input's own mosaicking, overriding the global one (data fusion).
    """

    bands: tuple[str, ...]
    units: tuple[str, ...] | None = None
    datasource: str | None = None
    mosaicking: str | None = None

    def unit_of(self, band: str) -> str | None:
        """The units the script asks for `band` in (None: the collection's default)."""
        if self.units is None:
            return None
        return self.units[self.bands.index(band)]


@dataclass(frozen=True)
class ScriptOutput:
    """One raster the script produces: `bands` values per pixel of `sample_type`."""

    id: str = DEFAULT_OUTPUT_ID
    bands: int = 1
    sample_type: str = "AUTO"
    nodata_value: float | None = None


@dataclass(frozen=True)
class ScriptSetup:
    """The validated result of `setup()`.

    `mosaicking` is the global value; an input may override it for its data source
    (`mosaicking_of`). `positional`: the inputs were paired with the request's data sources by
    position (they name no datasource), so the script also sees them under "0", "1", ...
    `updates_output`: the script defines `updateOutput`, so band counts may change per feature.
    """

    inputs: tuple[ScriptInput, ...]
    outputs: tuple[ScriptOutput, ...]
    mosaicking: str = "SIMPLE"
    positional: bool = False
    updates_output: bool = False

    @property
    def bands(self) -> tuple[str, ...]:
        """Band names over all inputs, in order of first appearance (may include dataMask)."""
        return tuple(dict.fromkeys(b for i in self.inputs for b in i.bands))

    def bands_of(self, datasource: str | None) -> tuple[str, ...]:
        """Bands requested from one data source (None: from every input, unfused scripts)."""
        return tuple(dict.fromkeys(b for i in self._inputs_of(datasource) for b in i.bands))

    def mosaicking_of(self, datasource: str | None) -> str:
        """The mosaicking of one data source: its inputs' own, else the global value."""
        own = {i.mosaicking for i in self._inputs_of(datasource) if i.mosaicking}
        return own.pop() if own else self.mosaicking

    def unit_of(self, band: str, datasource: str | None = None) -> str | None:
        """The units `band` is asked for from `datasource` (None: the default units)."""
        for script_input in self._inputs_of(datasource):
            if band in script_input.bands:
                return script_input.unit_of(band)
        return None

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

    def for_sources(self, ids: Sequence[str]) -> ScriptSetup:
        """This setup with its inputs paired with the request's data sources `ids`.

        With several sources and no input naming a datasource, Sentinel Hub pairs the input
        objects with `input.data` by position (data fusion docs); a single source needs nothing.
        """
        if len(ids) < 2 or self.datasources:
            return self
        if len(self.inputs) != len(ids):
            raise EvalscriptError(
                f"setup().input has {len(self.inputs)} input object(s) for {len(ids)} data "
                "sources: with data fusion, give one input object per processRequest.input.data "
                "entry in the same order, or name each one's id as its datasource"
            )
        paired = tuple(replace(i, datasource=sid) for i, sid in zip(self.inputs, ids, strict=True))
        return replace(self, inputs=paired, positional=True)

    def _inputs_of(self, datasource: str | None) -> tuple[ScriptInput, ...]:
        if datasource is None:
            return self.inputs
        return tuple(i for i in self.inputs if i.datasource == datasource)


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
    return setup_from_json(answer["ok"], updates_output=bool(answer.get("updatesOutput")))


def setup_from_json(value: Any, *, updates_output: bool = False) -> ScriptSetup:
    """Validate the JSON form of a `setup()` result."""
    if not isinstance(value, dict):
        raise EvalscriptError(f"setup() must return an object, got {_shown(value)}")
    _check_keys(value, SETUP_KEYS, "setup()")
    _check_misplaced(value)
    if "input" not in value:
        raise EvalscriptError("setup() must return an 'input' listing the bands to read")
    inputs = _inputs(value["input"])
    outputs = _outputs(value.get("output", {}))
    mosaicking = _mosaicking(value.get("mosaicking", "SIMPLE"), "setup().mosaicking")
    return ScriptSetup(inputs, outputs, mosaicking, updates_output=updates_output)


def _mosaicking(value: Any, where: str) -> str:
    if isinstance(value, str):
        value = value.upper()
    if value not in MOSAICKINGS:
        raise EvalscriptError(
            f"{where} must be one of {', '.join(MOSAICKINGS)}, got {_shown(value)}"
        )
    return str(value)


def _check_keys(value: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    """Refuse a key that misspells a documented one (`noDataValue` for `nodataValue`) when
    ignoring it, as Sentinel Hub does, would silently change the result. A misspelling that
    asks for the default anyway (`sampleTYPE: "AUTO"` in the public dem-color script) only
    gets a warning; other keys are ignored, as JavaScript objects may carry anything."""
    for key, given in value.items():
        if key in known:
            continue
        near = [k for k in known if k.lower() == key.lower()] or get_close_matches(
            key, known, n=1, cutoff=0.8
        )
        if not near:
            continue
        meant = near[0]
        if meant in _DEFAULTS and _same(given, _DEFAULTS[meant]):
            log.warning(
                "%s.%s taken for '%s' (ignored: it asks for the default)", where, key, meant
            )
            continue
        raise EvalscriptError(
            f"{where}.{key} is not a setup() property; did you mean '{meant}'? "
            f"(known: {', '.join(known)})"
        )


def _check_misplaced(value: dict[str, Any]) -> None:
    """Refuse a key of an output or input object given at the top of setup()'s result
    (`noDataValue: 0` beside `output`): ignored, it would silently change the result. Other
    unknown keys stay ignored, as evalscript-v3 recommends (`processing`)."""
    for key in value:
        if key in SETUP_KEYS:
            continue
        for known, belongs in ((OUTPUT_KEYS, "setup().output"), (INPUT_KEYS, "setup().input")):
            near = [k for k in known if k.lower() == key.lower()] or get_close_matches(
                key, known, n=1, cutoff=0.8
            )
            if near:
                raise EvalscriptError(
                    f"setup().{key} is not a property of setup()'s result (allowed: "
                    f"{', '.join(SETUP_KEYS)}); '{near[0]}' belongs in each object of "
                    f"{belongs} (allowed there: {', '.join(known)})"
                )


# What a misspelt key falls back to when ignored (keys without a default change the result).
_DEFAULTS: dict[str, Any] = {
    "sampleType": "AUTO",
    "mosaicking": "SIMPLE",
    "id": DEFAULT_OUTPUT_ID,
    "bands": 1,
}


def _same(given: Any, default: Any) -> bool:
    if isinstance(given, str) and isinstance(default, str):
        return given.upper() == default.upper()
    return bool(given == default)


def _inputs(value: Any) -> tuple[ScriptInput, ...]:
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not value:
        raise EvalscriptError(
            "setup().input must be a non-empty array of band names or of {bands: [...]} objects, "
            f"got {_shown(value)}"
        )
    if all(isinstance(v, str) for v in value):
        return (ScriptInput(tuple(_band_names(value, "setup().input"))),)
    inputs = []
    for n, entry in enumerate(value):
        where = f"setup().input[{n}]"
        if not isinstance(entry, dict):
            raise EvalscriptError(
                f"{where} must be an object {{bands: [...]}} (or input an array of band names), "
                f"got {_shown(entry)}"
            )
        _check_keys(entry, INPUT_KEYS, where)
        if "bands" not in entry:
            raise EvalscriptError(f"{where} must have 'bands', an array of band names")
        bands = _band_names(entry["bands"], f"{where}.bands")
        datasource = entry.get("datasource")
        if datasource is not None and (not isinstance(datasource, str) or not datasource):
            raise EvalscriptError(
                f"{where}.datasource must be the id of a processRequest.input.data entry, "
                f"got {_shown(datasource)}"
            )
        mosaicking = entry.get("mosaicking")
        if mosaicking is not None:
            mosaicking = _mosaicking(mosaicking, f"{where}.mosaicking")
        units = _units(entry.get("units"), bands, where)
        inputs.append(ScriptInput(tuple(bands), units, datasource, mosaicking))
    named = [i.datasource is not None for i in inputs]
    if any(named) and not all(named):
        raise EvalscriptError(
            "setup().input: when one input object names a datasource, every one must "
            "(data fusion needs to know where each band comes from)"
        )
    for source in dict.fromkeys(i.datasource for i in inputs):
        modes = {i.mosaicking for i in inputs if i.datasource == source and i.mosaicking}
        if len(modes) > 1:
            of = f"datasource '{source}'" if source else "the data source"
            raise EvalscriptError(
                f"setup().input: the input objects of {of} ask for different mosaicking "
                f"({', '.join(sorted(modes))}); one data source has one mosaicking"
            )
    return tuple(inputs)


def _band_names(value: Any, where: str) -> list[str]:
    # `bands: []` is legal: the "discover scenes" pattern reads no band, only the metadata.
    if not isinstance(value, list):
        raise EvalscriptError(f"{where} must be an array of band names, got {_shown(value)}")
    for name in value:
        if not isinstance(name, str) or not name:
            raise EvalscriptError(f"{where} must contain band names (strings), got {_shown(name)}")
    return value


def _units(value: Any, bands: list[str], where: str) -> tuple[str, ...] | None:
    """One unit per band, upper case (scripts write "reflectance"), or None for the defaults."""
    if value is None:
        return None
    if isinstance(value, str) and value:
        return tuple(value.upper() for _ in bands)
    if isinstance(value, list) and all(isinstance(u, str) and u for u in value):
        if len(value) != len(bands):
            raise EvalscriptError(
                f"{where}.units has {len(value)} unit(s) for {len(bands)} band(s); give one "
                "unit per band, in the order of bands, or a single string for all of them"
            )
        return tuple(u.upper() for u in value)
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
    _check_keys(entry, OUTPUT_KEYS, where)
    output_id = entry.get("id", DEFAULT_OUTPUT_ID)
    if not isinstance(output_id, str) or not output_id:
        raise EvalscriptError(f"{where}.id must be a non-empty string, got {_shown(output_id)}")
    bands = band_count(entry.get("bands", 1))
    if bands is None:
        raise EvalscriptError(
            f"{where}.bands (output '{output_id}') must be a whole number of bands (0 or more), "
            f"got {_shown(entry.get('bands'))}"
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
    return ScriptOutput(output_id, bands, sample_type, _nodata(entry.get("nodataValue"), where))


def band_count(value: Any) -> int | None:
    """A band count as JavaScript's Number() reads it (3, 3.0, "3"); None if it is not a whole
    number >= 0. Booleans are refused, though Number(true) is 1: nobody means that."""
    if isinstance(value, str):
        try:
            value = float(value.strip()) if value.strip() else None
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value) or value != int(value) or value < 0:
        return None
    return int(value)


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
