"""`python -m control_plane` runs the drctl CLI."""

from control_plane.cli import main

main()
