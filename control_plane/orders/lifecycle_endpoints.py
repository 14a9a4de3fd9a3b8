"""`POST /v1/sites/{code}/events` (a DC's signed events) and `POST /v1/orders/{id}/cancel`.

The webhook is authenticated by its HMAC signature only (a DC has no API token); the checks run in
this order and each refuses before anything is written: webhooks configured (503), signature (401;
checked before the site, so an unsigned caller learns nothing about which sites exist), site (404),
body (400 malformed JSON, 422 a bad or unknown field), order (404).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictStr, ValidationError
from starlette.concurrency import run_in_threadpool

from control_plane.auth.deps import Ctx, Ingest
from control_plane.domain import Actor, NotFound
from control_plane.orders.endpoints import order_out
from control_plane.orders.lifecycle import DcEvent, DcEventKind, build_lifecycle
from control_plane.orders.schemas import OrderOut
from control_plane.orders.signatures import SIGNATURE_HEADER, signature_matches, site_event_secret
from control_plane.web.idempotency import IdempotencyKey, run_once
from control_plane.web.inputs import StrictIn
from control_plane.web.params import Code, OrderId
from control_plane.web.problems import problem

if TYPE_CHECKING:
    from control_plane.context import AppContext  # the type only: the context is built above every area

log = logging.getLogger("drctl.dc_events")
router = APIRouter(tags=["orders"])


class DcEventIn(StrictIn):
    """What a DC posts: the order, what happened to it, and when by the DC's own clock."""

    model_config = ConfigDict(extra="forbid", strict=True)

    order_id: StrictStr = Field(min_length=1, max_length=36)
    event: Literal["shipped", "cancelled_by_dc"]
    at: AwareDatetime = Field(description="the DC's time, with a timezone; at most a day ahead of ours")


class DcEventOut(BaseModel):
    order_id: str
    site: str
    event: str
    outcome: str = Field(description="applied | duplicate | conflict | ignored")
    status: str = Field(description="the order's status afterwards")


class CancelIn(StrictIn):
    reason: str = Field(min_length=1, max_length=2000)


@router.post(
    "/v1/sites/{code}/events",
    response_model=DcEventOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": DcEventIn.model_json_schema()}},
        },
        "parameters": [
            {
                "name": SIGNATURE_HEADER,
                "in": "header",
                "required": True,
                "description": "sha256=<hex HMAC-SHA256 of the raw body, keyed with the site's secret>",
                "schema": {"type": "string"},
            }
        ],
    },
    responses={
        200: {"description": "applied, or known already (the same event again changes nothing)"},
        401: {"description": "bad or missing signature: nothing written"},
        404: {"description": "unknown site or order"},
        422: {"description": "invalid event (problem+json naming the field)"},
        503: {"description": "webhooks are not configured (no DRCTL_DC_EVENT_SECRET)"},
    },
)
async def post_dc_event(code: Code, request: Request, ctx: Ctx) -> Response:
    # the signature covers the exact bytes, so the body is read raw and parsed only once it verifies
    raw = await request.body()
    signature = request.headers.get(SIGNATURE_HEADER)
    return await run_in_threadpool(_receive_event, ctx, code, raw, signature)


def _receive_event(ctx: AppContext, code: str, raw: bytes, signature: str | None) -> Response:
    master = ctx.settings.dc_event_secret
    if master is None:
        return problem(
            503, "Webhooks not configured", "DC event webhooks are off: DRCTL_DC_EVENT_SECRET is not set"
        )
    if not signature_matches(raw, site_event_secret(master.get_secret_value(), code), signature):
        log.warning("DC event refused: bad or missing signature", extra={"site": code})
        raise HTTPException(401, f"bad or missing {SIGNATURE_HEADER}")
    try:
        ctx.sites.site(code)
    except KeyError:
        raise NotFound(f"no site {code!r}") from None
    body = _parse_event(raw)
    if isinstance(body, Response):
        return body
    result = build_lifecycle(ctx).apply_event(
        DcEvent(code, body.order_id, DcEventKind(body.event), body.at, via="webhook")
    )
    out = DcEventOut(
        order_id=result.order_id,
        site=code,
        event=result.kind.value,
        outcome=result.outcome.value,
        status=result.status,
    )
    return Response(out.model_dump_json(), media_type="application/json")


def _parse_event(raw: bytes) -> DcEventIn | Response:
    try:
        return DcEventIn.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
    if any(e["type"] == "json_invalid" for e in errors):
        detail = "the request body is not valid JSON"
        return problem(400, "Malformed JSON", detail, errors=[{"path": "(body)", "message": detail}])
    # the one place that turns validation errors into problem+json names each field
    raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors])


@router.post(
    "/v1/orders/{order_id}/cancel",
    response_model=OrderOut,
    responses={
        200: {"description": "cancelled (or cancelled already): the order, with its timeline"},
        404: {"description": "unknown order"},
        409: {"description": "already shipped (rule `already_shipped`)"},
    },
)
def cancel_order(
    order_id: OrderId, body: CancelIn, request: Request, ctx: Ctx, who: Ingest, key: IdempotencyKey = None
) -> Response:
    # an ingest token bound to channels cancels only their orders (the Actor carries them)
    return run_once(request, who, key, 200, lambda actor: _cancel(ctx, order_id, body.reason, actor))


def _cancel(ctx: AppContext, order_id: str, reason: str, actor: Actor) -> dict[str, Any]:
    build_lifecycle(ctx).cancel_order(order_id, actor, reason)
    with ctx.sessions() as s:
        return order_out(s, order_id).model_dump(mode="json")
