"""APScheduler on the elected leader: probe jobs per target, alert evaluation, delivery per channel.

APScheduler 3 cannot share a job store between processes safely (DESIGN §12), so every process
keeps an in-memory scheduler, paused, and only the leader adds jobs and resumes it. A process that
loses the lead removes its jobs at once; the next leader starts from the stored state (health,
alerts, deliveries). A job already running when the lead is lost finishes its current step
(jobs check `is_leader` before each send or write), and a stopping leader drains its running jobs
before it releases the lock, so two leaders overlap by at most one probe or one send.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from control_plane.metrics import Metrics
from control_plane.monitoring.jobs import Prober, ProbeTarget
from control_plane.monitoring.leader import LeaderElection, LeaderLock

log = logging.getLogger("drctl.scheduler")
PROBE_PREFIX = "probe:"
TARGET_SYNC_S = 15.0  # how soon a world reload's new or removed targets are probed or dropped

# APScheduler logs every run at INFO and every skipped overlapping run at WARNING: at one probe per
# target per interval that drowns the log. Our jobs log their own failures.
logging.getLogger("apscheduler").setLevel(logging.ERROR)


class Evaluator(Protocol):
    """The alert engine's periodic evaluation (alerting.jobs.AlertEvaluator)."""

    def tick(self) -> None: ...


class Delivery(Protocol):
    """Per-channel delivery of queued notifications (alerting.delivery.AlertDelivery)."""

    @property
    def channel_names(self) -> list[str]: ...

    def deliver_due(self, channel: str, leading: Callable[[], bool] = ...) -> int: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class LeaderJob:
    """Other periodic work only the leader runs (e.g. polling DCs that cannot call out)."""

    name: str
    run: Callable[[Callable[[], bool]], object]  # handed `leading`, to check before each step
    interval_s: float
    close: Callable[[], None] = lambda: None


@dataclass(frozen=True, slots=True)
class Intervals:
    probe_s: float
    alert_s: float
    delivery_s: float
    leader_poll_s: float


class LeaderScheduler:
    def __init__(
        self,
        lock: LeaderLock,
        intervals: Intervals,
        prober: Prober,
        evaluator: Evaluator | None,
        delivery: Delivery,
        metrics: Metrics,
        jobs: Sequence[LeaderJob] = (),
    ) -> None:
        self._intervals = intervals
        self._jobs = tuple(j for j in jobs if j.interval_s > 0)
        self._prober = prober
        self._evaluator = evaluator
        self._delivery = delivery
        self._metrics = metrics
        self._sched = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=32)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60},
            timezone=UTC,
        )
        self._election = LeaderElection(lock, intervals.leader_poll_s, self._elected, self._deposed)
        # set while this process may act as leader; running jobs check it before each send or write
        self._leading = threading.Event()
        self._metrics.scheduler_leader.set(0)

    @property
    def is_leader(self) -> bool:
        return self._election.is_leader

    def start(self) -> None:
        self._sched.start(paused=True)
        self._election.start()

    def stop(self) -> None:
        # keep the lock until running jobs are done, so a successor never overlaps them
        self._election.halt()
        if self._sched.running:
            self._sched.shutdown(wait=True)
        self._election.release()
        self._delivery.close()
        self._prober.close()
        for job in self._jobs:
            job.close()

    def status(self) -> dict[str, Any]:
        jobs = [
            {
                "id": j.id,
                "next_run_at": j.next_run_time.isoformat() if j.next_run_time else None,
                "interval_s": j.trigger.interval.total_seconds() if hasattr(j.trigger, "interval") else None,
            }
            for j in self._sched.get_jobs()
        ]
        return {"leader": self.is_leader, "jobs": sorted(jobs, key=lambda j: j["id"])}

    def _elected(self) -> None:
        self._leading.set()
        iv = self._intervals
        self._add("sync-probe-targets", self.sync_targets, TARGET_SYNC_S)
        if self._evaluator is not None:
            self._add("evaluate-alerts", self._evaluator.tick, iv.alert_s)
        for channel in self._delivery.channel_names:
            self._add(f"deliver:{channel}", self._deliver, iv.delivery_s, args=[channel])
        for job in self._jobs:
            self._add(job.name, job.run, job.interval_s, args=[self._leading.is_set])
        self._sched.resume()
        self._metrics.scheduler_leader.set(1)

    def _deposed(self) -> None:
        self._leading.clear()
        self._sched.remove_all_jobs()
        self._sched.pause()
        self._metrics.scheduler_leader.set(0)

    def sync_targets(self) -> None:
        """Probe every current target on its own interval job; drop jobs of removed targets."""
        wanted = {PROBE_PREFIX + t.target: t for t in self._prober.targets()}
        have = {j.id: j for j in self._sched.get_jobs() if j.id.startswith(PROBE_PREFIX)}
        for job_id in have.keys() - wanted.keys():
            self._sched.remove_job(job_id)
        for job_id, target in wanted.items():
            job = have.get(job_id)
            if job is None or job.args[0] != target:
                self._add(job_id, self._probe, self._intervals.probe_s, args=[target])

    def _probe(self, target: ProbeTarget) -> None:
        try:
            self._prober.probe(target, self._leading.is_set)
        except Exception:
            log.exception("probe of %s failed to record", target.target)

    def _deliver(self, channel: str) -> None:
        self._delivery.deliver_due(channel, self._leading.is_set)

    def _add(
        self, job_id: str, func: Callable[..., Any], every_s: float, args: list[Any] | None = None
    ) -> None:
        # APScheduler runs on the wall clock, whatever clock the jobs themselves are given
        self._sched.add_job(
            func,
            "interval",
            seconds=every_s,
            args=args or [],
            id=job_id,
            name=job_id,
            next_run_time=datetime.now(UTC),
            replace_existing=True,
        )
