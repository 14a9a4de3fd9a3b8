"""Every order the load placed against the DC ledgers: in exactly one live ledger, or held.

`classify` is pure; `reconcile` gathers its inputs over the simulator's and the control plane's
HTTP APIs (ledgers, held orders, and the status of each order found in no ledger).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from chaos.drill.context import DrillContext

IN_FLIGHT = frozenset({"held", "received", "routed"})


@dataclass(frozen=True, slots=True)
class Reconciliation:
    placed: int
    in_ledgers: int
    held: int  # held or still on their way to a DC
    cancelled: int
    duplicated: list[str] = field(default_factory=list)  # in two or more live ledgers
    lost: list[str] = field(default_factory=list)  # taken, not held, and in no ledger
    strangers: int = 0  # in a ledger but never acknowledged to a shopper (a post that timed out)


def classify(
    placed: Iterable[str],
    ledgers: Mapping[str, Iterable[str]],
    status_of: Callable[[str], str | None],
) -> Reconciliation:
    """`status_of` answers the control plane's status of an order found in no ledger (None: unknown)."""
    ours = set(placed)
    holders: dict[str, int] = {}
    for ids in ledgers.values():
        for order_id in set(ids):
            holders[order_id] = holders.get(order_id, 0) + 1
    duplicated = sorted(oid for oid, n in holders.items() if n > 1)
    held = cancelled = 0
    lost = []
    for order_id in sorted(ours - holders.keys()):
        status = status_of(order_id)
        if status in IN_FLIGHT:
            held += 1
        elif status == "cancelled":
            cancelled += 1
        else:
            lost.append(order_id)
    return Reconciliation(
        placed=len(ours),
        in_ledgers=len(ours & holders.keys()),
        held=held,
        cancelled=cancelled,
        duplicated=duplicated,
        lost=lost,
        strangers=len(holders.keys() - ours),
    )


def reconcile(ctx: DrillContext, dcs: Iterable[str]) -> Reconciliation:
    placed = {o.order_id for o in ctx.outcomes.all() if o.placed and o.order_id}
    ledgers = {dc: [entry["order_id"] for entry in ctx.sim.ledger(dc)] for dc in dcs}
    listed = ctx.get("/v1/orders", ctx.tokens.viewer, status="held", limit=1000).raise_for_status()
    held = {row["id"] for row in listed.json()}

    def status_of(order_id: str) -> str | None:
        if order_id in held:
            return "held"
        resp = ctx.get(f"/v1/orders/{order_id}", ctx.tokens.viewer)
        if resp.status_code == 404:
            return None  # acknowledged to the shopper, unknown to the store: lost
        resp.raise_for_status()  # an error answer is no evidence either way: the check fails
        return str(resp.json()["status"])

    return classify(placed, ledgers, status_of)
