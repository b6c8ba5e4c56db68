"""Rewrite every secret the store keeps: seal clear ones (migration 0010) or re-seal them with
a new key (`eobatch secrets rotate`).

Works on plain table constructs rather than the ORM models, so that the migration sees the
tables as they are at its revision. Rows are read in pages by primary key: a large store is
never held in memory at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from eobatch.sealing import Keyring, reseal_secrets
from eobatch.store.db import writing

_PAGE = 500
# (table, primary key, column holding secrets, whether the column is JSON)
_SECRET_COLUMNS = (
    ("tasks", "id", "request", True),
    ("byoc_collections", "id", "storage", True),
    ("service_secrets", "name", "value", False),
)


def rewrite_secrets(
    connection: Connection,
    change_json: Callable[[Any], Any],
    change_text: Callable[[str], str],
) -> int:
    """Apply `change_json` to each JSON document holding secrets and `change_text` to each
    stored secret string; returns how many rows changed."""
    changed = 0
    for table_name, key_name, column_name, is_json in _SECRET_COLUMNS:
        kind: Any = sa.JSON() if is_json else sa.Text()
        table = sa.table(table_name, sa.column(key_name, sa.String()), sa.column(column_name, kind))
        key, column = table.c[key_name], table.c[column_name]
        last: str | None = None
        while True:
            query = sa.select(key, column).order_by(key).limit(_PAGE)
            if last is not None:
                query = query.where(key > last)
            rows = connection.execute(query).all()
            for row_key, value in rows:
                if value is None:
                    continue
                new = change_json(value) if is_json else change_text(value)
                if new != value:
                    connection.execute(
                        sa.update(table).where(key == row_key).values({column_name: new})
                    )
                    changed += 1
            if len(rows) < _PAGE:
                break
            last = rows[-1][0]
    return changed


def reseal_store(engine: sa.Engine, keyring: Keyring) -> int:
    """Re-seal every stored secret with the keyring's first key, in one transaction (secrets
    still in clear are sealed too); returns how many rows changed."""
    with writing(engine).begin() as connection:
        return rewrite_secrets(
            connection, lambda value: reseal_secrets(value, keyring), keyring.reseal
        )
