"""`drctl reconcile`: compare the store with every DC's ledger over the HTTP API; `--repair` fixes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from control_plane.cli.common import JSON, TOKEN, URL, call_api, out, parse_duration, print_json
from control_plane.domain import FieldError, InvalidInput

SHOWN = 50  # findings printed as a table; --json has them all


def register(app: typer.Typer) -> None:
    app.command()(reconcile)


def parse_since(text: str, now: datetime) -> datetime:
    """`36h` / `7d` (that long ago) or an ISO 8601 time with its offset."""
    if text[:1].isdigit() and text.strip()[-1:] in ("m", "h", "d"):
        return now - parse_duration(text, "--since")
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise InvalidInput(
            "--since must be a duration (36h, 7d) or a time with its offset "
            f"(2026-12-01T03:00+09:00); got {text!r}",
            [FieldError("--since", "not a duration or time")],
        )
    return when


def reconcile(
    repair: Annotated[
        bool,
        typer.Option(
            "--repair", help="re-import, re-dispatch or cancel what differs (audited; needs --reason)"
        ),
    ] = False,
    reason: Annotated[str | None, typer.Option(help="why you repair; recorded in the audit log")] = None,
    since: Annotated[
        str | None,
        typer.Option(help="only orders received or changed since: 36h, 7d, or an ISO time (default: all)"),
    ] = None,
    url: URL = "http://127.0.0.1:8000",
    token: TOKEN = None,
    as_json: JSON = False,
) -> None:
    """Compare drctl's orders with every DC's ledger: orders a DC holds that drctl does not know
    (after a database restore), orders drctl has at a DC that does not hold them, orders at two DCs.

    Exit 0 the store and the ledgers agree (after --repair: everything was repaired); 1 differences
    remain (listed), a DC's ledger could not be read, or the control plane cannot be reached;
    2 a bad option (nothing changed).
    """
    if repair and not reason:
        raise InvalidInput("--repair needs --reason (the repair is audited)")
    body: dict[str, object] = {"repair": repair, "reason": reason}
    if since is not None:
        body["since"] = parse_since(since, datetime.now(UTC)).isoformat()
    answer = call_api(url, token, "POST", "/v1/reconciliations", body)
    assert isinstance(answer, dict)
    if as_json:
        print_json(answer)
    else:
        _print(answer)
    if not answer["clean"]:
        raise typer.Exit(1)


def _print(report: dict[str, Any]) -> None:
    for site in report["sites"]:
        if site["error"]:
            out.print(f"[red]{site['site']}: ledger unreadable[/red] ({site['error']})")
    listed = sum(site["listed"] for site in report["sites"])
    out.print(
        f"{len(report['sites'])} DC ledgers ({listed} entries), {report['compared']} orders compared, "
        f"{report['settling']} settling, {report['unverified']} unverified"
    )
    findings = report["findings"]
    if not findings:
        out.print("the store and the ledgers agree")
        return
    table = Table("kind", "action")
    table.add_column("order", no_wrap=True, min_width=36)
    for column in ("store", "held by", "result" if report["repair"] else "detail"):
        table.add_column(column)
    for f in findings[:SHOWN]:
        store = f"{f['store_status']} at {f['store_site'] or '-'}" if f["store_status"] else "unknown"
        held = ", ".join(f"{h['site']} ({h['status']})" for h in f["holders"]) or "-"
        table.add_row(f["kind"], f["action"], f["order_id"], store, held, f["outcome"] or f["detail"])
    out.print(table)
    if len(findings) > SHOWN:
        out.print(f"... and {len(findings) - SHOWN} more (--json lists them all)")
    counts = ", ".join(f"{n} {kind}" for kind, n in report["counts"].items() if n)
    if report["repair"]:
        left = sum(1 for f in findings if not f["repaired"])
        out.print(f"{counts}; repaired {len(findings) - left}, left {left}")
    else:
        out.print(f"{counts}; drctl reconcile --repair --reason '...' fixes what it can")
