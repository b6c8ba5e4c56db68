"""The execution database `execution-<requestId>.sqlite`: one row per feature of a task.

Table `features` as Sentinel Hub writes it (batch-v2-api.md §3): `id` INTEGER, `name` TEXT,
`status` TEXT (PENDING | DONE | FATAL), `error` TEXT, `delivered` BOOLEAN (stored as 0/1).
One extra column, last so that readers of the documented ones are unaffected: `costPU` REAL,
the PUs charged for the feature (processing plus transfer surcharge; 0 until it is charged).
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path
from typing import NamedTuple

EXECUTION_FILE = "execution-{request_id}.sqlite"

_SCHEMA = (
    "CREATE TABLE features ("
    "id INTEGER PRIMARY KEY, name TEXT, status TEXT, error TEXT, delivered BOOLEAN, costPU REAL)"
)


class ExecutionRow(NamedTuple):
    """The state of one feature as the execution database reports it."""

    id: int
    name: str
    status: str
    error: str | None
    delivered: bool
    cost_pu: float = 0.0


def write_execution_db(path: Path, rows: Iterable[ExecutionRow]) -> None:
    """Write the SQLite file `path` holding `rows` in table `features`; `rows` is consumed as
    it comes, so a task of any size is written in constant memory."""
    with closing(sqlite3.connect(path)) as connection:
        connection.execute(_SCHEMA)
        connection.executemany(
            "INSERT INTO features (id, name, status, error, delivered, costPU) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                (int(r.id), r.name, r.status, r.error, 1 if r.delivered else 0, r.cost_pu)
                for r in rows
            ),
        )
        connection.commit()


def execution_db_bytes(rows: Iterable[ExecutionRow]) -> bytes:
    """The SQLite file holding `rows` in table `features`, as bytes."""
    with tempfile.TemporaryDirectory(prefix="eobatch-execution-") as folder:
        path = Path(folder) / "execution.sqlite"
        write_execution_db(path, rows)
        return path.read_bytes()
