"""`drctl serve` and `drctl simulate`: run the control plane, or the DCs and integrations it calls."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from control_plane.cli.common import (
    DEFAULT_WORLD,
)
from control_plane.cli.errors import exit_on_bad_input
from control_plane.settings import Settings


def register(app: typer.Typer) -> None:
    app.command()(simulate)
    app.command()(serve)


def simulate(
    world: Annotated[Path, typer.Option(help="world YAML file")] = DEFAULT_WORLD,
) -> None:
    """Serve every DC and integration of a world as real HTTP servers (faults via the admin port)."""
    from chaos.sim_process import targets_from_world
    from chaos.simulator import SimTarget, run_simulator
    from control_plane.world.loader import load_world_file

    w, model = load_world_file(world)
    targets = [SimTarget(t.name, t.kind, t.port, t.capacity_per_hour) for t in targets_from_world(w)]  # type: ignore[arg-type]
    run_simulator(targets, model.simulator.admin_port)


def serve(
    host: Annotated[str | None, typer.Option(help="default DRCTL_HOST or 127.0.0.1")] = None,
    port: Annotated[int | None, typer.Option(help="default DRCTL_PORT or 8000")] = None,
    workers: Annotated[int, typer.Option(min=1, help="worker processes (use every core)")] = 1,
    access_log: Annotated[bool, typer.Option(help="log every request")] = False,
) -> None:
    """Run the control plane's HTTP API."""
    import uvicorn

    from control_plane.schedule import check_settings

    settings = Settings()
    with exit_on_bad_input():  # refuse bad monitoring settings here, in one line, not in each worker
        check_settings(settings)
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # counters from every worker are merged from files here (DESIGN §8, §12)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="drctl-prom-")
    uvicorn.run(
        "control_plane.app:app_from_env",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        access_log=access_log,
        log_level="warning",
    )
