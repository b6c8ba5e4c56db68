"""operations: a lease epoch per task (fencing) and the secrets every replica shares

Revision ID: 0009_operations
Revises: 0008_pinned_scenes
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import eobatch.store.models

revision = "0009_operations"
down_revision = "0008_pinned_scenes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("lease_epoch", sa.Integer(), nullable=False,
                                   server_default="0"))
    op.create_table(
        "service_secrets",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("created", eobatch.store.models.UTCDateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("service_secrets")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("lease_epoch")
