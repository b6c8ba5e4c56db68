"""Every benchmark runs at its `--smoke` size, so none rots between the runs people make by hand."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).parent.parent / "benchmarks").glob("[!_]*.py"))  # _x.py: shared


@pytest.mark.slow
@pytest.mark.parametrize("script", BENCHMARKS, ids=[p.stem for p in BENCHMARKS])
def test_benchmark_runs_at_its_smoke_size(script: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "AWS_EC2_METADATA_DISABLED": "true",
        "COLUMNS": "160",
        "TMPDIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, str(script), "--smoke"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, (
        f"{script.name} --smoke failed:\n{result.stdout}\n{result.stderr}"
    )
    assert result.stdout.strip(), f"{script.name} printed no figures"
