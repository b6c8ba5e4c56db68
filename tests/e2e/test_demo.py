"""The README's first command: `eobatch demo` runs end to end, says where everything is and what
a user needs to carry on, and a second run reuses its account and collection."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pystac
import pytest
import rasterio

from eobatch.accounts import authenticate_client, list_accounts
from eobatch.config import Settings
from eobatch.service import open_database

pytestmark = pytest.mark.slow


def _demo(data_dir: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EOBATCH_")}
    env |= {"AWS_EC2_METADATA_DISABLED": "true", "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "eobatch.cli", "demo", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _said(out: str, label: str) -> str:
    return re.search(rf"^  {label}\s+(\S+)", out, re.M).group(1)


def test_demo_runs_to_done_prints_what_to_carry_on_with_and_reuses_its_data(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "d"
    out = _demo(data_dir)
    assert "DONE" in out
    outputs = [Path(p) for p in re.findall(r"output\s+(\S+\.tiff)", out)]
    assert len(outputs) == 4
    for path in outputs:
        with rasterio.open(path) as tiff:
            assert tiff.crs.to_epsg() == 3035 and tiff.res == (20.0, 20.0)
    manifest = Path(_said(out, "feature manifest"))
    assert manifest.is_file()
    with sqlite3.connect(_said(out, "execution db")) as db:
        assert db.execute("SELECT count(*) FROM features WHERE status = 'DONE'").fetchone() == (4,)
    assert (data_dir / "eobatch.sqlite").is_file()  # the embedded store
    collection = pystac.Collection.from_file(_said(out, "STAC catalogue"))
    assert len(list(collection.get_items())) == 4
    assert Path(_said(out, "mosaic")).is_file()

    # what a user needs to carry on with their own client
    client_id, secret = _said(out, "client id"), _said(out, "client secret")
    data_collection, task_id = _said(out, "data collection"), _said(out, "batch task")
    db = open_database(Settings(data_dir=data_dir))
    account_id = authenticate_client(db, client_id, secret)
    assert data_collection.startswith("byoc-") and task_id == collection.id
    assert f"eobatch tasks show {task_id}" in out and "gdalinfo" in out

    again = _demo(data_dir)
    assert _said(again, "client id") == client_id and _said(again, "client secret") == secret
    assert _said(again, "data collection") == data_collection
    assert f"reusing BYOC collection {data_collection.removeprefix('byoc-')}" in again
    assert _said(again, "batch task") != task_id
    assert [a.id for a, _ in list_accounts(db)] == [account_id]  # no second demo account
    db.dispose()
    assert (data_dir / "demo-credentials.json").stat().st_mode & 0o077 == 0  # owner only
