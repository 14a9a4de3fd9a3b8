"""Stored health of probed targets: the state machine's row per target and its transitions.

The pure state machine (`control_plane.monitoring.health`) decides; this module loads a target's row
under a row lock, applies the decision and mirrors the health onto `sites` / `integrations`, so
probes on the leader and breaker signals from any replica fold into one consistent state.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from control_plane.domain import Health
from control_plane.monitoring.health import HealthState, Transition
from control_plane.store.tables import HealthCheckRow, HealthTransitionRow, IntegrationRow, SiteRow

SITE_PREFIX = "site:"
INTEGRATION_PREFIX = "integration:"

Step = Callable[[HealthState], tuple[HealthState, Transition | None]]


def site_target(code: str) -> str:
    return SITE_PREFIX + code


def integration_target(code: str) -> str:
    return INTEGRATION_PREFIX + code


def apply(session: Session, target: str, step: Step, latency_s: float | None = None) -> Transition | None:
    """Fold one observation (`step`, a probe result or a signal) into `target`'s stored state."""
    row = _locked_row(session, target)
    new, transition = step(_state(row))
    row.health, row.since = new.health.value, new.since
    row.consecutive_failures, row.consecutive_successes = new.consecutive_failures, new.consecutive_successes
    row.breaker_open, row.breaker_opened_at = new.breaker_open, new.breaker_opened_at
    row.last_probe_at, row.last_detail = new.last_probe_at, new.last_detail
    if latency_s is not None:
        row.last_latency_s = latency_s
    if transition is not None:
        session.add(
            HealthTransitionRow(
                target=target,
                from_health=transition.from_.value,
                to_health=transition.to.value,
                at=transition.at,
                reason=transition.reason,
            )
        )
        _mirror(session, target, transition.to, transition.at)
    return transition


def _locked_row(session: Session, target: str) -> HealthCheckRow:
    """The target's row under a row lock, created on first sight (two first writers: one wins)."""
    query = select(HealthCheckRow).where(HealthCheckRow.target == target).with_for_update()
    row = session.scalars(query).one_or_none()
    if row is not None:
        return row
    try:
        with session.begin_nested():
            session.add(HealthCheckRow(target=target, health=Health.UNKNOWN.value, last_detail=""))
    except IntegrityError:
        pass  # a concurrent writer (a probe, a breaker signal) created it first
    return session.scalars(query).one()


def _state(row: HealthCheckRow) -> HealthState:
    return HealthState(
        target=row.target,
        health=Health(row.health),
        since=row.since,
        consecutive_failures=row.consecutive_failures or 0,
        consecutive_successes=row.consecutive_successes or 0,
        breaker_open=bool(row.breaker_open),
        breaker_opened_at=row.breaker_opened_at,
        last_probe_at=row.last_probe_at,
        last_detail=row.last_detail or "",
    )


def _mirror(session: Session, target: str, health: Health, at: datetime) -> None:
    # routing and every replica's site cache read health from sites/integrations
    if target.startswith(SITE_PREFIX):
        table, key, code = SiteRow, SiteRow.code, target.removeprefix(SITE_PREFIX)
    elif target.startswith(INTEGRATION_PREFIX):
        table, key, code = IntegrationRow, IntegrationRow.code, target.removeprefix(INTEGRATION_PREFIX)
    else:
        return
    session.execute(update(table).where(key == code).values(health=health.value, updated_at=at))


def list_checks(session: Session) -> list[HealthCheckRow]:
    return list(session.scalars(select(HealthCheckRow).order_by(HealthCheckRow.target)))


def get_check(session: Session, target: str) -> HealthCheckRow | None:
    return session.get(HealthCheckRow, target)


def transitions(session: Session, target: str | None = None, limit: int = 100) -> list[HealthTransitionRow]:
    stmt = select(HealthTransitionRow).order_by(HealthTransitionRow.id.desc()).limit(limit)
    if target is not None:
        stmt = stmt.where(HealthTransitionRow.target == target)
    return list(session.scalars(stmt))
