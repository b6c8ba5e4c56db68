"""The README's first command: `eobatch demo` runs end to end and says where everything is."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import rasterio

pytestmark = pytest.mark.slow


def test_demo_runs_to_done_and_prints_where_results_are(tmp_path: Path) -> None:
    env = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true", "COLUMNS": "200"}
    env.pop("EOBATCH_DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "eobatch.cli", "demo", "--data-dir", str(tmp_path / "d")],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "DONE" in out
    outputs = [Path(p) for p in re.findall(r"output\s+(\S+\.tiff)", out)]
    assert len(outputs) == 4
    for path in outputs:
        with rasterio.open(path) as tiff:
            assert tiff.crs.to_epsg() == 3035 and tiff.res == (20.0, 20.0)
    manifest = Path(re.search(r"feature manifest\s+(\S+)", out).group(1))
    execution = Path(re.search(r"execution db\s+(\S+)", out).group(1))
    assert manifest.is_file()
    with sqlite3.connect(execution) as db:
        assert db.execute("SELECT count(*) FROM features WHERE status = 'DONE'").fetchone() == (4,)
    assert (tmp_path / "d" / "eobatch.sqlite").is_file()  # the embedded store
