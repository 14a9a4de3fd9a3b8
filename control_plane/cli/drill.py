"""`drctl drill validate|run`: chaos drills under Locust load, measured against the BIA's RTO.

Exit codes: 0 the hypothesis held; 1 it deviated (or the drill was aborted); 2 a bad file or option.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
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
from chaos.drill.report import render_report
from chaos.drill.runner import DrillRunner, Journal, LoadSpec
from chaos.sim_process import SimAdmin
from control_plane.cli import drill_local as local_runs
from control_plane.cli.common import call_api, file_or_shipped
from control_plane.cli.drill_world import DrillWorld
from control_plane.cli.errors import from_api_answer
from control_plane.domain import InvalidInput
from control_plane.drills.calendar import EMPTY, load_calendar
from control_plane.drills.service import peak_window_refusal

drill_app = typer.Typer(
    help="Chaos drills: inject faults under Locust load and measure recovery.", no_args_is_help=True
)
console = Console(stderr=True)
EXPERIMENTS = Path(__file__).resolve().parents[2] / "chaos" / "experiments"
DEFAULT_WORLD = Path("examples/kr-retail/world.yaml")


def _experiment_path(name: str) -> Path:
    return file_or_shipped(name, EXPERIMENTS, "experiment")


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
    report: Annotated[Path | None, typer.Option(help="write the HTML report here (default: workdir)")] = None,
    calendar: Annotated[
        Path | None,
        typer.Option(
            envvar="DRCTL_COMMERCE_CALENDAR", help="commerce calendar: no drill in its peak windows"
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="run inside a peak window (needs --reason; audited)")] = False,
    reason: Annotated[str | None, typer.Option(help="why the drill runs inside a peak window")] = None,
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
    for name, given in (("--journal", journal), ("--report", report)):
        if given is not None and not given.parent.is_dir():
            raise InvalidInput(f"{name} {given}: no directory {given.parent}")
    _check_calendar(calendar, force, reason)
    work = _workdir(workdir)
    own: DrillWorld | None = None
    stopping = _Stopping()
    with stopping.installed(), local_runs.registered(x.title, target):
        try:
            if target is None:
                console.print(f"[bold]drill[/] {x.title}: starting the world in {work}")
                own = DrillWorld(world, work, os.environ.get("DRCTL_DATABASE_URL"), time_scale)
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
            start = {"experiment": x.title, "subject": x.subject, "force": force, "reason": reason}
            result = _run(x, base, sim, tokens, own, database_url, world, work, stopping, start)
        finally:
            stopping.hold()
            if own is not None:
                own.stop()
    path = journal or work / "journal.json"
    path.write_text(result.to_json())
    report_path = report or work / "report.html"
    report_path.write_text(render_report(json.loads(result.to_json())), encoding="utf-8")
    _summary(result, path, report_path)
    raise typer.Exit(0 if result.status == "completed" else 1)


def _check_calendar(calendar: Path | None, force: bool, reason: str | None) -> None:
    """Refuse to start inside a peak window of the commerce calendar (exit 2, naming it) unless forced."""
    if force and not (reason and len(reason.strip()) >= 3):
        raise InvalidInput("--force needs --reason (at least 3 characters; it is audited)")
    cal = load_calendar(calendar) if calendar is not None else EMPTY
    refusal = peak_window_refusal(cal, datetime.now(UTC))
    if refusal is not None and not force:
        raise InvalidInput(f"{refusal}; --force with a --reason runs it anyway (audited)")


@drill_app.command("abort")
def abort(
    reason: Annotated[str, typer.Option(help="why every drill must stop now (audited)")],
    url: Annotated[
        str | None, typer.Option(envvar="DRCTL_URL", help="the control plane whose drills to stop")
    ] = None,
    token: Annotated[str | None, typer.Option(envvar="DRCTL_TOKEN", help="an operator token")] = None,
) -> None:
    """Stop every running drill: each stops its method and runs its rollbacks.

    Drills driving the control plane at --url / DRCTL_URL hear it within a second
    (POST /v1/drills/abort); drills on this machine running a world of their own are sent SIGTERM.
    """
    if len(reason.strip()) < 3:
        raise InvalidInput("--reason must say why (at least 3 characters; it is audited)")
    told: list[str] = []
    if url is not None:
        answer = call_api(url, token, "POST", "/v1/drills/abort", {"reason": reason})
        ids = answer.get("aborted", []) if isinstance(answer, dict) else []
        told.append(
            f"{len(ids)} drill(s) at {url} told to stop"
            + (f" (ids {', '.join(map(str, ids))})" if ids else "")
        )
    signalled = local_runs.signal_all(signal.SIGTERM)
    told.append(f"{len(signalled)} drill(s) with a world of their own on this machine sent SIGTERM"
                + (f" (pids {', '.join(map(str, signalled))})" if signalled else ""))  # fmt: skip
    for line in told:
        typer.echo(line)


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
    start: dict[str, Any],
) -> Journal:
    with httpx.Client(base_url=base, timeout=10, trust_env=False) as api:
        _check_target(api, tokens, x.subject)
        drill_id = _register(api, tokens, start)
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

            runner = DrillRunner(x, ctx, load, say, drill_id=drill_id)
            stopping.runner = runner
            ticking = threading.Event()

            def tick() -> None:
                while not ticking.wait(0.5):
                    progress.update(task, completed=min(total, time.monotonic() - started))

            threading.Thread(target=tick, daemon=True).start()
            try:
                result = runner.run()
            finally:
                ticking.set()
        _store_result(api, tokens, drill_id, result)
        return result


def _register(api: httpx.Client, tokens: Tokens, start: dict[str, Any]) -> int:
    """The drill as the control plane keeps it (so its kill switch reaches it); refusals are exit 2."""
    resp = api.post("/v1/drills", json=start, headers={"Authorization": f"Bearer {tokens.operator}"})
    if resp.status_code != 201:
        problem = _problem(resp)
        if resp.status_code == 409:  # the target's own commerce calendar: a peak window
            raise InvalidInput(f"the control plane refused the drill: {problem.get('detail')}")
        raise from_api_answer(resp.status_code, problem, resp.text)
    return int(resp.json()["id"])


def _store_result(api: httpx.Client, tokens: Tokens, drill_id: int, j: Journal) -> None:
    """Send the outcome and the journal; too big a journal is sent without it (the file has it)."""
    m, r = j.measures, j.reconciliation
    body: dict[str, Any] = {
        "status": j.status, "deviations": j.deviations[:500],
        **{k: m.get(k) for k in ("detect_s", "mitigate_s", "recover_s", "rto_s")},
        **{k: r.get(k) for k in ("lost", "duplicated", "held")},
    }  # fmt: skip
    headers = {"Authorization": f"Bearer {tokens.operator}"}
    try:
        resp = api.post(f"/v1/drills/{drill_id}/result", json={**body, "journal": json.loads(j.to_json())},
                        headers=headers)  # fmt: skip
        if resp.status_code == 413:
            resp = api.post(f"/v1/drills/{drill_id}/result", json=body, headers=headers)
    except httpx.HTTPError as exc:
        console.print(f"[yellow]the result was not stored at the control plane ({type(exc).__name__})[/]")
        return
    if resp.status_code != 200:
        detail = _problem(resp).get("detail") or resp.text[:200]
        console.print(
            f"[yellow]the result was not stored at the control plane: HTTP {resp.status_code} {detail}[/]"
        )


def _problem(resp: httpx.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


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


def _summary(j: Journal, path: Path, report: Path) -> None:
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
    out.print(f"report: {report}")
    if j.drill_id is not None:
        out.print(f"stored as drill {j.drill_id} (GET /v1/drills/{j.drill_id})")
