"""`drctl demo`: the sample world on the embedded store (the work itself is in `demo_run`, loaded lazily)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from control_plane.cli.common import DEFAULT_WORLD
from control_plane.settings import Settings


def demo(
    port: Annotated[int, typer.Option(help="control plane port")] = 8000,
    rate: Annotated[float, typer.Option(help="synthetic orders per second")] = 1.0,
    world: Annotated[Path, typer.Option(help="world YAML file")] = DEFAULT_WORLD,
) -> None:
    """Load the sample world, start the simulator, the control plane and an order stream."""
    from control_plane.cli.demo_run import run_demo

    run_demo(Settings(), world, port, rate)
