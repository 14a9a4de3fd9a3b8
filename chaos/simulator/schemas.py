"""Pydantic models for everything the simulator's HTTP ports read or write."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictStr

from chaos.simulator.events import EventStats, EventsView
from chaos.simulator.faults import Fault, FieldError
from chaos.simulator.ledger import LedgerEntry, OrderStatus
from chaos.simulator.state import TargetState
from chaos.simulator.targets import TargetKind


class OrderIn(BaseModel):
    """An order as POSTed to a DC; fields beyond `order_id` are kept as given."""

    model_config = ConfigDict(extra="allow")

    order_id: StrictStr = Field(min_length=1, max_length=200)

    def payload(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class OrderReceipt(BaseModel):
    order_id: str
    dc_ref: str
    status: OrderStatus


class LedgerItem(BaseModel):
    """One ledger line for reconciliation; the order's own fields are left out to keep big ledgers cheap."""

    model_config = ConfigDict(from_attributes=True)

    order_id: str
    dc_ref: str
    status: OrderStatus
    received_at: datetime
    posts: int


class OrderView(LedgerItem):
    """One order as the DC holds it, with the fields it was POSTed with."""

    payload: dict[str, Any]


class OrdersPage(BaseModel):
    """`GET /orders`: a page of the orders a DC holds, with the fields they were POSTed with."""

    orders: list[OrderView]
    next: str | None = Field(description="pass as `after` for the next page; null on the last")


class PageQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    after: int = Field(default=0, ge=0)
    limit: int = Field(default=500, ge=1, le=5000)
    since: AwareDatetime | None = None


class LedgerView(BaseModel):
    target: str
    orders: list[LedgerItem]

    @classmethod
    def of(cls, target: str, entries: list[LedgerEntry]) -> LedgerView:
        # Validating the entries in one call keeps the per-order work in pydantic-core, not Python.
        return cls.model_validate({"target": target, "orders": entries}, from_attributes=True)


class DcHealth(BaseModel):
    status: Literal["ok"] = "ok"
    backlog: int
    capacity_per_hour: int


class IntegrationHealth(BaseModel):
    status: Literal["ok"] = "ok"


class StatsView(BaseModel):
    """Requests per route, counted on arrival (before any fault), `/_sim/` excluded; a DC's events."""

    target: str
    requests: dict[str, int]
    events: EventStats | None = None

    @classmethod
    def of(cls, state: TargetState) -> StatsView:
        events = state.outbox.stats() if state.ledger is not None else None
        return cls(target=state.name, requests=dict(state.requests), events=events)


class TargetView(BaseModel):
    name: str
    kind: TargetKind
    port: int
    capacity_per_hour: int
    fault: Fault = Field(discriminator="mode")
    listening: bool
    events: EventsView | None = None

    @classmethod
    def of(cls, state: TargetState, listening: bool) -> TargetView:
        return cls(
            name=state.target.name,
            kind=state.target.kind,
            port=state.target.port,
            capacity_per_hour=state.target.capacity_per_hour,
            fault=state.fault,
            listening=listening,
            events=EventsView.of(state.events) if state.ledger is not None else None,
        )


class TargetsView(BaseModel):
    targets: list[TargetView]


class Problem(BaseModel):
    """Error body: what went wrong and, for validation, which fields."""

    detail: str
    errors: list[FieldError] | None = None
