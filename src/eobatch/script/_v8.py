"""One V8 context with the bridge and the helpers loaded and an evalscript compiled into it.

Each script is wrapped in a function so that its `setup`/`evaluatePixel` declarations stay its
own; the wrapper starts on the script's first line so V8's line numbers are the script's own.
A context serves one task only (runtime.py): whatever a script changes in it dies with it.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cache
from importlib import resources
from typing import Any

from py_mini_racer import JSEvalException, JSOOMException, JSTimeoutException, MiniRacer

from eobatch.script.errors import EvalscriptError, from_report, from_v8_exception

_VERSION_LINE = re.compile(r"//\s*VERSION\s*=\s*3\s*$")
_SCRIPT_URL = "evalscript.js"
_RETURNED = ("setup", "evaluatePixel", "preProcessScenes", "updateOutputMetadata")


@cache
def _prelude() -> str:
    """The bridge (first, so it captures the built-ins before anything else runs), then the
    helper functions scripts call."""
    files = resources.files("eobatch.script")
    return "\n".join(
        files.joinpath(name).read_text(encoding="utf-8") for name in ("bridge.js", "helpers.js")
    )


def check_version(source: str) -> None:
    """Refuse scripts whose first line is not `//VERSION=3` (V1/V2 scripts are not supported)."""
    first = next(
        (line.strip() for line in source.lstrip("\ufeff").splitlines() if line.strip()), ""
    )
    if not _VERSION_LINE.match(first):
        raise EvalscriptError(
            "the evalscript must start with the line '//VERSION=3'; older (V1/V2) evalscripts "
            "are not supported",
            line=1,
        )


def script_key(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:32]


def _prefix(key: str) -> str:
    return f'__eobatch.register("{key}", function () {{'


# How far V8's columns on the script's first line are shifted by the wrapper.
FIRST_LINE_OFFSET = len(_prefix(script_key("")))


class ScriptContext:
    """A MiniRacer context with limits; `broken` once a limit was hit (then discard it)."""

    def __init__(self, timeout_s: float, heap_mb: int) -> None:
        self.timeout_s = timeout_s
        self.heap_mb = heap_mb
        self.broken = False
        self._ctx = MiniRacer()
        self._ctx.set_hard_memory_limit(heap_mb * 1024 * 1024)
        self._loaded: set[str] = set()
        self._buffers: dict[str, memoryview] = {}
        self._ctx.eval(_prelude())

    def close(self) -> None:
        self._ctx.close()

    def load(self, source: str) -> str:
        """Compile `source` and run its top-level code once; returns the key to refer to it."""
        key = script_key(source)
        if key in self._loaded:
            return key
        check_version(source)
        functions = ", ".join(
            f'{name}: typeof {name} === "function" ? {name} : undefined' for name in _RETURNED
        )
        wrapped = (
            f"{_prefix(key)}{source}\n;return {{{functions}}};\n}});\n//# sourceURL={_SCRIPT_URL}\n"
        )
        try:
            report = self.eval(wrapped)
        except JSEvalException as exc:
            raise from_v8_exception(str(exc), FIRST_LINE_OFFSET) from None
        if report:
            raise from_report(report, FIRST_LINE_OFFSET)
        self._loaded.add(key)
        return key

    def eval(self, code: str) -> Any:
        """Evaluate `code` under the time and memory limits."""
        try:
            return self._ctx.eval(code, timeout_sec=self.timeout_s)
        except JSTimeoutException:
            self.broken = True
            raise EvalscriptError(
                f"Evalscript exceeded the time limit of {self.timeout_s:g} s"
            ) from None
        except JSOOMException:
            self.broken = True
            raise EvalscriptError(
                f"Evalscript exceeded the memory limit of {self.heap_mb} MB"
            ) from None

    def buffer(self, slot: str, nbytes: int) -> memoryview:
        """The bytes of the ArrayBuffer the bridge keeps under `slot`, of `nbytes` bytes.

        Kept here too: the features of a task all have the same size, so after the first one
        no call into V8 (about a millisecond each) is needed to find the memory again.
        """
        view = self._buffers.get(slot)
        if view is None or view.nbytes != nbytes:
            view = self._buffers[slot] = self.call("alloc", slot, nbytes)
        return view

    def call(self, function: str, *args: Any) -> Any:
        """Call `__eobatch.<function>(*args)` with JSON-encoded arguments.

        The bridge reports a script's own errors as values; an exception here means the script
        changed the JavaScript environment so much that even the report failed.
        """
        encoded = ", ".join(json.dumps(a) for a in args)
        try:
            return self.eval(f"__eobatch.{function}({encoded})")
        except JSEvalException as exc:
            self.broken = True
            detail = str(exc).strip().splitlines()
            raise EvalscriptError(
                "the evalscript changed JavaScript built-ins so that its result could not be "
                "read back" + (f" ({detail[0]})" if detail else "") + "; evalscripts must not "
                "replace or extend built-in objects such as Array, Object or JSON"
            ) from None
