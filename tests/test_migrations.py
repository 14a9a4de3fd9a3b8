"""The migrations build exactly the schema the models declare, on both stores."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from control_plane.store.migrate import upgrade
from control_plane.store.tables import Base

from harness import engine_for


def test_migrations_match_the_models(db_url: str) -> None:
    engine = engine_for(db_url)
    try:
        upgrade(engine)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []
