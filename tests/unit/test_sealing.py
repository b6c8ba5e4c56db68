"""Sealing credentials: what is sealed, that it opens only with the right key, the key file."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from eobatch.sealing import (
    Keyring,
    SealingError,
    is_sealed,
    open_secrets,
    read_or_create_key_file,
    reseal_secrets,
    seal_secrets,
    secret_values,
)

REQUEST = {
    "output": {
        "delivery": {
            "s3": {
                "url": "s3://b/p",
                "accessKey": "AKIA-EXAMPLE",
                "secretAccessKey": "secret-key-42",
            }
        }
    },
    "input": {"features": {"gs": {"url": "gs://b/f.gpkg", "credentials": "service-account-json"}}},
    "processRequest": {"evalscript": "return [1];", "input": {"data": [{"type": "S2L2A"}]}},
}


def test_only_credentials_are_sealed_and_they_open_again() -> None:
    keyring = Keyring([Fernet.generate_key()])
    sealed = seal_secrets(REQUEST, keyring)
    assert sealed["processRequest"] == REQUEST["processRequest"]
    assert sealed["output"]["delivery"]["s3"]["url"] == "s3://b/p"
    assert all(is_sealed(v) for v in secret_values(sealed)) and len(secret_values(sealed)) == 3
    assert "secret-key-42" not in str(sealed) and "service-account" not in str(sealed)
    assert seal_secrets(sealed, keyring) == sealed  # sealing twice changes nothing
    assert open_secrets(sealed, keyring) == REQUEST
    assert (
        REQUEST["output"]["delivery"]["s3"]["secretAccessKey"] == "secret-key-42"
    )  # input untouched


def test_a_sealed_value_opens_only_with_a_key_that_sealed_it() -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    sealed = seal_secrets(REQUEST, Keyring([old]))
    with pytest.raises(SealingError) as caught:
        open_secrets(sealed, Keyring([new]))
    assert "secret-key-42" not in str(caught.value) and old.decode() not in str(caught.value)
    both = Keyring([new, old])  # rotation: the first seals, each opens
    resealed = reseal_secrets(sealed, both)
    assert open_secrets(resealed, Keyring([new])) == REQUEST
    with pytest.raises(SealingError):
        open_secrets(resealed, Keyring([old]))


def test_keys_must_be_fernet_keys() -> None:
    with pytest.raises(SealingError, match="Fernet"):
        Keyring([b"too-short"])
    with pytest.raises(SealingError):
        Keyring([])


def test_the_key_file_is_private_and_the_same_for_processes_starting_together(
    tmp_path: Path,
) -> None:
    path = tmp_path / "data" / "secret.key"
    texts: list[str] = []
    threads = [
        threading.Thread(target=lambda: texts.append(read_or_create_key_file(path)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(texts)) == 1 and Fernet(texts[0].strip().encode())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["secret.key"]  # no temporary files left
