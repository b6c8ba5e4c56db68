"""One V8 context with the bridge and the helpers loaded and an evalscript compiled into it.

Each script is wrapped in a function so that its `setup`/`evaluatePixel` declarations stay its
own; the wrapper starts on the script's first line so V8's line numbers are the script's own.
A context serves one task only (runtime.py): whatever a script changes in it dies with it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from functools import cache
from importlib import resources
from typing import Any

from py_mini_racer import JSEvalException, JSOOMException, JSTimeoutException, MiniRacer

from eobatch.script.errors import EvalscriptError, from_report, from_v8_exception

# `//VERSION=3`, and what real scripts write: `// VERSION=3`, `//VERSION=3 (auto-converted
# from 1)`, `////VERSION=3` (spec §1).
_VERSION_LINE = re.compile(r"/{2,}\s*VERSION\s*=\s*(\d+)\b", re.IGNORECASE)
_SCRIPT_URL = "evalscript.js"
_RETURNED = (
    "setup",
    "evaluatePixel",
    "preProcessScenes",
    "updateOutput",
    "updateOutputMetadata",
)


@cache
def _prelude() -> str:
    """The bridge (first, so it captures the built-ins before anything else runs), then the
    helper functions scripts call."""
    files = resources.files("eobatch.script")
    return "\n".join(
        files.joinpath(name).read_text(encoding="utf-8") for name in ("bridge.js", "helpers.js")
    )


# A script defining setup() is a V3 script even without its version line (real scripts forget
# it, e.g. custom-scripts' sentinel-1/radar_vegetation_index); V1/V2 scripts define no setup().
_DEFINES_SETUP = re.compile(r"\bfunction\s+setup\s*\(|\b(?:var|let|const)\s+setup\s*=")


def check_version(source: str) -> None:
    """Refuse scripts that are not version 3: a `//VERSION=n` line with another number before
    the first line of code, or neither that line nor a `setup()` function (a V1/V2 script).

    Blank lines and comments may come before the version line, and anything may follow the
    version number on its line.
    """
    version = _declared_version(source)
    if version == 3 or (version is None and _DEFINES_SETUP.search(source)):
        return
    if version is None:
        raise EvalscriptError(
            "the evalscript must start with the line '//VERSION=3' (blank lines and comments "
            "may come before it); older (V1/V2) evalscripts are not supported",
            line=1,
        )
    raise EvalscriptError(
        f"the evalscript declares VERSION={version}; only version 3 evalscripts are supported",
        line=1,
    )


def _declared_version(source: str) -> int | None:
    """The number of the version line among the leading blank and comment lines."""
    in_comment = False
    for raw in source.lstrip("\ufeff").splitlines():
        line = raw.strip()
        if in_comment:  # inside a /* ... */ block that began on an earlier line
            if "*/" not in line:
                continue
            in_comment = False
            line = line.split("*/", 1)[1].strip()
        if not line:
            continue
        found = _VERSION_LINE.match(line)
        if found:
            return int(found.group(1))
        if line.startswith("//"):
            continue
        if line.startswith("/*"):
            rest = line[2:]
            if "*/" not in rest:
                in_comment = True
            elif rest.split("*/", 1)[1].strip():
                return None  # code after the comment on the same line
            continue
        return None
    return None


def script_key(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:32]


def _prefix(key: str) -> str:
    return f'__eobatch.register("{key}", function () {{'


# How far V8's columns on the script's first line are shifted by the wrapper.
FIRST_LINE_OFFSET = len(_prefix(script_key("")))


@cache
def _in_utc() -> None:
    """Sentinel Hub evaluates scripts in UTC: `date.getMonth()` and `new Date(2024, 0, 1)` must
    not depend on the worker's time zone. V8 takes the process's zone once, when its first
    isolate is made, so the process is put in UTC before that (eobatch keeps every time it
    stores in UTC anyway; only local-time log stamps change)."""
    if os.environ.get("TZ") not in ("UTC", "Etc/UTC"):
        os.environ["TZ"] = "UTC"
        time.tzset()


class ScriptContext:
    """A MiniRacer context with limits; `broken` once a limit was hit (then discard it)."""

    def __init__(self, timeout_s: float, heap_mb: int) -> None:
        _in_utc()
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
            error = from_report(report, FIRST_LINE_OFFSET)
            if not _DEFINES_SETUP.search(source):
                # A V1 script under a V3 line: its bands are globals (`B04`) that do not exist.
                error.message = (
                    "the evalscript has no setup() function: it is written as a V1 script "
                    "(bands as global variables, a top-level return), which is not supported; "
                    f"write setup() and evaluatePixel() as in version 3 ({error.message})"
                )
            raise error
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
