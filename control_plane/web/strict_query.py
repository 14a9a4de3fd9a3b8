"""Refuse query parameters an endpoint does not know: `?staus=sent` must not quietly list everything."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request

from control_plane.domain import FieldError, InvalidInput


def known_query(*names: str) -> Callable[[Request], None]:
    """A dependency that answers 422 naming every query parameter not in `names`."""
    allowed = frozenset(names)

    def check(request: Request) -> None:
        unknown = sorted(set(request.query_params) - allowed)
        if unknown:
            raise InvalidInput(
                f"unknown query parameter {', '.join(unknown)}; known: {', '.join(sorted(allowed))}",
                [FieldError(f"query.{name}", "not a parameter of this call") for name in unknown],
            )

    return check
