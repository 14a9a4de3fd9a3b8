"""a failover's expiry and when its failback was proposed; when the world was last loaded

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from control_plane.store.types import UtcDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "world_load",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("loaded_at", UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_world_load")),
    )
    with op.batch_alter_table("sites") as t:
        t.add_column(sa.Column("failover_expires_at", UtcDateTime(timezone=True), nullable=True))
        t.add_column(sa.Column("failback_proposed_at", UtcDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sites") as t:
        t.drop_column("failback_proposed_at")
        t.drop_column("failover_expires_at")
    op.drop_table("world_load")
