"""Probes a drill may read, each with the parameters it accepts: the API and its metrics, and the
built-ins a drill is judged by (orders lost, duplicated and held; intake p99; notices unsent)."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from jsonpath_ng import parse as parse_jsonpath
from jsonpath_ng.exceptions import JsonPathParserError
from prometheus_client.parser import text_string_to_metric_families
from pydantic import Field, field_validator

from chaos.drill.context import DrillContext
from chaos.drill.measure import percentile
from chaos.drill.params import NoParams, Params
from chaos.drill.reconcile import reconcile


class HttpGet(Params):
    path: Annotated[str, Field(pattern=r"^/[^\s]*$", max_length=500)]
    jsonpath: Annotated[str, Field(max_length=500)] | None = None  # none: the probe is the status code
    as_role: Literal["viewer", "none"] = "viewer"

    @field_validator("jsonpath")
    @classmethod
    def _parses(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_jsonpath(value)
            except (JsonPathParserError, Exception) as exc:  # the parser raises bare Exceptions too
                raise ValueError(f"not a JSONPath: {exc}") from None
        return value


class Metric(Params):
    name: Annotated[str, Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")]
    labels: dict[str, str] = Field(default_factory=dict)
    aggregate: Literal["sum", "max", "min"] = "sum"  # over the series matching the labels


class Window(Params):
    window_s: Annotated[float, Field(gt=0, le=3600)] = 10.0


def http_get(ctx: DrillContext, p: HttpGet) -> Any:
    resp = ctx.get(p.path, ctx.tokens.viewer if p.as_role == "viewer" else None)
    if p.jsonpath is None:
        return resp.status_code
    try:
        body = resp.json()
    except ValueError:
        return None
    found = [m.value for m in parse_jsonpath(p.jsonpath).find(body)]
    return found[0] if len(found) == 1 else (found or None)


def metric(ctx: DrillContext, p: Metric) -> float | None:
    text = ctx.get("/metrics").text
    values = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == p.name and all(sample.labels.get(k) == v for k, v in p.labels.items())
    ]
    if not values:
        return None
    return float({"sum": sum, "max": max, "min": min}[p.aggregate](values))


def _dcs(ctx: DrillContext) -> list[str]:
    return [site["code"] for site in ctx.get("/v1/sites", ctx.tokens.viewer).raise_for_status().json()]


def orders_lost(ctx: DrillContext, _: NoParams) -> int:
    return len(reconcile(ctx, _dcs(ctx)).lost)


def orders_duplicated(ctx: DrillContext, _: NoParams) -> int:
    return len(reconcile(ctx, _dcs(ctx)).duplicated)


def orders_held(ctx: DrillContext, _: NoParams) -> int:
    return len(ctx.get("/v1/orders", ctx.tokens.viewer, status="held", limit=1000).raise_for_status().json())


def intake_p99_ms(ctx: DrillContext, p: Window) -> float | None:
    since = time.time() - p.window_s
    latencies = [o.latency_ms for o in ctx.outcomes.all() if o.t >= since]
    return percentile(latencies, 99)


def notices_unsent(ctx: DrillContext, _: NoParams) -> int:
    """Notices owed and not (yet) sent: pending or failed."""
    total = 0
    for status in ("pending", "failed"):
        resp = ctx.get("/v1/notices", ctx.tokens.viewer, status=status, limit=1000).raise_for_status()
        total += len(resp.json())
    return total
