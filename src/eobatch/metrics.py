"""Prometheus metrics: what controllers count as they work, and what is read at scrape time.

Counters and the duration histogram belong to the process (sum them over replicas); task
counts by status come from the store, so every replica reports the same figures (take the max).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from eobatch.lifecycle.states import Status
from eobatch.store import Database
from eobatch.store.models import Task

if TYPE_CHECKING:
    from eobatch.lifecycle.controller import Controller

FEATURES = Counter(
    "eobatch_features",
    "Feature attempts recorded by this process: done (delivered or no data), failed (final) "
    "or retried.",
    ["outcome"],
    registry=None,
)
PU_CHARGED = Counter(
    "eobatch_pu_charged", "Processing units charged to accounts by this process.", registry=None
)
TASK_EVENTS = Counter(
    "eobatch_task_events",
    "Task events in this process (created, analysed, started, stopped, done, failed).",
    ["event"],
    registry=None,
)
FEATURE_SECONDS = Histogram(
    "eobatch_feature_duration_seconds",
    "Time a worker spent on one feature: read, evaluate, encode and deliver.",
    buckets=(0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200),
    registry=None,
)


class StoreCollector(Collector):
    """Tasks by status, counted in the store at each scrape."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "eobatch_tasks", "Tasks by status (whole deployment).", labels=["status"]
        )
        with self.db.reading() as session:
            query = select(Task.status, func.count()).group_by(Task.status)
            counts = dict(session.execute(query).all())
        for status in Status:
            family.add_metric([status.value], counts.get(status.value, 0))
        yield family


class ControllerCollector(Collector):
    """This process's controller: its window, its leases and the Dask cluster it sees."""

    def __init__(self, controller: Controller) -> None:
        self.controller = controller

    def collect(self) -> Iterator[Metric]:
        c = self.controller
        workers, threads = c.cluster.size()
        for name, doc, value in (
            (
                "eobatch_features_in_flight",
                "Features this controller has on Dask (several small ones per job).",
                sum(len(features) for _, features in list(c.in_flight.values())),
            ),
            (
                "eobatch_controller_tasks",
                "Tasks this controller holds a lease on.",
                len(c.leases.held()),
            ),
            (
                "eobatch_dask_connected",
                "1 while the controller's Dask client is connected.",
                int(c.cluster.connected),
            ),
            ("eobatch_dask_workers", "Dask workers the scheduler knows.", workers),
            ("eobatch_dask_threads", "Worker threads in the Dask cluster.", threads),
            (
                "eobatch_controller_last_step_seconds",
                "Seconds since the controller loop last finished a round.",
                c.seconds_since_step(),
            ),
        ):
            yield GaugeMetricFamily(name, doc, value=value)


def registry(db: Database, controller: Controller | None) -> CollectorRegistry:
    """Everything `/metrics` shows for one app: process metrics, the store, the controller."""
    reg = CollectorRegistry()
    for collector in (
        FEATURES,
        PU_CHARGED,
        TASK_EVENTS,
        FEATURE_SECONDS,
        PROCESS_COLLECTOR,
        PLATFORM_COLLECTOR,
        GC_COLLECTOR,
        StoreCollector(db),
    ):
        reg.register(collector)
    if controller is not None:
        reg.register(ControllerCollector(controller))
    return reg
