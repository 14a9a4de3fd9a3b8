"""`drctl token`: API tokens, shown once and stored hashed."""

from __future__ import annotations

from typing import Annotated

import typer

from control_plane.cli.common import (
    JSON,
    engine_for,
    out,
    print_json,
)
from control_plane.domain import InvalidInput
from control_plane.settings import Settings

token_app = typer.Typer(help="API tokens.", no_args_is_help=True)


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help="viewer | ingest | operator | admin")],
    name: Annotated[str | None, typer.Option(help="a unique name; shown in the audit log")] = None,
    as_json: JSON = False,
) -> None:
    """Create an API token. It is printed once; only its hash is stored."""
    from datetime import UTC, datetime

    from control_plane.auth import repository as tokens
    from control_plane.store.db import make_session_factory

    if role not in tokens.ROLES:
        raise InvalidInput(f"--role must be one of {', '.join(tokens.ROLES)}, not {role!r}")
    now = datetime.now(UTC)
    name = name or f"{role}-{now:%Y%m%d%H%M%S%f}"
    sessions = make_session_factory(engine_for(Settings()))
    with sessions.begin() as s:
        token = tokens.create_token(s, name, role, now)
        tokens.audit(s, now, "cli", "token.create", f"token:{name}", after={"name": name, "role": role})
    if as_json:
        print_json({"name": name, "role": role, "token": token})
    else:
        out.print(f"token {name!r} ({role}); store it now, it is not shown again:")
        print(token)
