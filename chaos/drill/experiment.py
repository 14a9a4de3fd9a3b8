"""An experiment file, parsed once into typed models: what load, which steady state, which faults,
what to undo, and when to stop early.

The shape follows Chaos Toolkit's (steady-state hypothesis, method, rollbacks) with AWS FIS's stop
conditions and a Locust load profile. Each step names an action or probe from the registry with
its parameters, so a typo is an error at validation, naming the step's path, never a call to an
arbitrary function.

```yaml
title: Icheon DC flood at peak
subject: icheon                      # the site whose recovery is held against its RTO
load: {profile: peak, users: 6, duration_s: 60}
steady_state:
  - probe: http_get
    with: {path: /readyz}
    tolerance: {equals: 200}
method:
  - pause: 15
  - action: site_fault
    with: {site: icheon, mode: down}
  - pause: 20
rollbacks:
  - action: clear_faults
stop_conditions:
  - probe: orders_lost
    tolerance: {max: 0}
```
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, model_validator

from chaos.drill.params import Code
from chaos.drill.registry import ACTIONS, PROBES, Spec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tolerance(_Strict):
    """What a probe's value must be: exactly one of the bounds (or both of min/max)."""

    equals: float | str | bool | None = None
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Tolerance:
        if self.equals is None and self.min is None and self.max is None:
            raise ValueError("give equals, min or max")
        if self.equals is not None and (self.min is not None or self.max is not None):
            raise ValueError("equals cannot be combined with min or max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        return self

    def holds(self, value: Any) -> bool:
        if value is None:
            return False
        if self.equals is not None:
            return bool(value == self.equals)
        try:
            number = float(value)
        except (TypeError, ValueError):
            return False
        return (self.min is None or number >= self.min) and (self.max is None or number <= self.max)

    def describe(self) -> str:
        if self.equals is not None:
            return f"== {self.equals}"
        if self.min is not None and self.max is not None:
            return f"in [{self.min:g}, {self.max:g}]"
        return f">= {self.min:g}" if self.min is not None else f"<= {self.max:g}"


def _check_registered(kind: str, name: str, registry: Mapping[str, Spec], given: dict[str, Any]) -> None:
    spec = registry.get(name)
    if spec is None:
        raise ValueError(f"unknown {kind} {name!r} (known: {', '.join(sorted(registry))})")
    try:
        spec.params.model_validate(given)
    except ValidationError as exc:
        # raised as a ValueError of this step, so the error's path stays the step's
        problems = [f"with.{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ValueError("; ".join(problems)) from None


class ActionStep(_Strict):
    action: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    pause_after_s: Annotated[float, Field(ge=0, le=3600)] = 0.0

    @model_validator(mode="after")
    def _known(self) -> ActionStep:
        _check_registered("action", self.action, ACTIONS, self.with_)
        return self


class ProbeStep(_Strict):
    probe: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    # in the method: none only records the value; one that does not hold is a deviation
    tolerance: Tolerance | None = None
    # in the method: read again every 0.5 s until the tolerance holds, for up to this long (a
    # condition the control plane reaches in its own time, e.g. probes marking a site impaired)
    wait_up_to_s: Annotated[float, Field(ge=0, le=600)] = 0.0
    pause_after_s: Annotated[float, Field(ge=0, le=3600)] = 0.0

    @model_validator(mode="after")
    def _known(self) -> ProbeStep:
        if self.wait_up_to_s and self.tolerance is None:
            raise ValueError("wait_up_to_s needs a tolerance to wait for")
        _check_registered("probe", self.probe, PROBES, self.with_)
        return self


class PauseStep(_Strict):
    pause: Annotated[float, Field(gt=0, le=3600)]


def _kind(raw: Any) -> str | None:
    # a step is told apart by its key, so that an error names the fields of the kind the author
    # meant instead of every member of the union
    if isinstance(raw, BaseModel):
        return {ActionStep: "action", ProbeStep: "probe", PauseStep: "pause"}.get(type(raw))
    if isinstance(raw, dict):
        return next((k for k in ("action", "probe", "pause") if k in raw), None)
    return None


Step = Annotated[
    Annotated[ActionStep, Tag("action")]
    | Annotated[ProbeStep, Tag("probe")]
    | Annotated[PauseStep, Tag("pause")],
    Discriminator(
        _kind, custom_error_type="step", custom_error_message="a step is an action, a probe or a pause"
    ),
]


class Check(ProbeStep):
    """A probe that must hold: in the steady state, or (as a stop condition) all along the method."""

    tolerance: Tolerance  # type: ignore[assignment]  # required here


class Load(_Strict):
    """The Locust profile (chaos/locustfile.py) the drill runs under."""

    profile: Literal["steady", "peak", "ramp"] = "steady"
    users: Annotated[int, Field(ge=1, le=500)] = 8
    duration_s: Annotated[float, Field(ge=5, le=3600)] = 60
    spawn_rate: Annotated[float, Field(gt=0, le=1000)] = 20
    peak_factor: Annotated[float, Field(ge=1, le=50)] = 10
    peak_start_s: Annotated[float, Field(ge=0)] | None = None
    peak_end_s: Annotated[float, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _window(self) -> Load:
        start, end = self.peak_start_s, self.peak_end_s
        if start is not None and end is not None and start >= end:
            raise ValueError(f"peak_start_s {start:g} must be before peak_end_s {end:g}")
        if end is not None and end > self.duration_s:
            raise ValueError(f"peak_end_s {end:g} is past duration_s {self.duration_s:g}")
        return self


class Experiment(_Strict):
    title: Annotated[str, Field(min_length=1, max_length=200)]
    description: str = ""
    subject: Code
    load: Load = Load()
    warmup_s: Annotated[float, Field(ge=0, le=600)] = 5.0  # load before the steady state is checked
    steady_state: list[Check] = Field(default_factory=list)
    method: Annotated[list[Step], Field(min_length=1)]
    rollbacks: list[ActionStep] = Field(default_factory=list)
    stop_conditions: list[Check] = Field(default_factory=list)
    settle_s: Annotated[float, Field(ge=0, le=600)] = 30.0  # after the load, for held orders to land
    # what the fault must show: detected at the subject, its region's orders taken by a backup,
    # intake back to its steady share (a fault the world absorbs expects only `recover`)
    expect: list[Literal["detect", "mitigate", "recover"]] = ["detect", "mitigate", "recover"]
    within_s: dict[Literal["detect", "mitigate", "recover"], Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict
    )  # upper bounds on those times, e.g. {mitigate: 1}
    # how long intake must hold its steady share to count as recovered (one lucky second is not)
    recover_hold_s: Annotated[float, Field(ge=0.5, le=600)] = 3.0

    @model_validator(mode="after")
    def _fits_the_load(self) -> Experiment:
        # faults after the load has ended measure nothing: the method must end inside it
        needed = self.warmup_s + method_seconds(self)
        if needed > self.load.duration_s:
            raise ValueError(
                f"warmup and method take up to {needed:g} s but the load lasts {self.load.duration_s:g} s"
                " (load.duration_s)"
            )
        return self


def scaled(x: Experiment, factor: float) -> Experiment:
    """The same experiment with every duration multiplied by `factor` (a short form for CI runs)."""
    if not 0 < factor <= 1:
        raise ValueError(f"time scale must be in (0, 1], got {factor:g}")

    def step(s: Step) -> Step:
        if isinstance(s, PauseStep):
            return s.model_copy(update={"pause": s.pause * factor})
        if isinstance(s, ProbeStep):
            return s.model_copy(
                update={"pause_after_s": s.pause_after_s * factor, "wait_up_to_s": s.wait_up_to_s * factor}
            )
        return s.model_copy(update={"pause_after_s": s.pause_after_s * factor})

    load = x.load
    duration = max(5.0, load.duration_s * factor)
    start = None if load.peak_start_s is None else load.peak_start_s * factor
    end = None if load.peak_end_s is None else min(duration, load.peak_end_s * factor)
    window = {"duration_s": duration, "peak_start_s": start, "peak_end_s": end}
    return x.model_copy(
        update={
            "load": load.model_copy(update=window),
            "warmup_s": x.warmup_s * factor,
            "settle_s": x.settle_s * factor,
            "recover_hold_s": max(0.5, x.recover_hold_s * factor),
            "method": [step(s) for s in x.method],
        }
    )


def method_seconds(x: Experiment) -> float:
    """The longest the method can take: its pauses and the longest each probe may wait."""
    total = 0.0
    for s in x.method:
        if isinstance(s, PauseStep):
            total += s.pause
        else:
            total += s.pause_after_s + (s.wait_up_to_s if isinstance(s, ProbeStep) else 0.0)
    return total


class ExperimentError(Exception):
    """An experiment file that cannot be run; `errors` names the path of each problem."""

    def __init__(self, source: str, errors: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(errors))
        self.source = source
        self.errors = errors


def load_experiment(path: Path) -> Experiment:
    """Parse and check an experiment file; ExperimentError lists every problem with its path."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ExperimentError(str(path), [exc.strerror or str(exc)]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ExperimentError(str(path), [f"{where}not YAML ({getattr(exc, 'problem', exc)})"]) from None
    if not isinstance(data, dict):
        raise ExperimentError(str(path), ["the file must be a mapping (title, subject, method, ...)"])
    try:
        return Experiment.model_validate(data)
    except ValidationError as exc:
        raise ExperimentError(str(path), [_error(e) for e in exc.errors()]) from None


def _error(error: Any) -> str:
    parts: list[str] = []
    loc = list(error["loc"])
    for i, part in enumerate(loc):
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif part in ("action", "probe", "pause") and i > 0 and isinstance(loc[i - 1], int):
            continue  # the union's tag, right after a list index: not a field
        else:
            parts.append(("." if parts else "") + ("with" if part == "with_" else str(part)))
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{''.join(parts) or '(file)'}: {message}"
