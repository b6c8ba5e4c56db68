"""billing: integer micro-PU amounts, reservations, per-feature samples and bytes, the ledger

Revision ID: 0006_billing
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import eobatch.store.models

revision = "0006_billing"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("balance_micro_pu", sa.BigInteger(), nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("reserved_micro_pu", sa.BigInteger(), nullable=False,
                                   server_default="0"))
    op.execute("UPDATE accounts SET balance_micro_pu = ROUND(balance_pu * 1000000)")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("balance_pu")

    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("cost_micro_pu", sa.BigInteger(), nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("estimate", sa.JSON(), nullable=True))
    op.execute("UPDATE tasks SET cost_micro_pu = ROUND(cost_pu * 1000000)")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("cost_pu")

    with op.batch_alter_table("features") as batch:
        for name in ("bytes_written", "cost_micro_pu", "surcharge_micro_pu", "reserved_micro_pu"):
            batch.add_column(sa.Column(name, sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("max_samples", sa.Integer(), nullable=False,
                                   server_default="1"))
        batch.add_column(sa.Column("samples", sa.Integer(), nullable=True))
    op.execute("UPDATE features SET cost_micro_pu = ROUND(cost_pu * 1000000)")
    with op.batch_alter_table("features") as batch:
        batch.drop_column("cost_pu")

    op.create_table(
        "ledger",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("amount_micro_pu", sa.BigInteger(), nullable=False),
        sa.Column("balance_after_micro_pu", sa.BigInteger(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created", eobatch.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_ledger_account_id", "ledger", ["account_id", "id"])
    op.create_index("ix_ledger_task_id", "ledger", ["task_id"])
    # Balances that existed before the ledger become its opening credit.
    op.execute(
        "INSERT INTO ledger (account_id, kind, amount_micro_pu, balance_after_micro_pu, note, "
        "created) SELECT id, 'credit', balance_micro_pu, balance_micro_pu, 'opening balance', "
        "CURRENT_TIMESTAMP FROM accounts"
    )


def downgrade() -> None:
    op.drop_index("ix_ledger_task_id", table_name="ledger")
    op.drop_index("ix_ledger_account_id", table_name="ledger")
    op.drop_table("ledger")
    for table, column in (("features", "cost"), ("tasks", "cost"), ("accounts", "balance")):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column(f"{column}_pu", sa.Float(), nullable=False,
                                       server_default="0"))
        op.execute(f"UPDATE {table} SET {column}_pu = {column}_micro_pu / 1000000.0")
    with op.batch_alter_table("features") as batch:
        for name in ("bytes_written", "cost_micro_pu", "surcharge_micro_pu", "reserved_micro_pu",
                     "max_samples", "samples"):
            batch.drop_column(name)
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("cost_micro_pu")
        batch.drop_column("estimate")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("balance_micro_pu")
        batch.drop_column("reserved_micro_pu")
