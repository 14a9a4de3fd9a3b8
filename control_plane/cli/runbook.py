"""`drctl runbook list|validate|run|approve|abort|pause|resume`: runbooks as code.

`validate` reads files here (no control plane needed); the others call the HTTP API as any client.
Exit codes: 0 done; 1 refused (409: not waiting, ended) or the control plane unreachable; 2 a bad
file, option or parameter (nothing started).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from control_plane.cli.common import JSON, TOKEN, URL, call_api, file_or_shipped, out, print_json
from control_plane.domain import InvalidInput
from control_plane.runbook_runs.library import SHIPPED
from runbooks.model import load_runbook_file

runbook_app = typer.Typer(help="Runbooks as code: list, validate, run, approve, abort.", no_args_is_help=True)


@runbook_app.command("validate")
def validate(
    files: Annotated[list[str], typer.Argument(help="runbook files, or shipped runbook names")],
) -> None:
    """Check runbook files: every error with its path. Exit 0 all valid, 2 otherwise."""
    bad = 0
    for name in files:
        try:
            book = load_runbook_file(file_or_shipped(name, SHIPPED, "runbook"))
        except InvalidInput as exc:
            bad += 1
            if not exc.errors:  # no such file, not YAML: the message says which and where
                typer.echo(str(exc), err=True)
            source = str(exc).split(": ", 1)[0]
            for error in exc.errors:
                typer.echo(f"{source}: {error.path}: {error.message}", err=True)
            continue
        out.print(f"{name}: ok — {book.name}, {len(book.steps)} steps, {len(book.triggers)} triggers")
    if bad:
        raise typer.Exit(2)


def _param(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise InvalidInput(f"--param must be NAME=VALUE, got {text!r}")
    try:
        parsed = json.loads(value)  # 600 and true become a number and a boolean
    except ValueError:
        parsed = value
    return name, parsed if isinstance(parsed, str | int | float | bool) else value


@runbook_app.command("list")
def list_runbooks(url: URL = "http://127.0.0.1:8000", token: TOKEN = None, as_json: JSON = False) -> None:
    """The runbooks the control plane knows, and whether alerts may start them."""
    answer = call_api(url, token, "GET", "/v1/runbooks")
    assert isinstance(answer, dict)
    if as_json:
        print_json(answer)
        return
    table = Table("runbook", "triggers", "steps", "description")
    for b in answer["runbooks"]:
        triggers = ", ".join(t.get("alert") or t.get("incident", "") for t in b["triggers"]) or "-"
        table.add_row(b["name"], triggers, str(len(b["steps"])), b["description"][:80])
    out.print(table)
    switch = answer["automatic_starts"]
    out.print("automatic starts: " + (f"PAUSED ({switch['reason']})" if switch["paused"] else "on"))


def _show(execution: dict[str, Any]) -> None:
    out.print(f"execution #{execution['id']} of {execution['runbook']}: {execution['status']}")
    table = Table("step", "action", "status", "outcome")
    for step in execution["steps"]:
        outcome = step["error"] or json.dumps(step["output"], ensure_ascii=False)[:100]
        table.add_row(
            f"{step['step']}{' (rollback)' if step['phase'] == 'undo' else ''}",
            step["action"],
            step["status"],
            outcome,
        )
    out.print(table)


def _post_and_show(url: str, token: str | None, path: str, body: dict[str, object], as_json: bool) -> None:
    """POST to an execution's route; print the execution it answers with."""
    answer = call_api(url, token, "POST", path, body)
    assert isinstance(answer, dict)
    print_json(answer) if as_json else _show(answer)


@runbook_app.command("run")
def run(
    name: Annotated[str, typer.Argument(help="the runbook (drctl runbook list)")],
    param: Annotated[list[str] | None, typer.Option("--param", help="NAME=VALUE (repeatable)")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="show what every step would do; change nothing")
    ] = False,
    url: URL = "http://127.0.0.1:8000",
    token: TOKEN = None,
    as_json: JSON = False,
) -> None:
    """Start a runbook (the leader runs its steps), or dry-run it."""
    params = dict(_param(p) for p in param or [])
    _post_and_show(
        url, token, f"/v1/runbooks/{name}/executions", {"params": params, "dry_run": dry_run}, as_json
    )


@runbook_app.command("approve")
def approve(
    execution: Annotated[int, typer.Argument(min=1, help="the execution waiting for approval")],
    comment: Annotated[str | None, typer.Option(help="recorded with the approval")] = None,
    url: URL = "http://127.0.0.1:8000",
    token: TOKEN = None,
    as_json: JSON = False,
) -> None:
    """Approve the step an execution waits at (by another operator than the one who started it)."""
    _post_and_show(url, token, f"/v1/runbook-executions/{execution}/approve", {"comment": comment}, as_json)


@runbook_app.command("abort")
def abort(
    execution: Annotated[int, typer.Argument(min=1)],
    reason: Annotated[str, typer.Option(help="why; recorded in the audit log and the incident")],
    url: URL = "http://127.0.0.1:8000",
    token: TOKEN = None,
    as_json: JSON = False,
) -> None:
    """Stop an execution before its next step."""
    _post_and_show(url, token, f"/v1/runbook-executions/{execution}/abort", {"reason": reason}, as_json)


@runbook_app.command("pause")
def pause(
    reason: Annotated[str, typer.Option(help="why alerts may not start runbooks now")],
    url: URL = "http://127.0.0.1:8000",
    token: TOKEN = None,
) -> None:
    """The kill switch: no alert starts a runbook until `drctl runbook resume`."""
    call_api(url, token, "POST", "/v1/runbooks/pause", {"reason": reason})
    out.print("automatic runbook starts paused")


@runbook_app.command("resume")
def resume(
    reason: Annotated[str, typer.Option(help="why alerts may start runbooks again")],
    url: URL = "http://127.0.0.1:8000",
    token: TOKEN = None,
) -> None:
    """Let alerts start runbooks again."""
    call_api(url, token, "POST", "/v1/runbooks/resume", {"reason": reason})
    out.print("automatic runbook starts resumed")
