"""The `drctl` command line: one module per command group, bad input mapped to exit 2 in `errors`."""

from control_plane.cli.main import main

__all__ = ["main"]
