"""Starlette apps: one per target (the DC/WMS contract of DESIGN §4, or an integration) and the admin API."""

from __future__ import annotations

import json

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from chaos.simulator.events import EventsConfig, EventsView, InvalidEvents, parse_events
from chaos.simulator.faults import Fault, FieldError, InvalidFault, NoFault, parse_fault
from chaos.simulator.injection import FaultInjector
from chaos.simulator.ledger import Ledger, OrderAlreadyShipped, OrderCancelled, UnknownOrder
from chaos.simulator.schemas import (
    DcHealth,
    IntegrationHealth,
    LedgerView,
    OrderIn,
    OrderReceipt,
    OrdersPage,
    OrderView,
    PageQuery,
    Problem,
    StatsView,
    TargetsView,
    TargetView,
)
from chaos.simulator.state import Client, SimulatorControls, TargetState

_TRUE = {"1", "true", "yes"}


def build_target_app(state: TargetState, controls: SimulatorControls) -> ASGIApp:
    """The app behind one target's port: its contract, its `/_sim/` extras, wrapped in fault injection."""
    handlers = _TargetHandlers(state, controls)
    routes: list[BaseRoute] = [Route("/health", handlers.health, methods=["GET"])]
    if state.target.kind == "dc":
        routes += [
            Route("/orders", handlers.take_order, methods=["POST"]),
            Route("/orders", handlers.list_orders, methods=["GET"]),
            Route("/orders/{order_id}", handlers.get_order, methods=["GET"]),
            Route("/orders/{order_id}", handlers.cancel_order, methods=["DELETE"]),
            Route("/_sim/ledger", handlers.ledger, methods=["GET"]),
            Route("/_sim/orders/{order_id}/ship", handlers.ship_order, methods=["POST"]),
            Route("/_sim/orders/{order_id}/cancel-by-dc", handlers.cancel_by_dc, methods=["POST"]),
            Route("/_sim/events", handlers.get_events, methods=["GET"]),
            Route("/_sim/events", handlers.put_events, methods=["PUT"]),
            Route("/_sim/events", handlers.clear_events, methods=["DELETE"]),
        ]
    routes += [
        Route("/_sim/faults", handlers.get_fault, methods=["GET"]),
        Route("/_sim/faults", handlers.put_fault, methods=["PUT"]),
        Route("/_sim/faults", handlers.clear_fault, methods=["DELETE"]),
        Route("/_sim/stats", handlers.stats, methods=["GET"]),
    ]
    return FaultInjector(Starlette(routes=routes), routes, state, controls)


def build_admin_app(controls: SimulatorControls) -> ASGIApp:
    """The admin API: every target's faults, ledger, stats and events, reachable while targets are down."""
    admin = _AdminHandlers(controls)
    prefix = "/_sim/targets/{name}"
    return Starlette(
        routes=[
            Route("/_sim/targets", admin.list_targets, methods=["GET"]),
            Route(prefix, admin.get_target, methods=["GET"]),
            Route(f"{prefix}/faults", admin.get_fault, methods=["GET"]),
            Route(f"{prefix}/faults", admin.put_fault, methods=["PUT"]),
            Route(f"{prefix}/faults", admin.clear_fault, methods=["DELETE"]),
            Route(f"{prefix}/ledger", admin.ledger, methods=["GET"]),
            Route(f"{prefix}/stats", admin.stats, methods=["GET"]),
            Route(f"{prefix}/orders/{{order_id}}/ship", admin.ship_order, methods=["POST"]),
            Route(f"{prefix}/orders/{{order_id}}/cancel-by-dc", admin.cancel_by_dc, methods=["POST"]),
            Route(f"{prefix}/events", admin.get_events, methods=["GET"]),
            Route(f"{prefix}/events", admin.put_events, methods=["PUT"]),
            Route(f"{prefix}/events", admin.clear_events, methods=["DELETE"]),
            Route("/_sim/reset", admin.reset, methods=["POST"]),
        ]
    )


class _TargetHandlers:
    def __init__(self, state: TargetState, controls: SimulatorControls) -> None:
        self.state = state
        self.controls = controls

    @property
    def _ledger(self) -> Ledger:
        # Order routes are only mounted on DCs, which always have a ledger.
        assert self.state.ledger is not None
        return self.state.ledger

    async def health(self, request: Request) -> Response:
        if self.state.ledger is None:
            return _json(IntegrationHealth())
        return _json(
            DcHealth(backlog=self.state.ledger.backlog, capacity_per_hour=self.state.target.capacity_per_hour)
        )

    async def take_order(self, request: Request) -> Response:
        try:
            order = OrderIn.model_validate_json(await request.body())
        except ValidationError as exc:
            return _invalid("invalid order", _field_errors(exc))
        entry, activated = self.state.take(order.order_id, order.payload())
        receipt = OrderReceipt(order_id=entry.order_id, dc_ref=entry.dc_ref, status=entry.status)
        return _json(receipt, status_code=201 if activated else 200)

    async def list_orders(self, request: Request) -> Response:
        try:
            query = PageQuery.model_validate(dict(request.query_params))
        except ValidationError as exc:
            return _invalid("invalid query", _field_errors(exc))
        entries, cursor = self._ledger.page(query.after, query.limit, query.since)
        page = OrdersPage(
            orders=[OrderView.model_validate(e) for e in entries],
            next=None if cursor is None else str(cursor),
        )
        return _json(page)

    async def get_order(self, request: Request) -> Response:
        order_id = request.path_params["order_id"]
        try:
            return _json(OrderView.model_validate(self._ledger.get(order_id)))
        except UnknownOrder:
            return _problem(404, f"order {order_id!r} unknown at {self.state.name}")

    async def cancel_order(self, request: Request) -> Response:
        order_id = request.path_params["order_id"]
        try:
            entry = self._ledger.cancel(order_id)
        except UnknownOrder:
            return _problem(404, f"order {order_id!r} unknown at {self.state.name}")
        except OrderAlreadyShipped:
            return _problem(409, f"order {order_id!r} already shipped from {self.state.name}")
        return _json(OrderReceipt(order_id=entry.order_id, dc_ref=entry.dc_ref, status=entry.status))

    async def ledger(self, request: Request) -> Response:
        return _ledger_response(self.state, request)

    async def ship_order(self, request: Request) -> Response:
        return _ship(self.state, request.path_params["order_id"])

    async def cancel_by_dc(self, request: Request) -> Response:
        return _cancel_by_dc(self.state, request.path_params["order_id"])

    async def get_events(self, request: Request) -> Response:
        return _json(EventsView.of(self.state.events))

    async def put_events(self, request: Request) -> Response:
        return await _put_events(self.state, request)

    async def clear_events(self, request: Request) -> Response:
        return _set_events(self.state, EventsConfig())

    async def get_fault(self, request: Request) -> Response:
        return _json(self.state.fault)

    async def put_fault(self, request: Request) -> Response:
        return await _put_fault(self.controls, self.state, request, on_own_port=True)

    async def clear_fault(self, request: Request) -> Response:
        return await _apply_fault(self.controls, self.state, NoFault())

    async def stats(self, request: Request) -> Response:
        return _json(StatsView.of(self.state))


class _AdminHandlers:
    def __init__(self, controls: SimulatorControls) -> None:
        self.controls = controls

    def _view(self, state: TargetState) -> TargetView:
        return TargetView.of(state, self.controls.is_listening(state.name))

    async def list_targets(self, request: Request) -> Response:
        return _json(TargetsView(targets=[self._view(s) for s in self.controls.states.values()]))

    async def get_target(self, request: Request) -> Response:
        state = self._state(request)
        return _not_found(request) if state is None else _json(self._view(state))

    async def get_fault(self, request: Request) -> Response:
        state = self._state(request)
        return _not_found(request) if state is None else _json(state.fault)

    async def put_fault(self, request: Request) -> Response:
        state = self._state(request)
        if state is None:
            return _not_found(request)
        return await _put_fault(self.controls, state, request, on_own_port=False)

    async def clear_fault(self, request: Request) -> Response:
        state = self._state(request)
        return _not_found(request) if state is None else await _apply_fault(self.controls, state, NoFault())

    async def ledger(self, request: Request) -> Response:
        state = self._state(request)
        return _not_found(request) if state is None else _ledger_response(state, request)

    async def stats(self, request: Request) -> Response:
        state = self._state(request)
        return _not_found(request) if state is None else _json(StatsView.of(state))

    async def ship_order(self, request: Request) -> Response:
        state = self._state(request)
        return _not_found(request) if state is None else _ship(state, request.path_params["order_id"])

    async def cancel_by_dc(self, request: Request) -> Response:
        state = self._state(request)
        return _not_found(request) if state is None else _cancel_by_dc(state, request.path_params["order_id"])

    async def get_events(self, request: Request) -> Response:
        state = self._state(request)
        if state is None:
            return _not_found(request)
        return _no_ledger(state) if state.ledger is None else _json(EventsView.of(state.events))

    async def put_events(self, request: Request) -> Response:
        state = self._state(request)
        return _not_found(request) if state is None else await _put_events(state, request)

    async def clear_events(self, request: Request) -> Response:
        state = self._state(request)
        return _not_found(request) if state is None else _set_events(state, EventsConfig())

    async def reset(self, request: Request) -> Response:
        await self.controls.reset()
        return _json(TargetsView(targets=[self._view(s) for s in self.controls.states.values()]))

    def _state(self, request: Request) -> TargetState | None:
        return self.controls.states.get(request.path_params["name"])


async def _put_fault(
    controls: SimulatorControls, state: TargetState, request: Request, on_own_port: bool
) -> Response:
    try:
        fault = parse_fault(json.loads(await request.body()))
    except ValueError as exc:  # JSONDecodeError and InvalidFault are both ValueErrors
        errors = exc.errors if isinstance(exc, InvalidFault) else [FieldError(field="body", message=str(exc))]
        return _invalid("invalid fault", errors)
    client = request.scope.get("client") if on_own_port else None
    return await _apply_fault(controls, state, fault, keep_client=(client[0], client[1]) if client else None)


async def _apply_fault(
    controls: SimulatorControls, state: TargetState, fault: Fault, keep_client: Client | None = None
) -> Response:
    # When a target takes itself down, the asking connection is spared so it gets its answer, then closed.
    try:
        await controls.set_fault(state.name, fault, keep_client=keep_client)
    except OSError as exc:  # the port was taken by someone else while the target was down
        return _problem(500, str(exc))
    headers = {"connection": "close"} if keep_client and fault.mode == "down" else None
    return _json(state.fault, headers=headers)


def _ledger_response(state: TargetState, request: Request) -> Response:
    if state.ledger is None:
        return _no_ledger(state)
    include_cancelled = request.query_params.get("all", "").lower() in _TRUE
    entries = state.ledger.entries(include_cancelled=include_cancelled)
    return _json(LedgerView.of(state.name, entries))


def _ship(state: TargetState, order_id: str) -> Response:
    if state.ledger is None:
        return _no_ledger(state)
    try:
        entry = state.ship(order_id)
    except UnknownOrder:
        return _problem(404, f"order {order_id!r} unknown at {state.name}")
    except OrderCancelled:
        return _problem(409, f"order {order_id!r} was cancelled at {state.name}")
    return _json(OrderReceipt(order_id=entry.order_id, dc_ref=entry.dc_ref, status=entry.status))


def _cancel_by_dc(state: TargetState, order_id: str) -> Response:
    if state.ledger is None:
        return _no_ledger(state)
    try:
        entry = state.cancel_by_dc(order_id)
    except UnknownOrder:
        return _problem(404, f"order {order_id!r} unknown at {state.name}")
    except OrderAlreadyShipped:
        return _problem(409, f"order {order_id!r} already shipped from {state.name}")
    return _json(OrderReceipt(order_id=entry.order_id, dc_ref=entry.dc_ref, status=entry.status))


async def _put_events(state: TargetState, request: Request) -> Response:
    if state.ledger is None:
        return _no_ledger(state)
    try:
        config = parse_events(json.loads(await request.body()))
    except ValueError as exc:  # JSONDecodeError and InvalidEvents are both ValueErrors
        bad_json = [FieldError(field="body", message=str(exc))]
        errors = exc.errors if isinstance(exc, InvalidEvents) else bad_json
        return _invalid("invalid events configuration", errors)
    return _set_events(state, config)


def _set_events(state: TargetState, config: EventsConfig) -> Response:
    if state.ledger is None:
        return _no_ledger(state)
    state.set_events(config)
    return _json(EventsView.of(state.events))


def _no_ledger(state: TargetState) -> Response:
    return _problem(404, f"{state.name} is an integration and keeps no ledger")


def _field_errors(exc: ValidationError) -> list[FieldError]:
    return [
        FieldError(field=".".join(str(p) for p in err["loc"]) or "body", message=err["msg"])
        for err in exc.errors()
    ]


def _json(model: BaseModel, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        model.model_dump_json(), status_code=status_code, headers=headers, media_type="application/json"
    )


def _problem(status_code: int, detail: str) -> Response:
    return _json(Problem(detail=detail), status_code=status_code)


def _invalid(detail: str, errors: list[FieldError]) -> Response:
    return _json(Problem(detail=detail, errors=errors), status_code=422)


def _not_found(request: Request) -> Response:
    return _problem(404, f"no target named {request.path_params['name']!r}")
