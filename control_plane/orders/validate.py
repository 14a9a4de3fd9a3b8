"""Checks of an order against the loaded world (known SKUs and regions), with field paths."""

from __future__ import annotations

from collections.abc import Mapping

from control_plane.domain import FieldError, InvalidInput, OrderRequest, Region, Sku


def check_against_world(req: OrderRequest, catalog: Mapping[str, Sku], regions: Mapping[str, Region]) -> None:
    errors: list[FieldError] = []
    if req.ship_to.region not in regions:
        errors.append(FieldError("ship_to.region", f"unknown region {req.ship_to.region!r}"))
    for i, line in enumerate(req.lines):
        if line.sku not in catalog:
            errors.append(FieldError(f"lines[{i}].sku", f"unknown SKU {line.sku!r}"))
    if errors:
        raise InvalidInput(f"{errors[0].path}: {errors[0].message}", errors)
