"""Start and stop real `eobatch serve` processes for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServiceProcess:
    """`eobatch serve` in its own process group (so its Dask workers die with it)."""

    data_dir: Path
    database_url: str
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()  # more `eobatch serve` options, e.g. --no-controller
    process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90) -> ServiceProcess:
        env = {
            **os.environ,
            "EOBATCH_DATABASE_URL": self.database_url,
            "EOBATCH_JWT_SECRET": "e2e-signing-key-0123456789abcdefghij",
            "EOBATCH_WORKERS": "2",
            "EOBATCH_EXECUTION_DB_INTERVAL_S": "1",
            "EOBATCH_CONTROLLER_POLL_S": "0.2",
            "AWS_EC2_METADATA_DISABLED": "true",
            **self.extra_env,
        }
        log = open(self.data_dir / f"serve-{self.port}-{time.time_ns()}.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "eobatch.cli",
                "serve",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
                *self.args,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"eobatch serve exited with {code}: {self.logs()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.kill()
        raise TimeoutError(f"eobatch serve did not come up: {self.logs()}")

    def logs(self) -> str:
        return "\n".join(p.read_text()[-4000:] for p in sorted(self.data_dir.glob("serve-*.log")))

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, not a shutdown."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.process:
            with contextlib.suppress(ProcessLookupError):  # reap leftovers, e.g. workers
                os.killpg(self.process.pid, signal.SIGKILL)
