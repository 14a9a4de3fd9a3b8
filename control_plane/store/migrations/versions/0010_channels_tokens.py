"""sales channels of the world; token expiry, last use and channel binding

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from control_plane.store.types import UtcDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    channels = op.create_table(
        "channels",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_channels")),
    )
    # A store upgraded in place keeps taking the channels it has taken so far, until the world is
    # reloaded with its own list: refusing them all after an upgrade would be an outage.
    known = op.get_bind().execute(sa.text("SELECT DISTINCT channel FROM orders")).scalars().all()
    if known:
        op.bulk_insert(channels, [{"code": c, "name": c} for c in sorted(known)])
    with op.batch_alter_table("api_tokens") as t:
        t.add_column(sa.Column("expires_at", UtcDateTime(timezone=True), nullable=True))
        t.add_column(sa.Column("last_used_at", UtcDateTime(timezone=True), nullable=True))
        t.add_column(sa.Column("channels", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as t:
        t.drop_column("channels")
        t.drop_column("last_used_at")
        t.drop_column("expires_at")
    op.drop_table("channels")
