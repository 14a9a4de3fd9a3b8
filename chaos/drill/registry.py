"""The only actions and probes an experiment may name, with the parameters each accepts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from chaos.drill import actions as a
from chaos.drill import probes as p
from chaos.drill.context import DrillContext


@dataclass(frozen=True, slots=True)
class Spec:
    params: type[BaseModel]
    run: Callable[[DrillContext, Any], Any]

    def __call__(self, ctx: DrillContext, raw: Mapping[str, Any]) -> Any:
        return self.run(ctx, self.params.model_validate(dict(raw)))


ACTIONS: Mapping[str, Spec] = {
    "site_fault": Spec(a.SiteFault, a.site_fault),
    "integration_outage": Spec(a.IntegrationOutage, a.integration_outage),
    "clear_fault": Spec(a.ClearFault, a.clear_fault),
    "clear_faults": Spec(a.NoParams, a.clear_faults),
    "kill_control_plane": Spec(a.KillProcess, a.kill_control_plane),
    "drop_database_connections": Spec(a.NoParams, a.drop_database_connections),
    "breaker_open": Spec(a.BreakerOverride, a.breaker_open),
    "breaker_close": Spec(a.BreakerOverride, a.breaker_close),
    "breaker_reset": Spec(a.BreakerOverride, a.breaker_reset),
    "failover": Spec(a.Failover, a.failover),
    "failback": Spec(a.Failback, a.failback),
}

PROBES: Mapping[str, Spec] = {
    "http_get": Spec(p.HttpGet, p.http_get),
    "metric": Spec(p.Metric, p.metric),
    "orders_lost": Spec(p.NoParams, p.orders_lost),
    "orders_duplicated": Spec(p.NoParams, p.orders_duplicated),
    "orders_held": Spec(p.NoParams, p.orders_held),
    "intake_p99_ms": Spec(p.Window, p.intake_p99_ms),
    "notices_unsent": Spec(p.NoParams, p.notices_unsent),
}
