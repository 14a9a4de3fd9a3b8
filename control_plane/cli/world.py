"""`drctl world`: load and check the world file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from control_plane.cli.common import (
    JSON,
    engine_for,
    out,
    print_json,
)
from control_plane.settings import Settings

world_app = typer.Typer(help="The world: sites, regions, integrations, catalog, stock.", no_args_is_help=True)


@world_app.command("load")
def world_load(
    file: Annotated[Path, typer.Argument(help="world YAML file")],
    as_json: JSON = False,
) -> None:
    """Validate a world file and store it (nothing is written if any part is invalid)."""
    from datetime import UTC, datetime

    from control_plane.auth import repository as tokens
    from control_plane.store.db import make_session_factory
    from control_plane.world.loader import load_world_file
    from control_plane.world.repository import save_world

    world, _ = load_world_file(file)
    now = datetime.now(UTC)
    sessions = make_session_factory(engine_for(Settings()))
    with sessions.begin() as s:
        counts = save_world(s, world, now)
        tokens.audit(s, now, "cli", "world.load", f"world:{world.name}", after=dict(counts), reason=str(file))
    if as_json:
        print_json({"world": world.name, **counts})
    else:
        out.print(f"loaded world {world.name!r}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
