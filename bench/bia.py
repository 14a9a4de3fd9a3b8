"""Benchmark the BIA over N order lines (default 1,000,000) beside a plain DuckDB SQL baseline (DESIGN §11).

    .venv/bin/python bench/bia.py [--lines 1000000] [--repeat 3] [--cache DIR]

Targets scale with --lines (see targets_for): 1,000,000 lines in under 3 s and 1 GB, 10,000,000 (a
year of a mid-size retailer, issue 16) in under 5 s and 1.5 GB.

Generates (or reuses from --cache) the sample world's history as Parquet and CSV, then times, each
repetition in a fresh child process so imports, caches and memory do not carry over:

* analysis: scan the file + run_bia + write bia.json and the CSVs (every output but the HTML);
  its peak RSS is the largest `ru_maxrss` over those children (RUSAGE_CHILDREN, read before any
  other child runs);
* core: scan the file + checks + orders, revenue and distinct customers per site and hour of week;
* duckdb: the same core aggregation as one plain SQL query over the same file.

Medians and ratios go into one JSON object printed last on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this file's folder would come first on sys.path and `import bia` would find
# this very file (bench/bia.py); put the repository root there instead.
sys.path[0] = str(ROOT)

WORLD = ROOT / "examples" / "kr-retail" / "world.yaml"
SEED = 7
TIMEZONE = "Asia/Seoul"

BASELINE_SQL = """
WITH lines AS (
    SELECT site, order_id, customer_id, qty * unit_price AS revenue,
           CAST(floor(epoch(timezone('{tz}', placed_at)) / 3600) AS BIGINT) AS local_hour
    FROM {source}
),
slots AS (
    SELECT site, local_hour, count(DISTINCT order_id) AS orders, sum(revenue) AS revenue,
           count(DISTINCT customer_id) AS customers
    FROM lines GROUP BY site, local_hour
)
SELECT site, ((local_hour // 24 + 3) % 7) * 24 + local_hour % 24 AS hour_of_week,
       sum(orders) AS orders, sum(revenue) AS revenue, sum(customers) AS customers, max(orders) AS peak_orders
FROM slots GROUP BY 1, 2
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ensure_history(cache: Path, lines: int) -> tuple[Path, Path, float | None]:
    """Return (parquet, csv) of exactly `lines` order lines, generating them once per cache dir."""
    parquet, csv = cache / f"history-{lines}-seed{SEED}.parquet", cache / f"history-{lines}-seed{SEED}.csv"
    if parquet.exists() and csv.exists():
        return parquet, csv, None
    from bia.history import DEFAULT_LOAD_FACTOR, generate_history, write_history
    from control_plane.world.loader import load_world_file

    world, _ = load_world_file(WORLD)
    capacity = sum(s.capacity_per_hour for s in world.sites)
    per_day = round(capacity * 24 * DEFAULT_LOAD_FACTOR)
    days = max(1, round(lines / (per_day * 1.68)) + 1)  # ~1.68 lines per order: one day spare, then cut
    started = time.perf_counter()
    frame = generate_history(world, days, SEED)
    seconds = time.perf_counter() - started
    log(f"generated {frame.height:,} lines over {days} days in {seconds:.1f} s")
    frame = frame.head(lines)
    cache.mkdir(parents=True, exist_ok=True)
    write_history(frame, parquet)
    write_history(frame, csv)
    return parquet, csv, seconds


# --- children: each prints one JSON line -----------------------------------------------------------


def child_analysis(path: Path) -> dict[str, Any]:
    from bia.engine import run_bia
    from bia.export import write_outputs
    from bia.frame import scan_history
    from control_plane.world.loader import load_world_file

    world, _ = load_world_file(WORLD)
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        result = run_bia(scan_history(path), world)
        write_outputs(result, Path(out))
        seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "lines": result.totals.lines,
        "tiers": {s.code: s.tier for s in result.sites},
    }


def child_core(path: Path) -> dict[str, Any]:
    import polars as pl

    from bia.demand import core_aggregation
    from bia.frame import prepare_lines, scan_history
    from bia.params import BiaParams
    from control_plane.world.loader import load_world_file

    world, _ = load_world_file(WORLD)
    started = time.perf_counter()
    lines, period = prepare_lines(scan_history(path), world, BiaParams(timezone=TIMEZONE))
    table = core_aggregation(lines, period)
    seconds = time.perf_counter() - started
    totals = table.select(pl.col("orders").sum(), pl.col("revenue").sum(), pl.col("customers").sum()).row(0)
    return {
        "seconds": seconds,
        "rows": table.height,
        "checksum": [int(totals[0]), round(totals[1]), int(totals[2])],
    }


def child_duckdb(path: Path) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect()
    if path.suffix == ".csv":
        types = "{'placed_at': 'TIMESTAMPTZ', 'postal_code': 'VARCHAR'}"
        source = f"read_csv('{path}', header = true, types = {types})"
    else:
        source = f"read_parquet('{path}')"
    started = time.perf_counter()
    rows = con.sql(BASELINE_SQL.format(source=source, tz=TIMEZONE)).fetchall()
    seconds = time.perf_counter() - started
    checksum = [int(sum(r[2] for r in rows)), round(sum(r[3] for r in rows)), int(sum(r[4] for r in rows))]
    return {"seconds": seconds, "rows": len(rows), "checksum": checksum}


CHILDREN = {"analysis": child_analysis, "core": child_core, "duckdb": child_duckdb}


def run_child(kind: str, path: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(path)], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def seconds(runs: list[dict[str, Any]]) -> list[float]:
    return [round(float(r["seconds"]), 3) for r in runs]


def median(runs: list[dict[str, Any]]) -> float:
    return round(statistics.median(seconds(runs)), 3)


# (lines, analysis seconds, peak RSS MB): the 1M figures of DESIGN §11 and the 10M ones of issue 16
TARGET_POINTS = ((1_000_000, 3.0, 1024.0), (10_000_000, 5.0, 1536.0))


def targets_for(lines: int) -> tuple[float, float]:
    """Analysis seconds and peak RSS (MB) allowed for `lines`: linear between the issue's two points.

    Below the first point its figures hold (a small run still pays imports and process start);
    past the last, both grow in proportion to the lines.
    """
    (low, low_s, low_mb), (high, high_s, high_mb) = TARGET_POINTS
    if lines <= low:
        return low_s, low_mb
    if lines >= high:
        return round(high_s * lines / high, 2), round(high_mb * lines / high, 1)
    share = (lines - low) / (high - low)
    return round(low_s + share * (high_s - low_s), 2), round(low_mb + share * (high_mb - low_mb), 1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "drctl-bench-bia")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, file = args.child
        print(json.dumps(CHILDREN[kind](Path(file))))
        return

    load_before = os.getloadavg()
    parquet, csv, generated_seconds = ensure_history(args.cache, args.lines)
    sources = {"parquet": parquet, "csv": csv}
    analysis: dict[str, list[dict[str, Any]]] = {name: [] for name in sources}
    for name, path in sources.items():
        for i in range(args.repeat):
            analysis[name].append(run_child("analysis", path))
            log(f"analysis from {name} #{i + 1}: {analysis[name][-1]['seconds']:.2f} s")
    # Every child so far ran the analysis, so this is the analysis's peak RSS (kB on Linux).
    peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    self_reported_mb = max(int(r["maxrss_kb"]) for runs in analysis.values() for r in runs) / 1024
    core: dict[str, list[dict[str, Any]]] = {name: [] for name in sources}
    duck: dict[str, list[dict[str, Any]]] = {name: [] for name in sources}
    for name, path in sources.items():
        for i in range(args.repeat):  # interleaved, so a noisy neighbour hurts both sides alike
            core[name].append(run_child("core", path))
            duck[name].append(run_child("duckdb", path))
            mine, theirs = core[name][-1]["seconds"], duck[name][-1]["seconds"]
            log(f"core from {name} #{i + 1}: {mine:.2f} s, duckdb {theirs:.2f} s")
    analysis_seconds = {name: median(runs) for name, runs in analysis.items()}
    seconds_max, rss_max = targets_for(args.lines)
    ratio = {name: round(median(core[name]) / median(duck[name]), 2) for name in sources}
    result = {
        "bench": "bia",
        "lines": analysis["parquet"][0]["lines"],
        "repeat": args.repeat,
        "engine": "polars",
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "history_generation_seconds": "cached" if generated_seconds is None else round(generated_seconds, 2),
        "analysis_seconds": analysis_seconds,
        "analysis_runs_seconds": {name: seconds(runs) for name, runs in analysis.items()},
        "analysis_peak_rss_mb": round(peak_rss_mb, 1),
        "analysis_peak_rss_mb_self_reported": round(self_reported_mb, 1),
        "core_aggregation_seconds": {name: median(runs) for name, runs in core.items()},
        "duckdb_baseline_seconds": {name: median(runs) for name, runs in duck.items()},
        "core_vs_duckdb_ratio": ratio,
        "baseline_matches": all(
            c["checksum"] == d["checksum"]
            for name in sources
            for c, d in zip(core[name], duck[name], strict=True)
        ),
        "targets": {
            "analysis_seconds_max": seconds_max,
            "analysis_peak_rss_mb_max": rss_max,
            "core_vs_duckdb_ratio_max": 2.0,
        },
        # per format: the 10M target is stated for Parquet, the format a year of history is
        # kept in; CSV parsing (timestamps with offsets above all) costs more, and shows here
        "targets_met": {
            "analysis_seconds": {name: v <= seconds_max for name, v in analysis_seconds.items()},
            "analysis_peak_rss": peak_rss_mb <= rss_max,
            "core_vs_duckdb": all(v <= 2.0 for v in ratio.values()),
        },
        "tiers": analysis["parquet"][0]["tiers"],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
