"""Write a BiaResult to a directory: bia.json, its schema, and one CSV per table (docs/bia.md lists them)."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

from bia.frame import HOURS_PER_WEEK
from bia.results import BiaResult, IntegrationImpact, SiteImpact

SCHEMA_PATH = Path(__file__).with_name("bia.schema.json")
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def load_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of bia.json."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def write_outputs(result: BiaResult, out_dir: Path) -> list[Path]:
    """Write bia.json, bia.schema.json and the CSVs; return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "bia.json", out_dir / "bia.schema.json"]
    written[0].write_text(
        json.dumps(result.to_json_dict(), indent=1, allow_nan=False) + "\n", encoding="utf-8"
    )
    shutil.copyfile(SCHEMA_PATH, written[1])
    durations = result.params.outage_durations_hours
    tables: dict[str, tuple[list[str], Iterable[Sequence[Any]]]] = {
        "site_impact.csv": _impact_table(result.sites, durations),
        "integration_impact.csv": _impact_table(result.integrations, durations),
        "site_hour_of_week.csv": _hour_of_week_table(result.sites),
        "loss_curve.csv": _loss_table(result),
        "critical_skus.csv": _dataclass_table(result.skus),
        "preposition_plan.csv": _dataclass_table(result.preposition),
        "spofs.csv": _dataclass_table(result.spofs),
        "failover_map.csv": _dataclass_table(result.failover_routes),
        "failover_capacity.csv": _dataclass_table(result.failover_capacity),
    }
    for name, (header, rows) in tables.items():
        path = out_dir / name
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows([_cell(v) for v in row] for row in rows)
        written.append(path)
    return written


def _cell(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return ";".join(str(v) for v in value)
    if value is None:
        return ""
    if isinstance(value, float):
        return round(value, 6)
    return value


def _dataclass_table(rows: Sequence[Any]) -> tuple[list[str], list[list[Any]]]:
    if not rows:
        return [], []
    assert is_dataclass(rows[0])
    header = [f.name for f in fields(rows[0])]
    return header, [list(asdict(r).values()) for r in rows]


def _impact_table(
    impacts: Sequence[SiteImpact] | Sequence[IntegrationImpact], durations: tuple[float, ...]
) -> tuple[list[str], list[list[Any]]]:
    header = ["code", "name", "tier", "rto_hours", "rpo_seconds"]
    for metric in ("orders", "revenue", "customers"):
        header += [f"{metric}_per_hour_mean", f"{metric}_per_hour_peak"]
    header += [
        "absorbable_share",
        "stock_share",
        "reroute_extra_transit_hours",
        "reroute_extra_cost_per_order",
        "capacity_runs_out_at",
    ]
    for d in durations:
        header += [f"loss_{d:g}h_without_failover", f"loss_{d:g}h_with_failover", f"revenue_at_risk_{d:g}h"]
    rows = []
    for i in impacts:
        site = i if isinstance(i, SiteImpact) else None
        row: list[Any] = [i.code, i.name, i.tier, i.rto_hours, site.rpo_seconds if site else None]
        for rate in (i.demand.orders_per_hour, i.demand.revenue_per_hour, i.demand.customers_per_hour):
            row += [rate.mean, rate.peak]
        row += [
            i.absorbable_share,
            site.stock_share if site else None,
            site.reroute_extra_transit_hours if site else None,
            site.reroute_extra_cost_per_order if site else None,
            site.capacity_runs_out_at if site else None,
        ]
        for d in durations:
            row += [i.loss(d, False).total, i.loss(d, True).total, i.loss(d, False).revenue_at_risk]
        rows.append(row)
    return header, rows


def _hour_of_week_table(sites: Sequence[SiteImpact]) -> tuple[list[str], list[list[Any]]]:
    header = [
        "site",
        "hour_of_week",
        "day",
        "hour",
        "orders_per_hour",
        "revenue_per_hour",
        "customers_per_hour",
    ]
    rows = [
        [
            s.code,
            h,
            DAYS[h // 24],
            h % 24,
            s.demand.orders_per_hour.by_hour_of_week[h],
            s.demand.revenue_per_hour.by_hour_of_week[h],
            s.demand.customers_per_hour.by_hour_of_week[h],
        ]
        for s in sites
        for h in range(HOURS_PER_WEEK)
    ]
    return header, rows


def _loss_table(result: BiaResult) -> tuple[list[str], list[list[Any]]]:
    subjects = [("site", s.code, s.losses) for s in result.sites]
    subjects += [("integration", i.code, i.losses) for i in result.integrations]
    first = next((losses[0] for _, _, losses in subjects if losses), None)
    if first is None:
        return [], []
    names = [f.name for f in fields(first)]
    header = ["subject_kind", "subject", *names]
    rows = [[kind, code, *asdict(p).values()] for kind, code, losses in subjects for p in losses]
    return header, rows


def summary(result: BiaResult, out_dir: Path, written: Sequence[Path]) -> dict[str, Any]:
    """The short JSON `drctl bia run --json` prints: per-site targets and where the files are."""
    durations = result.params.outage_durations_hours
    return {
        "out_dir": str(out_dir),
        "files": sorted(p.name for p in written),
        "world": result.world,
        "period": {
            "start": result.period_start.isoformat(),
            "end": result.period_end.isoformat(),
            "hours": result.period_hours,
        },
        "totals": asdict(result.totals),
        "sites": [
            {
                "code": s.code,
                "tier": s.tier,
                "rto_hours": s.rto_hours,
                "rpo_seconds": s.rpo_seconds,
                "orders_per_hour": s.demand.orders_per_hour.mean,
                "peak_orders_per_hour": s.demand.orders_per_hour.peak,
                "revenue_per_hour": s.demand.revenue_per_hour.mean,
                "absorbable_share": s.absorbable_share,
                "capacity_runs_out_at": s.capacity_runs_out_at,
                "loss": {
                    f"{d:g}h": {
                        "without_failover": s.loss(d, False).total,
                        "with_failover": s.loss(d, True).total,
                    }
                    for d in durations
                },
            }
            for s in result.sites
        ],
        "integrations": [
            {"code": i.code, "tier": i.tier, "rto_hours": i.rto_hours, "absorbable_share": i.absorbable_share}
            for i in result.integrations
        ],
        "pareto": asdict(result.pareto),
        "preposition_lines": len(result.preposition),
        "spofs": [s.sku for s in result.spofs],
    }
