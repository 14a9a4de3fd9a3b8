"""A runbook file (`runbooks/library/*.yaml`) as typed models, checked before anything runs.

Every problem is reported with its path in the file (`steps[2].with.site: ...`), all at once; a
step naming an action that is not in the registry, or arguments that action does not take, is
refused. Step arguments may name the runbook's parameters as `{{ params.NAME }}`: a value that is
only the template takes the parameter's typed value, one inside other text its string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from control_plane.domain import FieldError, InvalidInput, field_path
from runbooks.actions import ACTIONS, Kind

Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
TEMPLATE = re.compile(r"\{\{\s*params\.([a-z_][a-z0-9_]*)\s*\}\}")
ParamType = Literal["string", "integer", "number", "boolean", "site", "channel", "integration"]


def _seconds(value: Any) -> Any:
    """`90s`, `30m`, `4h`, `1d` or a number of seconds."""
    if isinstance(value, str):
        found = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([smhd])\s*", value)
        if not found:
            raise ValueError("a duration is a number of seconds or like 90s, 30m, 4h, 1d")
        return float(found.group(1)) * _UNITS[found.group(2)]
    return value


Duration = Annotated[float, BeforeValidator(_seconds), Field(gt=0, le=7 * 86400)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ParamIn(_In):
    type: ParamType
    description: str = ""
    default: str | int | float | bool | None = None
    from_label: str | None = Field(
        default=None, description="taken from this label of the alert that started it"
    )


class TriggerIn(_In):
    alert: str | None = Field(default=None, min_length=1, max_length=100)
    incident: Literal["site_outage", "integration_outage", "capacity"] | None = None
    labels: dict[str, str] = Field(
        default_factory=dict, description="exact values the alert's labels must have"
    )


class RollbackIn(_In):
    action: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")


class StepIn(_In):
    id: Slug
    action: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    timeout: Duration | None = None
    on_failure: Literal["stop", "continue", "rollback"] = "stop"
    rollback: RollbackIn | None = None

    @property
    def timeout_s(self) -> float:
        return self.timeout if self.timeout is not None else ACTIONS[self.action].default_timeout_s


class Runbook(_In):
    name: Slug
    description: str = Field(min_length=1, max_length=2000)
    triggers: list[TriggerIn] = Field(default_factory=list)
    params: dict[Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,40}$")], ParamIn] = Field(
        default_factory=dict
    )
    steps: list[StepIn] = Field(min_length=1, max_length=50)


_SAMPLES: Mapping[str, Any] = {
    "string": "x",
    "integer": 1,
    "number": 1.0,
    "boolean": True,
    "site": "site",
    "channel": "channel",
    "integration": "integration",
}


def render(value: Any, params: Mapping[str, Any]) -> Any:
    """`value` with every `{{ params.NAME }}` replaced (KeyError names an unknown one)."""
    if isinstance(value, dict):
        return {k: render(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, params) for v in value]
    if not isinstance(value, str):
        return value
    whole = TEMPLATE.fullmatch(value.strip())
    if whole:
        return params[whole.group(1)]
    return TEMPLATE.sub(lambda m: str(params[m.group(1)]), value)


def _check_call(
    action: str, args: Mapping[str, Any], book: Runbook, path: str, rollback: bool
) -> list[FieldError]:
    spec = ACTIONS.get(action)
    if spec is None:
        known = ", ".join(sorted(ACTIONS))
        return [FieldError(f"{path}.action", f"unknown action {action!r} (known: {known})")]
    if rollback and spec.kind is not Kind.CHANGE:
        return [FieldError(f"{path}.action", f"{action} changes nothing: it cannot be a rollback")]
    try:
        sample = render(dict(args), {n: _SAMPLES[p.type] for n, p in book.params.items()})
    except KeyError as exc:
        return [FieldError(f"{path}.with", f"names an unknown parameter {exc.args[0]!r}")]
    try:
        spec.args.model_validate(sample)
    except ValidationError as exc:
        return [FieldError(f"{path}.with.{field_path(e['loc'])}", e["msg"]) for e in exc.errors()]
    return []


def _unknown_actions(data: dict[str, Any]) -> list[FieldError]:
    steps = data.get("steps")
    if not isinstance(steps, list):
        return []
    known = ", ".join(sorted(ACTIONS))
    return [
        FieldError(f"steps[{i}].action", f"unknown action {step['action']!r} (known: {known})")
        for i, step in enumerate(steps)
        if isinstance(step, dict) and isinstance(step.get("action"), str) and step["action"] not in ACTIONS
    ]


def _cross_check(book: Runbook) -> list[FieldError]:
    errors: list[FieldError] = []
    seen: set[str] = set()
    for i, step in enumerate(book.steps):
        if step.id in seen:
            errors.append(FieldError(f"steps[{i}].id", f"duplicate step id {step.id!r}"))
        seen.add(step.id)
        errors += _check_call(step.action, step.with_, book, f"steps[{i}]", rollback=False)
        if step.rollback is not None:
            errors += _check_call(
                step.rollback.action, step.rollback.with_, book, f"steps[{i}].rollback", True
            )
        if step.on_failure == "rollback" and not any(s.rollback for s in book.steps[: i + 1]):
            errors.append(
                FieldError(f"steps[{i}].on_failure", "rollback, but no step before it has a rollback")
            )
    for i, trigger in enumerate(book.triggers):
        if (trigger.alert is None) == (trigger.incident is None):
            errors.append(FieldError(f"triggers[{i}]", "name exactly one of alert or incident"))
    for name, param in book.params.items():
        if param.default is not None and not _fits(param.type, param.default):
            errors.append(FieldError(f"params.{name}.default", f"is not a {param.type}"))
    return errors


def _fits(kind: str, value: Any) -> bool:
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str) and bool(value)


def parse_runbook(data: Any, source: str = "<runbook>") -> Runbook:
    """Validate raw runbook data; InvalidInput naming `source` and the path of every problem."""
    if not isinstance(data, dict):
        raise InvalidInput(f"{source}: a runbook is a mapping (name, description, steps, ...)")
    try:
        book = Runbook.model_validate(data)
    except ValidationError as exc:
        errors = [
            FieldError(field_path(e["loc"]).replace("with_", "with"), e["msg"].removeprefix("Value error, "))
            for e in exc.errors()
        ]
        # an unknown action is the commonest mistake: named even when the file has others too
        errors += [e for e in _unknown_actions(data) if e.path not in {x.path for x in errors}]
        raise InvalidInput(f"{source}: {_summary(errors)}", errors) from None
    errors = _cross_check(book)
    if errors:
        raise InvalidInput(f"{source}: {_summary(errors)}", errors)
    return book


def _summary(errors: Sequence[FieldError]) -> str:
    first = f"{errors[0].path}: {errors[0].message}"
    return first if len(errors) == 1 else f"{first} (and {len(errors) - 1} more)"


def load_runbook_file(path: str | Path) -> Runbook:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"{p}: cannot read the runbook ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InvalidInput(f"{p}: not valid YAML{where}") from None
    return parse_runbook(data, str(p))


def bind_params(book: Runbook, given: Mapping[str, Any], labels: Mapping[str, str]) -> dict[str, Any]:
    """The parameter values of one execution: given, else from the alert's label, else the default;
    InvalidInput naming each unknown, missing or mistyped one."""
    errors = [
        FieldError(f"params.{name}", "not a parameter of this runbook")
        for name in given
        if name not in book.params
    ]
    values: dict[str, Any] = {}
    for name, param in book.params.items():
        if name in given:
            value = given[name]
        elif param.from_label is not None and param.from_label in labels:
            value = labels[param.from_label]
        else:
            value = param.default
        if value is None:
            errors.append(FieldError(f"params.{name}", "missing"))
        elif not _fits(param.type, value):
            errors.append(FieldError(f"params.{name}", f"is not a {param.type}"))
        else:
            values[name] = float(value) if param.type == "number" else value
    if errors:
        raise InvalidInput(_summary(errors), errors)
    return values


def matches(trigger: TriggerIn, alertname: str, incident_kind: str | None, labels: Mapping[str, str]) -> bool:
    """Whether an alert firing starts a runbook with this trigger."""
    if trigger.alert is not None and trigger.alert != alertname:
        return False
    if trigger.incident is not None and trigger.incident != incident_kind:
        return False
    return all(labels.get(k) == v for k, v in trigger.labels.items())
