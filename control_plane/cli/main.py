"""The `drctl` command line (Typer). Bad input exits 2 with one clear line, in one place: `main`."""

from __future__ import annotations

import sys

import typer

from control_plane.cli import bia, db, demo, drill, notices, reconcile, runbook, serve, sites, tokens, world
from control_plane.cli.errors import exit_on_bad_input

app = typer.Typer(
    help="drctl: resilience and disaster-recovery control plane for order fulfillment.", no_args_is_help=True
)
app.add_typer(db.db_app, name="db")
app.add_typer(tokens.token_app, name="token")
app.add_typer(world.world_app, name="world")
app.add_typer(bia.bia_app, name="bia")
app.add_typer(notices.notices_app, name="notices")
app.add_typer(drill.drill_app, name="drill")
app.add_typer(runbook.runbook_app, name="runbook")
world.world_app.command("history")(bia.world_history)
serve.register(app)
sites.register(app)
reconcile.register(app)
app.command()(demo.demo)


def main() -> None:
    try:
        with exit_on_bad_input():
            code = app(standalone_mode=False)
    except Exception as exc:
        # Typer ships its own copy of click's exceptions: match them by shape, not by class
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # usage errors
            # one line, as for every other bad input (click's own show() adds the usage block)
            print(f"Error: {exc.format_message()}", file=sys.stderr)
            sys.exit(2)
        if hasattr(exc, "exit_code"):  # Exit raised outside a command
            sys.exit(exc.exit_code)
        raise
    except KeyboardInterrupt:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
