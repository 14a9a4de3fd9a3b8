"""`drctl db`: the database schema."""

from __future__ import annotations

import typer

from control_plane.cli.common import (
    engine_for,
    out,
    redact,
)
from control_plane.settings import Settings

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to the newest revision."""
    from control_plane.store.migrate import current_revision, upgrade

    settings = Settings()
    engine = engine_for(settings)
    upgrade(engine)
    out.print(f"schema at revision {current_revision(engine)} ({redact(settings.database_url)})")
