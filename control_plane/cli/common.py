"""What every command module shares: the console, the default world, engines and HTTP calls."""

from __future__ import annotations

import contextlib
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from control_plane.cli.errors import Unreachable, from_api_answer
from control_plane.domain import FieldError, InvalidInput
from control_plane.settings import Settings

out = Console()
DEFAULT_WORLD = Path("examples/kr-retail/world.yaml")
URL = Annotated[str, typer.Option(envvar="DRCTL_URL", help="control plane base URL")]
TOKEN = Annotated[str | None, typer.Option(envvar="DRCTL_TOKEN", help="an operator token")]
JSON = Annotated[bool, typer.Option("--json", help="print data as JSON")]


_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}
MAX_DURATION = timedelta(days=3650)


def parse_duration(text: str, option: str) -> timedelta:
    """`90m`, `12h`, `30d` -> a timedelta (at most ten years); InvalidInput naming `option` otherwise."""
    found = re.fullmatch(r"([1-9][0-9]{0,6})([mhd])", text.strip())
    span = int(found.group(1)) * _UNITS[found.group(2)] if found else None
    if span is None or span > MAX_DURATION:
        raise InvalidInput(
            f"{option} must be a number and a unit (m, h, d) up to 3650d, like 30d or 12h; got {text!r}",
            [FieldError(option, "not a duration")],
        )
    return span


def file_or_shipped(name: str, shipped: Path, what: str) -> Path:
    """A file, or the name of one shipped in `shipped` (`icheon-flood-at-peak`, `dc-outage`)."""
    path = Path(name)
    if path.exists() or path.suffix in (".yaml", ".yml"):
        return path
    found = shipped / f"{name}.yaml"
    if found.exists():
        return found
    known = ", ".join(sorted(p.stem for p in shipped.glob("*.yaml")))
    raise InvalidInput(f"no {what} file or shipped {what} {name!r} (shipped: {known})")


def engine_for(settings: Settings):  # type: ignore[no-untyped-def]
    from control_plane.store.db import make_engine

    return make_engine(settings.database_url, pool_size=2)


def redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def call_api(
    url: str, token: str | None, method: str, path: str, body: dict[str, object] | None = None
) -> object:
    """Call the control plane's HTTP API as any client would; problems become one-line errors.

    The exit each answer becomes is decided in `errors` (409 refused: 1, other 4xx: 2, 5xx and an
    unreachable control plane: 1).
    """
    import httpx

    if not token:
        raise InvalidInput("a token is needed: --token or DRCTL_TOKEN (drctl token create --role operator)")
    try:
        resp = httpx.request(
            method, f"{url}{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=600,
            trust_env=False,
        )  # fmt: skip
    except (httpx.UnsupportedProtocol, httpx.InvalidURL):
        raise InvalidInput(f"--url must look like http://HOST:PORT, got {url!r}") from None
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        raise Unreachable(
            f"cannot reach the control plane at {url} ({type(exc).__name__}): nothing was changed"
        ) from None
    except httpx.HTTPError as exc:
        outcome = "" if method == "GET" else "; the change may or may not have been made: check drctl status"
        raise Unreachable(f"the control plane at {url} broke off ({type(exc).__name__}){outcome}") from None
    if resp.status_code >= 400:
        problem: object = {}
        if resp.headers.get("content-type", "").endswith("json"):
            with contextlib.suppress(ValueError):
                problem = resp.json()
        raise from_api_answer(resp.status_code, problem if isinstance(problem, dict) else {}, resp.text[:200])
    return resp.json()


def print_rules(rules: list[dict[str, object]]) -> None:
    table = Table("rule", "ok", "detail")
    for r in rules:
        ok = "warn" if r.get("warning") else "yes" if r["ok"] else "NO"
        table.add_row(str(r["name"]), ok, str(r["detail"]))
    out.print(table)


def print_options(options: list[dict[str, Any]], recommendation: dict[str, Any]) -> None:
    """The failover options of a dry run side by side, and the one recommended with its reason."""
    table = Table(
        "option", "targets", "rules", "at risk/h", "revenue at risk/h", "extra transit h", "extra cost/h",
        "late now", "held now", "notices", "cost 1st hour", title="options (late/held now: in-flight orders)",
    )  # fmt: skip
    for o in options:
        rules = "pass" if o["passes_rules"] else f"breaks {o['failing_rule']}"
        if o.get("warnings"):
            rules += f" (warn: {', '.join(o['warnings'])})"
        chosen = " *" if o["name"] == recommendation.get("option") else ""
        table.add_row(
            f"{o['name']}{chosen}",
            ", ".join(o["serving_targets"]) or "-",
            rules,
            _figure(o.get("orders_at_risk_per_hour"), 1),
            _figure(o.get("revenue_at_risk_per_hour")),
            _figure(o.get("extra_transit_hours"), 2),
            _figure(o.get("extra_cost_per_hour")),
            str(o["late"]),
            str(o["held"]),
            str(o["notices"]),
            _figure(o.get("cost_first_hour")),
        )
    out.print(table)
    out.print(f"recommended: {recommendation.get('option') or 'none'} ({recommendation['reason']})")


def _figure(value: object, digits: int = 0) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:,.{digits}f}"


def print_json(data: object) -> None:
    print(json.dumps(data))
