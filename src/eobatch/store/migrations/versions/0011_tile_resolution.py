"""tile resolution: the pixel size of each BYOC tile's coarsest overview (the request limit)

Revision ID: 0011_tile_resolution
Revises: 0010_security
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_tile_resolution"
down_revision = "0010_security"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Tiles ingested before this stay without one until they are re-ingested.
    with op.batch_alter_table("byoc_tiles") as batch:
        batch.add_column(sa.Column("overview_meters", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("byoc_tiles") as batch:
        batch.drop_column("overview_meters")
