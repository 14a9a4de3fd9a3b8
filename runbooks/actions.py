"""The only actions a runbook step may name, each with the arguments it takes (refusing others).

What an action *does* lives in the control plane (`control_plane/runbook_runs/actions.py`), which
implements each name here; this module is the contract a runbook file is checked against.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

Code = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
Reason = Annotated[str, Field(min_length=3, max_length=2000)]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteFailover(_Args):
    site: Code
    reason: Reason
    targets: list[Code] | None = None
    force: StrictBool = False


class SiteFailback(_Args):
    site: Code
    reason: Reason
    ramp_s: StrictFloat | StrictInt = Field(default=0, ge=0, le=86_400)
    force: StrictBool = False


class BreakerChange(_Args):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    reason: Reason


class ChannelChange(_Args):
    channel: Code
    reason: Reason


class SiteCapacity(_Args):
    site: Code
    capacity_per_hour: StrictInt = Field(ge=1, le=1_000_000)
    reason: Reason


class IntegrationChange(_Args):
    integration: Code
    reason: Reason


class IncidentNote(_Args):
    message: Annotated[str, Field(min_length=1, max_length=2000)]


class ProbeWait(_Args):
    """Wait until the health state machine of `target` shows `health` for `hold_s` on end."""

    target: Annotated[str, Field(pattern=r"^(site|integration):[a-z0-9][a-z0-9_-]{0,63}$")]
    health: Literal["healthy", "degraded", "down"]
    hold_s: StrictFloat | StrictInt = Field(default=0, ge=0, le=86_400)


class Approval(_Args):
    prompt: Annotated[str, Field(min_length=3, max_length=2000)] = "approve the next steps"


class Kind(StrEnum):
    CHANGE = "change"  # changes the world; run once per idempotency key
    WAIT = "wait"  # polled until its condition holds or its timeout runs out
    APPROVAL = "approval"  # waits for an operator's approve (or abort)


@dataclass(frozen=True, slots=True)
class ActionSpec:
    args: type[_Args]
    kind: Kind
    summary: str
    default_timeout_s: float


ACTIONS: Mapping[str, ActionSpec] = {
    "site.failover": ActionSpec(SiteFailover, Kind.CHANGE, "fail a site over (its safety rules apply)", 600),
    "site.failback": ActionSpec(SiteFailback, Kind.CHANGE, "fail a site back, optionally ramped", 600),
    "breaker.open": ActionSpec(BreakerChange, Kind.CHANGE, "hold a circuit breaker open", 60),
    "breaker.close": ActionSpec(BreakerChange, Kind.CHANGE, "close a circuit breaker", 60),
    "breaker.reset": ActionSpec(BreakerChange, Kind.CHANGE, "end a hold: one trial call decides", 60),
    "channel.pause": ActionSpec(ChannelChange, Kind.CHANGE, "refuse a sales channel's orders (503)", 60),
    "channel.resume": ActionSpec(ChannelChange, Kind.CHANGE, "take a paused channel's orders again", 60),
    "site.capacity": ActionSpec(SiteCapacity, Kind.CHANGE, "set a site's hourly capacity", 60),
    "integration.mark_down": ActionSpec(
        IntegrationChange, Kind.CHANGE, "treat an integration as down: its fallback takes over", 60
    ),
    "integration.clear": ActionSpec(IntegrationChange, Kind.CHANGE, "let the probes decide again", 60),
    "incident.note": ActionSpec(IncidentNote, Kind.CHANGE, "post a status note on the incident", 60),
    "probe.wait": ActionSpec(ProbeWait, Kind.WAIT, "wait for a probe to hold a condition", 4 * 3600),
    "approval": ActionSpec(Approval, Kind.APPROVAL, "wait for an operator's approval", 3600),
}
