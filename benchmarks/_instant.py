"""The instant fake jobs of benchmarks/controller.py, in a module of their own.

Dask pickles a function from `__main__` by value (cloudpickle, with everything it is given),
but one from an importable module by reference, as it does `eobatch.engine.run_features` in the
service: the benchmark's workers import this module (the benchmark puts this folder on their
PYTHONPATH), so the controller pays what it pays in production.
"""

from __future__ import annotations

from eobatch.engine import FeatureJob, FeatureOutcome


def instant(jobs: list[FeatureJob]) -> list[FeatureOutcome]:
    """A Dask job of features that do no work: each delivered, one sample, a 1 kB output."""
    return [FeatureOutcome(j.task_id, j.feature.id, True, bytes_written=1024) for j in jobs]


def instant_baseline(n: int) -> int:
    return n
