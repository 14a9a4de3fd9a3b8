"""Render the BIA as one self-contained HTML page (inline CSS and SVG charts, no scripts, no network)."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from bia.charts import (
    DAYS,
    hour_of_week_heatmap,
    loss_curve_chart,
    money,
    pareto_chart,
    revenue_at_risk_bars,
)
from bia.results import BiaResult

_TEMPLATES = Path(__file__).with_name("templates")


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(_TEMPLATES),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda v: "—" if v is None else f"{v:.0%}"
    env.filters["num"] = lambda v, digits=0: "—" if v is None else f"{v:,.{digits}f}"
    env.filters["how"] = lambda h: f"{DAYS[h // 24]} {h % 24:02d}:00"
    env.filters["duration"] = lambda h: f"{h * 60:g} min" if h < 1 else f"{h:g} h"
    env.filters["rpo"] = lambda s: (
        "0 (sync)" if s == 0 else f"{s // 60:g} min" if s < 3600 else f"{s / 3600:g} h"
    )
    return env


def render_report(result: BiaResult) -> str:
    """Return the report's HTML."""
    currency = result.params.currency
    env = _environment()
    env.filters["money"] = lambda v: "—" if v is None else money(v, currency)
    env.filters["short"] = lambda v: (
        "—" if v is None else money(v, "").strip()
    )  # tables state the currency once
    charts = {
        "revenue": Markup(revenue_at_risk_bars(result.sites, currency)),
        "heatmap": Markup(hour_of_week_heatmap(result.sites, currency)),
        "pareto": Markup(pareto_chart(result.skus, result.pareto, result.params)),
        "loss": Markup(loss_curve_chart(result.sites, result.params)),
    }
    routes_by_site = {s.code: [r for r in result.failover_routes if r.site == s.code] for s in result.sites}
    capacity_by_site = {
        s.code: [c for c in result.failover_capacity if c.site == s.code] for s in result.sites
    }
    return env.get_template("report.html.j2").render(
        r=result,
        p=result.params,
        charts=charts,
        routes_by_site=routes_by_site,
        capacity_by_site=capacity_by_site,
        critical=[s for s in result.skus if s.critical],
    )


def write_report(result: BiaResult, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(result), encoding="utf-8")
    return path
