"""`drctl notices list`: the delay notices customers were sent (or will be), over the HTTP API."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated
from urllib.parse import urlencode

import typer
from rich.table import Table

from control_plane.cli.common import JSON, URL, call_api, out, print_json

notices_app = typer.Typer(help="Customer delay notices.", no_args_is_help=True)


class NoticeStatus(StrEnum):
    pending = "pending"
    sent = "sent"
    failed = "failed"
    suppressed = "suppressed"


@notices_app.command("list")
def list_notices(
    order: Annotated[str | None, typer.Option(help="only this order's notices")] = None,
    incident: Annotated[int | None, typer.Option(min=1, help="only this incident's notices")] = None,
    status: Annotated[NoticeStatus | None, typer.Option(help="only notices in this state")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    url: URL = "http://127.0.0.1:8000",
    token: Annotated[str | None, typer.Option(envvar="DRCTL_TOKEN", help="a viewer token")] = None,
    as_json: JSON = False,
) -> None:
    """List delay notices, newest first.

    Exit 0 shown; 1 the control plane cannot be reached; 2 a bad option or token.
    """
    query = {"order": order, "incident": incident, "status": status.value if status else None, "limit": limit}
    path = "/v1/notices?" + urlencode({k: v for k, v in query.items() if v is not None})
    notices = call_api(url, token, "GET", path)
    assert isinstance(notices, list)
    if as_json:
        print_json(notices)
        return
    table = Table("id")
    # the order id whole and on one line: it is what an operator greps and copies into --order
    table.add_column("order", no_wrap=True, min_width=36)
    for column in ("incident", "channel", "via", "status", "reason", "sent at"):
        table.add_column(column)
    for n in notices:
        table.add_row(
            str(n["id"]),
            n["order_id"],
            str(n["incident_id"] or "-"),
            n["channel"],
            n["sent_via"] or "-",
            n["status"],
            n["reason"],
            (n["sent_at"] or "-")[:19],
        )
    out.print(table)
    if not notices:
        out.print("no notices")
