"""drctl's drill actions and probes as Chaos Toolkit activities, generated from the drill registry.

An experiment names one with `{"type": "python", "module": "chaos.ctk", "func": "site_fault",
"arguments": {"site": "icheon", "mode": "down"}}`. Its arguments are checked by the same model a
drill experiment's `with:` is (chaos.drill.registry), then the registry's entry runs it.

Chaos Toolkit hands each function the experiment's `configuration`, and its `secrets` when the
provider names them (`"secrets": ["drctl"]`):

- configuration `drctl_url`, `drctl_sim_admin_url` (both required); `drctl_database_url` for
  `drop_database_connections` (or the secret `database_url`, when it holds a password)
- secrets `viewer_token`, `operator_token`: each needed only by what calls the control plane
  with that role (probes read as viewer; failover and failback act as operator)

Not the drill runner: no Locust load and no stop conditions, and the run is not registered with
the control plane, so `drctl drill abort` (the kill switch) and the commerce calendar do not see it.
"""

from __future__ import annotations

import inspect
import os
import typing
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chaos.drill.context import DrillContext, Outcome, Outcomes, Tokens
from chaos.drill.registry import ACTIONS, PROBES, Spec
from chaos.sim_process import SimAdmin

URL = Annotated[str, Field(pattern=r"^https?://[^\s]+$")]

# what cannot run without the drill's own world, and what to do instead
REFUSED = {
    "kill_control_plane": (
        "kill_control_plane needs the control-plane process that `drctl drill run` starts with its"
        " own world; under Chaos Toolkit, kill your process with an action of your own (a"
        " `process` provider running e.g. `systemctl kill`) or run the drill with drctl"
    ),
}
# probes that read what shoppers saw (Locust's outcomes file, argument `outcomes`); without it,
# the reconciling ones take the control plane's own record of the orders it took instead
READS_OUTCOMES = frozenset({"orders_lost", "orders_duplicated", "intake_p99_ms"})
STORE_RECORD_WILL_DO = frozenset({"orders_lost", "orders_duplicated"})
STORE_RECORD_LIMIT = 1000  # the newest orders: the most GET /v1/orders answers at once


class InvalidArguments(ValueError):
    """An activity's arguments, configuration or secrets do not fit it; says which (no values)."""


class NotUnderChaosToolkit(RuntimeError):
    """The activity needs what only `drctl drill run` has."""


class Configuration(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)  # the experiment's other keys are not ours

    drctl_url: URL
    drctl_sim_admin_url: URL
    drctl_database_url: str | None = None


class Secrets(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    viewer_token: str | None = None
    operator_token: str | None = None
    database_url: str | None = None


def _checked(model: type[BaseModel], raw: Mapping[str, Any], what: str) -> Any:
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        # loc and msg only: pydantic's own text repeats the input, which may be a secret
        problems = [f"{'.'.join(str(x) for x in e['loc']) or '(all)'}: {e['msg']}" for e in exc.errors()]
        raise InvalidArguments(f"{what}: {'; '.join(problems)}") from None


MISSING = "missing-secret:"


def _refuse_missing_token(request: httpx.Request) -> None:
    """Fail before sending a request whose role's token the experiment did not give."""
    auth = request.headers.get("Authorization", "")
    if auth.startswith(f"Bearer {MISSING}"):
        name = auth.removeprefix(f"Bearer {MISSING}")
        raise InvalidArguments(
            f"this activity needs the secret {name}: set it under the experiment's secrets"
            ' (e.g. "drctl") and name them in the provider, "secrets": ["drctl"]'
        )


class StoreRecord(Outcomes):
    """The control plane's newest orders, standing in for the shoppers' view when there is no
    outcomes file: every order it took, as if each post had been answered 201."""

    def __init__(self, ctx_get: Callable[..., httpx.Response], token: str) -> None:
        super().__init__(Path(os.devnull))
        self._get = ctx_get
        self._token = token

    def all(self) -> list[Outcome]:
        listed = self._get("/v1/orders", self._token, limit=STORE_RECORD_LIMIT).raise_for_status().json()
        # no latency or post time: only the order ids count (STORE_RECORD_WILL_DO)
        return [Outcome(0.0, 0.0, 201, "", o["id"], o["status"], o["site"]) for o in listed]


class NoOutcomes(Outcomes):
    def __init__(self, name: str) -> None:
        super().__init__(Path(os.devnull))
        self._name = name

    def all(self) -> list[Outcome]:
        raise InvalidArguments(
            f"{self._name} reads what the load's shoppers saw: pass `outcomes`, the path of the"
            " Locust outcomes file (chaos/locustfile.py writes it)"
        )


@contextmanager
def _context(
    name: str, configuration: Configuration, secrets: Secrets, outcomes: str | None
) -> Iterator[DrillContext]:
    tokens = Tokens(
        viewer=secrets.viewer_token or f"{MISSING}viewer_token",
        operator=secrets.operator_token or f"{MISSING}operator_token",
        ingest=f"{MISSING}ingest_token",  # only the drill's Locust load posts orders
    )
    api = httpx.Client(
        base_url=configuration.drctl_url, timeout=10, trust_env=False,
        event_hooks={"request": [_refuse_missing_token]},
    )  # fmt: skip
    sim = SimAdmin(configuration.drctl_sim_admin_url)
    try:
        ctx = DrillContext(
            api=api, tokens=tokens, sim=sim, outcomes=NoOutcomes(name),
            database_url=secrets.database_url or configuration.drctl_database_url,
        )  # fmt: skip
        if outcomes is not None:
            ctx.outcomes = Outcomes(Path(outcomes))
        elif name in STORE_RECORD_WILL_DO:
            ctx.outcomes = StoreRecord(ctx.get, tokens.viewer)
        yield ctx
    finally:
        api.close()
        sim.close()


def _activity(kind: str, name: str, spec: Spec) -> Callable[..., Any]:
    """The Chaos Toolkit function for one registry entry: keyword arguments in, its result out."""

    def activity(**arguments: Any) -> Any:
        if name in REFUSED:
            raise NotUnderChaosToolkit(REFUSED[name])
        configuration = _checked(Configuration, arguments.pop("configuration", None) or {}, "configuration")
        secrets = _checked(Secrets, arguments.pop("secrets", None) or {}, "secrets")
        outcomes = arguments.pop("outcomes", None) if name in READS_OUTCOMES else None
        _checked(spec.params, arguments, f"{name} arguments")  # before anything is touched
        if outcomes is not None and not Path(outcomes).is_file():
            raise InvalidArguments(f"{name} arguments: outcomes: no file {outcomes}")
        with _context(name, configuration, secrets, outcomes) as ctx:
            return spec(ctx, arguments)

    activity.__name__ = activity.__qualname__ = name
    activity.__module__ = __name__
    doc = inspect.getdoc(spec.run)
    activity.__doc__ = (
        f"drctl's drill {kind} `{name}`, its arguments checked by"
        f" {spec.params.__module__}.{spec.params.__qualname__}." + (f"\n\n{doc}" if doc else "")
    )
    activity.__signature__ = _signature(name, spec)  # type: ignore[attr-defined]
    return activity


def _signature(name: str, spec: Spec) -> inspect.Signature:
    """What `chaos validate` binds an activity's arguments to and `discover` lists: the model's
    fields (required first), then `outcomes` where read, then what Chaos Toolkit passes itself."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD  # discover skips keyword-only parameters
    fields = spec.params.model_fields
    hints = typing.get_type_hints(spec.params)  # the fields' types without their constraints
    required = [inspect.Parameter(n, kind, annotation=hints[n]) for n, f in fields.items() if f.is_required()]
    optional = [
        inspect.Parameter(n, kind, default=f.get_default(call_default_factory=True), annotation=hints[n])
        for n, f in fields.items()
        if not f.is_required()
    ]
    if name in READS_OUTCOMES:
        optional.append(inspect.Parameter("outcomes", kind, default=None, annotation=str | None))
    passed = [inspect.Parameter(n, kind, default=None, annotation=dict[str, Any] | None)
              for n in ("configuration", "secrets")]  # fmt: skip
    returns = typing.get_type_hints(spec.run).get("return", inspect.Signature.empty)
    return inspect.Signature([*required, *optional, *passed], return_annotation=returns)


def _export() -> list[str]:
    exported = []
    for kind, registry in (("action", ACTIONS), ("probe", PROBES)):
        for name, spec in registry.items():
            if name in globals():
                raise RuntimeError(f"chaos.ctk: {kind} {name!r} clashes with a name already in the module")
            globals()[name] = _activity(kind, name, spec)
            if name not in REFUSED:
                exported.append(name)
    return exported


def discover(discover_system: bool = True) -> dict[str, Any]:
    """Chaos Toolkit's discovery of these activities, each typed action or probe with its arguments."""
    from chaoslib.discovery.discover import discover_activities, initialize_discovery_result

    try:
        drctl_version = version("drctl")
    except PackageNotFoundError:
        drctl_version = "unknown"
    result = initialize_discovery_result("drctl", drctl_version, "drctl")
    for activity in discover_activities(__name__, "action"):
        activity["type"] = "probe" if activity["name"] in PROBES else "action"
        result["activities"].append(activity)
    return dict(result)


__all__ = _export()
