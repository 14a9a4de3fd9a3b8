"""`drctl token`: API tokens, shown once and stored hashed; listed without secrets; revoked."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

import typer

from control_plane.cli.common import (
    JSON,
    engine_for,
    out,
    parse_duration,
    print_json,
)
from control_plane.domain import InvalidInput, NotFound
from control_plane.settings import Settings

token_app = typer.Typer(help="API tokens.", no_args_is_help=True)

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _sessions():  # type: ignore[no-untyped-def]
    from control_plane.store.db import make_session_factory

    return make_session_factory(engine_for(Settings()))


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help="viewer | ingest | operator | admin | hook (Alertmanager's)")],
    name: Annotated[str | None, typer.Option(help="a unique name; shown in the audit log")] = None,
    expires: Annotated[str | None, typer.Option(help="lifetime, e.g. 30d or 12h (default: none)")] = None,
    channel: Annotated[
        list[str] | None, typer.Option(help="bind an ingest token to a sales channel (repeatable)")
    ] = None,
    as_json: JSON = False,
) -> None:
    """Create an API token. It is printed once; only its hash is stored."""
    from control_plane.auth import repository as tokens
    from control_plane.world import repository as world_repo

    if role not in tokens.ALL_ROLES:
        raise InvalidInput(f"--role must be one of {', '.join(tokens.ALL_ROLES)}, not {role!r}")
    if name is not None and not NAME.match(name):
        raise InvalidInput(f"--name must be letters, digits, '.', '_' or '-' (up to 100), not {name!r}")
    if channel and role != "ingest":
        raise InvalidInput(f"--channel binds an ingest token; a {role} token is not bound to channels")
    now = datetime.now(UTC)
    expires_at = now + parse_duration(expires, "--expires") if expires is not None else None
    name = name or f"{role}-{now:%Y%m%d%H%M%S%f}"
    with _sessions().begin() as s:
        if channel:
            known = {c.code for c in world_repo.list_channels(s)}
            unknown = sorted(set(channel) - known)
            if unknown:
                raise InvalidInput(
                    f"--channel {', '.join(unknown)}: not a channel of the loaded world "
                    f"(known: {', '.join(sorted(known)) or 'none; run drctl world load'})"
                )
        token = tokens.create_token(s, name, role, now, expires_at, channel)
        after = {"name": name, "role": role, "expires_at": expires_at and expires_at.isoformat()}
        tokens.audit(s, now, "cli", "token.create", f"token:{name}", after={**after, "channels": channel})
    if as_json:
        print_json({**after, "channels": sorted(set(channel)) if channel else None, "token": token})
    else:
        until = f", expires {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else ""
        out.print(f"token {name!r} ({role}{until}); store it now, it is not shown again:")
        print(token)


@token_app.command("list")
def token_list(as_json: JSON = False) -> None:
    """Every token: name, role, channels, created, expires, last used, revoked (never the secret)."""
    from rich.table import Table

    from control_plane.auth import repository as tokens

    now = datetime.now(UTC)
    with _sessions()() as s:
        rows = [
            {
                "name": r.name,
                "role": r.role,
                "channels": r.channels,
                "created_at": r.created_at.isoformat(),
                "expires_at": r.expires_at and r.expires_at.isoformat(),
                "last_used_at": r.last_used_at and r.last_used_at.isoformat(),
                "revoked_at": r.revoked_at and r.revoked_at.isoformat(),
                "live": r.revoked_at is None and (r.expires_at is None or r.expires_at > now),
            }
            for r in tokens.list_tokens(s)
        ]
    if as_json:
        print_json(rows)
        return
    table = Table("name", "role", "channels", "created", "expires", "last used", "state")
    for r in rows:
        state = "live" if r["live"] else "revoked" if r["revoked_at"] else "expired"
        table.add_row(
            str(r["name"]),
            str(r["role"]),
            ", ".join(r["channels"] or ()) or "any",  # type: ignore[arg-type]
            str(r["created_at"])[:16],
            str(r["expires_at"] or "never")[:16],
            str(r["last_used_at"] or "never")[:16],
            state,
        )
    out.print(table)


@token_app.command("revoke")
def token_revoke(
    name: Annotated[str, typer.Argument(help="the token's name (drctl token list)")],
    reason: Annotated[str, typer.Option(help="why: kept in the audit log")],
    as_json: JSON = False,
) -> None:
    """Revoke a token: every replica refuses it within its token cache's 5 s."""
    from control_plane.auth import repository as tokens

    if len(reason.strip()) < 3:
        raise InvalidInput("--reason must say why (at least 3 characters)")
    now = datetime.now(UTC)
    with _sessions().begin() as s:
        try:
            row, was_live = tokens.revoke_token(s, name, now)
        except NotFound:  # a typo'd name is bad input (exit 2), and nothing is revoked
            raise InvalidInput(f"no token named {name!r} (drctl token list shows them)") from None
        if was_live:
            tokens.audit(
                s, now, "cli", "token.revoke", f"token:{name}",
                before={"revoked_at": None}, after={"revoked_at": now.isoformat()}, reason=reason,
            )  # fmt: skip
        revoked_at = row.revoked_at
    result = {"name": name, "revoked_at": revoked_at and revoked_at.isoformat(), "changed": was_live}
    if as_json:
        print_json(result)
    else:
        out.print(f"token {name!r} revoked" if was_live else f"token {name!r} was revoked already")
