"""Untrusted scripts in whole tasks: an endless loop or a runaway allocation ends the feature with
a clear error, the Dask workers survive, and another task running beside it is unaffected."""

from __future__ import annotations

import pytest

from tests.integration.bench import NDVI, run_until, status_is

RUNAWAYS = {
    "time": ("function evaluatePixel(s) { while (true) {} }", "time limit of 3 s"),
    "memory": (
        "function evaluatePixel(s) { const hoard = []; "
        "while (true) hoard.push(new Array(1000000).fill(s.B04)); }",
        "memory limit of 256 MB",
    ),
}


@pytest.fixture
def backend() -> str:
    """The store does not matter here: SQLite is enough."""
    return "sqlite"


@pytest.mark.parametrize("kind", sorted(RUNAWAYS))
def test_runaway_script_fails_its_features_and_nothing_else(bench_factory, kind: str) -> None:  # type: ignore[no-untyped-def]
    body, message = RUNAWAYS[kind]
    runaway = NDVI.split("function evaluatePixel")[0] + body
    bench = bench_factory(5000.0, script_timeout_s=3.0, script_heap_mb=256, max_in_flight=4)
    controller = bench.controller()
    bad = bench.create(evalscript=runaway, run="bad")
    good = bench.create(run="good")
    bench.action(bad, "start")
    bench.action(good, "start")
    finished = ("DONE", "FAILED", "STOPPED")
    run_until([controller], lambda: all(bench.task(t)["status"] in finished for t in (bad, good)))

    rows = bench.features(bad)
    assert {r.status for r in rows} == {"FATAL"}
    assert all(message in r.error for r in rows), [r.error for r in rows]
    assert all(r.attempts == 1 for r in rows)  # a script error is not retried
    assert bench.task(good)["status"] == "DONE"
    assert {r.status for r in bench.features(good)} == {"DONE"}

    # The workers are healthy: the next task on the same cluster runs normally.
    after = bench.create(run="after")
    bench.action(after, "start")
    run_until([controller], status_is(bench, after, *finished))
    assert bench.task(after)["status"] == "DONE"
    assert len(bench.client.scheduler_info()["workers"]) == 2
