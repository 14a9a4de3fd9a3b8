"""`/v1/drills`: drill runs registered, heard from, finished and read; the kill switch for all."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from control_plane.auth.deps import Operator, Viewer
from control_plane.drills.schemas import (
    AbortIn,
    AbortOut,
    DrillOut,
    DrillResultIn,
    DrillStartIn,
    HeartbeatOut,
)
from control_plane.drills.service import DrillService
from control_plane.web.idempotency import IdempotencyKey, RequestHash, run_once
from control_plane.web.params import RowId
from control_plane.web.strict_query import known_query

router = APIRouter(prefix="/v1/drills", tags=["drills"])
REFUSED = {409: {"description": "refused: inside a peak window, or the drill has ended"}}


def _service(request: Request) -> DrillService:
    return request.app.state.drills  # type: ignore[no-any-return]


@router.post("", status_code=201, responses=REFUSED, response_model=DrillOut)
def start_drill(
    body: DrillStartIn, request: Request, who: Operator, digest: RequestHash, key: IdempotencyKey = None
) -> JSONResponse:
    drills = _service(request)
    return run_once(request, who, key, 201, lambda actor: drills.start(actor, body), request_hash=digest)


@router.post("/abort", response_model=AbortOut)
def abort_drills(
    body: AbortIn, request: Request, who: Operator, digest: RequestHash, key: IdempotencyKey = None
) -> JSONResponse:
    drills = _service(request)
    return run_once(request, who, key, 200, lambda actor: drills.abort_all(actor, body.reason), digest)


@router.post("/{run_id}/heartbeat", responses=REFUSED)
def heartbeat(run_id: RowId, request: Request, _: Operator) -> HeartbeatOut:
    return _service(request).heartbeat(run_id)


@router.post("/{run_id}/result", responses=REFUSED, response_model=DrillOut)
def finish_drill(
    run_id: RowId,
    body: DrillResultIn,
    request: Request,
    who: Operator,
    digest: RequestHash,
    key: IdempotencyKey = None,
) -> JSONResponse:
    drills = _service(request)
    return run_once(request, who, key, 200, lambda actor: drills.finish(actor, run_id, body), digest)


@router.get("", dependencies=[Depends(known_query("status", "subject", "limit"))])
def list_drills(
    request: Request,
    _: Viewer,
    status: Annotated[str | None, Query(pattern="^(running|completed|deviated|aborted|failed)$")] = None,
    subject: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[DrillOut]:
    return _service(request).list(status, subject, limit)


@router.get("/{run_id}")
def get_drill(run_id: RowId, request: Request, _: Viewer) -> DrillOut:
    return _service(request).get(run_id)
