"""What the simulator serves: one DC or integration per port, and how to parse and check them."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from chaos.simulator.events import EventsConfig

TargetKind = Literal["dc", "integration"]

# Names appear in admin URL paths and in dc_refs, so keep them to URL-safe slugs.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class InvalidTargets(ValueError):
    """Raised when a target spec or a set of targets cannot be served."""


@dataclass(frozen=True)
class SimTarget:
    """One simulated DC or integration and the port it listens on; a DC may start with events on."""

    name: str
    kind: TargetKind
    port: int
    capacity_per_hour: int = 0
    events: EventsConfig | None = None


def parse_target_spec(spec: str, kind: TargetKind) -> SimTarget:
    """Parse `name=port[:capacity]` as given on the command line."""
    name, sep, rest = spec.partition("=")
    if not sep or not name or not rest:
        raise InvalidTargets(f"--{kind} {spec!r}: expected name=port[:capacity]")
    if not _NAME.match(name):
        raise InvalidTargets(f"--{kind} {spec!r}: name must be letters, digits, '-', '_' or '.'")
    port_text, has_capacity, capacity_text = rest.partition(":")
    port = _parse_int(port_text, f"--{kind} {spec!r}: port")
    capacity = 0
    if has_capacity:
        if kind == "integration":
            raise InvalidTargets(f"--{kind} {spec!r}: integrations take no capacity")
        capacity = _parse_int(capacity_text, f"--{kind} {spec!r}: capacity")
    return SimTarget(name=name, kind=kind, port=port, capacity_per_hour=capacity)


def validate_targets(targets: Sequence[SimTarget], admin_port: int) -> None:
    """Refuse target sets that could not all be served by one process."""
    if not targets:
        raise InvalidTargets("no targets: give at least one --dc or --integration")
    ports: dict[int, str] = {admin_port: "the admin API"}
    names: set[str] = set()
    for target in targets:
        if not _NAME.match(target.name):
            raise InvalidTargets(f"target name {target.name!r} is not a URL-safe slug")
        if target.name in names:
            raise InvalidTargets(f"target name {target.name!r} given twice")
        names.add(target.name)
        if target.kind not in ("dc", "integration"):
            raise InvalidTargets(f"target {target.name!r}: kind must be 'dc' or 'integration'")
        if target.capacity_per_hour < 0:
            raise InvalidTargets(f"target {target.name!r}: capacity_per_hour must be >= 0")
        if target.events is not None and target.kind != "dc":
            raise InvalidTargets(f"target {target.name!r}: only a DC sends order events")
        _check_port(target.port, f"target {target.name!r}")
        if target.port in ports:
            raise InvalidTargets(f"port {target.port} used by both {ports[target.port]} and {target.name!r}")
        ports[target.port] = repr(target.name)
    _check_port(admin_port, "admin")


def _parse_int(text: str, what: str) -> int:
    if not text.isdigit():
        raise InvalidTargets(f"{what} must be a non-negative integer, got {text!r}")
    return int(text)


def _check_port(port: int, what: str) -> None:
    if not 1 <= port <= 65535:
        raise InvalidTargets(f"{what}: port {port} is outside 1-65535")
