"""`/v1/sites/{code}/failover|failback`, `/v1/incidents`, `/v1/audit`: what an operator presses at 3 a.m."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from control_plane.auth.deps import Admin, Operator, SessionDep, Viewer
from control_plane.domain import FieldError, InvalidInput
from control_plane.operations import repository as incident_repo
from control_plane.web.idempotency import IdempotencyKey, RequestHash, run_once
from control_plane.web.inputs import StrictIn
from control_plane.web.params import Code, RowId

router = APIRouter(tags=["operations"])


MAX_EXPIRY = timedelta(days=30)


class FailoverIn(StrictIn):
    # a typo must not fall back to a default: `dryrun` would otherwise be a real failover
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=3, max_length=2000)
    targets: list[str] | None = Field(default=None, description="sites moved orders may go to; default: any")
    dry_run: bool = False
    force: bool = Field(default=False, description="override refusing safety rules (audited)")
    expires_in: float | None = Field(
        default=None, gt=0, le=MAX_EXPIRY.total_seconds(), description="seconds until a failback is proposed"
    )
    expires_at: AwareDatetime | None = Field(
        default=None, description="when a failback is proposed (or done)"
    )

    def expiry(self, now: datetime) -> datetime | None:
        """When the failover expires; InvalidInput for both given, a past time or one too far ahead."""
        if self.expires_in is not None and self.expires_at is not None:
            raise InvalidInput(
                "give expires_in or expires_at, not both", [FieldError("expires_at", "and expires_in")]
            )
        if self.expires_in is not None:
            return now + timedelta(seconds=self.expires_in)
        if self.expires_at is None:
            return None
        if not now < self.expires_at <= now + MAX_EXPIRY:
            message = f"must lie between now and {MAX_EXPIRY.days} days ahead"
            raise InvalidInput(f"expires_at: {message}", [FieldError("expires_at", message)])
        return self.expires_at.astimezone(UTC)


class FailbackIn(StrictIn):
    reason: str = Field(min_length=3, max_length=2000)
    dry_run: bool = False
    force: bool = False
    ramp_s: float = Field(
        default=0, ge=0, le=86_400, description="ramp from 10% to 100% over this many seconds"
    )


@router.post("/v1/sites/{code}/failover", responses={409: {"description": "refused by a safety rule"}})
def failover(
    code: Code,
    body: FailoverIn,
    request: Request,
    who: Operator,
    digest: RequestHash,
    key: IdempotencyKey = None,
) -> JSONResponse:
    ops = request.app.state.operations
    return run_once(
        request,
        who,
        key,
        200,
        lambda actor: ops.failover(
            actor,
            code,
            body.reason,
            body.targets,
            body.dry_run,
            body.force,
            expires_at=body.expiry(request.app.state.ctx.clock()),
        ),
        request_hash=digest,
    )


@router.post("/v1/sites/{code}/failback", responses={409: {"description": "refused by a safety rule"}})
def failback(
    code: Code,
    body: FailbackIn,
    request: Request,
    who: Operator,
    digest: RequestHash,
    key: IdempotencyKey = None,
) -> JSONResponse:
    ops = request.app.state.operations
    return run_once(
        request,
        who,
        key,
        200,
        lambda actor: ops.failback(actor, code, body.reason, body.dry_run, body.force, body.ramp_s),
        request_hash=digest,
    )


class IncidentOut(BaseModel):
    id: int
    kind: str
    subject: str
    trigger: str
    title: str
    status: str
    started_at: datetime
    detected_at: datetime | None
    mitigated_at: datetime | None
    resolved_at: datetime | None
    orders_affected: int
    orders_rerouted: int
    orders_held: int
    notices: int
    timeline: list[dict[str, Any]] = []


def _incident(row: Any, events: list[Any] | None = None) -> IncidentOut:
    return IncidentOut(
        id=row.id,
        kind=row.kind,
        subject=row.subject,
        trigger=row.trigger,
        title=row.title,
        status=row.status,
        started_at=row.started_at,
        detected_at=row.detected_at,
        mitigated_at=row.mitigated_at,
        resolved_at=row.resolved_at,
        orders_affected=row.orders_affected,
        orders_rerouted=row.orders_rerouted,
        orders_held=row.orders_held,
        notices=row.notices,
        timeline=[
            {"at": e.at.isoformat(), "kind": e.kind, "message": e.message, "data": e.data}
            for e in (events or [])
        ],
    )


@router.get("/v1/incidents")
def list_incidents(
    session: SessionDep,
    _: Viewer,
    status: Annotated[str | None, Query(pattern="^(open|mitigated|resolved)$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[IncidentOut]:
    return [_incident(r) for r in incident_repo.list_incidents(session, status, limit)]


@router.get("/v1/incidents/{incident_id}")
def get_incident(incident_id: RowId, session: SessionDep, _: Viewer) -> IncidentOut:
    row, events = incident_repo.get_incident(session, incident_id)
    return _incident(row, events)


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    reason: str | None
    idempotency_key: str | None


@router.get("/v1/audit")
def list_audit(
    session: SessionDep,
    _: Admin,
    action: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditOut]:
    return [
        AuditOut(
            id=r.id,
            at=r.at,
            actor=r.actor,
            action=r.action,
            subject=r.subject,
            before=r.before,
            after=r.after,
            reason=r.reason,
            idempotency_key=r.idempotency_key,
        )
        for r in incident_repo.list_audit(session, limit, action)
    ]
