"""chaos drill runs and measured recoveries (drills and resolved outage incidents)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from control_plane.store.types import UtcDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "drill_runs",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("experiment", sa.String(length=300), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_by", sa.String(length=100), nullable=False),
        sa.Column("started_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", UtcDateTime(timezone=True), nullable=True),
        sa.Column("forced_reason", sa.Text(), nullable=True),
        sa.Column("abort_requested_at", UtcDateTime(timezone=True), nullable=True),
        sa.Column("abort_reason", sa.Text(), nullable=True),
        sa.Column("detect_s", sa.Float(), nullable=True),
        sa.Column("mitigate_s", sa.Float(), nullable=True),
        sa.Column("recover_s", sa.Float(), nullable=True),
        sa.Column("rto_s", sa.Float(), nullable=True),
        sa.Column("lost", sa.Integer(), nullable=True),
        sa.Column("duplicated", sa.Integer(), nullable=True),
        sa.Column("held", sa.Integer(), nullable=True),
        sa.Column("deviations", sa.JSON(), nullable=False),
        sa.Column("journal", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drill_runs")),
    )
    op.create_index(op.f("ix_drill_runs_subject"), "drill_runs", ["subject"])
    op.create_index(op.f("ix_drill_runs_status"), "drill_runs", ["status"])
    op.create_index(op.f("ix_drill_runs_started_at"), "drill_runs", ["started_at"])
    op.create_table(
        "recoveries",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("source_id", _ID, nullable=False),
        sa.Column("measured_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("detect_s", sa.Float(), nullable=True),
        sa.Column("mitigate_s", sa.Float(), nullable=True),
        sa.Column("recover_s", sa.Float(), nullable=False),
        sa.Column("rto_s", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recoveries")),
        sa.UniqueConstraint("source", "source_id", name=op.f("uq_recoveries_source")),
    )
    op.create_index(op.f("ix_recoveries_site"), "recoveries", ["site"])
    op.create_index(op.f("ix_recoveries_measured_at"), "recoveries", ["measured_at"])


def downgrade() -> None:
    op.drop_table("recoveries")
    op.drop_table("drill_runs")
