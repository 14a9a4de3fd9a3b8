"""`/v1/bia`: start a business impact analysis over the store and read its results."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from control_plane.api.deps import Ctx, Operator, SessionDep, Viewer
from control_plane.bia_runs import get_run, latest_run, params_with
from control_plane.store.tables import BiaRunRow

router = APIRouter(prefix="/v1/bia", tags=["bia"])


class BiaRunIn(BaseModel):
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


@router.post("/runs", status_code=202)
def start_run(body: BiaRunIn, ctx: Ctx, who: Operator, request: Request, response: Response) -> BiaRunOut:
    run_id, _ = ctx.bia.start(who.name, body.days, params_with(body.params))
    response.headers["Location"] = f"/v1/bia/runs/{run_id}"
    with ctx.sessions() as s:
        return _out(get_run(s, run_id), with_result=False)


@router.get("/runs/{run_id}")
def read_run(run_id: int, session: SessionDep, _: Viewer) -> BiaRunOut:
    return _out(get_run(session, run_id), with_result=True)


@router.get("/latest")
def read_latest(session: SessionDep, _: Viewer) -> BiaRunOut:
    return _out(latest_run(session), with_result=True)
