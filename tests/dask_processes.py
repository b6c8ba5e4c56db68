"""A Dask cluster of real processes on loopback: `dask scheduler` and `dask worker`, as deployed.

A worker exits when it loses its scheduler (distributed has no worker reconnection); in a
deployment its supervisor (compose `restart: unless-stopped`, Kubernetes, systemd) starts it
again and it waits for the scheduler. `supervise()` plays that supervisor here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from distributed import Client

DASK = str(Path(sys.executable).parent / "dask")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _kill(process: subprocess.Popen | None) -> None:
    """SIGKILL the process group: a crash, nanny and worker process alike."""
    if process is not None and process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)


class DaskProcesses:
    def __init__(self, logs: Path, workers: int = 1, env: dict[str, str] | None = None) -> None:
        self.logs = logs
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.env = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true", **(env or {})}
        self.scheduler: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen | None] = [None] * workers
        self.starts = [0] * workers  # how often each worker was started
        self._supervising = threading.Event()
        self._supervisor: threading.Thread | None = None

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}-{time.time_ns()}.log", "w")  # noqa: SIM115
        return subprocess.Popen(
            [DASK, *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start_scheduler(self) -> None:
        self.scheduler = self._spawn(
            "scheduler",
            ["scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"],
        )
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            assert self.scheduler.poll() is None, "dask scheduler exited"
            assert time.monotonic() < deadline, "dask scheduler did not open its port"
            time.sleep(0.1)

    def start_worker(self, n: int) -> None:
        self.starts[n] += 1
        self.workers[n] = self._spawn(
            f"worker{n}",
            [
                "worker",
                self.address,
                "--name",
                f"worker-{n}",
                "--nthreads",
                "1",
                "--nworkers",
                "1",
                "--no-dashboard",
                "--memory-limit",
                "0",
                "--local-directory",
                str(self.logs / f"worker{n}"),
            ],
        )

    def start(self) -> DaskProcesses:
        self.start_scheduler()
        for n in range(len(self.workers)):
            self.start_worker(n)
        self.wait_for_workers(len(self.workers))
        return self

    def wait_for_workers(self, count: int, timeout: float = 120) -> None:
        with Client(self.address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(count, timeout=timeout)

    def kill_scheduler(self) -> None:
        _kill(self.scheduler)

    def kill_worker(self, n: int) -> None:
        _kill(self.workers[n])

    def supervise(self) -> None:
        """Start every worker that exits again, as a deployment's restart policy would."""

        def watch() -> None:
            while not self._supervising.wait(0.5):
                for n, worker in enumerate(self.workers):
                    if worker is not None and worker.poll() is not None:
                        self.start_worker(n)

        self._supervisor = threading.Thread(target=watch, daemon=True)
        self._supervisor.start()

    def stop(self) -> None:
        self._supervising.set()
        if self._supervisor is not None:
            self._supervisor.join(10)
        for worker in self.workers:
            _kill(worker)
        _kill(self.scheduler)
