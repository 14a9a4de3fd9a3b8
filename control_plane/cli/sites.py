"""`drctl failover`, `failback`, `status`: operator actions over the HTTP API, like any client."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from control_plane.cli.common import (
    JSON,
    TOKEN,
    URL,
    call_api,
    out,
    parse_duration,
    print_json,
    print_options,
    print_rules,
)


def register(app: typer.Typer) -> None:
    for command in (failover, failback, status):
        app.command()(command)


def failover(
    site: Annotated[str, typer.Argument(help="the site to take out of routing")],
    reason: Annotated[str, typer.Option(help="why; recorded in the audit log and the incident")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="show the plan and the rules; change nothing")
    ] = False,
    to: Annotated[
        list[str] | None, typer.Option("--to", help="limit where orders may go (repeatable)")
    ] = None,
    force: Annotated[bool, typer.Option(help="override refusing safety rules (audited)")] = False,
    expires: Annotated[
        str | None, typer.Option(help="propose (or, by policy, do) the failback after e.g. 2h or 1d")
    ] = None,
    url: URL = "http://127.0.0.1:8000",
    token: TOKEN = None,
    as_json: JSON = False,
) -> None:
    """Stop routing to a site and move its in-flight orders to backups (safety rules apply).

    Exit 0 done; 1 refused by a safety rule (named with its numbers; --force with a --reason
    overrides, audited), failed, or the control plane cannot be reached (nothing changed: retry
    when it is back); 2 a bad option, an unknown site or input the API rejects (nothing changed).
    """
    body: dict[str, object] = {"reason": reason, "dry_run": dry_run, "force": force, "targets": to or None}
    if expires is not None:
        body["expires_in"] = parse_duration(expires, "--expires").total_seconds()
    answer = call_api(url, token, "POST", f"/v1/sites/{site}/failover", body)
    if as_json:
        print_json(answer)
        return
    assert isinstance(answer, dict)
    print_rules(answer["rules"])
    plan = answer["plan"]
    out.print(f"plan: {plan['orders_to_move']} orders, per target {plan['per_target']}, {plan['late']} late")
    if "options" in answer:
        print_options(answer["options"], answer["recommendation"])
    if not dry_run:
        out.print(f"moved: {answer['moved']}  incident #{answer['incident_id']}")
    if answer.get("expires_at"):
        out.print(f"expires at {answer['expires_at']}: a failback is proposed then")


def failback(
    site: Annotated[str, typer.Argument(help="the site to put back into routing")],
    reason: Annotated[str, typer.Option(help="why; recorded in the audit log")] = "recovered",
    dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
    force: Annotated[bool, typer.Option(help="override refusing safety rules (audited)")] = False,
    ramp: Annotated[
        float,
        typer.Option(min=0, max=86_400, help="seconds to ramp from 10% to 100% of its orders (0: at once)"),
    ] = 0,
    url: URL = "http://127.0.0.1:8000",
    token: TOKEN = None,
    as_json: JSON = False,
) -> None:
    """Cancel at the site what was moved away, then reopen routing to it (--ramp: gradually).

    Exit 0 done; 1 refused by a safety rule (named with its numbers; --force with a --reason
    overrides, audited), failed, or the control plane cannot be reached (nothing changed: retry
    when it is back); 2 a bad option, an unknown site or input the API rejects (nothing changed).
    """
    answer = call_api(
        url,
        token,
        "POST",
        f"/v1/sites/{site}/failback",
        {"reason": reason, "dry_run": dry_run, "force": force, "ramp_s": ramp},
    )
    if as_json:
        print_json(answer)
        return
    assert isinstance(answer, dict)
    print_rules(answer["rules"])
    out.print(f"health now: {answer['health_now']}; cancels owed there: {answer['cancel_pending']}")
    if not dry_run and answer.get("ramp_s"):
        out.print(f"ramping: 10% of its orders now, 100% in {answer['ramp_s']:g} s")


def status(
    url: URL = "http://127.0.0.1:8000",
    token: Annotated[str | None, typer.Option(envvar="DRCTL_TOKEN", help="a viewer token")] = None,
    as_json: JSON = False,
) -> None:
    """Show every site: accepting, health, breaker, load.

    Exit 0 shown; 1 the control plane cannot be reached; 2 a bad option or token.
    """
    sites = call_api(url, token, "GET", "/v1/sites")
    assert isinstance(sites, list)
    if as_json:
        print_json(sites)
        return
    table = Table("site", "region", "accepting", "health", "breaker", "load", "tier")
    for s in sites:
        table.add_row(
            s["code"],
            s["region"],
            "yes" if s["accepting"] else "NO",
            s["health"],
            s["breaker"],
            f"{s['load_ratio']:.0%}",
            str(s["tier"] or "-"),
        )
    out.print(table)
