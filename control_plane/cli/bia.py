"""`drctl bia run` and `drctl world history`: the command-line edge of the BIA (files in, files out).

Bad input (a missing file, wrong columns, a site the world does not know, days <= 0) exits with
code 2 and one line on stderr, and writes nothing: every check runs before the first file is written.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bia.charts import money
from bia.engine import run_bia
from bia.export import summary, write_outputs
from bia.frame import scan_history
from bia.history import generate_history, write_history
from bia.params import BiaParams
from bia.report import write_report
from bia.results import BiaResult
from control_plane.cli.errors import exit_on_bad_input
from control_plane.domain import InvalidInput
from control_plane.world.loader import load_world_file

DEFAULT_WORLD = Path("examples/kr-retail/world.yaml")

bia_app = typer.Typer(
    help="Business impact analysis: what outages cost, RTO/RPO and tiers, critical inventory, failover map.",
    no_args_is_help=True,
)


def _durations(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InvalidInput(
            f"--durations must be hours separated by commas, e.g. 1,4,24,72; got {text!r}"
        ) from None


@bia_app.command("run")
def run(
    out: Path = typer.Option(
        ..., "--out", help="Directory for bia.json, bia.schema.json, the CSVs and report.html."
    ),
    orders: Path | None = typer.Option(
        None,
        "--orders",
        help="Order history, CSV or Parquet (order_id, placed_at, channel, customer_id, region, postal_code, "
        "site, sku, qty, unit_price). Without it: the last --days of orders in the store "
        "(DRCTL_DATABASE_URL) against the world as stored; the run is recorded and sets tiers on /v1/sites.",
    ),
    days: int = typer.Option(28, "--days", help="With the store as the source: how many days back to read."),
    world: Path = typer.Option(
        DEFAULT_WORLD, "--world", help="World file (sites, regions, integrations, stock)."
    ),
    gross_margin: float = typer.Option(0.25, help="Share of revenue kept as margin."),
    late_order_cost: float = typer.Option(5_000.0, help="Cost of one late order (coupon, support)."),
    cancel_probability: float = typer.Option(0.2, help="Chance a late order is cancelled."),
    churn_probability: float = typer.Option(0.05, help="Chance a customer with a late delivery churns."),
    customer_lifetime_value: float = typer.Option(300_000.0, help="Value of a customer over their lifetime."),
    promise_slack_hours: float = typer.Option(4.0, help="Delay an order absorbs before it is late."),
    loss_tolerance: float = typer.Option(50_000_000.0, help="Loss one outage may cost; sets the RTO."),
    coverage_hours: float = typer.Option(24.0, help="Hours of a site's critical demand backups should hold."),
    durations: str = typer.Option("1,4,24,72", help="Outage durations to evaluate, in hours."),
    currency: str = typer.Option("KRW", help="Currency of every money figure."),
    timezone: str = typer.Option("Asia/Seoul", help="Local time zone for hours of the week."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Analyse an order history: outage costs, RTO/RPO/tier per site and integration, critical inventory."""
    err = Console(stderr=True)
    with exit_on_bad_input():
        params = BiaParams(
            gross_margin=gross_margin,
            late_order_cost=late_order_cost,
            cancel_probability=cancel_probability,
            churn_probability=churn_probability,
            customer_lifetime_value=customer_lifetime_value,
            promise_slack_hours=promise_slack_hours,
            loss_tolerance=loss_tolerance,
            coverage_hours=coverage_hours,
            outage_durations_hours=_durations(durations),
            currency=currency,
            timezone=timezone,
        )
        # over the store, the world is the one stored; a file history goes with a world file
        world_model = load_world_file(world)[0] if orders is not None else None
        if out.exists() and not out.is_dir():
            raise InvalidInput(f"{out}: exists and is not a directory")
        with Progress(
            TextColumn("{task.description:<48}"),
            BarColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=not err.is_terminal,  # pipes and CI get no bar, so an error stays one line
        ) as bar:
            task = bar.add_task("reading the order history", total=100)
            if orders is None:
                result = _run_over_store(days, params)
            else:
                # scanned, not read: the file is streamed once into a compact frame inside run_bia
                history = scan_history(orders)

                def advance(stage: str, done: float) -> None:
                    bar.update(task, description=stage, completed=10 + done * 70)

                assert world_model is not None
                result = run_bia(history, world_model, params, progress=advance, source=str(orders))
            bar.update(task, description="writing JSON, CSVs and the HTML report", completed=85)
            written = _write_all(result, out)
            bar.update(task, description="done", completed=100)
    if as_json:
        typer.echo(json.dumps(summary(result, out, written), indent=2))
        return
    _print_sites(result, Console())
    Console().print(f"wrote {len(written)} files to {out}")


def _run_over_store(days: int, params: BiaParams) -> BiaResult:
    """Run over the store's history and record it like `POST /v1/bia/runs` does."""
    from control_plane.bia_runs.service import BiaRunner
    from control_plane.context import utcnow
    from control_plane.settings import Settings
    from control_plane.store.db import make_engine, make_session_factory
    from control_plane.store.tables import BiaRunRow

    engine = make_engine(Settings().database_url, pool_size=2)
    sessions = make_session_factory(engine)
    runner = BiaRunner(sessions, utcnow)
    try:
        run_id, future = runner.start("cli", days, params)
        result = future.result()
        if result is None:
            with sessions() as s:
                row = s.get(BiaRunRow, run_id)
                why = row.error if row is not None else "unknown error"
            raise InvalidInput(f"BIA over the store failed: {why}")
        return result
    finally:
        runner.close()
        engine.dispose()


def _write_all(result: BiaResult, out: Path) -> list[Path]:
    """Write into a fresh directory next to `out`, then move the files in: no half-written output."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        files = write_outputs(result, staging)
        files.append(write_report(result, staging / "report.html"))
        out.mkdir(parents=True, exist_ok=True)
        for path in files:
            os.replace(path, out / path.name)
        return [out / path.name for path in files]
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _print_sites(result: BiaResult, console: Console) -> None:
    durations = result.params.outage_durations_hours
    shown = 24.0 if 24.0 in durations else max(durations)
    table = Table(
        title=f"BIA — {result.world}, {result.period_hours} h of orders; "
        f"money in {result.params.currency}; f/o = failover",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        pad_edge=False,
    )
    headers = ("site", "tier", "RTO", "RPO", "ord/h", "rev/h", "absorb", f"loss {shown:g}h", "w/ f/o")
    for header in headers:
        table.add_column(header, justify="left" if header == "site" else "right", no_wrap=True)
    for s in result.sites:
        rpo = (
            "0 s"
            if s.rpo_seconds == 0
            else f"{s.rpo_seconds // 60} min"
            if s.rpo_seconds < 3600
            else (f"{s.rpo_seconds // 3600} h")
        )
        table.add_row(
            s.code,
            str(s.tier),
            f"{s.rto_hours:g} h",
            rpo,
            f"{s.expected_orders_per_hour:,.0f}",
            money(s.demand.revenue_per_hour.mean, "").strip(),
            f"{s.absorbable_share:.0%}",
            money(s.loss(shown, False).total, "").strip(),
            money(s.loss(shown, True).total, "").strip(),
        )
    console.print(table)


def world_history(
    days: int = typer.Option(28, "--days", help="Number of local days of history."),
    seed: int = typer.Option(7, "--seed", help="Random seed: the same seed gives the same history."),
    out: Path = typer.Option(..., "--out", help="File to write; .csv or .parquet."),
    world: Path = typer.Option(
        DEFAULT_WORLD, "--world", help="World file whose sites, regions and catalog to use."
    ),
) -> None:
    """Generate a seeded, realistic order history for a world (register as `drctl world history`)."""
    with exit_on_bad_input():
        if out.suffix.lower() not in (".csv", ".parquet"):
            raise InvalidInput(f"{out}: history files end in .csv or .parquet")
        if days <= 0:
            raise InvalidInput(f"--days must be at least 1, got {days}")
        world_model, _ = load_world_file(world)
        with Console(stderr=True).status(f"generating {days} days of orders"):
            frame = generate_history(world_model, days, seed)
            write_history(frame, out)
    print(
        f"wrote {frame.height:,} order lines ({frame['order_id'].n_unique():,} orders, {days} days) to {out}",
        file=sys.stdout,
    )
