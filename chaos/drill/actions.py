"""Fault actions a drill may take, each with the parameters it accepts (unknown ones refused).

Faults go where they would happen: in the simulator's DCs and integrations, on the control
plane's processes, on its database connections, or through its own operator API.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import Field

from chaos.drill.context import DrillContext
from chaos.drill.params import Code, NoParams, Params

FAILBACK_WAIT_S = 60.0


class ActionFailed(Exception):
    """The action could not be taken; the message says why (no secrets)."""


class SiteFault(Params):
    site: Code
    mode: Literal["down", "latency", "error_rate", "partition"]
    latency_ms: Annotated[float, Field(gt=0, le=120_000)] | None = None
    p: Annotated[float, Field(ge=0, le=1)] | None = None
    seed: int | None = None


class IntegrationOutage(Params):
    integration: Code
    mode: Literal["down", "latency", "error_rate"] = "down"
    latency_ms: Annotated[float, Field(gt=0, le=120_000)] | None = None
    p: Annotated[float, Field(ge=0, le=1)] | None = None


class ClearFault(Params):
    target: Code


class KillProcess(Params):
    restart_after_s: Annotated[float, Field(ge=0, le=120)] = 1.0


class BreakerOverride(Params):
    breaker: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9:_-]{0,63}$")]  # a site code, or cancel:icheon
    reason: Annotated[str, Field(min_length=3, max_length=500)] = "chaos drill"


class Failover(Params):
    site: Code
    reason: Annotated[str, Field(min_length=3, max_length=500)] = "chaos drill"
    targets: list[Code] | None = None
    force: bool = False


class Failback(Params):
    site: Code
    reason: Annotated[str, Field(min_length=3, max_length=500)] = "chaos drill over"
    ramp_s: Annotated[float, Field(ge=0, le=86_400)] = 0


def site_fault(ctx: DrillContext, p: SiteFault) -> str:
    extra: dict[str, Any] = {k: v for k, v in (("latency_ms", p.latency_ms), ("p", p.p), ("seed", p.seed))
                             if v is not None}  # fmt: skip
    if p.mode == "latency" and p.latency_ms is None:
        extra["latency_ms"] = 3000
    if p.mode == "error_rate" and p.p is None:
        extra["p"] = 1.0
    ctx.sim.set_fault(p.site, p.mode, **extra)
    ctx.faults.start(p.site)
    return f"{p.site}: {p.mode} {extra or ''}".strip()


def integration_outage(ctx: DrillContext, p: IntegrationOutage) -> str:
    extra = {k: v for k, v in (("latency_ms", p.latency_ms), ("p", p.p)) if v is not None}
    if p.mode == "error_rate" and p.p is None:
        extra["p"] = 1.0
    ctx.sim.set_fault(p.integration, p.mode, **extra)
    ctx.faults.start(p.integration)
    return f"{p.integration}: {p.mode}"


def clear_fault(ctx: DrillContext, p: ClearFault) -> str:
    ctx.sim.clear_fault(p.target)
    ctx.faults.clear(p.target)
    return f"{p.target}: cleared"


def clear_faults(ctx: DrillContext, _: NoParams) -> str:
    """Every target of the simulator back to normal: the rollback that undoes any fault."""
    names = [t["name"] for t in ctx.sim.targets()]
    failed = []
    for name in names:  # every target, even after one failed
        try:
            ctx.sim.clear_fault(name)
            ctx.faults.clear(name)
        except Exception as exc:
            failed.append(f"{name} ({type(exc).__name__})")
    if failed:
        raise ActionFailed(f"could not clear {', '.join(failed)}")
    return f"cleared {len(names)} targets"


def kill_control_plane(ctx: DrillContext, p: KillProcess) -> str:
    if ctx.kill_process is None:
        raise ActionFailed("the drill did not start the control plane (--target): it cannot kill it")
    ctx.faults.start("control-plane")
    pid = ctx.kill_process(p.restart_after_s)
    ctx.faults.clear("control-plane")
    return f"SIGKILL pid {pid}, restarted after {p.restart_after_s:g} s"


def drop_database_connections(ctx: DrillContext, _: NoParams) -> str:
    """`pg_terminate_backend` on every other connection to the control plane's database."""
    if not ctx.database_url or not ctx.database_url.startswith(("postgresql", "postgres")):
        raise ActionFailed(
            "dropping database connections needs the control plane on PostgreSQL (its own world with"
            " DRCTL_DATABASE_URL, or DRCTL_DRILL_DATABASE_URL naming a --target's database)"
        )
    import psycopg  # only this action needs it

    ctx.faults.start("database")
    url = ctx.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        killed = conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    ctx.faults.clear("database")
    return f"terminated {killed[0] if killed else 0} connections"


def breaker_open(ctx: DrillContext, p: BreakerOverride) -> str:
    """Hold a breaker open through the operator API: its site gets no call until closed or reset."""
    out = _breaker(ctx, p, "open")
    ctx.faults.start(p.breaker)
    return f"breaker {p.breaker} held open ({out.get('in_flight', 0)} calls still out)"


def breaker_close(ctx: DrillContext, p: BreakerOverride) -> str:
    _breaker(ctx, p, "close")
    ctx.faults.clear(p.breaker)
    return f"breaker {p.breaker} closed"


def breaker_reset(ctx: DrillContext, p: BreakerOverride) -> str:
    """The hold ends and one trial call decides: the rollback of `breaker_open`."""
    out = _breaker(ctx, p, "reset")
    ctx.faults.clear(p.breaker)
    return f"breaker {p.breaker} reset ({out['state']})"


def _breaker(ctx: DrillContext, p: BreakerOverride, action: str) -> dict[str, Any]:
    resp = ctx.post(f"/v1/breakers/{p.breaker}/{action}", {"reason": p.reason}, ctx.tokens.operator)
    if resp.status_code >= 300:
        raise ActionFailed(f"breaker {action} of {p.breaker}: HTTP {resp.status_code} {_title(resp)}")
    return _json_object(resp)


def failover(ctx: DrillContext, p: Failover) -> str:
    body: dict[str, Any] = {"reason": p.reason, "force": p.force}
    if p.targets:
        body["targets"] = p.targets
    resp = ctx.post(f"/v1/sites/{p.site}/failover", body, ctx.tokens.operator)
    if resp.status_code >= 300:
        raise ActionFailed(f"failover of {p.site}: HTTP {resp.status_code} {_title(resp)}")
    ctx.faults.start(p.site)
    return f"failover of {p.site}: HTTP {resp.status_code}"


def failback(ctx: DrillContext, p: Failback) -> str:
    """Fail back; a site already taking orders is done. A change still in progress (a move a
    restarted control plane is finishing) is waited for, up to a bound, rather than reported ok."""
    body = {"reason": p.reason, "ramp_s": p.ramp_s}
    deadline = time.monotonic() + FAILBACK_WAIT_S
    while True:
        resp = ctx.post(f"/v1/sites/{p.site}/failback", body, ctx.tokens.operator)
        rule = _rule(resp)
        if resp.status_code < 300 or (resp.status_code == 409 and rule == "already_accepting"):
            ctx.faults.clear(p.site)
            return f"failback of {p.site}: HTTP {resp.status_code}" + (f" ({rule})" if rule else "")
        retriable = resp.status_code == 503 or rule == "one_change_per_site"
        if not retriable or time.monotonic() > deadline:
            raise ActionFailed(f"failback of {p.site}: HTTP {resp.status_code} {_title(resp)}")
        time.sleep(1.0)


def _json_object(resp: Any) -> dict[str, Any]:
    """The JSON object of an answer, problem+json or not ({} when it has none)."""
    try:
        body = resp.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _title(resp: Any) -> str:
    problem = _json_object(resp)
    return str(problem.get("detail") or problem.get("title") or "")


def _rule(resp: Any) -> str | None:
    rule = _json_object(resp).get("rule")
    return str(rule) if rule else None
