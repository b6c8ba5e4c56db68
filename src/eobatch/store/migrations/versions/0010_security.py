"""security: stored credentials and the token-signing key sealed; accounts can be disabled

Revision ID: 0010_security
Revises: 0009_operations
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from eobatch.sealing import is_sealed, open_secrets, seal_secrets, secret_values
from eobatch.store.resealing import rewrite_secrets

revision = "0010_security"
down_revision = "0009_operations"
branch_labels = None
depends_on = None


def _keyring():
    keyring = context.config.attributes.get("keyring")
    if keyring is None:
        raise RuntimeError(
            "migration 0010_security seals the stored credentials and needs the secret key: "
            "run `eobatch migrate` (it reads EOBATCH_SECRET_KEY or <data dir>/secret.key)"
        )
    return keyring


def upgrade() -> None:
    connection = op.get_bind()
    found: list[bool] = []

    def note_json(value):
        found.append(any(not is_sealed(v) for v in secret_values(value)))
        return value

    def note_text(value):
        found.append(not is_sealed(value))
        return value

    # First whether a key is needed (a new, empty store needs none yet), before any change:
    # SQLite's driver commits DDL at once, so a failure must come before the ALTER TABLE.
    rewrite_secrets(connection, note_json, note_text)
    keyring = _keyring() if any(found) else None
    # A plain ADD COLUMN, never a batch copy of the table: on SQLite with foreign keys on,
    # dropping the old accounts table would cascade to every task and ledger entry.
    op.add_column("accounts", sa.Column("disabled", sa.Boolean(), nullable=False,
                                        server_default=sa.false()))
    if keyring is not None:
        rewrite_secrets(connection, lambda v: seal_secrets(v, keyring), keyring.seal)


def downgrade() -> None:
    connection = op.get_bind()

    def open_json(value):
        sealed = any(is_sealed(v) for v in secret_values(value))
        return open_secrets(value, _keyring()) if sealed else value

    def open_text(value):
        return _keyring().open(value) if is_sealed(value) else value

    rewrite_secrets(connection, open_json, open_text)
    op.drop_column("accounts", "disabled")  # SQLite >= 3.35 drops a column in place
