"""Operator failover and failback of a site: plan, safety rules, the move itself, incident and audit.

The dry run and the real failover build the same plan from the same live state
(`failover.plan.plan_failover`); the real one stops routing there (holding back every placement
in progress on any replica), then `moves.SiteMover` moves the plan's orders and sweeps the site
until none is left. One change per site at a time is enforced by the database (a partial unique
index on running `site_changes`), so two concurrent calls cannot both proceed, on any number of
replicas; a running change renews a lease, and one whose process died is taken over after it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from control_plane.auth import repository as audit_repo
from control_plane.bia_runs.service import latest_document
from control_plane.domain import Actor, Conflict, Health, NotFound, SiteState
from control_plane.operations import repository as incident_repo
from control_plane.operations.moves import MoveReport, SiteMover
from control_plane.operations.options import (
    BiaView,
    OptionInputs,
    held_for_stock,
    price_options,
    stock_check,
)
from control_plane.orders import repository as order_repo
from failover.dispatch import DcUnavailable
from failover.plan import plan_failover
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
    def __init__(self, ctx: AppContext, policy: SafetyPolicy, mover: SiteMover) -> None:
        self._ctx = ctx
        self._policy = policy
        self._mover = mover

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
        expires_at: datetime | None = None,
    ) -> dict[str, Any]:
        """Stop routing to `code`, then move every order live there; re-run, finish what is left.
        With `expires_at`, a failback is proposed (or, by policy, done) once it has passed.

        A site already out of routing with live orders still there (an earlier failover died, or
        was stopped mid-way) is a resumption: no rules (that decision is taken and audited), no new
        stop, the same incident; the move picks up whatever is still live at the site.
        """
        ctx = self._ctx
        now = ctx.clock()
        ctx.sites.refresh()
        states = ctx.sites.snapshot()
        site = _find(states, code)
        orders = self._mover.in_flight(code)
        with ctx.sessions() as s:
            bia = BiaView.read(latest_document(s), now)
        stock = self._mover.stock_for(orders, (c.sku for c in bia.critical(code)) if bia else ())
        plan = plan_failover(code, orders, states, stock, targets, ctx.eta, now)
        check = stock_check(bia, code, orders, stock, ctx.settings.safety_target_stock_hours)
        inputs = OptionInputs(
            code,
            states,
            ctx.sites.regions(),
            orders,
            stock,
            check,
            self._expected_demand(code, now, bia),
            self._policy,
            ctx.eta,
            now,
        )
        rules = evaluate_failover(
            code,
            states,
            list(inputs.regions.values()),
            targets,
            len(orders),
            inputs.expected_demand,
            self._policy,
            ctx.eta,
            now,
            check,
        )
        answer: dict[str, Any] = {
            "site": code,
            "dry_run": dry_run,
            "accepting_before": site.accepting,
            "plan": plan.to_json_dict() | {"held_for_stock_over_horizon": held_for_stock(rules)[0]},
            "rules": [r.to_json_dict() for r in rules],
            "expires_at": expires_at.isoformat() if expires_at else None,
        }
        if dry_run:
            # every option planned, checked and priced: only for the dry run, which an operator
            # reads before deciding; the real failover carries out the one decided
            return answer | price_options(inputs, targets, bia)
        if not site.accepting and not orders:
            raise Conflict(f"{code} is already out of routing", rule="already_failed_over")
        change_id = self._begin_change(actor, code, "failover", reason, force)
        try:
            resuming = not self._accepting_now(code)
            if resuming and not orders:
                raise Conflict(f"{code} is already out of routing", rule="already_failed_over")
            overridden = [] if resuming else enforce(rules, force, reason)
        except Exception:
            self._end_change(change_id, "refused", None)
            raise
        try:
            warned = [r for r in rules if r.warning] if not resuming else []
            incident_id = self._stop_routing(
                actor, code, reason, overridden, len(orders), now, trigger, resuming, expires_at, warned
            )
            statuses = {o.order_id: o.status for o in orders}
            report = self._mover.move_all(
                code, plan.assignments, statuses, targets, self._heartbeat(change_id)
            )
            self._record_moves(incident_id, report)
        except BaseException as exc:
            # marked failed at once where we can; a SIGKILL leaves it to the lease running out
            self._end_change(change_id, "failed", {"error": type(exc).__name__})
            raise
        moved = report.to_json_dict()
        self._end_change(change_id, "done", {"moved": moved, "incident_id": incident_id})
        answer.update(
            {
                "incident_id": incident_id,
                "moved": moved,
                "resumed": resuming,
                "overridden": [r.name for r in overridden],
                "warnings": [r.name for r in warned],
            }
        )
        return answer

    def _expected_demand(self, code: str, now: datetime, bia: BiaView | None) -> float:
        """The BIA's expected orders per hour for this hour of the week, else the last hour's intake."""
        if bia is not None and code in bia.expected_now:
            return expected_hourly_demand(bia.expected_now[code], 0, 1)
        with self._ctx.sessions() as s:
            recent = order_repo.routed_since(s, code, now - RECENT_WINDOW)
        return expected_hourly_demand(None, recent, RECENT_WINDOW.total_seconds() / 3600)

    def _begin_change(self, actor: Actor, code: str, kind: str, reason: str, force: bool) -> int:
        """Start the site's one running change, taking over one whose process died (lease run out)."""
        now = self._ctx.clock()
        try:
            with self._ctx.sessions.begin() as s:
                stale = incident_repo.take_over_stale_change(s, code, now)
                if stale is not None:
                    log.warning("site change %s of %s taken over after its lease ran out", stale.id, code)
                return incident_repo.start_change(
                    s, code, kind, actor.name, reason, force, now, self._ctx.settings.change_lease_s
                )
        except IntegrityError:
            raise Conflict(
                f"another change of {code} is in progress", rule=ONE_CHANGE_PER_SITE, details={"site": code}
            ) from None

    def _heartbeat(self, change_id: int) -> Callable[[], None]:
        """Renew the change's lease now and then while it works (called after every moved order)."""
        lease_s = self._ctx.settings.change_lease_s
        last = [time.monotonic()]

        def beat() -> None:
            if time.monotonic() - last[0] < lease_s / 3:
                return
            last[0] = time.monotonic()
            with self._ctx.sessions.begin() as s:
                incident_repo.renew_change(s, change_id, self._ctx.clock(), lease_s)

        return beat

    def _accepting_now(self, code: str) -> bool:
        with self._ctx.sessions() as s:
            row = incident_repo.site_row(s, code)
            return row is not None and row.accepting

    def _end_change(self, change_id: int, status: str, result: dict[str, Any] | None) -> None:
        with self._ctx.sessions.begin() as s:
            incident_repo.finish_change(s, change_id, status, result, self._ctx.clock())

    def _stop_routing(
        self,
        actor: Actor,
        code: str,
        reason: str,
        overridden: Sequence[RuleResult],
        in_flight: int,
        now: datetime,
        trigger: str,
        resuming: bool,
        expires_at: datetime | None = None,
        warned: Sequence[RuleResult] = (),
    ) -> int:
        """Take the site out of routing everywhere at once; return its incident.

        The site row is locked FOR UPDATE first, which waits for every placement in progress there
        and holds back later ones until this commits; they then see it closed (orders.repository
        .site_open). So once this returns, no replica can commit a new order at the site, whatever
        its cached state says, and the move's reading of the site catches every order there.
        """
        with self._ctx.sessions.begin() as s:
            incident_repo.switch_routing(s, code, False, now, expires_at=expires_at)
            incident = incident_repo.ensure_open_incident(
                s, "site_outage", code, trigger, f"{code} failed over: {reason}", now, in_flight
            )
            what = "resumed" if resuming else "stopped"
            until = f" until {expires_at.isoformat()}" if expires_at else ""
            incident_repo.add_event(
                s, incident.id, now, "failover", f"routing to {code} {what} by {actor.name}{until}"
            )
            for rule in warned:  # flagged, not refused (a rule set to warn): on the record all the same
                incident_repo.add_event(
                    s, incident.id, now, "rule_warning", f"{rule.name}: {rule.detail}", rule.to_json_dict()
                )
            _audit_routing_change(s, actor, code, "failover.resumed" if resuming else "failover",
                                  False, overridden, reason, now, warned)  # fmt: skip
            incident_id = incident.id
        self._ctx.sites.refresh()
        return incident_id

    def _record_moves(self, incident_id: int, report: MoveReport) -> None:
        now = self._ctx.clock()
        with self._ctx.sessions.begin() as s:
            incident_repo.count_moves(s, incident_id, report.moved, report.held, now)
            message = f"{report.moved} moved, {report.held} held, {report.live_left} left"
            incident_repo.add_event(s, incident_id, now, "orders_moved", message, report.to_json_dict())

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
        try:
            with ctx.sessions.begin() as s:
                incident_repo.switch_routing(s, code, True, now, ramp_s)
                incident = incident_repo.open_incident_for(s, code)
                if incident is not None:
                    incident_repo.resolve(s, incident, now, f"routing to {code} reopened by {actor.name}")
                _audit_routing_change(s, actor, code, "failback", True, overridden, reason, now)
        except BaseException as exc:
            self._end_change(change_id, "failed", {"error": type(exc).__name__})
            raise
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
    warned: Sequence[RuleResult] = (),
) -> None:
    """Audit a failover or failback; one forced past refusing rules is its own action, naming them."""
    audit_repo.audit(
        s,
        now,
        actor.name,
        f"site.{kind}.forced" if overridden else f"site.{kind}",
        f"site:{code}",
        before={"accepting": not accepting},
        after={
            "accepting": accepting,
            "overridden_rules": [r.name for r in overridden],
            "warned_rules": [r.name for r in warned],
        },
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
