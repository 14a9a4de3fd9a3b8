"""`POST /v1/reconciliations`: the order-level RPO check (store against every DC's ledger) and,
with `repair`, the re-imports, re-dispatches and cancels that make them agree."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, Field, StrictBool, model_validator

from control_plane.auth.deps import Ctx, Operator
from control_plane.domain import Actor, FieldError, InvalidInput
from control_plane.orders.reconciliation import Report, build_reconciler
from control_plane.web.idempotency import IdempotencyKey, RequestHash, run_once
from control_plane.web.inputs import StrictIn

if TYPE_CHECKING:
    from control_plane.context import AppContext  # the type only: the context is built above every area

router = APIRouter(tags=["orders"])
EARLIEST_SINCE = datetime(2000, 1, 1, tzinfo=UTC)  # older is a typo, and near year 1 would overflow


class ReconcileIn(StrictIn):
    since: AwareDatetime | None = Field(
        default=None, description="only orders received or changed since then (default: every order)"
    )
    # strict: "yes", "1" or "false" as a string is refused rather than read as a repair or not
    repair: StrictBool = Field(
        default=False, description="repair what differs (audited); default: report only"
    )
    reason: str | None = Field(
        default=None, min_length=3, max_length=2000, description="required with repair"
    )

    @model_validator(mode="after")
    def _reason_with_repair(self) -> ReconcileIn:
        if self.repair and not self.reason:
            raise ValueError("a repair needs a reason (it is audited)")
        return self


class HolderOut(BaseModel):
    site: str
    status: str
    dc_ref: str
    received_at: datetime


class FindingOut(BaseModel):
    order_id: str
    kind: str = Field(description="unknown_to_store | missing_at_dc | at_several_dcs | elsewhere | ...")
    action: str = Field(
        description="the repair: import | redispatch | adopt | cancel | record_shipment | none"
    )
    store_status: str | None = Field(description="null: the store does not know the order")
    store_site: str | None
    holders: list[HolderOut] = Field(description="the DCs whose ledger holds a live copy")
    keep: str | None = Field(description="the DC whose copy the store follows")
    cancel_at: list[str]
    detail: str
    outcome: str | None = Field(description="what the repair did, or why it did not (null: report only)")
    repaired: bool


class SiteReadingOut(BaseModel):
    site: str
    listed: int = Field(description="orders its ledger listed")
    error: str | None = Field(description="why its ledger could not be read (a repair is then refused)")


class ReconcileOut(BaseModel):
    started_at: datetime
    since: datetime | None
    repair: bool
    clean: bool = Field(description="every ledger read, and nothing differs (or every difference repaired)")
    sites: list[SiteReadingOut]
    compared: int
    settling: int = Field(description="orders changed while reading, or mid-dispatch: left to the order path")
    unverified: int = Field(description="orders at a DC whose ledger could not be read")
    counts: dict[str, int]
    findings: list[FindingOut]


@router.post(
    "/v1/reconciliations",
    response_model=ReconcileOut,
    responses={
        200: {"description": "the report (with `repair`, after repairing)"},
        409: {"description": "repair refused: a DC's ledger could not be read (rule `ledgers_unreadable`)"},
    },
)
def reconcile(
    body: ReconcileIn,
    request: Request,
    ctx: Ctx,
    who: Operator,
    digest: RequestHash,
    key: IdempotencyKey = None,
) -> JSONResponse:
    return run_once(request, who, key, 200, lambda actor: _run(ctx, body, actor), request_hash=digest)


def _run(ctx: AppContext, body: ReconcileIn, actor: Actor) -> dict[str, Any]:
    since = body.since
    if since is not None and not EARLIEST_SINCE <= since <= ctx.clock():
        message = f"{since.isoformat()} is in the future" if since > EARLIEST_SINCE else "is before 2000"
        raise InvalidInput(f"since: {message}", [FieldError("since", message)])
    reconciler = build_reconciler(ctx)
    report = reconciler.check(body.since)
    if body.repair:
        assert body.reason is not None
        report = reconciler.repair(report, actor, body.reason)
    return report_out(report).model_dump(mode="json")


def report_out(report: Report) -> ReconcileOut:
    return ReconcileOut(
        started_at=report.started_at,
        since=report.since,
        repair=report.repair,
        clean=report.clean,
        sites=[SiteReadingOut(site=r.site, listed=r.listed, error=r.error) for r in report.sites],
        compared=report.compared,
        settling=report.settling,
        unverified=report.unverified,
        counts=report.counts,
        findings=[
            FindingOut(
                order_id=e.finding.order_id,
                kind=e.finding.kind.value,
                action=e.finding.action.value,
                store_status=e.store_status,
                store_site=e.store_site,
                holders=[
                    HolderOut(site=h.site, status=h.status.value, dc_ref=h.dc_ref, received_at=h.received_at)
                    for h in e.holders
                    if h.live
                ],
                keep=None if e.finding.keep is None else e.finding.keep.site,
                cancel_at=list(e.finding.cancel_at),
                detail=e.finding.detail,
                outcome=e.outcome,
                repaired=e.repaired,
            )
            for e in report.entries
        ],
    )
