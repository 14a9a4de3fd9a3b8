"""Alembic environment: the engine is handed in by control_plane.store.migrate."""

from __future__ import annotations

from alembic import context

from control_plane.store.tables import Base

config = context.config
engine = config.attributes["engine"]

# Alembic owns the transaction, so a migration may step out of it (CREATE INDEX CONCURRENTLY)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
