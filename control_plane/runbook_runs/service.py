"""Runbook executions: started by an operator or by an alert, advanced by the leader, approved,
aborted, and the kill switch for automatic starts.

An alert starts each runbook whose trigger matches it once: the start is written in the transaction
that records the alert on its incident, keyed by runbook, alert fingerprint and alert start, and the
key is unique, so repeats of the alert, replicas receiving the same Alertmanager webhook and the
built-in engine seeing it again start nothing more. Only the leader advances executions.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from control_plane.auth import repository as audit_log
from control_plane.domain import Actor, Conflict, FieldError, Forbidden, InvalidInput, NotFound
from control_plane.operations import repository as incident_repo
from control_plane.operations.service import SiteOperations
from control_plane.runbook_runs import repository as repo
from control_plane.runbook_runs.actions import ControlPlaneEffects
from control_plane.runbook_runs.journal import SqlJournal, execution_from_row, step_from_row
from control_plane.runbook_runs.library import RunbookLibrary
from control_plane.store.tables import RunbookExecutionRow
from runbooks.engine import ENDED, Engine, ExecStatus, Execution, Phase, StepStatus
from runbooks.model import Runbook, bind_params

if TYPE_CHECKING:
    from control_plane.context import AppContext  # the type only: the context is built above every area

log = logging.getLogger("drctl.runbooks")
_WORLD_PARAMS = {"site", "channel", "integration"}


class RunbookService:
    def __init__(
        self,
        ctx: AppContext,
        ops: SiteOperations,
        library: RunbookLibrary,
        approver_must_differ: bool,
        auto_start: bool = True,
        lease_s: float = 30.0,
    ) -> None:
        self._ctx = ctx
        self._auto_start = auto_start
        self._lease_s = lease_s
        # this process, as the holder of an execution's lease
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:100]
        self._ops = ops
        self._library = library
        self._must_differ = approver_must_differ
        self._journal = SqlJournal(ctx.sessions, ctx.clock)

    @property
    def library(self) -> RunbookLibrary:
        return self._library

    # --- starting ---

    def start(self, name: str, params: Mapping[str, Any], actor: Actor, dry_run: bool) -> dict[str, Any]:
        """Start an execution by hand; a dry run reports every step's plan and changes nothing."""
        book = self._library.get(name)
        values = self._bind(book, params, {})
        now = self._ctx.clock()
        with self._ctx.sessions.begin() as s:
            incident = None if dry_run else self._open_incident_of(s, book, values)
            row = repo.add_execution(
                s, name, values, ExecStatus.RUNNING.value, actor.name, now, dry_run, incident_id=incident
            )
            assert row is not None
            audit_log.audit(
                s, now, actor.name, "runbook.start", f"runbook:{name}", None,
                {"params": values, "dry_run": dry_run}, None, actor.idempotency_key,
            )  # fmt: skip
            s.flush()
            execution_id = row.id
            if incident is not None:
                message = f"runbook {name} #{execution_id} started by {actor.name}"
                incident_repo.add_event(s, incident, now, "runbook", message)
        ex = self._load(execution_id)[0]
        if dry_run:
            Engine(self._journal, self._effects(ex.runbook, execution_id, None)).dry_run(ex, book, now)
        else:
            log.warning("runbook %s #%s started by %s", name, execution_id, actor.name)
        return self.get(execution_id)

    @staticmethod
    def _open_incident_of(s: Session, book: Runbook, values: Mapping[str, Any]) -> int | None:
        """The open incident of the site or integration a hand-started runbook is about, if any: its
        steps then go on that incident's timeline, as an alert-started one's do."""
        for name, param in book.params.items():
            if param.type in ("site", "integration"):
                incident = incident_repo.open_incident_for(s, str(values[name]))
                if incident is not None:
                    return incident.id
        return None

    def _bind(
        self,
        book: Runbook,
        given: Mapping[str, Any],
        labels: Mapping[str, str],
        session: Session | None = None,
    ) -> dict[str, Any]:
        """Parameter values checked against the loaded world; read in `session` when one is open (on
        SQLite a second connection would wait for the write lock that transaction holds)."""
        values = bind_params(book, given, labels)
        if session is None:
            with self._ctx.sessions() as s:
                known = repo.world_names(s)
        else:
            known = repo.world_names(session)
        errors = [
            FieldError(f"params.{n}", f"no {p.type} {values[n]!r} in the loaded world")
            for n, p in book.params.items()
            if p.type in known and values.get(n) not in known[p.type]
        ]
        if errors:
            raise InvalidInput(f"{errors[0].path}: {errors[0].message}", errors)
        return values

    def on_alert(
        self,
        session: Session,
        alertname: str,
        fingerprint: str,
        starts_at: datetime,
        incident_kind: str | None,
        labels: Mapping[str, str],
        incident_id: int | None,
        now: datetime,
    ) -> list[int]:
        """Start each runbook this alert's firing triggers, once (in the caller's transaction)."""
        books = self._library.triggered_by(alertname, incident_kind, labels)
        if not books or not self._auto_start:
            return []
        switch = repo.switch(session)
        started: list[int] = []
        for book in books:
            key = f"{book.name}:{fingerprint}:{starts_at.isoformat()}"
            if switch.paused:
                log.warning(
                    "runbook %s not started for %s: automatic starts are paused", book.name, alertname
                )
                if incident_id is not None:
                    message = (
                        f"runbook {book.name} not started: automatic starts are paused ({switch.reason})"
                    )
                    incident_repo.add_event(session, incident_id, now, "runbook", message)
                continue
            try:
                values = self._bind(book, {}, labels, session)
            except InvalidInput as exc:
                log.warning("runbook %s not started for %s: %s", book.name, alertname, exc)
                continue
            trigger = {"alertname": alertname, "fingerprint": fingerprint, "labels": dict(labels)}
            row = repo.add_execution(
                session, book.name, values, ExecStatus.RUNNING.value, f"alert:{alertname}", now,
                incident_id=incident_id, trigger_key=key, trigger=trigger,
            )  # fmt: skip
            if row is None:
                continue  # this alert started it already (a repeat, another replica)
            session.flush()
            audit_log.audit(
                session,
                now,
                f"alert:{alertname}",
                "runbook.start",
                f"runbook:{book.name}",
                None,
                {"params": values, "trigger": trigger, "execution": row.id},
            )
            if incident_id is not None:
                incident_repo.add_event(
                    session,
                    incident_id,
                    now,
                    "runbook",
                    f"runbook {book.name} #{row.id} started by {alertname}",
                )
            log.warning("runbook %s #%s started by alert %s", book.name, row.id, alertname)
            started.append(row.id)
        return started

    # --- running (the leader) ---

    def advance_all(self, leading: Any = None) -> int:
        """Advance every live execution as far as it goes now; how many were looked at."""
        with self._ctx.sessions() as s:
            ids = repo.live_execution_ids(s)
        for execution_id in ids:
            try:
                self.advance(execution_id)
            except Exception:
                log.exception(
                    "runbook execution %s could not be advanced; tried again next tick", execution_id
                )
        return len(ids)

    def advance(self, execution_id: int) -> bool:
        """Advance one execution as far as it goes now; False when another process holds it (a
        leader that lost the lead in the middle of a step, until its lease runs out)."""
        if not self._claim(execution_id):
            return False
        done = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(execution_id, done), daemon=True)
        renewer.start()  # a long step (a failover) keeps the lease; a dead process's runs out soon
        try:
            if self._abort_if_resolved(execution_id):
                return True
            ex, row = self._load(execution_id)
            if ex.status not in ENDED:
                effects = self._effects(ex.runbook, execution_id, row.incident_id)
                Engine(self._journal, effects).advance(ex, self._library.get(ex.runbook), self._ctx.clock())
        finally:
            done.set()
            renewer.join()
            with self._ctx.sessions.begin() as s:
                repo.release(s, execution_id, self._owner)
        return True

    def _claim(self, execution_id: int) -> bool:
        now = self._ctx.clock()
        with self._ctx.sessions.begin() as s:
            return repo.claim(s, execution_id, self._owner, now, now + timedelta(seconds=self._lease_s))

    def _renew(self, execution_id: int, done: threading.Event) -> None:
        while not done.wait(self._lease_s / 3):
            try:
                self._claim(execution_id)
            except Exception:  # the database is away: the lease may run out, the step goes on
                log.warning("runbook execution %s: could not renew its lease", execution_id, exc_info=True)

    def _effects(self, runbook: str, execution_id: int, incident_id: int | None) -> ControlPlaneEffects:
        return ControlPlaneEffects(self._ctx, self._ops, f"runbook:{runbook}#{execution_id}", incident_id)

    def _load(self, execution_id: int) -> tuple[Execution, RunbookExecutionRow]:
        with self._ctx.sessions() as s:
            row = repo.get_execution(s, execution_id)
            if row is None:
                raise NotFound(f"no runbook execution {execution_id}")
            s.expunge(row)
        return execution_from_row(row), row

    # --- approve, abort, the kill switch ---

    def approve(self, execution_id: int, actor: Actor, comment: str | None) -> dict[str, Any]:
        now = self._ctx.clock()
        with self._ctx.sessions.begin() as s:
            row = repo.get_execution(s, execution_id, lock=True)
            if row is None:
                raise NotFound(f"no runbook execution {execution_id}")
            if row.status != ExecStatus.WAITING_APPROVAL.value:
                raise Conflict(
                    f"execution {execution_id} is {row.status}, not waiting for approval", rule="not_waiting"
                )
            if self._must_differ and actor.name == row.started_by:
                raise Forbidden(
                    f"{actor.name} started execution {execution_id}: another operator approves it"
                )
            step = repo.step_run(s, execution_id, Phase.DO.value, row.cursor)
            if step is None or step.status != StepStatus.WAITING.value or step.decided_by is not None:
                raise Conflict(
                    f"execution {execution_id} has no step waiting for approval", rule="not_waiting"
                )
            step.decided_by = actor.name
            audit_log.audit(
                s,
                now,
                actor.name,
                "runbook.approve",
                f"runbook-execution:{execution_id}",
                None,
                {"step": step.step_id, "comment": comment},
                comment,
                actor.idempotency_key,
            )
            if row.incident_id is not None:
                incident_repo.add_event(
                    s,
                    row.incident_id,
                    now,
                    "runbook",
                    f"runbook {row.runbook} #{execution_id}: step {step.step_id} approved by {actor.name}",
                )
        log.warning("runbook execution %s approved by %s", execution_id, actor.name)
        return self.get(execution_id)

    def abort(self, execution_id: int, actor: Actor, reason: str) -> dict[str, Any]:
        now = self._ctx.clock()
        with self._ctx.sessions.begin() as s:
            row = repo.get_execution(s, execution_id, lock=True)
            if row is None:
                raise NotFound(f"no runbook execution {execution_id}")
            if row.status in {e.value for e in ENDED}:
                raise Conflict(f"execution {execution_id} has ended ({row.status})", rule="ended")
            _abort(s, row, actor, reason, now)
        return self.get(execution_id)

    def _abort_if_resolved(self, execution_id: int) -> bool:
        """An execution still waiting for an approval when its incident resolved (the DC came back
        first) is aborted: a late approval must not fail over a site that is fine again."""
        now = self._ctx.clock()
        with self._ctx.sessions.begin() as s:
            row = repo.get_execution(s, execution_id, lock=True)
            if row is None or row.status != ExecStatus.WAITING_APPROVAL.value or row.incident_id is None:
                return False
            if not repo.incident_resolved(s, row.incident_id):
                return False
            _abort(s, row, Actor("drctl"), "its incident was resolved before anyone approved", now)
            return True

    def set_paused(self, paused: bool, actor: Actor, reason: str) -> dict[str, Any]:
        now = self._ctx.clock()
        with self._ctx.sessions.begin() as s:
            row = repo.switch(s, lock=True)
            before = row.paused
            row.paused, row.changed_by, row.changed_at, row.reason = paused, actor.name, now, reason
            audit_log.audit(
                s,
                now,
                actor.name,
                "runbooks.pause" if paused else "runbooks.resume",
                "runbooks",
                {"paused": before},
                {"paused": paused},
                reason,
                actor.idempotency_key,
            )
        log.warning(
            "automatic runbook starts %s by %s: %s", "paused" if paused else "resumed", actor.name, reason
        )
        return self.switch_state()

    def switch_state(self) -> dict[str, Any]:
        with self._ctx.sessions.begin() as s:
            row = repo.switch(s)
            return {
                "paused": row.paused,
                "changed_by": row.changed_by,
                "changed_at": row.changed_at,
                "reason": row.reason,
            }

    # --- reading ---

    def get(self, execution_id: int) -> dict[str, Any]:
        with self._ctx.sessions() as s:
            row = repo.get_execution(s, execution_id)
            if row is None:
                raise NotFound(f"no runbook execution {execution_id}")
            steps = [step_from_row(r) for r in repo.step_runs(s, execution_id)]
            return {
                **execution_json(row),
                "steps": [
                    {
                        "step": r.step_id, "phase": r.phase.value, "position": r.position, "action": r.action,
                        "status": r.status.value, "started_at": r.started_at, "ended_at": r.ended_at,
                        "output": r.output, "error": r.error, "approved_by": r.decided_by,
                        "idempotency_key": r.key,
                    }
                    for r in steps
                ],
            }  # fmt: skip

    def list(self, status: str | None, runbook: str | None, limit: int) -> list[dict[str, Any]]:
        with self._ctx.sessions() as s:
            return [execution_json(r) for r in repo.list_executions(s, status, runbook, limit)]


_EXECUTION_FIELDS = (
    "id", "runbook", "status", "params", "dry_run", "cursor", "started_by", "started_at", "updated_at",
    "ended_at", "error", "incident_id", "trigger", "abort_reason",
)  # fmt: skip


def _abort(s: Session, row: RunbookExecutionRow, actor: Actor, reason: str, now: datetime) -> None:
    before = row.status
    row.status, row.abort_reason, row.ended_at, row.updated_at = ExecStatus.ABORTED.value, reason, now, now
    subject = f"runbook-execution:{row.id}"
    after = {"status": row.status}
    audit_log.audit(
        s, now, actor.name, "runbook.abort", subject, {"status": before}, after, reason, actor.idempotency_key
    )
    if row.incident_id is not None:
        message = f"runbook {row.runbook} #{row.id} aborted by {actor.name}: {reason}"
        incident_repo.add_event(s, row.incident_id, now, "runbook", message)
    log.warning("runbook execution %s aborted by %s: %s", row.id, actor.name, reason)


def execution_json(row: RunbookExecutionRow) -> dict[str, Any]:
    return {name: getattr(row, name) for name in _EXECUTION_FIELDS}


def runbook_json(book: Runbook) -> dict[str, Any]:
    return {
        "name": book.name,
        "description": book.description,
        "triggers": [t.model_dump(exclude_none=True) for t in book.triggers],
        "params": {n: p.model_dump(exclude_none=True) for n, p in book.params.items()},
        "steps": [
            {"id": st.id, "action": st.action, "timeout_s": st.timeout_s, "on_failure": st.on_failure,
             "rollback": st.rollback.action if st.rollback else None}
            for st in book.steps
        ],
    }  # fmt: skip
