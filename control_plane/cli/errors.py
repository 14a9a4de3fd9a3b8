"""The one place where errors become CLI exits: bad input is exit 2 and one line on stderr."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

from control_plane.domain import DomainError, InvalidInput

MAX_LISTED = 10


def one_line(exc: DomainError) -> str:
    """The message and every field problem (up to ten) on a single line."""
    message = str(exc).splitlines()[0] if str(exc) else exc.title
    errors = exc.errors if isinstance(exc, InvalidInput) else []
    listed = [f"{e.path}: {e.message}" for e in errors[:MAX_LISTED] if e.message not in message]
    if len(errors) > MAX_LISTED:
        listed.append(f"and {len(errors) - MAX_LISTED} more")
    return f"error: {message}" + (f" — {'; '.join(listed)}" if listed else "")


@contextmanager
def exit_on_bad_input() -> Iterator[None]:
    """InvalidInput exits 2, any other domain error (a failed run) exits 1; both print one line."""
    try:
        yield
    except DomainError as exc:
        typer.echo(one_line(exc), err=True)
        raise typer.Exit(2 if isinstance(exc, InvalidInput) else 1) from None
