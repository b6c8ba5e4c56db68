"""Log lines: JSON on request, with the extras the task events carry."""

from __future__ import annotations

import json
import logging

from eobatch.lifecycle import events
from eobatch.logs import JsonFormatter


def test_json_lines_carry_the_event_and_its_fields(caplog) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.INFO, logger="eobatch.tasks"):
        events.feature_failed("t-1", "tile-7", 3, "IOError: bucket gone", final=True)
        events.done("t-1", 36, 1, 112.5)
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records]
    assert lines[0]["message"] == (
        "task t-1 feature tile-7 failed (attempt 3, no more attempts): IOError: bucket gone"
    )
    fields = ("level", "event", "task_id", "feature", "attempt", "final")
    assert {k: lines[0][k] for k in fields} == {
        "level": "WARNING",
        "event": "feature_failed",
        "task_id": "t-1",
        "feature": "tile-7",
        "attempt": 3,
        "final": True,
    }
    assert lines[1]["message"] == "task t-1 done: 36 features, 1 failed, 112.5 PU"
    assert (lines[1]["event"], lines[1]["cost_pu"], lines[1]["failed"]) == ("done", 112.5, 1)
    assert lines[1]["time"].endswith("+00:00") and lines[1]["logger"] == "eobatch.tasks"


def test_access_log_records_become_fields() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "",
        0,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/readyz", "1.1", 503),
        None,
    )
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == '127.0.0.1:5000 - "GET /readyz HTTP/1.1" 503'
    assert (line["method"], line["path"], line["status"]) == ("GET", "/readyz", 503)
