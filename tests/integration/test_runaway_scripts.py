"""Untrusted scripts in whole tasks: an endless loop or a runaway allocation ends the feature with
a clear error, the Dask workers survive, and another task running beside it is unaffected."""

from __future__ import annotations

import pytest

from tests.integration.harness import NDVI, run_until, status_is

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
def test_runaway_script_fails_its_features_and_nothing_else(service_factory, kind: str) -> None:  # type: ignore[no-untyped-def]
    body, message = RUNAWAYS[kind]
    runaway = NDVI.split("function evaluatePixel")[0] + body
    svc = service_factory(5000.0, script_timeout_s=3.0, script_heap_mb=256, max_in_flight=4)
    controller = svc.controller()
    bad = svc.create(evalscript=runaway, run="bad")
    good = svc.create(run="good")
    svc.action(bad, "start")
    svc.action(good, "start")
    finished = ("DONE", "FAILED", "STOPPED")
    run_until([controller], lambda: all(svc.task(t)["status"] in finished for t in (bad, good)))

    rows = svc.features(bad)
    assert {r.status for r in rows} == {"FATAL"}
    assert all(message in r.error for r in rows), [r.error for r in rows]
    assert all(r.attempts == 1 for r in rows)  # a script error is not retried
    assert svc.task(good)["status"] == "DONE"
    assert {r.status for r in svc.features(good)} == {"DONE"}

    # The workers are healthy: the next task on the same cluster runs normally.
    after = svc.create(run="after")
    svc.action(after, "start")
    run_until([controller], status_is(svc, after, *finished))
    assert svc.task(after)["status"] == "DONE"
    assert len(svc.client.scheduler_info()["workers"]) == 2
