"""The one place where errors become CLI exits (DESIGN §6), each printed as one line on stderr.

- exit 2, usage or bad input: a wrong option (click), InvalidInput, a bad DRCTL_* setting, and every 4xx
  answer of the API except 409 (422 bad input, 404 unknown site, 401/403 token or role);
- exit 1, refused or failed: a 409 from the API (`Refused`: a safety rule, or another change of the
  site in progress), a control plane that cannot be reached or broke off (`Unreachable`), a 5xx,
  and any other domain error (a run that failed).

A control plane that cannot be reached is exit 1, not 2: the command was right, the action did not
happen; an operator at 3 a.m. (or a script) retries the same command once it is back, rather than
looking for a typo. The line says whether the request was sent at all: a connection refused means
nothing was changed; a request cut off after it was sent may have been applied (`drctl status`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import typer
from pydantic import ValidationError

from control_plane.domain import Conflict, DomainError, FieldError, InvalidInput

MAX_LISTED = 10
MAX_DETAIL = 300


class Refused(Conflict):
    """The control plane refused the change (409), naming the rule and its numbers: exit 1."""

    title = "Refused"

    def __str__(self) -> str:
        message = super().__str__()
        prefix = f"{self.rule}: "
        message = message.removeprefix(prefix)  # the API's detail usually starts with the rule's name
        numbers = " ".join(f"{k}={v}" for k, v in self.details.items())
        line = f"refused by rule {self.rule}: {message}" + (f" ({numbers})" if numbers else "")
        # a safety rule can be overridden, audited; a change in progress or a repeat cannot
        return line + ("; --force with a --reason overrides it (audited)" if self.overridable else "")

    @property
    def overridable(self) -> bool:
        return self.rule not in ("one_change_per_site", "already_failed_over", "already_accepting")


class Unreachable(DomainError):
    """The control plane could not be reached, or the exchange broke off: exit 1."""

    title = "Control plane unreachable"


class ApiFailed(DomainError):
    """The control plane answered 5xx: the action failed there, exit 1."""

    title = "Control plane error"


def _flat(text: object, limit: int = MAX_DETAIL) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def from_api_answer(status: int, problem: Mapping[str, object], text: str) -> DomainError:
    """The exception an API error answer becomes (problem+json when `problem` is not empty)."""
    detail = _flat(problem.get("detail") or problem.get("title") or text or f"HTTP {status}")
    if status == 409:
        details = problem.get("details")
        return Refused(
            detail,
            rule=str(problem.get("rule") or "conflict"),
            details=dict(details) if isinstance(details, Mapping) else None,
        )
    if status >= 500:
        return ApiFailed(f"{status} {detail}")
    listed = problem.get("errors")
    errors = [
        FieldError(str(e.get("path", "")), _flat(e.get("message", ""), 120))
        for e in (listed if isinstance(listed, list) else [])
        if isinstance(e, Mapping)
    ]
    return InvalidInput(f"{status} {detail}", errors)


def one_line(exc: DomainError) -> str:
    """The message and every field problem (up to ten) on a single line."""
    message = str(exc).splitlines()[0] if str(exc) else exc.title
    errors = exc.errors if isinstance(exc, InvalidInput) else []
    listed = [f"{e.path}: {e.message}" for e in errors[:MAX_LISTED] if e.message not in message]
    if len(errors) > MAX_LISTED:
        listed.append(f"and {len(errors) - MAX_LISTED} more")
    return f"error: {message}" + (f" — {'; '.join(listed)}" if listed else "")


def exit_code(exc: DomainError) -> int:
    """2 for bad input, 1 for everything refused or failed."""
    return 2 if isinstance(exc, InvalidInput) else 1


@contextmanager
def exit_on_bad_input() -> Iterator[None]:
    """InvalidInput exits 2, any other domain error (refused, unreachable, failed) exits 1; one line."""
    try:
        yield
    except DomainError as exc:
        typer.echo(one_line(exc), err=True)
        raise typer.Exit(exit_code(exc)) from None
    except ValidationError as exc:
        if exc.title != "Settings":
            raise
        # a DRCTL_* variable with a bad value: name it, as for any other bad input
        first = exc.errors()[0]
        name = "DRCTL_" + "_".join(str(part) for part in first["loc"]).upper()
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        typer.echo(f"bad setting {name}: {first['msg']}{more}", err=True)
        raise typer.Exit(2) from None
