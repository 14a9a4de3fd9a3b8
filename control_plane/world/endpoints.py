"""`/v1/sites` and `/v1/breakers`: what routing sees of every DC."""

from __future__ import annotations

from fastapi import APIRouter

from control_plane.auth.deps import Ctx, Viewer
from control_plane.domain import NotFound, SiteState
from control_plane.world.schemas import BreakerOut, SiteOut

router = APIRouter(tags=["sites"])


def _site_out(st: SiteState, impaired_by: tuple[str, ...] = ()) -> SiteOut:
    return SiteOut(
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
    )


@router.get("/v1/sites")
def list_sites(ctx: Ctx, _: Viewer) -> list[SiteOut]:
    why = ctx.sites.impairments()
    return [_site_out(st, why.get(st.site.code, ())) for st in ctx.sites.snapshot()]


@router.get("/v1/sites/{code}")
def get_site(code: str, ctx: Ctx, _: Viewer) -> SiteOut:
    for st in ctx.sites.snapshot():
        if st.site.code == code:
            return _site_out(st, ctx.sites.impairments().get(code, ()))
    raise NotFound(f"no site {code!r}")


@router.get("/v1/breakers")
def list_breakers(ctx: Ctx, _: Viewer) -> list[BreakerOut]:
    for st in ctx.sites.snapshot():
        ctx.board.get(st.site.code)  # every site has a breaker, even before its first call
    return [
        BreakerOut(name=name, state=state.value, fail_counter=ctx.board.get(name).fail_counter)
        for name, state in ctx.board.states().items()
    ]
