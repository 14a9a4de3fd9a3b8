"""The runbook engine: runs an execution's steps in order, one call of `advance` at a time, over
a journal and the effects the top layer hands in.

Every step's start and end is written to the journal before and after it runs, so an engine that
died (a SIGKILLed control plane) resumes where it stopped: a step journaled as succeeded never runs
again, and a step journaled as started but not ended is run again with the same idempotency key
and `resumed=True`, which each effect uses to recognise its own earlier call (a failover of a site
already out of routing finishes what is left; an incident note with that key is not posted twice).

`advance` returns when the execution must wait (an approval, a probe's condition) or has ended; the
caller (the leader's job) calls it again later. A failing step does what its `on_failure` says:
`stop` ends the execution failed, `continue` goes on, `rollback` runs the rollbacks of the steps
that succeeded, in reverse order, each once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from runbooks.actions import ACTIONS, Kind
from runbooks.model import Runbook, StepIn, render


class ExecStatus(StrEnum):
    RUNNING = "running"
    WAITING_APPROVAL = "waiting_approval"
    ROLLING_BACK = "rolling_back"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"
    DRY_RUN = "dry_run"


ENDED = frozenset(
    {ExecStatus.SUCCEEDED, ExecStatus.FAILED, ExecStatus.ROLLED_BACK, ExecStatus.ABORTED, ExecStatus.DRY_RUN}
)


class StepStatus(StrEnum):
    RUNNING = "running"  # started; a crash leaves it so, and the step is run again with its key
    WAITING = "waiting"  # an approval or a probe's condition not met yet
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PLANNED = "planned"  # a dry run's report of what the step would do


class Phase(StrEnum):
    DO = "do"
    UNDO = "undo"


@dataclass
class StepRun:
    position: int
    phase: Phase
    step_id: str
    action: str
    key: str
    status: StepStatus
    started_at: datetime
    ended_at: datetime | None = None
    output: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    decided_by: str | None = None  # an approval step: who approved (or aborted)


@dataclass
class Execution:
    id: int
    runbook: str
    params: dict[str, Any]
    status: ExecStatus
    cursor: int  # the next step to run
    started_by: str
    dry_run: bool = False
    error: str | None = None


class ActionFailed(Exception):
    """The effect ran and failed (a safety rule refused, a DC did not answer): the step failed."""


class Journal(Protocol):
    """Where the engine writes; each call is its own committed unit of work."""

    def runs(self, execution_id: int) -> list[StepRun]: ...

    def start(self, execution: Execution, run: StepRun) -> None: ...

    def finish(self, execution: Execution, run: StepRun) -> None: ...

    def save(self, execution: Execution) -> None: ...

    def aborted(self, execution_id: int) -> bool:
        """Whether an operator aborted it since it was read (checked before each new step)."""
        ...


class Effects(Protocol):
    """What the steps do to the world; implemented by the control plane's top layer."""

    def perform(self, action: str, args: Mapping[str, Any], key: str, resumed: bool) -> dict[str, Any]:
        """Carry out a change; ActionFailed when it failed (nothing, or nothing more, was done)."""
        ...

    def preview(self, action: str, args: Mapping[str, Any]) -> dict[str, Any]:
        """What the change would do, changing nothing (a failover's dry-run plan with its rules)."""
        ...

    def probe(self, target: str) -> tuple[str, datetime | None]:
        """The target's health state and since when it has held."""
        ...


def key_of(execution_id: int, phase: Phase, position: int) -> str:
    return f"runbook-execution:{execution_id}:{phase.value}:{position}"


class Engine:
    def __init__(self, journal: Journal, effects: Effects) -> None:
        self._journal = journal
        self._effects = effects

    def advance(self, ex: Execution, book: Runbook, now: datetime) -> Execution:
        """Run steps until the execution must wait or has ended; return it as it now stands."""
        if ex.status in ENDED:
            return ex
        runs = {(r.phase, r.position): r for r in self._journal.runs(ex.id)}
        if ex.status is ExecStatus.ROLLING_BACK:
            return self._roll_back(ex, book, runs, now)
        while ex.cursor < len(book.steps):
            step = book.steps[ex.cursor]
            run = runs.get((Phase.DO, ex.cursor))
            if run is not None and run.status is StepStatus.SUCCEEDED:
                ex.cursor += 1
                continue
            if run is None and self._journal.aborted(ex.id):
                ex.status = ExecStatus.ABORTED
                return ex
            outcome, run = self._run_step(ex, step, run, now)
            if outcome is StepStatus.WAITING:
                return ex
            if outcome is StepStatus.SUCCEEDED:
                ex.cursor += 1
                ex.status = ExecStatus.RUNNING
                self._journal.save(ex)
                continue
            ex.error = f"step {step.id} failed: {run.error}"
            if step.on_failure == "continue":
                ex.cursor += 1
                self._journal.save(ex)
                continue
            if step.on_failure == "rollback":
                ex.status = ExecStatus.ROLLING_BACK
                self._journal.save(ex)
                runs = {(r.phase, r.position): r for r in self._journal.runs(ex.id)}
                return self._roll_back(ex, book, runs, now)
            ex.status = ExecStatus.FAILED
            self._journal.save(ex)
            return ex
        ex.status = ExecStatus.SUCCEEDED
        self._journal.save(ex)
        return ex

    def _run_step(
        self, ex: Execution, step: StepIn, run: StepRun | None, now: datetime
    ) -> tuple[StepStatus, StepRun]:
        resumed = run is not None and run.status is StepStatus.RUNNING
        if run is None:
            run = StepRun(
                ex.cursor,
                Phase.DO,
                step.id,
                step.action,
                key_of(ex.id, Phase.DO, ex.cursor),
                StepStatus.RUNNING,
                now,
            )
            self._journal.start(ex, run)
        return self._step_outcome(ex, step, run, resumed, now), run

    def _step_outcome(
        self, ex: Execution, step: StepIn, run: StepRun, resumed: bool, now: datetime
    ) -> StepStatus:
        spec = ACTIONS[step.action]
        args = render(step.with_, ex.params)
        deadline = run.started_at + timedelta(seconds=step.timeout_s)
        if spec.kind is Kind.APPROVAL:
            if run.decided_by is not None:
                return self._end(ex, run, StepStatus.SUCCEEDED, {"approved_by": run.decided_by}, None, now)
            if now > deadline:
                return self._end(
                    ex, run, StepStatus.FAILED, {}, f"no approval within {step.timeout_s:.0f} s", now
                )
            return self._wait(ex, run, ExecStatus.WAITING_APPROVAL, {"prompt": args.get("prompt", "")})
        if spec.kind is Kind.WAIT:
            health, since = self._effects.probe(args["target"])
            held = (now - since).total_seconds() if since is not None and health == args["health"] else -1.0
            seen = {"health": health, "held_s": max(held, 0.0)}
            if held >= float(args.get("hold_s", 0)):
                return self._end(ex, run, StepStatus.SUCCEEDED, seen, None, now)
            if now > deadline:
                return self._end(
                    ex, run, StepStatus.FAILED, seen, f"{args['target']} not {args['health']} in time", now
                )
            return self._wait(ex, run, ExecStatus.RUNNING, seen)
        try:
            output = self._effects.perform(step.action, args, run.key, resumed)
        except ActionFailed as exc:
            return self._end(ex, run, StepStatus.FAILED, {}, str(exc), now)
        return self._end(ex, run, StepStatus.SUCCEEDED, output, None, now)

    def _wait(self, ex: Execution, run: StepRun, status: ExecStatus, seen: dict[str, Any]) -> StepStatus:
        if run.status is not StepStatus.WAITING or run.output != seen:
            run.status, run.output = StepStatus.WAITING, seen
            self._journal.finish(ex, run)
        if ex.status is not status:
            ex.status = status
            self._journal.save(ex)
        return StepStatus.WAITING

    def _end(
        self,
        ex: Execution,
        run: StepRun,
        status: StepStatus,
        output: dict[str, Any],
        error: str | None,
        now: datetime,
    ) -> StepStatus:
        run.status, run.output, run.error, run.ended_at = status, output, error, now
        self._journal.finish(ex, run)
        return status

    def _roll_back(
        self, ex: Execution, book: Runbook, runs: dict[tuple[Phase, int], StepRun], now: datetime
    ) -> Execution:
        """Undo the steps that succeeded, last first; each rollback runs once (its own key)."""
        incomplete = False
        for position in range(min(ex.cursor, len(book.steps) - 1), -1, -1):
            step = book.steps[position]
            done = runs.get((Phase.DO, position))
            if step.rollback is None or done is None or done.status is not StepStatus.SUCCEEDED:
                continue
            undo = runs.get((Phase.UNDO, position))
            if undo is not None and undo.status in (StepStatus.SUCCEEDED, StepStatus.FAILED):
                incomplete |= undo.status is StepStatus.FAILED
                continue
            resumed = undo is not None
            if undo is None:
                undo = StepRun(
                    position, Phase.UNDO, step.id, step.rollback.action, key_of(ex.id, Phase.UNDO, position),
                    StepStatus.RUNNING, now,
                )  # fmt: skip
                self._journal.start(ex, undo)
            try:
                output = self._effects.perform(
                    step.rollback.action, render(step.rollback.with_, ex.params), undo.key, resumed
                )
                self._end(ex, undo, StepStatus.SUCCEEDED, output, None, now)
            except ActionFailed as exc:
                self._end(ex, undo, StepStatus.FAILED, {}, str(exc), now)
                incomplete = True
        ex.status = ExecStatus.FAILED if incomplete else ExecStatus.ROLLED_BACK
        if incomplete:
            ex.error = f"{ex.error}; a rollback failed too"
        self._journal.save(ex)
        return ex

    def dry_run(self, ex: Execution, book: Runbook, now: datetime) -> Execution:
        """Report what every step would do, changing nothing (each step journaled as planned)."""
        for position, step in enumerate(book.steps):
            spec = ACTIONS[step.action]
            args = render(step.with_, ex.params)
            if spec.kind is Kind.APPROVAL:
                would: dict[str, Any] = {
                    "would": "wait for an operator's approval",
                    "timeout_s": step.timeout_s,
                }
            elif spec.kind is Kind.WAIT:
                would = {
                    "would": f"wait until {args['target']} is {args['health']}",
                    "timeout_s": step.timeout_s,
                }
            else:
                try:
                    would = {"would": self._effects.preview(step.action, args)}
                except ActionFailed as exc:
                    would = {"would": "fail", "error": str(exc)}
            run = StepRun(
                position,
                Phase.DO,
                step.id,
                step.action,
                key_of(ex.id, Phase.DO, position),
                StepStatus.PLANNED,
                now,
            )
            self._journal.start(ex, run)
            run.output, run.ended_at = {"args": args, **would}, now
            self._journal.finish(ex, run)
        ex.status, ex.cursor = ExecStatus.DRY_RUN, len(book.steps)
        self._journal.save(ex)
        return ex
