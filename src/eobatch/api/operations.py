"""Endpoints for operators: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

router = APIRouter(include_in_schema=False)


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers HTTP."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    """Readiness: the store answers and, with a controller, its Dask client is connected and
    its loop finished a round recently. 503 with the failing checks otherwise."""
    state = request.app.state
    checks: dict[str, dict[str, Any]] = {}
    try:
        state.db.ping()
        checks["database"] = {"ok": True}
    except Exception as exc:
        checks["database"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    controller = state.controller
    if controller is not None:
        cluster = controller.cluster
        checks["dask"] = {"ok": cluster.connected, "scheduler": cluster.address}
        if not cluster.connected:
            checks["dask"]["down_s"] = round(cluster.down_for(), 1)
        since = controller.seconds_since_step()
        checks["controller"] = {"ok": controller.alive(), "last_step_s": round(since, 1)}
    ready = all(check["ok"] for check in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get("/metrics")
def metrics(request: Request) -> Response:
    """Prometheus text exposition (eobatch/metrics.py lists the metrics)."""
    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_PLAIN_0_0_4)
