"""collection storage: a BYOC collection may name its own storage locator (with credentials)

Revision ID: 0007_collection_storage
Revises: 0006_billing
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_collection_storage"
down_revision = "0006_billing"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("byoc_collections") as batch:
        batch.add_column(sa.Column("storage", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("byoc_collections") as batch:
        batch.drop_column("storage")
