"""`/v1/integrations`, `/v1/health-checks`, `/v1/scheduler`: what the probes see and who runs them."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from control_plane.auth.deps import SessionDep, Viewer
from control_plane.domain import Health, NotFound
from control_plane.monitoring import repository as health_repo
from control_plane.store.tables import HealthCheckRow
from control_plane.web.params import Code
from control_plane.world import repository as world_repo
from failover.impairment import Impairment, channel_impairments, site_impairments

router = APIRouter(tags=["monitoring"])


class ImpairmentOut(BaseModel):
    subject: str
    reason: str


class IntegrationOut(BaseModel):
    code: str
    name: str
    kind: str
    health: str
    scope: list[str]
    fallback: str | None
    impaired_sites: list[ImpairmentOut]
    impaired_channels: list[ImpairmentOut]
    last_probe_at: datetime | None = None
    last_detail: str = ""


class TransitionOut(BaseModel):
    at: datetime
    from_health: str
    to_health: str
    reason: str


class HealthCheckOut(BaseModel):
    target: str
    health: str
    since: datetime | None
    consecutive_failures: int
    consecutive_successes: int
    breaker_open: bool
    last_probe_at: datetime | None
    last_latency_s: float | None
    last_detail: str
    transitions: list[TransitionOut] | None = None


def _check_out(row: HealthCheckRow, transitions: list[Any] | None = None) -> HealthCheckOut:
    return HealthCheckOut(
        target=row.target,
        health=row.health,
        since=row.since,
        consecutive_failures=row.consecutive_failures,
        consecutive_successes=row.consecutive_successes,
        breaker_open=row.breaker_open,
        last_probe_at=row.last_probe_at,
        last_latency_s=row.last_latency_s,
        last_detail=row.last_detail or "",
        transitions=None if transitions is None else [_transition_out(t) for t in transitions],
    )


def _transition_out(t: Any) -> TransitionOut:
    return TransitionOut(at=t.at, from_health=t.from_health, to_health=t.to_health, reason=t.reason)


def _integrations(session: SessionDep) -> list[IntegrationOut]:
    sites = [world_repo.site_from_row(r) for r in world_repo.list_site_rows(session)]
    integrations = world_repo.list_integrations(session)
    health = world_repo.integration_health(session)
    by_site = site_impairments(sites, integrations, health)
    by_channel = channel_impairments(sites, integrations, health)
    checks = {r.target: r for r in health_repo.list_checks(session)}
    out = []
    for i in integrations:
        check = checks.get(health_repo.integration_target(i.code))
        out.append(
            IntegrationOut(
                code=i.code,
                name=i.name,
                kind=i.kind.value,
                health=health.get(i.code, Health.UNKNOWN).value,
                scope=list(i.scope),
                fallback=i.fallback,
                impaired_sites=_of(by_site, i.code),
                impaired_channels=_of(by_channel, i.code),
                last_probe_at=check.last_probe_at if check else None,
                last_detail=check.last_detail if check else "",
            )
        )
    return out


def _of(impairments: list[Impairment], integration: str) -> list[ImpairmentOut]:
    return [
        ImpairmentOut(subject=m.subject, reason=m.reason) for m in impairments if m.integration == integration
    ]


@router.get("/v1/integrations")
def list_integrations(session: SessionDep, _: Viewer) -> list[IntegrationOut]:
    """Every integration's probed health and the sites and channels its outage leaves impaired."""
    return _integrations(session)


@router.get("/v1/integrations/{code}")
def get_integration(code: Code, session: SessionDep, _: Viewer) -> IntegrationOut:
    for i in _integrations(session):
        if i.code == code:
            return i
    raise NotFound(f"no integration {code!r}")


@router.get("/v1/health-checks")
def list_health_checks(session: SessionDep, _: Viewer) -> list[HealthCheckOut]:
    """The health state machine of every probed target (`site:<code>`, `integration:<code>`)."""
    return [_check_out(r) for r in health_repo.list_checks(session)]


@router.get("/v1/health-checks/{target}")
def get_health_check(
    target: Code,
    session: SessionDep,
    _: Viewer,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> HealthCheckOut:
    """One target's state and its latest transitions, newest first."""
    row = health_repo.get_check(session, target)
    if row is None:
        raise NotFound(f"no health check {target!r} (targets are site:<code> and integration:<code>)")
    return _check_out(row, health_repo.transitions(session, target, limit))


@router.get("/v1/scheduler")
def scheduler_status(request: Request, _: Viewer) -> dict[str, Any]:
    """Whether this process leads the periodic jobs, and its jobs while it does."""
    return {"pid": os.getpid(), **request.app.state.scheduler.status()}
