"""`drctl drill validate|run`: chaos drills under Locust load, measured against the BIA's RTO.

Exit codes: 0 the hypothesis held; 1 it deviated (or the drill was aborted); 2 a bad file or option.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from chaos.drill.context import DrillContext, Outcomes, Tokens
from chaos.drill.experiment import Experiment, ExperimentError, load_experiment, scaled
from chaos.drill.runner import DrillRunner, Journal, LoadSpec
from chaos.sim_process import SimAdmin
from control_plane.cli.drill_world import DrillWorld
from control_plane.domain import InvalidInput

drill_app = typer.Typer(
    help="Chaos drills: inject faults under Locust load and measure recovery.", no_args_is_help=True
)
console = Console(stderr=True)
EXPERIMENTS = Path(__file__).resolve().parents[2] / "chaos" / "experiments"
DEFAULT_WORLD = Path("examples/kr-retail/world.yaml")


def _experiment_path(name: str) -> Path:
    """A file, or the name of a shipped experiment (`icheon-flood-at-peak`)."""
    path = Path(name)
    if path.exists() or path.suffix in (".yaml", ".yml"):
        return path
    shipped = EXPERIMENTS / f"{name}.yaml"
    if shipped.exists():
        return shipped
    known = ", ".join(sorted(p.stem for p in EXPERIMENTS.glob("*.yaml")))
    raise InvalidInput(f"no experiment file or shipped experiment {name!r} (shipped: {known})")


def _load(name: str) -> Experiment:
    try:
        return load_experiment(_experiment_path(name))
    except ExperimentError as exc:
        for error in exc.errors:
            typer.echo(f"{exc.source}: {error}", err=True)
        raise typer.Exit(2) from None


@drill_app.command("validate")
def validate(
    experiments: Annotated[list[str], typer.Argument(help="experiment files or shipped names")],
) -> None:
    """Check experiment files: every error with its path. Exit 0 all valid, 2 otherwise."""
    bad = False
    for name in experiments:
        try:
            x = load_experiment(_experiment_path(name))
        except ExperimentError as exc:
            bad = True
            for error in exc.errors:
                typer.echo(f"{exc.source}: {error}", err=True)
            continue
        typer.echo(f"{name}: ok — {x.title!r}, subject {x.subject}, {len(x.method)} steps, "
                   f"{len(x.rollbacks)} rollbacks, {len(x.stop_conditions)} stop conditions")  # fmt: skip
    if bad:
        raise typer.Exit(2)


@drill_app.command("run")
def run(
    experiment: Annotated[str, typer.Argument(help="experiment file or shipped name")],
    target: Annotated[
        str | None, typer.Option(help="drive this control plane, not a world of the drill's own")
    ] = None,
    sim_admin: Annotated[str | None, typer.Option(help="the simulator's admin URL, with --target")] = None,
    world: Annotated[Path, typer.Option(help="world file for the drill's own world")] = DEFAULT_WORLD,
    journal: Annotated[Path | None, typer.Option(help="write the JSON journal here")] = None,
    workdir: Annotated[Path | None, typer.Option(help="keep the run's files here (default: temp)")] = None,
    time_scale: Annotated[
        float, typer.Option(min=0.05, max=1.0, help="multiply every duration by this (a short form)")
    ] = 1.0,
) -> None:
    """Run a drill: load, steady state, faults, rollbacks, reconcile, measure.

    Without --target it starts its own world: the simulator and a control plane on PostgreSQL when
    DRCTL_DATABASE_URL is set, else on a SQLite file. Exit 0 held, 1 deviated or aborted, 2 bad input.
    """
    x = _load(experiment)
    if time_scale != 1.0:
        x = scaled(x, time_scale)
    if (target is None) != (sim_admin is None):
        raise InvalidInput("--target and --sim-admin go together")
    if not world.exists():
        raise InvalidInput(f"world file {world} not found (the load's demand comes from it)")
    target_tokens = _target_tokens() if target is not None else None
    if journal is not None and not journal.parent.is_dir():
        raise InvalidInput(f"--journal {journal}: no directory {journal.parent}")
    work = _workdir(workdir)
    own: DrillWorld | None = None
    stopping = _Stopping()
    with stopping.installed():
        try:
            if target is None:
                console.print(f"[bold]drill[/] {x.title}: starting the world in {work}")
                own = DrillWorld(world, work, os.environ.get("DRCTL_DATABASE_URL"))
                with stopping.deferred():  # a child started is a child stopped: no signal in between
                    own.start()
                stopping.raise_pending()
                assert own.tokens is not None and own.sim is not None
                base, sim, issued = own.base_url, own.sim, own.tokens
                tokens = Tokens(issued.viewer, issued.operator, issued.ingest)
                database_url: str | None = own.database_url
            else:
                assert target_tokens is not None
                base, sim, tokens = target, SimAdmin(sim_admin or ""), target_tokens
                # dropping connections needs the target's database named on purpose, never the
                # DRCTL_DATABASE_URL the operator's shell happens to hold
                database_url = os.environ.get("DRCTL_DRILL_DATABASE_URL")
            result = _run(x, base, sim, tokens, own, database_url, world, work, stopping)
        finally:
            stopping.hold()
            if own is not None:
                own.stop()
    path = journal or work / "journal.json"
    path.write_text(result.to_json())
    _summary(result, path)
    raise typer.Exit(0 if result.status == "completed" else 1)


def _workdir(given: Path | None) -> Path:
    if given is None:
        return Path(tempfile.mkdtemp(prefix="drctl-drill-"))
    if given.exists() and (not given.is_dir() or any(given.iterdir())):
        # an earlier run's outcomes and store would be counted as this run's
        raise InvalidInput(f"--workdir {given}: not an empty directory")
    given.mkdir(parents=True, exist_ok=True)
    return given


def _target_tokens() -> Tokens:
    names = ("DRCTL_DRILL_VIEWER_TOKEN", "DRCTL_DRILL_OPERATOR_TOKEN", "DRCTL_DRILL_INGEST_TOKEN")
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        raise InvalidInput(f"with --target, set {', '.join(missing)}")
    return Tokens(*(os.environ[n] for n in names))


def _run(
    x: Experiment,
    base: str,
    sim: SimAdmin,
    tokens: Tokens,
    own: DrillWorld | None,
    database_url: str | None,
    world_file: Path,
    work: Path,
    stopping: _Stopping,
) -> Journal:
    with httpx.Client(base_url=base, timeout=10, trust_env=False) as api:
        _check_target(api, tokens, x.subject)
        ctx = DrillContext(
            api=api, tokens=tokens, sim=sim, outcomes=Outcomes(work / "outcomes.jsonl"),
            database_url=database_url, kill_process=own.kill_and_restart if own else None,
        )  # fmt: skip
        load = LoadSpec(base, tokens.ingest, tokens.viewer, world_file, work)
        total = x.warmup_s + x.load.duration_s + x.settle_s
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task(x.title, total=total)
            started = time.monotonic()

            def say(line: str) -> None:
                progress.console.print(f"  {time.monotonic() - started:6.1f}s {line}")

            runner = DrillRunner(x, ctx, load, say)
            stopping.runner = runner
            ticking = threading.Event()

            def tick() -> None:
                while not ticking.wait(0.5):
                    progress.update(task, completed=min(total, time.monotonic() - started))

            threading.Thread(target=tick, daemon=True).start()
            try:
                return runner.run()
            finally:
                ticking.set()


def _check_target(api: httpx.Client, tokens: Tokens, subject: str) -> None:
    """Bad tokens or a subject the target does not have: exit 2 before any load or fault."""
    try:
        resp = api.get("/v1/sites", headers={"Authorization": f"Bearer {tokens.viewer}"})
    except httpx.HTTPError as exc:
        raise InvalidInput(
            f"the control plane at {api.base_url} does not answer ({type(exc).__name__})"
        ) from None
    if resp.status_code in (401, 403):
        raise InvalidInput(f"the viewer token is refused by {api.base_url} (HTTP {resp.status_code})")
    resp.raise_for_status()
    codes = [site["code"] for site in resp.json()]
    if subject not in codes:
        raise InvalidInput(f"subject {subject!r} is not a site of the target (sites: {', '.join(codes)})")


class _Stopping:
    """Ctrl-C / SIGTERM abort the drill: its method stops, its rollbacks run, the world stops."""

    def __init__(self) -> None:
        self.runner: DrillRunner | None = None
        self.pending: str | None = None
        self._held = False
        self._deferring = False

    def handle(self, signum: int, _: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self._deferring:
            self.pending = self.pending or name  # acted on once the world has started
            return
        if self.runner is not None and not self._held:
            console.print(f"[yellow]{name}: aborting the drill, rolling back (wait for it)[/]")
            self.runner.abort_from_signal(f"interrupted by {name}")
            return
        if self._held:
            console.print(f"[yellow]{name}: cleaning up, wait[/]")
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False

    def raise_pending(self) -> None:
        if self.pending is not None:
            raise InvalidInput(f"stopped by {self.pending} while the world started: nothing was run")

    def hold(self) -> None:
        self._held = True

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        before = {
            sig: signal.signal(sig, self.handle) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        }
        try:
            yield
        finally:
            for sig, handler in before.items():
                signal.signal(sig, handler)


def _fmt_s(value: Any) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _summary(j: Journal, path: Path) -> None:
    out = Console()
    m, r = j.measures, j.reconciliation
    table = Table(title=f"{j.experiment}: {j.status.upper()}", show_header=False)
    table.add_column("measure")
    table.add_column("value")
    table.add_row("time to detect", _fmt_s(m.get("detect_s")))
    table.add_row("time to mitigate", _fmt_s(m.get("mitigate_s")))
    table.add_row("time to recover", _fmt_s(m.get("recover_s")))
    rto = m.get("rto_s")
    verdict = {True: "within", False: "OVER", None: "-"}[m.get("recovery_within_rto")]
    table.add_row("recovery vs RTO", "no RTO target for this site (run a BIA)" if rto is None
                  else f"{_fmt_s(m.get('recover_s'))} vs {rto:.0f} s: {verdict}")  # fmt: skip
    table.add_row("orders posted / placed", f"{m.get('orders_posted', 0)} / {r.get('placed', '-')}")
    counts = " / ".join(str(r.get(k, "-")) for k in ("lost", "duplicated", "held"))
    table.add_row("lost / duplicated / held", counts)
    table.add_row("notices sent / unsent", f"{m.get('notices_sent', '-')} / {m.get('notices_unsent', '-')}")
    for phase, lat in (m.get("latency") or {}).items():
        figures = f"{lat.get('p50_ms')} / {lat.get('p99_ms')} ms ({lat.get('orders')} orders)"
        table.add_row(f"intake p50 / p99 {phase}", figures)
    out.print(table)
    for d in j.deviations:
        out.print(f"[red]deviation:[/] {d}")
    out.print(f"journal: {path}")
