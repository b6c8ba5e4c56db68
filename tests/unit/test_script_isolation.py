"""No JavaScript state crosses from one task to another in a worker's runtime, and a script that
tampers with built-ins cannot break the runtime's own code: at worst its own feature fails, with
a message that says why.

Each hostile script runs as task A; an ordinary script then runs as task B in the same runtime
(the same thread, as on a worker) and must give its exact numpy result.
"""

from __future__ import annotations

import numpy as np
import pytest

from eobatch.script import EvalscriptError, EvalscriptRuntime, SourceData, parse_setup

SETUP = """//VERSION=3
function setup() {
  return { input: ["B04", "B08", "dataMask"], output: { bands: 1, sampleType: "FLOAT32" } };
}
"""

# The ordinary script leans on everything the hostile ones tamper with, so any leak shows.
ORDINARY = (
    SETUP
    + """
function evaluatePixel(s) {
  const parts = [];
  parts.push(s.B04);
  parts.push(s.B08);
  const sane = typeof x === "undefined" && !("zz" in {}) && JSON.stringify([1]) === "[1]" &&
    JSON.parse("[2]")[0] === 2 && Object.keys({ a: 1 }).length === 1 &&
    [3].map((v) => v)[0] === 3 && Math.abs(-2) === 2 && Math.max(1, 2) === 2 &&
    String(5) === "5" && [...parts].length === 2 && typeof index === "function" &&
    index(3, 1) === 0.5 && valueInterpolate(0.5, [0, 1], [0, 2]) === 1 &&
    new Map([[1, 2]]).get(1) === 2 && "ab".indexOf("b") === 1 &&
    Math.max.call(null, 1, 2) === 2 && /b/.exec("ab") !== null &&
    new ArrayBuffer(4).byteLength === 4;
  return [sane ? Math.abs(index(parts[1], parts[0])) : -999];
}
"""
)

HOSTILE = {
    "globals, Math.abs and Object.prototype": """
globalThis.x = 1107;
Math.abs = () => 1107;
Object.prototype.zz = 1;
function evaluatePixel(s) { return [2]; }
""",
    "Array.prototype.push": """
Array.prototype.push = function () { throw new Error("push is gone"); };
function evaluatePixel(s) { return [2]; }
""",
    "JSON.stringify and JSON.parse": """
JSON.stringify = function () { throw new Error("stringify is gone"); };
JSON.parse = function () { throw new Error("parse is gone"); };
function evaluatePixel(s) { return [2]; }
""",
    "Object's functions": """
Object.defineProperty = () => { throw new Error("no"); };
Object.create = () => { throw new Error("no"); };
Object.assign = () => { throw new Error("no"); };
Object.keys = () => ["x", "y", "z"];
Object.freeze = (o) => o;
function evaluatePixel(s) { return [2]; }
""",
    "Function.prototype": """
Function.prototype.call = function () { throw new Error("no call"); };
Function.prototype.apply = function () { throw new Error("no apply"); };
Function.prototype.bind = function () { throw new Error("no bind"); };
Function.prototype.toString = function () { return "nothing"; };
function evaluatePixel(s) { return [2]; }
""",
    "array methods and iterators": """
Array.prototype.map = function () { return ["mapped"]; };
Array.prototype.filter = function () { return []; };
Array.prototype.sort = function () { throw new Error("no sort"); };
Array.prototype[Symbol.iterator] = function* () { yield "iterated"; };
Object.defineProperty(Array.prototype, "0", { set(v) { throw new Error("no index 0"); },
  configurable: true });
function evaluatePixel(s) { return [2]; }
""",
    "Map, strings and regular expressions": """
Map.prototype.get = () => undefined;
Map.prototype.set = () => { throw new Error("no set"); };
String.prototype.indexOf = () => -1;
String.prototype.match = () => null;
RegExp.prototype.exec = () => { throw new Error("no exec"); };
Object.defineProperty(ArrayBuffer.prototype, "byteLength", { get() { return -1; } });
function evaluatePixel(s) { return [2]; }
""",
    "the runtime's helpers and bridge": """
index = () => 1107;
valueInterpolate = () => 1107;
try { __eobatch = { run: () => "{}" }; } catch (e) {}
try { globalThis.__eobatch.run = () => "{}"; } catch (e) {}
function evaluatePixel(s) { return [2]; }
""",
    "changes made while evaluating": """
let first = true;
function evaluatePixel(s) {
  if (first) {
    first = false;
    JSON.stringify = () => { throw new Error("stringify is gone"); };
    Array.prototype.push = () => { throw new Error("push is gone"); };
    Math.abs = () => 1107;
    globalThis.x = 1;
  }
  return [2];
}
function updateOutputMetadata(scenes, inputMetadata, outputMetadata) {
  Object.prototype.zz = 1;
  outputMetadata.userData = { fine: true };
}
""",
}


def _data(size: int = 40) -> dict[str, SourceData]:
    rng = np.random.default_rng(7)
    b04 = rng.uniform(0.01, 0.5, (1, size, size)).astype(np.float32)
    b08 = rng.uniform(0.01, 0.9, (1, size, size)).astype(np.float32)
    mask = np.ones((1, size, size), dtype=np.uint8)
    return {"default": SourceData({"B04": b04, "B08": b08, "dataMask": mask})}


def _ordinary_expected(data: dict[str, SourceData]) -> np.ndarray:
    b04 = data["default"].bands["B04"][0].astype(np.float64)
    b08 = data["default"].bands["B08"][0].astype(np.float64)
    return np.abs((b08 - b04) / (b08 + b04)).astype(np.float32)[None]


@pytest.mark.parametrize("way", sorted(HOSTILE))
def test_a_hostile_script_changes_nothing_for_the_next_task(way: str) -> None:
    runtime = EvalscriptRuntime(timeout_s=10, heap_mb=256)
    data = _data()
    hostile = SETUP + HOSTILE[way]
    ordinary_setup = parse_setup(ORDINARY)
    try:
        for feature in range(2):  # the hostile task's context is reused for its next feature
            runtime.bind("task-a")
            result = runtime.evaluate_sources(hostile, parse_setup(hostile), data)
            # The bridge relies on nothing the script replaced: its own result is still right.
            assert np.all(result.rasters["default"] == 2), (way, feature)
        runtime.bind("task-b")
        result = runtime.evaluate_sources(ORDINARY, ordinary_setup, data)
        np.testing.assert_array_equal(result.rasters["default"], _ordinary_expected(data))
        # Back to A, then B again: each keeps its own context, neither sees the other.
        runtime.bind("task-a")
        runtime.evaluate_sources(hostile, parse_setup(hostile), data)
        runtime.bind("task-b")
        result = runtime.evaluate_sources(ORDINARY, ordinary_setup, data)
        np.testing.assert_array_equal(result.rasters["default"], _ordinary_expected(data))
    finally:
        runtime.close()


def test_userdata_survives_a_script_that_replaces_json_while_it_runs() -> None:
    runtime = EvalscriptRuntime(timeout_s=10, heap_mb=256)
    hostile = SETUP + HOSTILE["changes made while evaluating"]
    try:
        runtime.bind("task-a")
        result = runtime.evaluate_sources(hostile, parse_setup(hostile), _data())
        assert result.userdata == {"fine": True}
    finally:
        runtime.close()


def test_a_hostile_pre_process_scenes_stays_in_its_task() -> None:
    orbit = """//VERSION=3
function setup() { return { input: ["B04", "dataMask"], output: { bands: 1 },
  mosaicking: "ORBIT" }; }
function preProcessScenes(collections) {
  Array.prototype.push = () => { throw new Error("push is gone"); };
  JSON.stringify = () => "{}";
  collections.scenes.orbits = collections.scenes.orbits.filter((o, i) => i === 1);
  return collections;
}
function evaluatePixel(samples) { return [samples.length]; }
"""
    runtime = EvalscriptRuntime(timeout_s=10, heap_mb=256)
    scenes = [
        {"dateFrom": f"2024-01-0{d}T00:00:00Z", "dateTo": f"2024-01-0{d}T23:59:59Z", "tiles": []}
        for d in (1, 2, 3)
    ]
    try:
        runtime.bind("task-a")
        kept = runtime.pre_process_scenes(orbit, parse_setup(orbit), {"default": scenes})
        assert kept == {"default": [1]}
        runtime.bind("task-b")
        data = _data()
        result = runtime.evaluate_sources(ORDINARY, parse_setup(ORDINARY), data)
        np.testing.assert_array_equal(result.rasters["default"], _ordinary_expected(data))
    finally:
        runtime.close()


def test_a_script_that_breaks_its_own_result_fails_with_a_clear_message() -> None:
    # A result whose every read throws, from a script that has also replaced built-ins.
    breaking = (
        SETUP
        + """
function evaluatePixel(s) {
  JSON.stringify = () => { throw new Error("stringify is gone"); };
  return new Proxy([2], { get() { throw new Error("unreadable"); } });
}
"""
    )
    runtime = EvalscriptRuntime(timeout_s=10, heap_mb=256)
    try:
        runtime.bind("task-a")
        with pytest.raises(EvalscriptError) as caught:
            runtime.evaluate_sources(breaking, parse_setup(breaking), _data())
        assert str(caught.value) == (
            "Error: unreadable in evaluatePixel() at pixel (row 0, column 0) "
            "(evalscript line 8, column 41)"
        )
        # The next feature of the same task gets a fresh context; the other task is unaffected.
        runtime.bind("task-b")
        data = _data()
        result = runtime.evaluate_sources(ORDINARY, parse_setup(ORDINARY), data)
        np.testing.assert_array_equal(result.rasters["default"], _ordinary_expected(data))
    finally:
        runtime.close()


def test_contexts_are_kept_for_the_last_owners_only() -> None:
    runtime = EvalscriptRuntime(timeout_s=10, heap_mb=256, keep=2)
    counter = (
        SETUP
        + """
globalThis.runs = (globalThis.runs || 0) + 1;
function evaluatePixel(s) { return [runs]; }
"""
    )
    setup = parse_setup(counter)
    data = _data(4)
    try:
        seen = []
        for owner in ("a", "b", "a", "c", "b"):
            runtime.bind(owner)
            seen.append(
                int(runtime.evaluate_sources(counter, setup, data).rasters["default"][0, 0, 0])
            )
        # Every owner starts at 1; the script is loaded once per context. "b" was evicted by "c"
        # (keep=2), so it starts afresh.
        assert seen == [1, 1, 1, 1, 1]
    finally:
        runtime.close()
