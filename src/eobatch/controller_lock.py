"""One controller per SQLite store: a lock file beside the database, held while a controller runs.

SQLite has no row locks for controllers to share tasks by (docs/architecture.md: leases), and a
starting controller voids every lease, so a second one on the same file would take the first
one's tasks from under it. The lock is an OS file lock: it is released when the process ends,
however it ends, so a crash never leaves a stale lock behind. PostgreSQL needs no lock.
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from sqlalchemy.engine import make_url

from eobatch.config import Settings


class ControllerLockError(Exception):
    """Another controller holds the store; the message says which and what to do."""


def lock_path(settings: Settings) -> Path | None:
    """The lock file of the settings' store: `<database file>.controller.lock` for SQLite
    (in the data directory by default); None for PostgreSQL and in-memory SQLite."""
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database).resolve().with_name(f"{Path(url.database).name}.controller.lock")


@contextmanager
def controller_lock(settings: Settings, purpose: str) -> Iterator[None]:
    """Hold the store's controller lock for `purpose` (e.g. 'eobatch serve on port 8000');
    raises `ControllerLockError` naming the holder when another process has it."""
    path = lock_path(settings)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ControllerLockError(_refusal(path, _holder(handle))) from None
        handle.seek(0)
        handle.truncate()
        started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        handle.write(f"{purpose} (pid {os.getpid()} on {socket.gethostname()}, since {started})")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()


def _holder(handle: IO[str]) -> str:
    handle.seek(0)
    return handle.read().strip() or "another process"


def _refusal(path: Path, holder: str) -> str:
    return (
        f"another eobatch controller uses this store: {holder}. Stop it first, or run this one "
        f"with --no-controller (API only), another --data-dir, or PostgreSQL "
        f"(EOBATCH_DATABASE_URL) for several controllers. Lock file: {path}"
    )
