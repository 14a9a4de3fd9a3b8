"""What each action of `runbooks.actions` does to this control plane: the engine's Effects.

Each change goes through the same service an operator's API call does (a failover keeps its safety
rules, its one-change-per-site lock and its resumption), is audited with the step's idempotency key
as the actor's key, and is safe to call again with `resumed=True` after a crash: a failover of a site
already out of routing finishes what is left, a failback of a site already taking orders is done, a
note already on the incident is not posted twice, and the rest set a value.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from control_plane.auth import repository as audit_log
from control_plane.domain import Actor, Conflict, DomainError, NotFound
from control_plane.operations import repository as incident_repo
from control_plane.operations.service import SiteOperations
from control_plane.runbook_runs import repository as repo
from control_plane.store.tables import HealthCheckRow
from control_plane.world.breaker_actions import find_breaker, override
from runbooks.engine import ActionFailed

if TYPE_CHECKING:
    from control_plane.context import AppContext  # the type only: the context is built above every area


class ControlPlaneEffects:
    def __init__(self, ctx: AppContext, ops: SiteOperations, actor: str, incident_id: int | None) -> None:
        self._ctx = ctx
        self._ops = ops
        self._actor = actor
        self._incident_id = incident_id

    def perform(self, action: str, args: Mapping[str, Any], key: str, resumed: bool) -> dict[str, Any]:
        actor = Actor(self._actor, key)
        try:
            return self._do(action, args, actor, resumed)
        except Conflict as exc:
            if resumed and exc.rule == "already_accepting" and action == "site.failback":
                return {"site": args["site"], "already": "taking orders (done before a restart)"}
            raise ActionFailed(f"refused by rule {exc.rule}: {exc}") from None
        except DomainError as exc:
            raise ActionFailed(str(exc)) from None

    def _do(self, action: str, args: Mapping[str, Any], actor: Actor, resumed: bool) -> dict[str, Any]:
        ctx, now = self._ctx, self._ctx.clock()
        if action == "site.failover":
            answer = self._ops.failover(
                actor,
                args["site"],
                args["reason"],
                args.get("targets"),
                False,
                bool(args.get("force")),
                "runbook",
            )
            return _summary(answer)
        if action == "site.failback":
            answer = self._ops.failback(
                actor,
                args["site"],
                args["reason"],
                False,
                bool(args.get("force")),
                float(args.get("ramp_s", 0)),
            )
            return _summary(answer)
        if action in ("breaker.open", "breaker.close", "breaker.reset"):
            breaker = find_breaker(ctx, args["name"])
            return override(ctx.sessions, breaker, action.split(".")[1], actor.name, args["reason"], now)  # type: ignore[arg-type]
        if action in ("channel.pause", "channel.resume"):
            paused = action == "channel.pause"
            return self._set(actor, action, "channel", args["channel"], "paused", paused, args["reason"])
        if action == "site.capacity":
            cap = int(args["capacity_per_hour"])
            return self._set(actor, action, "site", args["site"], "capacity_per_hour", cap, args["reason"])
        if action in ("integration.mark_down", "integration.clear"):
            return self._integration(
                actor, args["integration"], action == "integration.mark_down", args["reason"]
            )
        if action == "incident.note":
            return self._note(args["message"], actor, resumed, now)
        raise ActionFailed(f"{action} is not an action this control plane carries out")

    def _set(
        self, actor: Actor, action: str, kind: str, code: str, field: str, value: Any, reason: str
    ) -> dict[str, Any]:
        """Set one field of a channel, site or integration, audited; routing sees it at once here and
        on the other replicas within a cache refresh."""
        now = self._ctx.clock()
        with self._ctx.sessions.begin() as s:
            before = repo.set_field(s, kind, code, field, value)
            if before is None:
                raise NotFound(f"no {kind} {code!r}")
            audit_log.audit(
                s, now, actor.name, action, f"{kind}:{code}", {field: before}, {field: value}, reason,
                actor.idempotency_key,
            )  # fmt: skip
        self._ctx.sites.refresh()
        return {kind: code, field: value, "was": before}

    def _note(self, message: str, actor: Actor, resumed: bool, now: datetime) -> dict[str, Any]:
        if self._incident_id is None:
            return {"noted": False, "why": "the execution has no incident"}
        key = actor.idempotency_key or ""
        with self._ctx.sessions.begin() as s:
            if resumed and repo.incident_note_exists(s, self._incident_id, key):
                return {"noted": True, "incident_id": self._incident_id, "again": False}
            incident_repo.add_event(s, self._incident_id, now, "runbook_note", message, {"key": key})
        return {"noted": True, "incident_id": self._incident_id}

    def preview(self, action: str, args: Mapping[str, Any]) -> dict[str, Any]:
        actor = Actor(self._actor, None)
        try:
            if action == "site.failover":
                return self._ops.failover(
                    actor,
                    args["site"],
                    args["reason"],
                    args.get("targets"),
                    True,
                    bool(args.get("force")),
                    "runbook",
                )
            if action == "site.failback":
                return self._ops.failback(
                    actor,
                    args["site"],
                    args["reason"],
                    True,
                    bool(args.get("force")),
                    float(args.get("ramp_s", 0)),
                )
        except DomainError as exc:
            raise ActionFailed(str(exc)) from None
        return {"would": action, "args": dict(args)}

    def probe(self, target: str) -> tuple[str, datetime | None]:
        with self._ctx.sessions() as s:
            row = s.get(HealthCheckRow, target)
        if row is None:
            return "unknown", None
        return row.health, row.since


def _summary(answer: dict[str, Any]) -> dict[str, Any]:
    """What the step keeps of a failover's answer: its outcome, not the whole plan."""
    keep = ("site", "moved", "incident_id", "resumed", "health_now", "cancel_pending", "accepting", "ramp_s")
    return {k: answer[k] for k in keep if k in answer}
