"""`/v1/sites` and `/v1/breakers`: what routing sees of every DC, and operator overrides of breakers."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter

from control_plane.auth.deps import Ctx, Operator, SessionDep, Viewer
from control_plane.domain import NotFound, Recovery, SiteState
from control_plane.web.params import Code
from control_plane.world import repository as world_repo
from control_plane.world.breaker_actions import BreakerAction, breaker_json, find_breaker, override
from control_plane.world.schemas import BreakerActionIn, BreakerOut, RecoveryOut, SiteOut

router = APIRouter(tags=["sites"])


def _recovery_out(r: Recovery | None) -> RecoveryOut | None:
    if r is None:
        return None
    return RecoveryOut(
        source=r.source, source_id=r.source_id, measured_at=r.measured_at, detect_s=r.detect_s,
        mitigate_s=r.mitigate_s, recover_s=r.recover_s, rto_s=r.rto_s, within_rto=r.within_rto,
    )  # fmt: skip


def _site_out(
    st: SiteState,
    impaired_by: tuple[str, ...] = (),
    recovery: Recovery | None = None,
    expires_at: datetime | None = None,
    bia: tuple[int | None, int | None] = (None, None),
) -> SiteOut:
    return SiteOut(
        failover_expires_at=expires_at,
        rpo_seconds=bia[0],
        bia_run_id=bia[1] if st.site.rto_hours is not None else None,
        code=st.site.code,
        name=st.site.name,
        region=st.site.region,
        accepting=st.accepting,
        health=st.health.value,
        breaker=st.breaker.value,
        tier=st.site.tier,
        rto_hours=st.site.rto_hours,
        capacity_per_hour=st.site.capacity_per_hour,
        routed_this_hour=st.routed_this_hour,
        load_ratio=round(st.load_ratio, 4),
        ramp_weight=round(st.ramp_weight, 4),
        backups=list(st.site.backups),
        depends_on=list(st.site.depends_on),
        impaired=st.impaired,
        impaired_by=list(impaired_by),
        last_recovery=_recovery_out(recovery),
    )


@router.get("/v1/sites")
def list_sites(ctx: Ctx, session: SessionDep, _: Viewer) -> list[SiteOut]:
    why, measured = ctx.sites.impairments(), world_repo.last_recoveries(session)
    expiries = world_repo.failover_expiries(session)
    rpo, run = world_repo.bia_figures(session)
    return [
        _site_out(
            st,
            why.get(st.site.code, ()),
            measured.get(st.site.code),
            expiries.get(st.site.code),
            (rpo.get(st.site.code), run),
        )
        for st in ctx.sites.snapshot()
    ]


@router.get("/v1/sites/{code}")
def get_site(code: Code, ctx: Ctx, session: SessionDep, _: Viewer) -> SiteOut:
    for st in ctx.sites.snapshot():
        if st.site.code == code:
            measured = world_repo.last_recoveries(session).get(code)
            expires = world_repo.failover_expiries(session).get(code)
            rpo, run = world_repo.bia_figures(session)
            return _site_out(
                st, ctx.sites.impairments().get(code, ()), measured, expires, (rpo.get(code), run)
            )
    raise NotFound(f"no site {code!r}")


@router.get("/v1/breakers")
def list_breakers(ctx: Ctx, _: Viewer) -> list[BreakerOut]:
    for st in ctx.sites.snapshot():
        ctx.board.get(st.site.code)  # every site has a breaker, even before its first call
    return [BreakerOut(**breaker_json(ctx.board.get(name))) for name in ctx.board.names()]


@router.post("/v1/breakers/{name}/{action}")
def breaker_action(
    name: Code, action: BreakerAction, body: BreakerActionIn, ctx: Ctx, who: Operator
) -> BreakerOut:
    """`open` holds the breaker open until `close` (closed now) or `reset` (one trial call decides)."""
    breaker = find_breaker(ctx, name)
    after = override(ctx.sessions, breaker, action, who.name, body.reason, ctx.clock())
    return BreakerOut(**after)
