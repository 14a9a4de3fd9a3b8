"""The engine's journal in the store: each start and end of a step, and each change of an
execution, is its own committed transaction, audited and put on the incident's timeline."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from control_plane.auth import repository as audit_log
from control_plane.operations import repository as incident_repo
from control_plane.runbook_runs import repository as repo
from control_plane.store.tables import RunbookExecutionRow, StepRunRow
from runbooks.engine import ENDED, ExecStatus, Execution, Phase, StepRun, StepStatus


def step_from_row(r: StepRunRow) -> StepRun:
    return StepRun(
        position=r.position,
        phase=Phase(r.phase),
        step_id=r.step_id,
        action=r.action,
        key=r.idempotency_key,
        status=StepStatus(r.status),
        started_at=r.started_at,
        ended_at=r.ended_at,
        output=dict(r.output or {}),
        error=r.error,
        decided_by=r.decided_by,
    )


def execution_from_row(r: RunbookExecutionRow) -> Execution:
    return Execution(
        id=r.id,
        runbook=r.runbook,
        params=dict(r.params or {}),
        status=ExecStatus(r.status),
        cursor=r.cursor,
        started_by=r.started_by,
        dry_run=r.dry_run,
        error=r.error,
    )


class SqlJournal:
    def __init__(self, sessions: sessionmaker[Session], clock: Callable[[], datetime]) -> None:
        self._sessions = sessions
        self._clock = clock

    def runs(self, execution_id: int) -> list[StepRun]:
        with self._sessions() as s:
            return [step_from_row(r) for r in repo.step_runs(s, execution_id)]

    def aborted(self, execution_id: int) -> bool:
        with self._sessions() as s:
            row = repo.get_execution(s, execution_id)
            return row is None or row.status == ExecStatus.ABORTED.value

    def start(self, execution: Execution, run: StepRun) -> None:
        with self._sessions.begin() as s:
            s.add(
                StepRunRow(
                    execution_id=execution.id,
                    phase=run.phase.value,
                    position=run.position,
                    step_id=run.step_id,
                    action=run.action,
                    idempotency_key=run.key,
                    status=run.status.value,
                    started_at=run.started_at,
                    output=run.output,
                )
            )
            if run.status is not StepStatus.PLANNED:
                what = "rollback" if run.phase is Phase.UNDO else "step"
                self._record(
                    s, execution, f"runbook.{what}.start", run, f"{what} {run.step_id} ({run.action}) started"
                )

    def finish(self, execution: Execution, run: StepRun) -> None:
        with self._sessions.begin() as s:
            row = repo.step_run(s, execution.id, run.phase.value, run.position)
            assert row is not None, "finishing a step that never started"
            row.status, row.output, row.error, row.ended_at = (
                run.status.value,
                run.output,
                run.error,
                run.ended_at,
            )
            if run.status in (StepStatus.SUCCEEDED, StepStatus.FAILED):
                what = "rollback" if run.phase is Phase.UNDO else "step"
                text = f"{what} {run.step_id} ({run.action}) {run.status.value}"
                self._record(
                    s,
                    execution,
                    f"runbook.{what}.{run.status.value}",
                    run,
                    text + (f": {run.error}" if run.error else ""),
                )

    def save(self, execution: Execution) -> None:
        now = self._clock()
        values: dict[str, Any] = {
            "status": execution.status.value,
            "cursor": execution.cursor,
            "error": execution.error,
            "updated_at": now,
        }
        if execution.status in ENDED:
            values["ended_at"] = now
        with self._sessions.begin() as s:
            # an abort that came in meanwhile wins: the engine never writes over it
            done = s.execute(
                update(RunbookExecutionRow)
                .where(
                    RunbookExecutionRow.id == execution.id,
                    RunbookExecutionRow.status != ExecStatus.ABORTED.value,
                )
                .values(**values)
            )
            row = repo.get_execution(s, execution.id)
            if done.rowcount and execution.status in ENDED and row is not None:
                audit_log.audit(
                    s, now, f"runbook:{execution.runbook}", f"runbook.execution.{execution.status.value}",
                    f"runbook-execution:{execution.id}", after={"error": execution.error},
                )  # fmt: skip
                if row.incident_id is not None:
                    message = f"runbook {execution.runbook} #{execution.id} {execution.status.value}"
                    incident_repo.add_event(
                        s,
                        row.incident_id,
                        now,
                        "runbook",
                        message + (f": {execution.error}" if execution.error else ""),
                    )

    def _record(self, s: Session, execution: Execution, action: str, run: StepRun, text: str) -> None:
        now = self._clock()
        audit_log.audit(
            s, now, f"runbook:{execution.runbook}", action, f"runbook-execution:{execution.id}",
            after={"step": run.step_id, "action": run.action, "key": run.key, "error": run.error},
            idempotency_key=run.key,
        )  # fmt: skip
        row = repo.get_execution(s, execution.id)
        if row is not None and row.incident_id is not None:
            incident_repo.add_event(
                s, row.incident_id, now, "runbook", f"runbook {execution.runbook} #{execution.id}: {text}"
            )
