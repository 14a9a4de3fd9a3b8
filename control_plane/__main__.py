"""`python -m control_plane` runs the drctl CLI."""

from control_plane.cli.main import main

main()
