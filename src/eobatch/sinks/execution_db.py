"""The execution database `execution-<requestId>.sqlite`: one row per feature of a task.

Table `features` as Sentinel Hub writes it (batch-v2-api.md §3): `id` INTEGER, `name` TEXT,
`status` TEXT (PENDING | DONE | FATAL), `error` TEXT, `delivered` BOOLEAN (stored as 0/1).
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path
from typing import NamedTuple

_SCHEMA = (
    "CREATE TABLE features ("
    "id INTEGER PRIMARY KEY, name TEXT, status TEXT, error TEXT, delivered BOOLEAN)"
)


class ExecutionRow(NamedTuple):
    """The state of one feature as the execution database reports it."""

    id: int
    name: str
    status: str
    error: str | None
    delivered: bool


def execution_db_bytes(rows: Iterable[ExecutionRow]) -> bytes:
    """The SQLite file holding `rows` in table `features`, as bytes ready to upload."""
    with tempfile.TemporaryDirectory(prefix="eobatch-execution-") as folder:
        path = Path(folder) / "execution.sqlite"
        with closing(sqlite3.connect(path)) as connection:
            connection.execute(_SCHEMA)
            connection.executemany(
                "INSERT INTO features (id, name, status, error, delivered) VALUES (?, ?, ?, ?, ?)",
                ((int(r.id), r.name, r.status, r.error, 1 if r.delivered else 0) for r in rows),
            )
            connection.commit()
        return path.read_bytes()
