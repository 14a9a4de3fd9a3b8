"""World repository: load a world into the tables and read sites, regions and catalog back."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from control_plane.domain import (
    GeoPoint,
    Health,
    Integration,
    IntegrationKind,
    OrderStatus,
    Recovery,
    Region,
    SalesChannel,
    Site,
    Sku,
    World,
)
from control_plane.store.tables import (
    BiaRunRow,
    ChannelRow,
    IntegrationRow,
    OrderRow,
    RecoveryRow,
    RegionRow,
    SiteRow,
    SkuRow,
    StockRow,
    WorldLoadRow,
)


def save_world(session: Session, world: World, now: datetime) -> dict[str, int]:
    """Insert or update every region, site, integration, SKU and stock level of `world`.

    Runtime state (a site's `accepting`, probed health, reserved units) is kept on reload.
    """
    for r in world.regions:
        session.merge(
            RegionRow(
                code=r.code,
                name=r.name,
                lat=r.centroid.lat,
                lon=r.centroid.lon,
                demand_share=r.demand_share,
                max_transit_hours=r.max_transit_hours,
            )
        )
    session.flush()
    for s in world.sites:
        row = session.get(SiteRow, s.code)
        if row is None:
            row = SiteRow(code=s.code, accepting=True, health=Health.UNKNOWN.value)
            session.add(row)
        row.name, row.region = s.name, s.region
        row.lat, row.lon = s.location.lat, s.location.lon
        row.capacity_per_hour, row.cost_per_order, row.handling_hours = (
            s.capacity_per_hour,
            s.cost_per_order,
            s.handling_hours,
        )
        row.wms_url, row.backups, row.depends_on, row.tier = (
            s.wms_url,
            list(s.backups),
            list(s.depends_on),
            s.tier,
        )
        row.updated_at = now
    for i in world.integrations:
        irow = session.get(IntegrationRow, i.code)
        if irow is None:
            irow = IntegrationRow(code=i.code, health=Health.UNKNOWN.value)
            session.add(irow)
        irow.name, irow.kind, irow.health_url = i.name, i.kind.value, i.health_url
        irow.scope, irow.fallback, irow.updated_at = list(i.scope), i.fallback, now
    marker = session.get(WorldLoadRow, 1) or WorldLoadRow(id=1)
    marker.name, marker.loaded_at = world.name, now
    session.merge(marker)
    # the file is the whole list: a channel it no longer names takes no more orders
    session.execute(delete(ChannelRow).where(ChannelRow.code.not_in([c.code for c in world.channels])))
    for c in world.channels:
        session.merge(ChannelRow(code=c.code, name=c.name))
    for sku in world.catalog:
        session.merge(SkuRow(sku=sku.sku, name=sku.name, unit_price=sku.unit_price))
    session.flush()
    for (site, sku), qty in world.stock.items():
        stock = session.get(StockRow, (site, sku))
        if stock is None:
            session.add(StockRow(site=site, sku=sku, on_hand=qty, reserved=0))
        else:
            stock.on_hand = max(qty, stock.reserved)
    # stock the world no longer lists is gone, unless units of it are reserved by live orders
    listed = set(world.stock)
    for row in session.scalars(select(StockRow)):
        if (row.site, row.sku) not in listed and row.reserved == 0:
            session.execute(delete(StockRow).where(StockRow.site == row.site, StockRow.sku == row.sku))
    return {
        "regions": len(world.regions),
        "channels": len(world.channels),
        "sites": len(world.sites),
        "integrations": len(world.integrations),
        "skus": len(world.catalog),
        "stock_rows": len(world.stock),
    }


def site_from_row(row: SiteRow) -> Site:
    return Site(
        code=row.code,
        name=row.name,
        region=row.region,
        location=GeoPoint(row.lat, row.lon),
        capacity_per_hour=row.capacity_per_hour,
        cost_per_order=row.cost_per_order,
        handling_hours=row.handling_hours,
        wms_url=row.wms_url,
        backups=tuple(row.backups or ()),
        depends_on=tuple(row.depends_on or ()),
        tier=row.tier,
        rto_hours=row.rto_hours,
    )


def list_site_rows(session: Session) -> list[SiteRow]:
    return list(session.scalars(select(SiteRow).order_by(SiteRow.code)))


def list_regions(session: Session) -> list[Region]:
    return [
        Region(r.code, r.name, GeoPoint(r.lat, r.lon), r.demand_share, r.max_transit_hours)
        for r in session.scalars(select(RegionRow).order_by(RegionRow.code))
    ]


def list_integrations(session: Session) -> list[Integration]:
    return [
        Integration(
            i.code, i.name, IntegrationKind(i.kind), i.health_url, tuple(i.scope or ("all",)), i.fallback
        )
        for i in session.scalars(select(IntegrationRow).order_by(IntegrationRow.code))
    ]


def catalog(session: Session) -> dict[str, Sku]:
    return {s.sku: Sku(s.sku, s.name, s.unit_price) for s in session.scalars(select(SkuRow))}


def list_channels(session: Session) -> list[SalesChannel]:
    rows = session.scalars(select(ChannelRow).order_by(ChannelRow.code))
    return [SalesChannel(c.code, c.name) for c in rows]


def loaded_at(session: Session) -> datetime | None:
    row = session.get(WorldLoadRow, 1)
    return None if row is None else row.loaded_at


def bia_figures(session: Session) -> tuple[dict[str, int | None], int | None]:
    """Site -> the RPO (seconds) the latest BIA set for it, and that BIA run's id."""
    rpo = {code: seconds for code, seconds in session.execute(select(SiteRow.code, SiteRow.rpo_seconds))}
    run = session.scalar(
        select(BiaRunRow.id).where(BiaRunRow.status == "done").order_by(BiaRunRow.id.desc()).limit(1)
    )
    return rpo, run


def failover_expiries(session: Session) -> dict[str, datetime]:
    """Site -> when its failover expires, for sites failed over with an expiry."""
    stmt = select(SiteRow.code, SiteRow.failover_expires_at).where(SiteRow.failover_expires_at.is_not(None))
    return {code: at for code, at in session.execute(stmt)}


def paused_channels(session: Session) -> frozenset[str]:
    return frozenset(session.scalars(select(ChannelRow.code).where(ChannelRow.paused.is_(True))))


def load_world(session: Session, name: str = "stored") -> World:
    """The world as stored: what a BIA run over the store analyses."""
    stock = {(r.site, r.sku): r.on_hand for r in session.scalars(select(StockRow))}
    return World(
        name=name,
        regions=tuple(list_regions(session)),
        sites=tuple(site_from_row(r) for r in list_site_rows(session)),
        integrations=tuple(list_integrations(session)),
        catalog=tuple(sorted(catalog(session).values(), key=lambda s: s.sku)),
        stock=stock,
        channels=tuple(list_channels(session)),
    )


def apply_bia_targets(session: Session, targets: dict[str, tuple[int, float, int]], now: datetime) -> None:
    """Store each site's tier, RTO (hours) and RPO (seconds) from a finished BIA."""
    for code, (tier, rto_hours, rpo_seconds) in targets.items():
        row = session.get(SiteRow, code)
        if row is not None:
            row.tier, row.rto_hours, row.rpo_seconds, row.updated_at = tier, rto_hours, rpo_seconds, now


def record_recovery(session: Session, r: Recovery) -> None:
    """Keep a measured recovery; the same drill or incident measured twice keeps its first figure."""
    exists = session.scalar(
        select(RecoveryRow.id).where(RecoveryRow.source == r.source, RecoveryRow.source_id == r.source_id)
    )
    if exists is None:
        session.add(
            RecoveryRow(
                site=r.site, source=r.source, source_id=r.source_id, measured_at=r.measured_at,
                detect_s=r.detect_s, mitigate_s=r.mitigate_s, recover_s=r.recover_s, rto_s=r.rto_s,
            )
        )  # fmt: skip


def last_recoveries(session: Session) -> dict[str, Recovery]:
    """The latest measured recovery of every site that has one."""
    latest = (
        select(RecoveryRow.site, func.max(RecoveryRow.id).label("id")).group_by(RecoveryRow.site).subquery()
    )
    rows = session.scalars(select(RecoveryRow).join(latest, RecoveryRow.id == latest.c.id))
    return {row.site: _recovery(row) for row in rows}


def _recovery(row: RecoveryRow) -> Recovery:
    return Recovery(
        row.site, row.source, row.source_id, row.measured_at, row.recover_s,
        row.detect_s, row.mitigate_s, row.rto_s,
    )  # fmt: skip


def integration_health(session: Session) -> dict[str, Health]:
    """Probed health of every integration, by code; one marked down by hand (a runbook) is down."""
    rows = session.execute(select(IntegrationRow.code, IntegrationRow.health, IntegrationRow.forced_down))
    return {code: Health.DOWN if forced else Health(health) for code, health, forced in rows}


# what a site was given this hour, whether it still holds it or has shipped it
_COUNTED_AS_LOAD = (OrderStatus.ROUTED.value, OrderStatus.ACCEPTED.value, OrderStatus.SHIPPED.value)


def routed_counts_since(session: Session, since: datetime) -> dict[str, int]:
    stmt = (
        select(OrderRow.site, func.count())
        .where(OrderRow.routed_at >= since, OrderRow.status.in_(_COUNTED_AS_LOAD))
        .group_by(OrderRow.site)
    )
    return {site: int(n) for site, n in session.execute(stmt) if site is not None}
