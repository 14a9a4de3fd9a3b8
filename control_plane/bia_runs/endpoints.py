"""`/v1/bia`: start a business impact analysis over the store and read its results."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from control_plane.auth.deps import Ctx, Operator, SessionDep, Viewer
from control_plane.auth.repository import audit
from control_plane.bia_runs.service import get_run, latest_run, params_with
from control_plane.store.tables import BiaRunRow
from control_plane.web.idempotency import IdempotencyKey, RequestHash, remember, replay
from control_plane.web.inputs import StrictIn
from control_plane.web.params import RowId

router = APIRouter(prefix="/v1/bia", tags=["bia"])


class BiaRunIn(StrictIn):
    model_config = ConfigDict(extra="forbid")  # `params` names are checked by params_with
    days: int = Field(default=28, ge=1, le=3660, description="analyse orders placed in the last N days")
    params: dict[str, Any] = Field(
        default_factory=dict, description="overrides of BiaParams, e.g. gross_margin"
    )


class BiaRunOut(BaseModel):
    id: int
    status: str
    requested_by: str
    source: str
    created_at: datetime
    finished_at: datetime | None
    order_lines: int | None
    error: str | None
    params: dict[str, Any]
    result: dict[str, Any] | None = None


def _out(row: BiaRunRow, with_result: bool) -> BiaRunOut:
    return BiaRunOut(
        id=row.id,
        status=row.status,
        requested_by=row.requested_by,
        source=row.source,
        created_at=row.created_at,
        finished_at=row.finished_at,
        order_lines=row.order_lines,
        error=row.error,
        params=row.params,
        result=row.result if with_result else None,
    )


@router.post("/runs", status_code=202, response_model=BiaRunOut)
def start_run(
    body: BiaRunIn,
    ctx: Ctx,
    who: Operator,
    request: Request,
    digest: RequestHash,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    # not run_once: the first answer carries a Location header
    if idempotency_key:
        first = replay(ctx, who.name, idempotency_key, request, digest)
        if first is not None:
            return first
    run_id, _ = ctx.bia.start(who.name, body.days, params_with(body.params))
    with ctx.sessions.begin() as s:
        after = {"days": body.days, **body.params}
        audit(
            s,
            ctx.clock(),
            who.name,
            "bia.run",
            f"bia_run:{run_id}",
            after=after,
            idempotency_key=idempotency_key,
        )
    with ctx.sessions() as s:
        out = _out(get_run(s, run_id), with_result=False).model_dump(mode="json")
    if idempotency_key:
        remember(ctx, who.name, idempotency_key, request, 202, out, digest)
    return JSONResponse(out, status_code=202, headers={"Location": f"/v1/bia/runs/{run_id}"})


@router.get("/runs/{run_id}")
def read_run(run_id: RowId, session: SessionDep, _: Viewer) -> BiaRunOut:
    return _out(get_run(session, run_id), with_result=True)


@router.get("/latest")
def read_latest(session: SessionDep, _: Viewer) -> BiaRunOut:
    return _out(latest_run(session), with_result=True)
