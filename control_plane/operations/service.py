"""Operator failover and failback of a site: plan, safety rules, the move itself, incident and audit.

The dry run and the real failover build the same plan from the same live state
(`failover.plan.plan_failover`); the real one then walks the plan's assignments in order. One
change per site at a time is enforced by the database (a partial unique index on running
`site_changes`), so two concurrent calls cannot both proceed, on any number of replicas.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from control_plane.auth import repository as audit_repo
from control_plane.bia_runs.service import latest_site_targets
from control_plane.domain import Actor, Conflict, Health, NotFound, OrderStatus, SiteState
from control_plane.operations import repository as incident_repo
from control_plane.orders import repository as order_repo
from control_plane.orders.service import request_from_row
from control_plane.store.tables import IncidentRow, OrderRow, SiteChangeRow, SiteRow
from failover.dispatch import CancelOutcome, DcRejected, DcUnavailable
from failover.plan import InFlightOrder, plan_failover
from failover.safety import (
    ONE_CHANGE_PER_SITE,
    RuleResult,
    SafetyPolicy,
    enforce,
    evaluate_failback,
    evaluate_failover,
    expected_hourly_demand,
)

if TYPE_CHECKING:
    from control_plane.context import AppContext  # the type only: the context is built above every area

log = logging.getLogger("drctl.operations")
RECENT_WINDOW = timedelta(hours=1)


class SiteOperations:
    def __init__(self, ctx: AppContext, policy: SafetyPolicy) -> None:
        self._ctx = ctx
        self._policy = policy

    # --- failover ---

    def failover(
        self,
        actor: Actor,
        code: str,
        reason: str,
        targets: Sequence[str] | None,
        dry_run: bool,
        force: bool,
        trigger: str = "operator",
    ) -> dict[str, Any]:
        ctx = self._ctx
        now = ctx.clock()
        ctx.sites.refresh()
        states = ctx.sites.snapshot()
        site = _find(states, code)
        orders = self._in_flight(code)
        plan = plan_failover(code, orders, states, self._stock(orders), targets, ctx.eta, now)
        rules = evaluate_failover(
            code,
            states,
            list(ctx.sites.regions().values()),
            targets,
            len(orders),
            self._expected_demand(code, now),
            self._policy,
            ctx.eta,
            now,
        )
        answer: dict[str, Any] = {
            "site": code,
            "dry_run": dry_run,
            "accepting_before": site.accepting,
            "plan": plan.to_json_dict(),
            "rules": [r.to_json_dict() for r in rules],
        }
        if dry_run:
            return answer
        if not site.accepting:
            raise Conflict(f"{code} is already out of routing", rule="already_failed_over")
        change_id = self._begin_change(actor, code, "failover", reason, force)
        try:
            # the snapshot above may predate a change that finished just before we took the lock
            if not self._accepting_now(code):
                raise Conflict(f"{code} is already out of routing", rule="already_failed_over")
            overridden = enforce(rules, force, reason)
        except Exception:
            self._end_change(change_id, "refused", None)
            raise
        incident_id = self._stop_routing(actor, code, reason, overridden, len(orders), now, trigger)
        moved = self._move_all(code, plan.assignments, incident_id)
        self._end_change(change_id, "done", {"moved": moved, "incident_id": incident_id})
        answer.update(
            {"incident_id": incident_id, "moved": moved, "overridden": [r.name for r in overridden]}
        )
        return answer

    def _in_flight(self, code: str) -> list[InFlightOrder]:
        live = (OrderStatus.ROUTED.value, OrderStatus.ACCEPTED.value)
        with self._ctx.sessions() as s:
            rows = list(s.scalars(select(OrderRow).where(OrderRow.site == code, OrderRow.status.in_(live))))
            out = []
            for row in rows:
                lines = order_repo.order_lines(s, row.id)
                avoid = order_repo.pending_cancel_sites(s, row.id)
                req = request_from_row(row, lines)
                out.append(InFlightOrder.from_request(row.id, code, OrderStatus(row.status), req, avoid))
        return out

    def _stock(self, orders: Sequence[InFlightOrder]) -> dict[tuple[str, str], int]:
        skus = {line.sku for o in orders for line in o.lines}
        if not skus:
            return {}
        with self._ctx.sessions() as s:
            return order_repo.available_stock(s, skus)

    def _expected_demand(self, code: str, now: datetime) -> float:
        """The BIA's expected orders per hour for this hour of the week, else the last hour's intake."""
        with self._ctx.sessions() as s:
            target = latest_site_targets(s).get(code)
            if target is not None:
                return expected_hourly_demand(target.expected_orders_at(now), 0, 1)
            recent = s.scalar(
                select(func.count()).where(OrderRow.site == code, OrderRow.routed_at >= now - RECENT_WINDOW)
            )
        return expected_hourly_demand(None, int(recent or 0), RECENT_WINDOW.total_seconds() / 3600)

    def _begin_change(self, actor: Actor, code: str, kind: str, reason: str, force: bool) -> int:
        try:
            with self._ctx.sessions.begin() as s:
                row = SiteChangeRow(
                    site=code,
                    kind=kind,
                    status="running",
                    actor=actor.name,
                    reason=reason,
                    forced=force,
                    started_at=self._ctx.clock(),
                )
                s.add(row)
                s.flush()
                return row.id
        except IntegrityError:
            raise Conflict(
                f"another change of {code} is in progress", rule=ONE_CHANGE_PER_SITE, details={"site": code}
            ) from None

    def _accepting_now(self, code: str) -> bool:
        with self._ctx.sessions() as s:
            row = s.get(SiteRow, code)
            return row is not None and row.accepting

    def _end_change(self, change_id: int, status: str, result: dict[str, Any] | None) -> None:
        with self._ctx.sessions.begin() as s:
            row = s.get(SiteChangeRow, change_id)
            if row is not None:
                row.status, row.result, row.finished_at = status, result, self._ctx.clock()

    def _stop_routing(
        self,
        actor: Actor,
        code: str,
        reason: str,
        overridden: Sequence[RuleResult],
        in_flight: int,
        now: datetime,
        trigger: str,
    ) -> int:
        with self._ctx.sessions.begin() as s:
            row = s.get(SiteRow, code)
            assert row is not None
            row.accepting, row.updated_at = False, now
            incident = incident_repo.ensure_open_incident(
                s, "site_outage", code, trigger, f"{code} failed over: {reason}", now, in_flight
            )
            incident_repo.add_event(
                s, incident.id, now, "failover", f"routing to {code} stopped by {actor.name}"
            )
            _audit_routing_change(s, actor, code, "failover", False, overridden, reason, now)
            incident_id = incident.id
        self._ctx.sites.refresh()
        return incident_id

    def _move_all(self, code: str, assignments: Sequence[Any], incident_id: int) -> dict[str, Any]:
        """Cancel each order at the old DC (or owe it a cancel) and send it on through normal dispatch."""
        site = self._ctx.sites.site(code)
        per_target: dict[str, int] = {}
        held = cancel_pending = shipped = 0
        for a in assignments:
            try:
                outcome = self._ctx.client.cancel(site, a.order_id)
            except (DcUnavailable, DcRejected):
                outcome = None
            if outcome is CancelOutcome.SHIPPED:
                shipped += 1  # it left the old DC before we could stop it: nothing to move
                continue
            cancel_pending += outcome is None
            trace = self._ctx.pipeline.move_order(a.order_id, code, a, owes_cancel=outcome is None)
            if trace is None:
                continue
            if trace.site is not None and trace.status is OrderStatus.ACCEPTED:
                per_target[trace.site] = per_target.get(trace.site, 0) + 1
            else:
                held += 1
        now = self._ctx.clock()
        with self._ctx.sessions.begin() as s:
            incident = s.get(IncidentRow, incident_id)
            if incident is not None:
                incident.orders_rerouted += sum(per_target.values())
                incident.orders_held += held
                if incident.mitigated_at is None:
                    incident.mitigated_at, incident.status = now, "mitigated"
                moved = f"{sum(per_target.values())} moved, {held} held"
                data = {"per_target": per_target, "held": held, "cancel_pending": cancel_pending}
                incident_repo.add_event(s, incident_id, now, "orders_moved", moved, data)
        return {"per_target": per_target, "held": held, "cancel_pending": cancel_pending, "shipped": shipped}

    # --- failback ---

    def failback(
        self, actor: Actor, code: str, reason: str, dry_run: bool, force: bool, ramp_s: float = 0.0
    ) -> dict[str, Any]:
        ctx = self._ctx
        ctx.sites.refresh()
        site = _find(ctx.sites.snapshot(), code)
        live_health = self._probe(code)
        rules = evaluate_failback(_with_health(site, live_health), self._policy)
        with ctx.sessions() as s:
            owed = len(order_repo.cancels_owed_by(s, code))
        answer: dict[str, Any] = {
            "site": code,
            "dry_run": dry_run,
            "health_now": live_health.value,
            "cancel_pending": owed,
            "rules": [r.to_json_dict() for r in rules],
        }
        if dry_run:
            return answer
        if site.accepting:
            raise Conflict(f"{code} is already taking orders", rule="already_accepting")
        change_id = self._begin_change(actor, code, "failback", reason, force)
        try:
            if self._accepting_now(code):
                raise Conflict(f"{code} is already taking orders", rule="already_accepting")
            overridden = enforce(rules, force, reason)
            still_owed = ctx.cancels.flush_site(code)
            if still_owed and not force:
                raise Conflict(
                    f"{still_owed} orders could not be cancelled at {code} yet; it would hold them twice",
                    rule="cancel_pending_cleared",
                    details={"cancel_pending": still_owed},
                )
        except Exception:
            self._end_change(change_id, "refused", None)
            raise
        now = ctx.clock()
        with ctx.sessions.begin() as s:
            row = s.get(SiteRow, code)
            assert row is not None
            row.accepting, row.updated_at = True, now
            # a ramp brings the site back from 10 % to 100 % of its orders instead of all at once
            row.ramp_started_at, row.ramp_duration_s = (now, ramp_s) if ramp_s > 0 else (None, None)
            incident = incident_repo.open_incident_for(s, code)
            if incident is not None:
                incident.status, incident.resolved_at = "resolved", now
                incident_repo.add_event(
                    s, incident.id, now, "failback", f"routing to {code} reopened by {actor.name}"
                )
            _audit_routing_change(s, actor, code, "failback", True, overridden, reason, now)
        ctx.sites.refresh()
        self._end_change(change_id, "done", {"cancelled_first": owed - still_owed})
        answer.update(
            {
                "cancelled_first": owed - still_owed,
                "overridden": [r.name for r in overridden],
                "ramp_s": ramp_s,
            }
        )
        return answer

    def _probe(self, code: str) -> Health:
        """Ask the DC now: a failback must not trust a health state that may be minutes old."""
        site = self._ctx.sites.site(code)
        try:
            resp = self._ctx.client.health(f"{site.wms_url}/health", self._ctx.settings.dc_read_timeout_s)
        except DcUnavailable:
            return Health.DOWN
        return Health.HEALTHY if resp.status_code == 200 else Health.DOWN


def _audit_routing_change(
    s: Session,
    actor: Actor,
    code: str,
    kind: str,
    accepting: bool,
    overridden: Sequence[RuleResult],
    reason: str,
    now: datetime,
) -> None:
    """Audit a failover or failback; one forced past refusing rules is its own action, naming them."""
    audit_repo.audit(
        s,
        now,
        actor.name,
        f"site.{kind}.forced" if overridden else f"site.{kind}",
        f"site:{code}",
        before={"accepting": not accepting},
        after={"accepting": accepting, "overridden_rules": [r.name for r in overridden]},
        reason=reason,
        idempotency_key=actor.idempotency_key,
    )


def _find(states: Sequence[SiteState], code: str) -> SiteState:
    for st in states:
        if st.site.code == code:
            return st
    raise NotFound(f"no site {code!r}")


def _with_health(state: SiteState, health: Health) -> SiteState:
    return replace(state, health=health)
