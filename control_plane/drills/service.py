"""Drill runs: start (refused inside a peak window unless forced), heartbeat, result, abort.

A drill registers before it injects anything, beats every second or so, and reads the abort flag
from the heartbeat's answer: `POST /v1/drills/abort` reaches every drill driving this control
plane, whichever machine it runs on. A drill not heard from for `heartbeat_timeout_s` is shown
as `lost`: it may have been killed with its faults still in place, which an operator must check.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from control_plane.auth.repository import audit
from control_plane.domain import Actor, Conflict, InvalidInput, Recovery
from control_plane.drills import repository as repo
from control_plane.drills.calendar import CommerceCalendar
from control_plane.drills.schemas import DrillOut, DrillResultIn, DrillStartIn, HeartbeatOut
from control_plane.store.tables import DrillRunRow
from control_plane.world import repository as world_repo

RESULT_FIELDS = ("detect_s", "mitigate_s", "recover_s", "rto_s", "lost", "duplicated", "held")


def peak_window_refusal(calendar: CommerceCalendar, at: datetime) -> Conflict | None:
    """The refusal for a drill starting at `at`, or None outside every peak window."""
    window = calendar.window_at(at)
    if window is None:
        return None
    return Conflict(
        f"peak_window: {window.describe(calendar.zone)} is a peak window of the commerce calendar; "
        "drills do not start in it unless forced with a reason",
        "peak_window",
        {"window": window.name, "start": window.start.isoformat(), "end": window.end.isoformat()},
    )


class DrillService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Callable[[], datetime],
        calendar: CommerceCalendar,
        heartbeat_timeout_s: float,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self.calendar = calendar
        self._stale = timedelta(seconds=heartbeat_timeout_s)

    def start(self, actor: Actor, body: DrillStartIn) -> dict[str, object]:
        now = self._clock()
        if body.force and body.reason is None:
            raise InvalidInput("force needs a reason (it is audited)")
        refusal = peak_window_refusal(self.calendar, now)
        if refusal is not None and not body.force:
            raise refusal
        forced = body.reason if refusal is not None else None
        with self._sessions.begin() as s:
            row = repo.add_run(s, body.experiment, body.subject, actor.name, now, forced)
            after = {"experiment": body.experiment, "subject": body.subject}
            if refusal is not None:
                after["forced_in_window"] = str(refusal.details["window"])
            audit(s, now, actor.name, "drill.start", f"drill:{row.id}", after=after, reason=body.reason,
                  idempotency_key=actor.idempotency_key)  # fmt: skip
            return self.out(row, now).model_dump(mode="json")

    def heartbeat(self, run_id: int) -> HeartbeatOut:
        # liveness, not a change anyone decided: not audited (one row a second would bury the log)
        now = self._clock()
        with self._sessions.begin() as s:
            row = repo.get_run(s, run_id, for_update=True)
            if row.status != "running":
                raise Conflict(f"drill {run_id} has ended ({row.status})", "drill_ended")
            row.heartbeat_at = now
            return HeartbeatOut(abort=row.abort_requested_at is not None, reason=row.abort_reason)

    def finish(self, actor: Actor, run_id: int, body: DrillResultIn) -> dict[str, object]:
        now = self._clock()
        with self._sessions.begin() as s:
            row = repo.get_run(s, run_id, for_update=True)
            if row.status != "running":
                raise Conflict(f"drill {run_id} has its result already ({row.status})", "drill_ended")
            row.status, row.ended_at, row.heartbeat_at = body.status, now, now
            for name in RESULT_FIELDS:
                setattr(row, name, getattr(body, name))
            row.deviations, row.journal = list(body.deviations), body.journal
            if body.recover_s is not None:
                world_repo.record_recovery(
                    s,
                    Recovery(row.subject, "drill", row.id, now, body.recover_s,
                             body.detect_s, body.mitigate_s, body.rto_s),
                )  # fmt: skip
            after = {"status": body.status, **{n: getattr(body, n) for n in RESULT_FIELDS}}
            audit(s, now, actor.name, "drill.result", f"drill:{row.id}", after=after,
                  idempotency_key=actor.idempotency_key)  # fmt: skip
            return self.out(row, now).model_dump(mode="json")

    def abort_all(self, actor: Actor, reason: str) -> dict[str, object]:
        now = self._clock()
        with self._sessions.begin() as s:
            ids = repo.request_abort(s, now, reason)
            audit(s, now, actor.name, "drill.abort", "drills", after={"drills": ids}, reason=reason,
                  idempotency_key=actor.idempotency_key)  # fmt: skip
        return {"aborted": ids}

    def out(self, row: DrillRunRow, now: datetime, with_journal: bool = False) -> DrillOut:
        status = row.status
        if status == "running" and now - row.heartbeat_at > self._stale:
            status = "lost"
        within = None if row.recover_s is None or row.rto_s is None else row.recover_s <= row.rto_s
        return DrillOut(
            id=row.id, experiment=row.experiment, subject=row.subject, status=status,
            started_by=row.started_by, started_at=row.started_at, heartbeat_at=row.heartbeat_at,
            ended_at=row.ended_at, forced_reason=row.forced_reason,
            abort_requested_at=row.abort_requested_at, abort_reason=row.abort_reason,
            detect_s=row.detect_s, mitigate_s=row.mitigate_s, recover_s=row.recover_s, rto_s=row.rto_s,
            within_rto=within, lost=row.lost, duplicated=row.duplicated, held=row.held,
            deviations=list(row.deviations or []), journal=row.journal if with_journal else None,
        )  # fmt: skip

    def list(self, status: str | None, subject: str | None, limit: int) -> list[DrillOut]:
        now = self._clock()
        with self._sessions() as s:
            return [self.out(row, now) for row in repo.list_runs(s, status, subject, limit)]

    def get(self, run_id: int) -> DrillOut:
        with self._sessions() as s:
            return self.out(repo.get_run(s, run_id), self._clock(), with_journal=True)
