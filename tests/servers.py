"""Real servers on loopback for integration tests: an S3-compatible server (moto)."""

from __future__ import annotations

import os
from collections.abc import Callable

os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

from moto.server import ThreadedMotoServer

MOTO_KEY = "testing"
MOTO_SECRET = "testing"
MOTO_REGION = "us-east-1"


def start_moto_server() -> tuple[str, Callable[[], None]]:
    """A moto S3 server on 127.0.0.1 (free port); returns its endpoint URL and a stop function."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return f"http://{host}:{port}", server.stop
