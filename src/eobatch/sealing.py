"""Secrets at rest: storage credentials and the token-signing key are sealed with Fernet.

What the store keeps of a credential is `sealed:<Fernet token>` (AES-128-CBC with an
HMAC-SHA256, from the `cryptography` package): the database files, SQLite's WAL, PostgreSQL's
tables and their backups hold no secret in clear. A sealed value is opened only where it is used
(`storage.open_location`, the token-signing key at start-up).

The key: `EOBATCH_SECRET_KEY` (one or more Fernet keys separated by commas, the first seals and
every one opens: the way to rotate), else the key file `<data dir>/secret.key`, created on first
use with mode 0600. Replicas on one PostgreSQL database need the same key (docs/security.md).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from eobatch.config import Settings

PREFIX = "sealed:"
KEY_FILE = "secret.key"
# Fields of a storage locator that carry credentials (sealed in the store, `***` in answers).
SECRET_FIELDS = frozenset({"secretAccessKey", "accessKey", "credentials", "sessionToken"})


class SealingError(Exception):
    """A key that is no Fernet key, or a sealed value no configured key opens. The message never
    holds the value or the key."""


class Keyring:
    """Seals with the first key, opens with any of them."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise SealingError("no secret key given")
        try:
            self._fernet = MultiFernet([Fernet(key) for key in keys])
        except (ValueError, TypeError):
            raise SealingError(
                "EOBATCH_SECRET_KEY / secret.key must hold Fernet keys (32 bytes, url-safe "
                "base64), separated by commas; make one with `eobatch secrets new-key`"
            ) from None

    def seal(self, value: str) -> str:
        """`value` sealed (a sealed value is returned as it is)."""
        if is_sealed(value):
            return value
        return PREFIX + self._fernet.encrypt(value.encode()).decode()

    def open(self, value: str) -> str:
        """The clear text of a sealed value (a value in clear is returned as it is)."""
        if not is_sealed(value):
            return value
        try:
            return self._fernet.decrypt(value.removeprefix(PREFIX).encode()).decode()
        except InvalidToken:
            raise SealingError(
                "a stored secret cannot be opened with the configured secret key: was "
                "EOBATCH_SECRET_KEY (or secret.key) changed without keeping the old key? "
                "See docs/security.md"
            ) from None

    def reseal(self, value: str) -> str:
        """`value` sealed with the first key (clear values are sealed too)."""
        if not is_sealed(value):
            return self.seal(value)
        try:
            return PREFIX + self._fernet.rotate(value.removeprefix(PREFIX).encode()).decode()
        except InvalidToken:
            raise SealingError(
                "a stored secret cannot be opened with any configured secret key"
            ) from None


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def new_key() -> str:
    """A new random Fernet key."""
    return Fernet.generate_key().decode()


def parse_keys(text: str) -> list[bytes]:
    """Keys from a comma- or newline-separated list."""
    return [k.strip().encode() for k in text.replace("\n", ",").split(",") if k.strip()]


_KEYRINGS: dict[tuple[str, str], Keyring] = {}
_KEYRINGS_LOCK = threading.Lock()


def keyring_for(settings: Settings) -> Keyring:
    """The deployment's keyring (cached per process): the setting, else the key file."""
    configured = settings.secret_key.get_secret_value() if settings.secret_key else ""
    cache_key = (configured, str(settings.data_dir.resolve()))
    with _KEYRINGS_LOCK:
        keyring = _KEYRINGS.get(cache_key)
        if keyring is None:
            text = configured or read_or_create_key_file(settings.data_dir / KEY_FILE)
            keyring = _KEYRINGS[cache_key] = Keyring(parse_keys(text))
        return keyring


def forget_keyrings() -> None:
    """Drop the cached keyrings (after `eobatch secrets rotate` rewrote the key file)."""
    with _KEYRINGS_LOCK:
        _KEYRINGS.clear()


def read_or_create_key_file(path: Path) -> str:
    """The key file's text; created (mode 0600) with a new key if there is none. Processes that
    start together agree: the file appears complete or not at all (written aside, then linked)."""
    if path.exists():
        return path.read_text()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_key_file(path, new_key() + "\n", replace=False)
    return path.read_text()


def write_key_file(path: Path, text: str, replace: bool) -> None:
    """Write `text` to `path` with mode 0600, atomically; without `replace`, a file already
    there (another process's) wins."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        if replace:
            os.replace(temp, path)
        else:
            with contextlib.suppress(FileExistsError):
                os.link(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def _walk(value: Any, change: Callable[[str], str]) -> Any:
    """A copy of JSON `value` with `change` applied to every string under a secret field."""
    if isinstance(value, dict):
        return {
            k: change(v) if k in SECRET_FIELDS and isinstance(v, str) else _walk(v, change)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_walk(v, change) for v in value]
    return value


def seal_secrets(value: Any, keyring: Keyring) -> Any:
    """A copy of a JSON document (a request, a locator) with every credential sealed."""
    return _walk(value, keyring.seal)


def open_secrets(value: Any, keyring: Keyring) -> Any:
    """A copy of a JSON document with every sealed credential opened."""
    return _walk(value, keyring.open)


def reseal_secrets(value: Any, keyring: Keyring) -> Any:
    """A copy of a JSON document with every credential sealed with the keyring's first key."""
    return _walk(value, keyring.reseal)


def secret_values(value: Any) -> list[str]:
    """Every credential string of a JSON document, sealed or not."""
    found: list[str] = []

    def note(text: str) -> str:
        found.append(text)
        return text

    _walk(value, note)
    return found
