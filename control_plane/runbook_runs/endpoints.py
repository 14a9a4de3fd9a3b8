"""`/v1/runbooks`, `/v1/runbook-executions`: list, start (or dry-run), approve, abort, and the
kill switch for automatic starts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import Field, StrictBool

from control_plane.auth.deps import Operator, Principal, Viewer
from control_plane.domain import Actor
from control_plane.runbook_runs.service import RunbookService, runbook_json
from control_plane.web.idempotency import IdempotencyKey, RequestHash, run_once
from control_plane.web.inputs import StrictIn
from control_plane.web.params import Code, RowId

router = APIRouter(tags=["runbooks"])


class StartIn(StrictIn):
    params: dict[Annotated[str, Field(max_length=41)], str | int | float | bool] = Field(
        default_factory=dict, max_length=50
    )
    dry_run: StrictBool = Field(default=False, description="report what every step would do; change nothing")


class ApproveIn(StrictIn):
    comment: str | None = Field(default=None, min_length=1, max_length=2000)


class ReasonIn(StrictIn):
    reason: str = Field(min_length=3, max_length=2000)


def _service(request: Request) -> RunbookService:
    return request.app.state.runbooks  # type: ignore[no-any-return]


@router.get("/v1/runbooks")
def list_runbooks(request: Request, _: Viewer) -> dict[str, Any]:
    service = _service(request)
    return {
        "automatic_starts": service.switch_state(),
        "runbooks": [runbook_json(b) for b in service.library.all()],
    }


@router.post(
    "/v1/runbooks/{name}/executions",
    status_code=201,
    responses={
        404: {"description": "no such runbook"},
        422: {"description": "a parameter is unknown, missing or mistyped"},
    },
)
def start_execution(
    name: Code,
    body: StartIn,
    request: Request,
    who: Operator,
    digest: RequestHash,
    key: IdempotencyKey = None,
) -> JSONResponse:
    return _once(
        request, who, key, digest, 201, lambda svc, actor: svc.start(name, body.params, actor, body.dry_run)
    )


@router.get("/v1/runbook-executions")
def list_executions(
    request: Request,
    _: Viewer,
    status: Annotated[str | None, Query(max_length=20, pattern=r"^[a-z_]+$")] = None,
    runbook: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[dict[str, Any]]:
    return _service(request).list(status, runbook, limit)


@router.get("/v1/runbook-executions/{execution_id}")
def get_execution(execution_id: RowId, request: Request, _: Viewer) -> dict[str, Any]:
    return _service(request).get(execution_id)


@router.post(
    "/v1/runbook-executions/{execution_id}/approve",
    responses={
        403: {"description": "the operator who started it cannot approve it"},
        409: {"description": "not waiting for an approval"},
    },
)
def approve(
    execution_id: RowId,
    body: ApproveIn,
    request: Request,
    who: Operator,
    digest: RequestHash,
    key: IdempotencyKey = None,
) -> JSONResponse:
    return _once(
        request, who, key, digest, 200, lambda svc, actor: svc.approve(execution_id, actor, body.comment)
    )


@router.post("/v1/runbook-executions/{execution_id}/abort", responses={409: {"description": "it has ended"}})
def abort(
    execution_id: RowId,
    body: ReasonIn,
    request: Request,
    who: Operator,
    digest: RequestHash,
    key: IdempotencyKey = None,
) -> JSONResponse:
    return _once(
        request, who, key, digest, 200, lambda svc, actor: svc.abort(execution_id, actor, body.reason)
    )


@router.post("/v1/runbooks/pause")
def pause(
    body: ReasonIn, request: Request, who: Operator, digest: RequestHash, key: IdempotencyKey = None
) -> JSONResponse:
    return _once(request, who, key, digest, 200, lambda svc, actor: svc.set_paused(True, actor, body.reason))


@router.post("/v1/runbooks/resume")
def resume(
    body: ReasonIn, request: Request, who: Operator, digest: RequestHash, key: IdempotencyKey = None
) -> JSONResponse:
    return _once(request, who, key, digest, 200, lambda svc, actor: svc.set_paused(False, actor, body.reason))


def _once(
    request: Request,
    who: Principal,
    key: str | None,
    digest: str,
    status: int,
    action: Callable[[RunbookService, Actor], dict[str, Any]],
) -> JSONResponse:
    """The action once per Idempotency-Key, its answer with datetimes as ISO text (for the
    idempotency record and the answer alike)."""
    service = _service(request)
    return run_once(request, who, key, status, lambda actor: jsonable_encoder(action(service, actor)), digest)
