"""`eobatch serve` refuses what cannot work before it starts anything: a port in use, and a second
controller on one SQLite store (the lock is an OS file lock, so a killed server leaves none)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.service import ServiceProcess, free_port

pytestmark = pytest.mark.slow


def _serve(data_dir: Path, port: int, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """A second `eobatch serve` run to its end (it must refuse quickly)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EOBATCH_")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "eobatch.cli",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**environ, "AWS_EC2_METADATA_DISABLED": "true", **env},
    )


def test_a_busy_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _serve(tmp_path / "data", port)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Choose another port with --port" in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "data" / "eobatch.sqlite").exists()  # no migrations, no Dask


def test_a_second_controller_on_one_sqlite_store_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    store = f"sqlite:///{data_dir / 'eobatch.sqlite'}"  # the embedded default
    first = ServiceProcess(data_dir, store).start()
    try:
        second = _serve(data_dir, free_port(), EOBATCH_DATABASE_URL=store)
        assert second.returncode == 1
        assert (
            f"another eobatch controller uses this store: eobatch serve on "
            f"127.0.0.1:{first.port} (pid {first.process.pid}"
        ) in second.stderr
        assert "--no-controller" in second.stderr and "Traceback" not in second.stderr
        assert (data_dir / "eobatch.sqlite.controller.lock").is_file()  # in the data dir
        # an API-only process beside the controller is fine
        ServiceProcess(data_dir, store, args=("--no-controller",)).start().stop()
    finally:
        first.kill()  # a crash: the lock goes with the process
    ServiceProcess(data_dir, store).start().stop()
