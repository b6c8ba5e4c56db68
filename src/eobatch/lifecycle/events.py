"""Task events: one log line each (with `event` and `task_id` for JSON logs) and a count.

created (API) · analysed with N features · started · feature failed (each failed attempt, with
its error) · stopped (with the reason) · done (with the cost) · failed (with the error).
"""

from __future__ import annotations

import logging

from eobatch.metrics import TASK_EVENTS

log = logging.getLogger("eobatch.tasks")


def _event(
    level: int, event: str, task_id: str, message: str, *args: object, **extra: object
) -> None:
    if event != "feature_failed":
        TASK_EVENTS.labels(event).inc()
    log.log(
        level,
        f"task %s {message}",
        task_id,
        *args,
        extra={"event": event, "task_id": task_id, **extra},
    )


def created(task_id: str, account_id: str) -> None:
    _event(
        logging.INFO, "created", task_id, "created by account %s", account_id, account_id=account_id
    )


def analysed(task_id: str, features: int, estimate_pu: float | None) -> None:
    _event(
        logging.INFO,
        "analysed",
        task_id,
        "analysed: %d features, expected %s PU",
        features,
        "?" if estimate_pu is None else f"{estimate_pu:g}",
        features=features,
    )


def started(task_id: str) -> None:
    _event(logging.INFO, "started", task_id, "started processing")


def feature_failed(task_id: str, feature: str, attempt: int, error: str, final: bool) -> None:
    outcome = "no more attempts" if final else "will be retried"
    _event(
        logging.WARNING,
        "feature_failed",
        task_id,
        "feature %s failed (attempt %d, %s): %s",
        feature,
        attempt,
        outcome,
        error,
        feature=feature,
        attempt=attempt,
        error=error,
        final=final,
    )


def stopped(task_id: str, reason: str, cost_pu: float) -> None:
    _event(
        logging.INFO,
        "stopped",
        task_id,
        "stopped (%s), %g PU charged",
        reason,
        cost_pu,
        reason=reason,
        cost_pu=cost_pu,
    )


def done(task_id: str, features: int, failed: int, cost_pu: float) -> None:
    _event(
        logging.INFO,
        "done",
        task_id,
        "done: %d features, %d failed, %g PU",
        features,
        failed,
        cost_pu,
        features=features,
        failed=failed,
        cost_pu=cost_pu,
    )


def failed(task_id: str, error: str) -> None:
    _event(logging.WARNING, "failed", task_id, "failed: %s", error, error=error)
