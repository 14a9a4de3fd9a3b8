"""Expiring failovers (as Route 53 ARC's zonal shifts expire): the leader's job that acts once a
failover's `expires_at` has passed.

Policy `propose` (the default): the site's incident gets a `failback_proposed` event, once, and the
built-in `FailoverExpired` alert fires until someone fails the site back. Policy `auto`: the failback
is done, ramped over `DRCTL_FAILOVER_EXPIRY_RAMP_S`, as soon as its safety rules pass (the DC healthy
when asked live, no cancel owed there); until then it is proposed, as above.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.orm import Session, sessionmaker

from control_plane.domain import Actor, DomainError
from control_plane.operations import repository as incident_repo
from control_plane.operations.service import SiteOperations

log = logging.getLogger("drctl.operations")
ACTOR = Actor("drctl:failover-expiry")


class FailoverExpiry:
    def __init__(
        self,
        ops: SiteOperations,
        sessions: sessionmaker[Session],
        clock: Callable[[], datetime],
        policy: Literal["propose", "auto"],
        ramp_s: float,
    ) -> None:
        self._ops = ops
        self._sessions = sessions
        self._clock = clock
        self._policy = policy
        self._ramp_s = ramp_s

    def check(self, leading: Any = None) -> list[str]:
        """Act on every expired failover; the sites failed back."""
        now = self._clock()
        with self._sessions() as s:
            expired = [
                (r.code, r.failover_expires_at, r.failback_proposed_at)
                for r in incident_repo.expired_failovers(s, now)
            ]
        done: list[str] = []
        for code, expires_at, proposed_at in expired:
            assert expires_at is not None
            if self._policy == "auto" and self._fail_back(code, expires_at):
                done.append(code)
            elif proposed_at is None:
                self._propose(code, expires_at, now)
        return done

    def _fail_back(self, code: str, expires_at: datetime) -> bool:
        reason = f"its failover expired at {expires_at.isoformat()}"
        plan = self._ops.failback(ACTOR, code, reason, True, False, self._ramp_s)
        if not all(rule["ok"] for rule in plan["rules"]):
            return False  # proposed meanwhile; tried again each tick until the rules pass
        try:
            self._ops.failback(ACTOR, code, reason, False, False, self._ramp_s)
        except DomainError as exc:  # another change of the site, or a rule changed its mind
            log.warning("failover of %s expired; failback not done: %s", code, exc)
            return False
        log.warning("failover of %s expired: failed back, ramped over %.0f s", code, self._ramp_s)
        return True

    def _propose(self, code: str, expires_at: datetime, now: datetime) -> None:
        with self._sessions.begin() as s:
            row = incident_repo.site_row(s, code, lock=True)
            if row is None or row.accepting or row.failback_proposed_at is not None:
                return
            row.failback_proposed_at = now
            incident = incident_repo.open_incident_for(s, code)
            message = (
                f"the failover of {code} expired at {expires_at.isoformat()}: fail it back "
                f"(drctl failback {code}) or fail it over again with a new expiry"
            )
            if incident is not None:
                incident_repo.add_event(s, incident.id, now, "failback_proposed", message)
        log.warning("failover expired: %s", message)
