"""Parse and validate a world file (sites, regions, integrations, catalog, stock) into domain objects.

Errors name the file, the path inside it and the problem, so `drctl world load` can say exactly
what to fix; nothing is written unless the whole file is valid.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from control_plane.domain import (
    FieldError,
    GeoPoint,
    Integration,
    IntegrationKind,
    InvalidInput,
    Region,
    SalesChannel,
    Site,
    Sku,
    World,
    field_path,
)

Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PointIn(_Model):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class RegionIn(_Model):
    code: Slug
    name: str
    centroid: PointIn
    demand_share: float = Field(ge=0, le=1)
    max_transit_hours: float = Field(default=48, gt=0)


class SiteIn(_Model):
    code: Slug
    name: str
    region: Slug
    location: PointIn
    capacity_per_hour: int = Field(gt=0)
    cost_per_order: Decimal = Field(ge=0)
    handling_hours: float = Field(ge=0)
    wms_url: str = Field(pattern=r"^https?://")
    backups: list[Slug] = []
    depends_on: list[Slug] = []
    tier: int | None = Field(default=None, ge=1, le=3)

    @field_validator("wms_url")
    @classmethod
    def _strip_slash(cls, v: str) -> str:
        return v.rstrip("/")


class IntegrationIn(_Model):
    code: Slug
    name: str
    kind: IntegrationKind
    health_url: str = Field(pattern=r"^https?://")
    scope: Literal["all"] | list[Slug] = "all"
    fallback: Slug | None = None


class SkuIn(_Model):
    sku: str = Field(min_length=1, max_length=64)
    name: str
    unit_price: Decimal = Field(ge=0)


class ChannelIn(_Model):
    code: Slug
    name: str = Field(min_length=1, max_length=200)


class SimulatorIn(_Model):
    admin_port: int = Field(default=18100, ge=1, le=65535)


class WorldIn(_Model):
    name: str
    currency: str = "KRW"
    simulator: SimulatorIn = SimulatorIn()
    regions: list[RegionIn] = Field(min_length=1)
    channels: list[ChannelIn] = Field(min_length=1, max_length=200)
    sites: list[SiteIn] = Field(min_length=1)
    integrations: list[IntegrationIn] = []
    catalog: list[SkuIn] = Field(min_length=1)
    stock: dict[Slug, dict[str, int]] = {}


def _cross_check(w: WorldIn) -> list[FieldError]:
    """Check references between sections: regions, backups, dependencies, stock."""
    errors: list[FieldError] = []
    regions = {r.code for r in w.regions}
    sites = [s.code for s in w.sites]
    integrations = {i.code for i in w.integrations}
    channels = {c.code for c in w.channels}
    skus = {s.sku for s in w.catalog}

    def dupes(section: str, codes: list[str]) -> None:
        seen: set[str] = set()
        for i, code in enumerate(codes):
            if code in seen:
                errors.append(FieldError(f"{section}[{i}].code", f"duplicate code {code!r}"))
            seen.add(code)

    dupes("regions", [r.code for r in w.regions])
    dupes("sites", sites)
    dupes("integrations", [i.code for i in w.integrations])
    dupes("channels", [c.code for c in w.channels])
    for i, sku in enumerate(w.catalog):
        if [s.sku for s in w.catalog[:i]].count(sku.sku):
            errors.append(FieldError(f"catalog[{i}].sku", f"duplicate SKU {sku.sku!r}"))
    for i, s in enumerate(w.sites):
        if s.region not in regions:
            errors.append(FieldError(f"sites[{i}].region", f"unknown region {s.region!r}"))
        for j, b in enumerate(s.backups):
            if b not in sites:
                errors.append(FieldError(f"sites[{i}].backups[{j}]", f"unknown site {b!r}"))
            elif b == s.code:
                errors.append(FieldError(f"sites[{i}].backups[{j}]", "a site cannot back itself up"))
        for j, d in enumerate(s.depends_on):
            if d not in integrations:
                errors.append(FieldError(f"sites[{i}].depends_on[{j}]", f"unknown integration {d!r}"))
    for i, integ in enumerate(w.integrations):
        for j, subject in enumerate(() if integ.scope == "all" else integ.scope):
            if subject not in channels and subject not in sites:
                problem = f"{subject!r} is neither a site nor a channel"
                errors.append(FieldError(f"integrations[{i}].scope[{j}]", problem))
        if integ.fallback is not None and integ.fallback not in integrations:
            errors.append(
                FieldError(f"integrations[{i}].fallback", f"unknown integration {integ.fallback!r}")
            )
    for site, per_sku in w.stock.items():
        if site not in sites:
            errors.append(FieldError(f"stock.{site}", f"unknown site {site!r}"))
        for sku, qty in per_sku.items():
            if sku not in skus:
                errors.append(FieldError(f"stock.{site}.{sku}", f"SKU {sku!r} is not in the catalog"))
            if qty < 0:
                errors.append(FieldError(f"stock.{site}.{sku}", "quantity must be >= 0"))
    return errors


def parse_world(data: Any, source: str = "<world>") -> tuple[World, WorldIn]:
    """Validate raw world data; raise InvalidInput naming `source` and each bad path."""
    try:
        model = WorldIn.model_validate(data)
    except ValidationError as exc:
        errors = [FieldError(field_path(e["loc"]), e["msg"]) for e in exc.errors()]
        raise InvalidInput(f"{source}: {len(errors)} problem(s) in the world file", errors) from None
    errors = _cross_check(model)
    if errors:
        raise InvalidInput(f"{source}: {len(errors)} problem(s) in the world file", errors)
    return _to_domain(model), model


def load_world_file(path: str | Path) -> tuple[World, WorldIn]:
    """Read and validate a YAML world file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"{p}: cannot read the world file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InvalidInput(f"{p}: not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{p}: a world file is a mapping with regions, sites and catalog")
    return parse_world(data, str(p))


def _to_domain(w: WorldIn) -> World:
    return World(
        name=w.name,
        regions=tuple(
            Region(
                r.code, r.name, GeoPoint(r.centroid.lat, r.centroid.lon), r.demand_share, r.max_transit_hours
            )
            for r in w.regions
        ),
        sites=tuple(
            Site(
                code=s.code,
                name=s.name,
                region=s.region,
                location=GeoPoint(s.location.lat, s.location.lon),
                capacity_per_hour=s.capacity_per_hour,
                cost_per_order=s.cost_per_order,
                handling_hours=s.handling_hours,
                wms_url=s.wms_url,
                backups=tuple(s.backups),
                depends_on=tuple(s.depends_on),
                tier=s.tier,
            )
            for s in w.sites
        ),
        integrations=tuple(
            Integration(
                i.code,
                i.name,
                i.kind,
                i.health_url,
                ("all",) if i.scope == "all" else tuple(i.scope),
                i.fallback,
            )
            for i in w.integrations
        ),
        catalog=tuple(Sku(s.sku, s.name, s.unit_price) for s in w.catalog),
        stock={(site, sku): qty for site, per in w.stock.items() for sku, qty in per.items()},
        channels=tuple(SalesChannel(c.code, c.name) for c in w.channels),
    )
