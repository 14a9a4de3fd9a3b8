"""Run one experiment against a running control plane: load, steady state, method under stop
conditions, rollbacks (always), settle, steady state again, reconcile, measure; return the journal.

Rollbacks run whatever happens to the method: after it, when an action fails, when a stop
condition is crossed, and when the run is aborted (`abort()`, which the CLI calls on Ctrl-C or
SIGTERM). Every wait is bounded and checks for an abort at least every 0.2 s.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chaos.drill import measure
from chaos.drill.context import DrillContext
from chaos.drill.experiment import ActionStep, Check, Experiment, PauseStep, ProbeStep
from chaos.drill.reconcile import reconcile
from chaos.drill.registry import ACTIONS, PROBES

LOCUSTFILE = Path(__file__).resolve().parent.parent / "locustfile.py"
SAMPLE_EVERY_S = 0.2
STOP_CHECK_EVERY_S = 1.0
HEARTBEAT_EVERY_S = 1.0  # how soon the kill switch (POST /v1/drills/abort) is heard


@dataclass
class Event:
    t: float
    phase: str  # steady_state_before | method | stop_condition | rollback | steady_state_after
    kind: str  # action | probe | pause | abort
    name: str
    ok: bool
    detail: str = ""
    value: Any = None


@dataclass
class LoadSpec:
    """Where the load goes and with which credentials (the locustfile's environment)."""

    host: str
    ingest_token: str
    viewer_token: str
    world_file: Path | None
    workdir: Path


@dataclass
class Journal:
    experiment: str
    subject: str
    started_at: float
    status: str = "running"  # completed | deviated | aborted | failed
    deviations: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    fault_started_at: float | None = None
    fault_cleared_at: float | None = None
    measures: dict[str, Any] = field(default_factory=dict)
    reconciliation: dict[str, Any] = field(default_factory=dict)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    breaker_timeline: list[dict[str, Any]] = field(default_factory=list)
    load: dict[str, Any] = field(default_factory=dict)
    ended_at: float | None = None
    drill_id: int | None = None  # as the control plane stores it (/v1/drills/{id})

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)


class Aborted(Exception):
    pass


class DrillRunner:
    def __init__(
        self,
        experiment: Experiment,
        ctx: DrillContext,
        load: LoadSpec,
        progress: Callable[[str], None] = lambda _: None,
        drill_id: int | None = None,
    ) -> None:
        self.x = experiment
        self.ctx = ctx
        self.load = load
        self.progress = progress
        self._abort = threading.Event()
        self._abort_reason = ""
        self._samples: list[measure.SiteSample] = []
        self._samples_lock = threading.Lock()
        self._locust: subprocess.Popen[bytes] | None = None
        self._method_done = threading.Event()
        self._sampler_done = threading.Event()
        self.journal = Journal(experiment.title, experiment.subject, time.time(), drill_id=drill_id)

    # -- control ---------------------------------------------------------------------------------

    def abort(self, reason: str) -> None:
        """Stop the method at once; rollbacks still run."""
        if not self._abort.is_set():
            self._abort_reason = reason
            self._abort.set()

    def abort_from_signal(self, reason: str) -> None:
        """`abort` for a signal handler: Event.set takes a lock the interrupted thread may hold in
        Event.wait (not re-entrant: a deadlock, cpython #126434), so another thread sets it."""
        threading.Thread(target=self.abort, args=(reason,), daemon=True).start()

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self._abort.wait(min(left, 0.2)):
                raise Aborted(self._abort_reason)

    # -- the run ---------------------------------------------------------------------------------

    def run(self) -> Journal:
        """The whole drill. Whatever raises, Locust is stopped and the journal says how far it got."""
        j = self.journal
        try:
            self._run()
        except Exception as exc:
            j.status = "failed"
            j.deviations.append(f"the drill failed: {type(exc).__name__}: {exc}")
        finally:
            self._method_done.set()
            self._sampler_done.set()
            self._stop_locust()
            j.ended_at = time.time()
        if j.status == "running" and self._abort.is_set():
            # aborted while the load wound down or the orders settled: the figures are partial
            j.status = "aborted"
            j.deviations.append(f"aborted: {self._abort_reason}")
        if j.status == "running":
            j.status = "deviated" if j.deviations else "completed"
        return j

    def _run(self) -> None:
        j = self.journal
        sites = self.ctx.get("/v1/sites", self.ctx.tokens.viewer).raise_for_status().json()
        by_code = {s["code"]: s for s in sites}
        if self.x.subject not in by_code:
            known = ", ".join(by_code)
            raise ValueError(f"subject {self.x.subject!r} is not a site of the target (sites: {known})")
        region = by_code[self.x.subject]["region"]
        threading.Thread(target=self._sample_sites, daemon=True, name="drill-sampler").start()
        if j.drill_id is not None:
            threading.Thread(target=self._listen_for_abort, daemon=True, name="drill-heartbeat").start()
        watcher = threading.Thread(target=self._watch_stop_conditions, daemon=True, name="drill-stops")
        method_started = time.time()
        try:
            self._start_load()
            load = self.x.load
            self.progress(f"load: {load.profile}, {load.users} users; warming up {self.x.warmup_s:g} s")
            self._sleep(self.x.warmup_s)
            if not self._checks(self.x.steady_state, "steady_state_before"):
                j.deviations.append("the steady state did not hold before the method")
                raise Aborted("steady state did not hold before the method")
            method_started = time.time()
            watcher.start()
            self._method()
        except Aborted as exc:
            j.status = "aborted"
            if not j.deviations:  # else the deviation that stopped it says why
                j.deviations.append(f"aborted: {exc}")
            j.events.append(Event(time.time(), "method", "abort", "abort", False, str(exc)))
            self.progress(f"aborted: {exc}")
        finally:
            # stop conditions guard the method only: after it the load winds down and an empty
            # latency window is no crossing
            self._method_done.set()
            if watcher.is_alive():
                watcher.join(STOP_CHECK_EVERY_S * 5)
            self._rollbacks()
        self._finish_load()
        self._settle()
        if not self._checks(self.x.steady_state, "steady_state_after", raise_on_abort=False):
            j.deviations.append("the steady state did not hold after the method")
        self._sampler_done.set()
        self._measure(region, method_started, by_code[self.x.subject])

    def _method(self) -> None:
        for i, step in enumerate(self.x.method):
            if self._abort.is_set():
                raise Aborted(self._abort_reason)
            if isinstance(step, PauseStep):
                self.progress(f"method[{i}]: pause {step.pause:g} s")
                self._sleep(step.pause)
                continue
            if isinstance(step, ActionStep):
                ok = self._action(step, "method")
                if not ok:
                    self.journal.deviations.append(f"method[{i}] {step.action} failed")
                    raise Aborted(f"method[{i}] {step.action} failed")
            elif isinstance(step, ProbeStep):
                deadline = time.monotonic() + step.wait_up_to_s
                while not (held := self._probe(step, "method")) and time.monotonic() < deadline:
                    self._sleep(0.5)
                if not held and step.tolerance is not None:
                    self.journal.deviations.append(f"method[{i}] {step.probe} did not hold")
            self._sleep(step.pause_after_s)

    def _action(self, step: ActionStep, phase: str) -> bool:
        t = time.time()
        try:
            detail = str(ACTIONS[step.action](self.ctx, step.with_))
            ok = True
        except Exception as exc:  # an action's failure is a finding of the drill, not a crash of it
            detail, ok = f"{type(exc).__name__}: {exc}", False
        self.journal.events.append(Event(t, phase, "action", step.action, ok, detail))
        self.progress(f"{phase}: {step.action} {'ok' if ok else 'FAILED'} {detail}")
        return ok

    def _probe(self, step: ProbeStep, phase: str) -> bool:
        t = time.time()
        try:
            value = PROBES[step.probe](self.ctx, step.with_)
            ok = step.tolerance.holds(value) if step.tolerance is not None else True
            detail = f"{value!r}" + (f" (want {step.tolerance.describe()})" if step.tolerance else "")
        except Exception as exc:  # a probe that cannot be read did not hold
            value, ok, detail = None, False, f"{type(exc).__name__}: {exc}"
        self.journal.events.append(Event(t, phase, "probe", step.probe, ok, detail, value))
        if phase != "stop_condition" or not ok:
            self.progress(f"{phase}: {step.probe} = {detail} {'ok' if ok else 'DEVIATED'}")
        return ok

    def _checks(self, checks: list[Check], phase: str, raise_on_abort: bool = True) -> bool:
        held = True
        for check in checks:
            if raise_on_abort and self._abort.is_set():
                raise Aborted(self._abort_reason)
            held = self._probe(check, phase) and held
        return held

    def _watch_stop_conditions(self) -> None:
        while not self._abort.is_set() and not self._method_done.is_set():
            for check in self.x.stop_conditions:
                if self._method_done.is_set():
                    return
                if not self._probe(check, "stop_condition"):
                    self.journal.deviations.append(f"stop condition crossed: {check.probe}")
                    self.abort(f"stop condition crossed: {check.probe}")
                    return
            self._abort.wait(STOP_CHECK_EVERY_S)

    def _listen_for_abort(self) -> None:
        """Beat to the control plane and hear its kill switch; a missed beat is no reason to stop
        (the control plane may be the one the drill has just killed)."""
        path = f"/v1/drills/{self.journal.drill_id}/heartbeat"
        while not self._sampler_done.wait(HEARTBEAT_EVERY_S):
            try:
                resp = self.ctx.post(path, {}, self.ctx.tokens.operator)
                beat = resp.json() if resp.status_code == 200 else {}
            except Exception:
                continue
            if beat.get("abort"):
                reason = beat.get("reason") or "no reason given"
                self.progress(f"the kill switch was pulled (POST /v1/drills/abort): {reason}")
                self.abort(f"the kill switch was pulled: {reason}")
                return

    def _rollbacks(self) -> None:
        if self.x.rollbacks:
            self.progress("rolling back")
        for i, step in enumerate(self.x.rollbacks):
            # every rollback runs, whatever the one before did; one that failed may have left a
            # fault in place, which is the first thing the operator must hear
            if not self._action(step, "rollback"):
                self.journal.deviations.insert(
                    0, f"rollbacks[{i}] {step.action} failed: check the target by hand"
                )

    # -- load --------------------------------------------------------------------------------------

    def _start_load(self) -> None:
        load, spec = self.x.load, self.load
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("DRCTL_DRILL_")}
        env = {
            **inherited,
            "DRCTL_DRILL_INGEST_TOKEN": spec.ingest_token,
            "DRCTL_DRILL_VIEWER_TOKEN": spec.viewer_token,
            "DRCTL_DRILL_SHAPE": load.profile,
            "DRCTL_DRILL_USERS": str(load.users),
            "DRCTL_DRILL_DURATION_S": f"{load.duration_s:g}",
            "DRCTL_DRILL_SPAWN_RATE": f"{load.spawn_rate:g}",
            "DRCTL_DRILL_PEAK_FACTOR": f"{load.peak_factor:g}",
            "DRCTL_DRILL_OUTCOMES": str(self.ctx.outcomes.path),
            "DRCTL_DRILL_SEED": str(int(self.journal.started_at) % 100_000),
        }
        if spec.world_file is not None:
            env["DRCTL_DRILL_WORLD"] = str(spec.world_file)
        if load.peak_start_s is not None:
            env["DRCTL_DRILL_PEAK_START_S"] = f"{load.peak_start_s:g}"
        if load.peak_end_s is not None:
            env["DRCTL_DRILL_PEAK_END_S"] = f"{load.peak_end_s:g}"
        argv = [
            sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", spec.host,
            "--csv", str(spec.workdir / "locust"), "--only-summary", "--loglevel", "WARNING",
        ]  # fmt: skip
        log = (spec.workdir / "locust.log").open("wb")
        # its own process group: the terminal's Ctrl-C reaches the drill, which stops Locust itself
        self._locust = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        started = time.monotonic()
        while time.monotonic() - started < 30:
            if self._locust.poll() is not None:
                code, where = self._locust.returncode, spec.workdir / "locust.log"
                raise RuntimeError(f"locust exited with {code}: see {where}")
            if self.ctx.outcomes.all():
                return
            self._sleep(0.2)
        raise RuntimeError("locust placed no order within 30 s")

    def _finish_load(self) -> None:
        """Let the load run to the end of its profile (recovery is measured on it), bounded."""
        if self._locust is None:
            return
        left = self.journal.started_at + self.x.load.duration_s + self.x.warmup_s + 30 - time.time()
        if self.journal.status != "aborted":
            self.progress("load: running to the end of its profile")
            deadline = time.monotonic() + max(0.0, left)
            while self._locust.poll() is None and time.monotonic() < deadline and not self._abort.is_set():
                time.sleep(0.2)
        self._stop_locust()

    def _stop_locust(self) -> None:
        proc = self._locust
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)  # Locust's own orderly stop: it writes its stats
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def _settle(self) -> None:
        """Held orders and moves in flight get `settle_s` to land before the reconciliation."""
        deadline = time.monotonic() + self.x.settle_s
        self.progress(f"settling (up to {self.x.settle_s:g} s)")
        while time.monotonic() < deadline and not self._abort.is_set():
            busy = 0
            for status in ("held", "received", "routed"):
                got = self.ctx.get("/v1/orders", self.ctx.tokens.viewer, status=status, limit=1)
                busy += len(got.json()) if got.status_code == 200 else 1
            if busy == 0:
                return
            time.sleep(0.5)

    # -- sampling and measures -----------------------------------------------------------------------

    def _sample_sites(self) -> None:
        while not self._sampler_done.is_set():
            t = time.time()
            try:
                resp = self.ctx.get("/v1/sites", self.ctx.tokens.viewer)
                if resp.status_code == 200:
                    with self._samples_lock:
                        self._samples.extend(measure.SiteSample.of(t, site) for site in resp.json())
            except Exception:  # the control plane may be down mid-drill: that is what is measured
                pass
            self._sampler_done.wait(SAMPLE_EVERY_S)

    def _measure(self, region: str, method_started: float, subject: dict[str, Any]) -> None:
        j, outcomes = self.journal, self.ctx.outcomes.all()
        fault_at = self.ctx.faults.first()
        cleared = [t for k, t in self.ctx.faults.cleared.items() if k in self.ctx.faults.started]
        fault_end = max(cleared) if cleared else (j.ended_at or time.time())
        j.fault_started_at, j.fault_cleared_at = fault_at, (max(cleared) if cleared else None)
        with self._samples_lock:
            samples = list(self._samples)
        before_start = j.started_at + self.x.warmup_s
        m: dict[str, Any] = {"orders_posted": len(outcomes)}
        if fault_at is not None:
            steady = measure.accepted_share(outcomes, before_start, fault_at) or 0.0
            detect = measure.time_to_detect(samples, self.x.subject, fault_at)
            detected_at = measure.routed_away_at(samples, self.x.subject, fault_at)
            mitigate = measure.time_to_mitigate(outcomes, self.x.subject, region, fault_at, detected_at)
            recover = measure.time_to_recover(
                outcomes, fault_at, fault_at + (mitigate or 0.0), steady, self.x.recover_hold_s
            )
            m.update(detect_s=detect, mitigate_s=mitigate, recover_s=recover)
            m["steady_accepted_share"] = round(steady, 4)
            m["latency"] = {
                "before": measure.latency(outcomes, before_start, fault_at),
                "during": measure.latency(outcomes, fault_at, fault_end),
                "after": measure.latency(outcomes, fault_end, float("inf")),
            }
        else:
            m["latency"] = {"all": measure.latency(outcomes, 0, float("inf"))}
        rto_h = subject.get("rto_hours")
        m["rto_s"] = None if rto_h is None else rto_h * 3600
        recover_s = m.get("recover_s")
        m["recovery_within_rto"] = None if rto_h is None or recover_s is None else recover_s <= rto_h * 3600
        try:
            rec = reconcile(self.ctx, [s.get("code") for s in self._sites()])
            j.reconciliation = {
                "placed": rec.placed, "in_ledgers": rec.in_ledgers, "held": rec.held,
                "cancelled": rec.cancelled, "lost": len(rec.lost), "duplicated": len(rec.duplicated),
                "strangers": rec.strangers,
                "lost_examples": rec.lost[:10], "duplicated_examples": rec.duplicated[:10],
            }  # fmt: skip
            if rec.lost:
                j.deviations.append(f"{len(rec.lost)} orders lost")
            if rec.duplicated:
                j.deviations.append(f"{len(rec.duplicated)} orders in two DC ledgers")
        except Exception as exc:
            j.deviations.append(f"the reconciliation failed: {type(exc).__name__}: {exc}")
        try:
            m["notices_unsent"] = PROBES["notices_unsent"](self.ctx, {})
            m["notices_sent"] = len(
                self.ctx.get("/v1/notices", self.ctx.tokens.viewer, status="sent", limit=1000).json()
            )
        except Exception as exc:
            m["notices_error"] = f"{type(exc).__name__}"
        # an aborted method ran short: what it was expected to show is not a finding
        expect = set(self.x.expect) if j.status != "aborted" else set()
        if fault_at is not None and "detect" in expect and m.get("detect_s") is None:
            j.deviations.append(f"{self.x.subject}'s breaker, health or impairment never showed the fault")
        if fault_at is not None and "mitigate" in expect and m.get("mitigate_s") is None:
            j.deviations.append(f"no order of region {region} was accepted by another DC after the fault")
        if fault_at is not None and "recover" in expect and m.get("recover_s") is None:
            j.deviations.append("intake did not recover to 95 % of its steady share")
        for name, limit in self.x.within_s.items():
            value = m.get(f"{name}_s")
            if fault_at is not None and value is not None and value > limit:
                j.deviations.append(f"time to {name} {value:.2f} s is over the experiment's {limit:g} s")
        j.measures = m
        j.timeline = [asdict(s) for s in measure.per_second(outcomes)]
        j.breaker_timeline = measure.changes(s for s in samples if s.site == self.x.subject)
        j.load = self._locust_stats()

    def _sites(self) -> list[dict[str, Any]]:
        return list(self.ctx.get("/v1/sites", self.ctx.tokens.viewer).raise_for_status().json())

    def _locust_stats(self) -> dict[str, Any]:
        path = self.load.workdir / "locust_stats.csv"
        if not path.exists():
            return {}
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        return {"stats": rows, "exit_code": self._locust.returncode if self._locust else None}
