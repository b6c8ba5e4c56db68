"""Runs a corpus script as the engine does a feature: synthetic inputs for its collection,
preProcessScenes with the request's time range, only the kept scenes read, then
updateOutput, evaluatePixel over every pixel and updateOutputMetadata."""

from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eobatch.script import Evaluation, ScriptSetup, SourceData, get_runtime, parse_setup
from tests.conformance.corpus.synthetic import default_days, source_data, time_range

HERE = Path(__file__).parent
# The scripts themselves are not in the repository (they are third-party code under their own
# licences): `python -m tests.conformance.corpus collect <checkouts>` copies them here from
# checkouts of the repositories the manifest names, or point EOBATCH_EVALSCRIPT_CORPUS at them.
SCRIPTS = Path(os.environ.get("EOBATCH_EVALSCRIPT_CORPUS") or HERE / "scripts")


@dataclass(frozen=True)
class Entry:
    """One public script of the corpus and what we concluded about it."""

    repo: str
    path: str
    commit: str
    sha256: str
    collection: str
    verdict: str  # "runs", or "script-fault" (fails by its own fault; `reason` cites why)
    reason: str = ""
    error: str = ""  # for script-fault: text the error must contain
    days: tuple[str, ...] = ()  # acquisition days of the ORBIT/TILE scenes, newest first
    sources: tuple[str, ...] = ()  # data source ids of a fusion request, in request order
    # band -> [low, high]: the values a collection's band takes, when its name does not tell
    # (whole numbers: integers in that range; else uniform)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.repo.split('/')[1]}/{self.path}"

    @property
    def file(self) -> Path:
        return SCRIPTS / self.repo.split("/")[1] / self.path

    def text(self) -> str | None:
        """The script as stored here (None when absent), checked against the manifest."""
        if not self.file.exists():
            return None
        text = self.file.read_text(encoding="utf-8")
        if hashlib.sha256(text.encode()).hexdigest() != self.sha256:
            raise AssertionError(f"{self.id} differs from the copy the manifest records")
        return text


def load_manifest() -> list[Entry]:
    with (HERE / "manifest.toml").open("rb") as handle:
        data = tomllib.load(handle)
    return [
        Entry(**{k: tuple(v) if isinstance(v, list) else v for k, v in item.items()})
        for item in data["script"]
    ]


@dataclass
class Run:
    setup: ScriptSetup
    data: dict[str, SourceData]  # what evaluatePixel saw: the kept scenes only
    kept: dict[str, list[int]]
    result: Evaluation
    days: dict[str, list[str]] = field(default_factory=dict)  # kept acquisition days per source


def run(entry: Entry, seed: int = 7) -> Run:
    """Evaluate `entry` on synthetic data; raises the script's EvalscriptError."""
    text = entry.text()
    assert text is not None, f"{entry.id} is not stored here"
    rng = np.random.default_rng(seed)
    setup = parse_setup(text)
    ids = list(entry.sources) or list(setup.datasources) or ["default"]
    setup = setup.for_sources(ids)
    fused = len(ids) > 1 or bool(setup.datasources)
    days = list(entry.days) or default_days(5)
    everything: dict[str, SourceData] = {}
    for sid in ids:
        mode = setup.mosaicking_of(sid if fused else None)
        everything[sid] = source_data(
            setup, sid if fused else None, mode, days, rng, dict(entry.ranges)
        )
    runtime = get_runtime(60, 512)
    runtime.bind(f"corpus:{entry.id}")
    ranges = {sid: time_range(days) for sid in ids}
    kept = runtime.pre_process_scenes(
        text, setup, {sid: d.scenes for sid, d in everything.items()}, ranges
    )
    data, kept_days = {}, {}
    for sid, d in everything.items():
        if setup.mosaicking_of(sid if fused else None) == "SIMPLE":
            data[sid], kept_days[sid] = d, []
            continue
        rows = kept[sid]
        data[sid] = SourceData(
            {band: values[rows] for band, values in d.bands.items()}, [d.scenes[n] for n in rows]
        )
        kept_days[sid] = [days[n] for n in rows]
    result = runtime.evaluate_sources(text, setup, data)
    return Run(setup, data, kept, result, kept_days)


def describe(result: Evaluation) -> dict[str, Any]:
    """Shapes and types of a result, for the corpus table."""
    return {k: f"{v.shape[0]}x{v.dtype}" for k, v in result.rasters.items()}
