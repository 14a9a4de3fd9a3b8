"""customer delay notices: letters (the outbox, one per customer and incident) and per-order notices

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from control_plane.store.types import UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "notice_letters",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("incident_id", _ID, sa.ForeignKey("incidents.id"), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("provider_id", sa.String(length=300), nullable=True),
        sa.Column("sent_via", sa.String(length=32), nullable=True),
        sa.Column("detail", sa.String(length=200), nullable=True),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_notice_letters_status_next", "notice_letters", ["status", "next_attempt_at"])
    op.create_index(
        "ix_notice_letters_customer", "notice_letters", ["customer_id", "incident_id", "kind", "status"]
    )
    op.create_index("ix_notice_letters_incident_id", "notice_letters", ["incident_id"])
    op.create_table(
        "notices",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column(
            "order_id", sa.String(length=36), sa.ForeignKey("orders.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("incident_id", _ID, sa.ForeignKey("incidents.id"), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("dedupe_key", sa.String(length=120), nullable=False),
        sa.Column("letter_id", _ID, sa.ForeignKey("notice_letters.id"), nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("locale", sa.String(length=8), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("cause_site", sa.String(length=64), nullable=True),
        sa.Column("promised_by", UtcDateTime(timezone=True), nullable=False),
        sa.Column("eta", UtcDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("provider_id", sa.String(length=300), nullable=True),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", UtcDateTime(timezone=True), nullable=True),
        sa.Column("done_at", UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe_key"),
    )
    for column in ("order_id", "incident_id", "letter_id", "created_at", "done_at"):
        op.create_index(f"ix_notices_{column}", "notices", [column])


def downgrade() -> None:
    op.drop_table("notices")
    op.drop_table("notice_letters")
