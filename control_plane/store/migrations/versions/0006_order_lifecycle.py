"""order lifecycle: request hashes, shipped/cancelled times, site change leases

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import control_plane.store.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        # what the first post of (channel, external_id) carried: a repeat with another body is a conflict
        batch.add_column(sa.Column("request_hash", sa.String(length=64), nullable=True))
        batch.add_column(
            sa.Column("shipped_at", control_plane.store.types.UtcDateTime(timezone=True), nullable=True)
        )
        batch.add_column(
            sa.Column("cancelled_at", control_plane.store.types.UtcDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("site_changes") as batch:
        # a running change whose process died is taken over once its lease has run out
        batch.add_column(
            sa.Column("lease_until", control_plane.store.types.UtcDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("idempotency_keys") as batch:
        # a key is bound to method, path and body: reused for another request it is refused
        batch.add_column(sa.Column("request_hash", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_column("request_hash")
    with op.batch_alter_table("site_changes") as batch:
        batch.drop_column("lease_until")
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("cancelled_at")
        batch.drop_column("shipped_at")
        batch.drop_column("request_hash")
