"""`/v1/orders`: take orders (idempotent on channel + external_id) and show them."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from control_plane.auth.deps import Ctx, Ingest, SessionDep, Viewer
from control_plane.domain import NotFound, OrderRequest, OrderStatus
from control_plane.orders import repository as repo
from control_plane.orders.schemas import AttemptOut, LineOut, OrderIn, OrderOut, OrderSummary
from control_plane.orders.service import Trace
from control_plane.orders.validate import check_against_world
from control_plane.web.idempotency import RequestHash, remember, replay
from control_plane.web.params import OrderId
from control_plane.web.problems import problem

if TYPE_CHECKING:
    from control_plane.context import AppContext  # the type only: the context is built above every area

router = APIRouter(prefix="/v1/orders", tags=["orders"])
PAUSED_RETRY_AFTER_S = 30


def order_out(session: SessionDep, order_id: str) -> OrderOut:
    row = repo.get_order(session, order_id)
    if row is None:
        raise NotFound(f"no order {order_id!r}")
    return OrderOut(
        id=row.id,
        channel=row.channel,
        external_id=row.external_id,
        status=row.status,
        site=row.site,
        dc_ref=row.dc_ref,
        eta=row.eta,
        placed_at=row.placed_at,
        promised_by=row.promised_by,
        delayed=row.eta is not None and row.eta > row.promised_by,
        total=row.total,
        customer_id=row.customer_id,
        ship_region=row.ship_region,
        lines=[
            LineOut(sku=li.sku, qty=li.qty, unit_price=li.unit_price)
            for li in repo.order_lines(session, row.id)
        ],
        attempts=[
            AttemptOut(at=a.at, site=a.site, outcome=a.outcome, reason=a.reason, latency_ms=a.latency_ms)
            for a in repo.attempts(session, row.id)
        ],
        created_at=row.created_at,
        updated_at=row.updated_at,
        shipped_at=row.shipped_at,
        cancelled_at=row.cancelled_at,
    )


def _from_trace(order_id: str, req: OrderRequest, trace: Trace) -> OrderOut:
    """The answer to a new order, from what the pipeline just did (no second read)."""
    stamps = [a.at for a in trace.attempts] or [req.placed_at]
    return OrderOut(
        id=order_id,
        channel=req.channel,
        external_id=req.external_id,
        status=trace.status.value,
        site=trace.site,
        dc_ref=trace.dc_ref,
        eta=trace.eta,
        placed_at=req.placed_at,
        promised_by=req.promised_by,
        delayed=trace.eta is not None and trace.eta > req.promised_by,
        total=sum((li.unit_price * li.qty for li in req.lines), Decimal(0)),
        customer_id=req.customer.id,
        ship_region=req.ship_to.region,
        lines=[LineOut(sku=li.sku, qty=li.qty, unit_price=li.unit_price) for li in req.lines],
        attempts=[
            AttemptOut(at=a.at, site=a.site, outcome=a.outcome, reason=a.reason, latency_ms=a.latency_ms)
            for a in trace.attempts
        ],
        created_at=stamps[0],
        updated_at=stamps[-1],
    )


@router.post(
    "",
    status_code=201,
    response_model=OrderOut,
    responses={
        200: {"description": "a repeat of an order already taken: its current state, nothing dispatched"},
        409: {"description": "(channel, external_id) already taken with another body (problem+json)"},
        202: {"description": "stored and held: no DC can take it now; it is retried"},
        413: {"description": "body over the size limit"},
        422: {"description": "invalid order (problem+json naming the field)"},
    },
)
async def post_order(
    body: OrderIn,
    ctx: Ctx,
    who: Ingest,
    request: Request,
    digest: RequestHash,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
) -> Response:
    if not who.may_post_for(body.channel):
        bound = ", ".join(sorted(who.channels or ()))
        raise HTTPException(403, f"this token may post orders of {bound} only, not {body.channel!r}")
    # async, so that the whole order costs one hop to a worker thread (a sync handler would add
    # one per dependency); the pipeline blocks on the database and the DC, so it runs there
    if idempotency_key:
        return await run_in_threadpool(
            _take_order_once, ctx, body, who.name, idempotency_key, request, digest
        )
    return await run_in_threadpool(_take_order, ctx, body, digest)


def _take_order_once(
    ctx: AppContext, body: OrderIn, actor: str, key: str, request: Request, digest: str
) -> Response:
    """With an Idempotency-Key, a repeat gets the first answer (on top of channel + external_id)."""
    first = replay(ctx, actor, key, request, digest)
    if first is not None:
        return first
    resp = _take_order(ctx, body, digest)
    remember(ctx, actor, key, request, resp.status_code, json.loads(resp.body), digest)
    return resp


def _take_order(ctx: AppContext, body: OrderIn, digest: str) -> Response:
    req = body.to_request(ctx.clock(), ctx.settings.default_promise_hours, ctx.order_times)
    check_against_world(req, ctx.sites.catalog(), ctx.sites.regions(), ctx.sites.channels())
    if req.channel in ctx.sites.paused_channels():
        # shed on purpose (a runbook at peak, an operator): the channel's client retries later
        resp = problem(
            503, "Channel paused", f"intake for the sales channel {req.channel!r} is paused; retry later"
        )
        resp.headers["Retry-After"] = str(PAUSED_RETRY_AFTER_S)
        return resp
    result = ctx.pipeline.submit(req, digest)
    if result.trace is not None:
        out = _from_trace(result.order_id, req, result.trace)
    else:
        with ctx.sessions() as s:
            out = order_out(s, result.order_id)
    status = 200 if not result.created else 202 if out.status == OrderStatus.HELD.value else 201
    # serialised once here: returning the model would make FastAPI dump, re-validate and dump it again
    return Response(
        out.model_dump_json(),
        status_code=status,
        media_type="application/json",
        headers={"Location": f"/v1/orders/{out.id}"},
    )


@router.get("/{order_id}")
def get_order(order_id: OrderId, session: SessionDep, _: Viewer) -> OrderOut:
    return order_out(session, order_id)


@router.get("")
def list_orders(
    session: SessionDep,
    _: Viewer,
    status: Annotated[OrderStatus | None, Query()] = None,
    site: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[OrderSummary]:
    return [
        OrderSummary(
            id=r.id,
            channel=r.channel,
            external_id=r.external_id,
            status=r.status,
            site=r.site,
            eta=r.eta,
            promised_by=r.promised_by,
            updated_at=r.updated_at,
        )
        for r in repo.list_orders(session, status.value if status else None, site, limit)
    ]
