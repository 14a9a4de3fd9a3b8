"""The `drctl` command line (Typer). Bad input exits 2 with one clear line, in one place: `main`."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from control_plane.cli_errors import exit_on_bad_input
from control_plane.domain import InvalidInput
from control_plane.settings import Settings

app = typer.Typer(
    help="drctl: resilience and disaster-recovery control plane for order fulfillment.", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
world_app = typer.Typer(help="The world: sites, regions, integrations, catalog, stock.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(token_app, name="token")
app.add_typer(world_app, name="world")

out = Console()
DEFAULT_WORLD = Path("examples/kr-retail/world.yaml")


def _engine(settings: Settings):  # type: ignore[no-untyped-def]
    from control_plane.store.db import make_engine

    return make_engine(settings.database_url, pool_size=2)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to the newest revision."""
    from control_plane.store.migrate import current_revision, upgrade

    settings = Settings()
    engine = _engine(settings)
    upgrade(engine)
    out.print(f"schema at revision {current_revision(engine)} ({_redact(settings.database_url)})")


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help="viewer | ingest | operator | admin")],
    name: Annotated[str | None, typer.Option(help="a unique name; shown in the audit log")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create an API token. It is printed once; only its hash is stored."""
    from datetime import UTC, datetime

    from control_plane.store import tokens
    from control_plane.store.db import make_session_factory

    if role not in tokens.ROLES:
        raise InvalidInput(f"--role must be one of {', '.join(tokens.ROLES)}, not {role!r}")
    now = datetime.now(UTC)
    name = name or f"{role}-{now:%Y%m%d%H%M%S%f}"
    sessions = make_session_factory(_engine(Settings()))
    with sessions.begin() as s:
        token = tokens.create_token(s, name, role, now)
        tokens.audit(s, now, "cli", "token.create", f"token:{name}", after={"name": name, "role": role})
    if as_json:
        print(json.dumps({"name": name, "role": role, "token": token}))
    else:
        out.print(f"token {name!r} ({role}); store it now, it is not shown again:")
        print(token)


@world_app.command("load")
def world_load(
    file: Annotated[Path, typer.Argument(help="world YAML file")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Validate a world file and store it (nothing is written if any part is invalid)."""
    from datetime import UTC, datetime

    from control_plane.store import tokens
    from control_plane.store.db import make_session_factory
    from control_plane.store.world import save_world
    from control_plane.worldfile import load_world_file

    world, _ = load_world_file(file)
    now = datetime.now(UTC)
    sessions = make_session_factory(_engine(Settings()))
    with sessions.begin() as s:
        counts = save_world(s, world, now)
        tokens.audit(s, now, "cli", "world.load", f"world:{world.name}", after=dict(counts), reason=str(file))
    if as_json:
        print(json.dumps({"world": world.name, **counts}))
    else:
        out.print(f"loaded world {world.name!r}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))


@app.command()
def simulate(
    world: Annotated[Path, typer.Option(help="world YAML file")] = DEFAULT_WORLD,
) -> None:
    """Serve every DC and integration of a world as real HTTP servers (faults via the admin port)."""
    from chaos.sim_process import targets_from_world
    from chaos.simulator import SimTarget, run_simulator
    from control_plane.worldfile import load_world_file

    w, model = load_world_file(world)
    targets = [SimTarget(t.name, t.kind, t.port, t.capacity_per_hour) for t in targets_from_world(w)]  # type: ignore[arg-type]
    run_simulator(targets, model.simulator.admin_port)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="default DRCTL_HOST or 127.0.0.1")] = None,
    port: Annotated[int | None, typer.Option(help="default DRCTL_PORT or 8000")] = None,
    workers: Annotated[int, typer.Option(min=1, help="worker processes (use every core)")] = 1,
    access_log: Annotated[bool, typer.Option(help="log every request")] = False,
) -> None:
    """Run the control plane's HTTP API."""
    import uvicorn

    from control_plane.jobs.wiring import check_settings

    settings = Settings()
    with exit_on_bad_input():  # refuse bad monitoring settings here, in one line, not in each worker
        check_settings(settings)
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # counters from every worker are merged from files here (DESIGN §8, §12)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="drctl-prom-")
    uvicorn.run(
        "control_plane.app:app_from_env",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        access_log=access_log,
        log_level="warning",
    )


def _api(
    url: str, token: str | None, method: str, path: str, body: dict[str, object] | None = None
) -> object:
    """Call the control plane's HTTP API as any client would; problems become one-line errors."""
    import httpx

    if not token:
        raise InvalidInput("a token is needed: --token or DRCTL_TOKEN (drctl token create --role operator)")
    try:
        resp = httpx.request(
            method, f"{url}{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=600,
            trust_env=False,
        )  # fmt: skip
    except httpx.HTTPError as exc:
        raise InvalidInput(f"cannot reach the control plane at {url}: {type(exc).__name__}") from None
    if resp.status_code >= 400:
        problem = resp.json() if resp.headers.get("content-type", "").endswith("json") else {}
        rule = f" [rule {problem['rule']}]" if problem.get("rule") else ""
        raise InvalidInput(f"{resp.status_code} {problem.get('detail', resp.text[:200])}{rule}")
    return resp.json()


URL = Annotated[str, typer.Option(envvar="DRCTL_URL", help="control plane base URL")]
TOKEN = Annotated[str | None, typer.Option(envvar="DRCTL_TOKEN", help="an operator token")]


@app.command()
def failover(
    site: Annotated[str, typer.Argument(help="the site to take out of routing")],
    reason: Annotated[str, typer.Option(help="why; recorded in the audit log and the incident")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="show the plan and the rules; change nothing")
    ] = False,
    to: Annotated[
        list[str] | None, typer.Option("--to", help="limit where orders may go (repeatable)")
    ] = None,
    force: Annotated[bool, typer.Option(help="override refusing safety rules (audited)")] = False,
    url: URL = "http://127.0.0.1:8000",
    token: TOKEN = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Stop routing to a site and move its in-flight orders to backups (safety rules apply)."""
    body = {"reason": reason, "dry_run": dry_run, "force": force, "targets": to or None}
    answer = _api(url, token, "POST", f"/v1/sites/{site}/failover", body)
    if as_json:
        print(json.dumps(answer))
        return
    assert isinstance(answer, dict)
    _print_rules(answer["rules"])
    plan = answer["plan"]
    out.print(f"plan: {plan['orders_to_move']} orders, per target {plan['per_target']}, {plan['late']} late")
    if not dry_run:
        out.print(f"moved: {answer['moved']}  incident #{answer['incident_id']}")


@app.command()
def failback(
    site: Annotated[str, typer.Argument(help="the site to put back into routing")],
    reason: Annotated[str, typer.Option(help="why; recorded in the audit log")] = "recovered",
    dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
    force: Annotated[bool, typer.Option(help="override refusing safety rules (audited)")] = False,
    ramp: Annotated[
        float, typer.Option(help="seconds to ramp from 10% to 100% of its orders (0: at once)")
    ] = 0,
    url: URL = "http://127.0.0.1:8000",
    token: TOKEN = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Cancel at the site what was moved away, then reopen routing to it."""
    answer = _api(
        url,
        token,
        "POST",
        f"/v1/sites/{site}/failback",
        {"reason": reason, "dry_run": dry_run, "force": force},
    )
    if as_json:
        print(json.dumps(answer))
        return
    assert isinstance(answer, dict)
    _print_rules(answer["rules"])
    out.print(f"health now: {answer['health_now']}; cancels owed there: {answer['cancel_pending']}")


def _print_rules(rules: list[dict[str, object]]) -> None:
    table = Table("rule", "ok", "detail")
    for r in rules:
        table.add_row(str(r["name"]), "yes" if r["ok"] else "NO", str(r["detail"]))
    out.print(table)


@app.command()
def status(
    url: URL = "http://127.0.0.1:8000",
    token: Annotated[str | None, typer.Option(envvar="DRCTL_TOKEN", help="a viewer token")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show every site: accepting, health, breaker, load."""
    sites = _api(url, token, "GET", "/v1/sites")
    assert isinstance(sites, list)
    if as_json:
        print(json.dumps(sites))
        return
    table = Table("site", "region", "accepting", "health", "breaker", "load", "tier")
    for s in sites:
        table.add_row(
            s["code"],
            s["region"],
            "yes" if s["accepting"] else "NO",
            s["health"],
            s["breaker"],
            f"{s['load_ratio']:.0%}",
            str(s["tier"] or "-"),
        )
    out.print(table)


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="control plane port")] = 8000,
    rate: Annotated[float, typer.Option(help="synthetic orders per second")] = 1.0,
    world: Annotated[Path, typer.Option(help="world YAML file")] = DEFAULT_WORLD,
) -> None:
    """Load the sample world, start the simulator, the control plane and an order stream."""
    from control_plane.demo import run_demo

    run_demo(Settings(), world, port, rate)


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _register_optional() -> None:
    """Commands whose modules are built alongside (BIA); absent modules leave the CLI usable."""
    try:
        from control_plane.cli_bia import bia_app, world_history
    except ImportError:
        return
    app.add_typer(bia_app, name="bia")
    world_app.command("history")(world_history)


_register_optional()


def main() -> None:
    try:
        with exit_on_bad_input():
            code = app(standalone_mode=False)
    except Exception as exc:
        # Typer ships its own copy of click's exceptions: match them by shape, not by class
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # usage errors
            exc.show()
            sys.exit(2)
        if hasattr(exc, "exit_code"):  # Exit raised outside a command
            sys.exit(exc.exit_code)
        raise
    except KeyboardInterrupt:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
