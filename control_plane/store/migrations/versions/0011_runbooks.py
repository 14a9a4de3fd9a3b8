"""runbook executions, their step runs, the kill switch; pausable channels, integrations marked down

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from control_plane.store.types import UtcDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "runbook_executions",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("runbook", sa.String(length=64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("cursor", sa.Integer(), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("started_by", sa.String(length=100), nullable=False),
        sa.Column("started_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", UtcDateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("trigger_key", sa.String(length=300), nullable=True),
        sa.Column("trigger", sa.JSON(), nullable=True),
        sa.Column("incident_id", _ID, nullable=True),
        sa.Column("abort_reason", sa.Text(), nullable=True),
        sa.Column("lease_owner", sa.String(length=100), nullable=True),
        sa.Column("lease_until", UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incidents.id"], name=op.f("fk_runbook_executions_incident_id_incidents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runbook_executions")),
        sa.UniqueConstraint("trigger_key", name=op.f("uq_runbook_executions_trigger_key")),
    )
    op.create_index(op.f("ix_runbook_executions_runbook"), "runbook_executions", ["runbook"])
    op.create_index(op.f("ix_runbook_executions_status"), "runbook_executions", ["status"])
    op.create_index(op.f("ix_runbook_executions_started_at"), "runbook_executions", ["started_at"])
    op.create_index(op.f("ix_runbook_executions_incident_id"), "runbook_executions", ["incident_id"])
    op.create_table(
        "step_runs",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("execution_id", _ID, nullable=False),
        sa.Column("phase", sa.String(length=8), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=120), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", UtcDateTime(timezone=True), nullable=True),
        sa.Column("output", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("decided_by", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["runbook_executions.id"],
            name=op.f("fk_step_runs_execution_id_runbook_executions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_step_runs")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_step_runs_idempotency_key")),
        sa.UniqueConstraint("execution_id", "phase", "position", name=op.f("uq_step_runs_execution_id")),
    )
    op.create_table(
        "runbook_switch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("changed_by", sa.String(length=100), nullable=True),
        sa.Column("changed_at", UtcDateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runbook_switch")),
    )
    with op.batch_alter_table("channels") as t:
        t.add_column(sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("integrations") as t:
        t.add_column(sa.Column("forced_down", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("integrations") as t:
        t.drop_column("forced_down")
    with op.batch_alter_table("channels") as t:
        t.drop_column("paused")
    op.drop_table("runbook_switch")
    op.drop_table("step_runs")
    op.drop_table("runbook_executions")
