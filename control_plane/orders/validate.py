"""Checks of an order against the loaded world (known channels, SKUs and regions), with field paths."""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass
from datetime import datetime, timedelta

from control_plane.domain import FieldError, InvalidInput, OrderRequest, Region, Sku


def check_against_world(
    req: OrderRequest,
    catalog: Mapping[str, Sku],
    regions: Mapping[str, Region],
    channels: Set[str],
) -> None:
    errors: list[FieldError] = []
    if req.channel not in channels:
        # each channel is a metric label: one made up per request would grow the exposition forever
        known = ", ".join(sorted(channels)) or "none: reload the world with a channels section"
        errors.append(FieldError("channel", f"unknown sales channel {req.channel!r} (known: {known})"))
    if req.ship_to.region not in regions:
        errors.append(FieldError("ship_to.region", f"unknown region {req.ship_to.region!r}"))
    for i, line in enumerate(req.lines):
        if line.sku not in catalog:
            errors.append(FieldError(f"lines[{i}].sku", f"unknown SKU {line.sku!r}"))
    if errors:
        raise InvalidInput(f"{errors[0].path}: {errors[0].message}", errors)


@dataclass(frozen=True, slots=True)
class TimeLimits:
    max_age: timedelta  # how long ago an order may say it was placed
    clock_skew: timedelta  # how far ahead of our clock a client's may run
    max_promise: timedelta  # how far past placed_at a promise may lie


def _refuse(path: str, message: str) -> InvalidInput:
    return InvalidInput(f"{path}: {message}", [FieldError(path, message)])


def check_placed(placed: datetime, now: datetime, limits: TimeLimits) -> None:
    if placed > now + limits.clock_skew:
        raise _refuse("placed_at", f"{placed.isoformat()} is in the future (now {now.isoformat()})")
    if placed < now - limits.max_age:
        raise _refuse("placed_at", f"{placed.isoformat()} is more than {limits.max_age} ago")


def check_promised(promised: datetime, placed: datetime, limits: TimeLimits) -> None:
    if promised < placed:
        raise _refuse("promised_by", "is before placed_at")
    if promised > placed + limits.max_promise:
        raise _refuse("promised_by", f"is more than {limits.max_promise} after placed_at")
