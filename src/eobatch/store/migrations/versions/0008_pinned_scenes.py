"""pinned scenes: the STAC items a task's sources read, kept from its analysis

Revision ID: 0008_pinned_scenes
Revises: 0007_collection_storage
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_pinned_scenes"
down_revision = "0007_collection_storage"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pinned_scenes",
        sa.Column(
            "task_id",
            sa.String(36),
            sa.ForeignKey("tasks.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("source", sa.Integer(), primary_key=True),
        sa.Column("items", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pinned_scenes")
