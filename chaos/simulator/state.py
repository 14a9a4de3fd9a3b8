"""Live state of every target (ledger, fault, request counts, events) and the controls the HTTP apps use."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from chaos.simulator.autoship import AutoShipper
from chaos.simulator.events import EventOutbox, EventsConfig
from chaos.simulator.faults import DownFault, ErrorRateFault, Fault, NoFault, PartitionFault
from chaos.simulator.ledger import Ledger, LedgerEntry, OrderStatus, UnknownOrder
from chaos.simulator.targets import SimTarget

Client = tuple[str, int]


def _new_ledger(target: SimTarget) -> Ledger | None:
    return Ledger(ref_prefix=target.name.upper()) if target.kind == "dc" else None


@dataclass
class TargetState:
    """Everything the simulator remembers about one target; survives the target being down."""

    target: SimTarget
    ledger: Ledger | None = None
    fault: Fault = field(default_factory=NoFault)
    requests: Counter[str] = field(default_factory=Counter)
    rng: random.Random = field(default_factory=random.Random)
    # Requests hung by a partition wait on this; it is set and replaced on every fault change.
    fault_changed: asyncio.Event = field(default_factory=asyncio.Event)
    events: EventsConfig = field(init=False)
    outbox: EventOutbox = field(init=False, repr=False)
    shipper: AutoShipper = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.ledger is None:
            self.ledger = _new_ledger(self.target)
        self.events = self.target.events or EventsConfig()
        self.outbox = EventOutbox(self.name, config=lambda: self.events, held=self._events_held)
        self.shipper = AutoShipper(self._ship_due)

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def _dc_ledger(self) -> Ledger:
        # Order operations are only reachable on DCs, which always have a ledger.
        assert self.ledger is not None
        return self.ledger

    def change_fault(self, fault: Fault) -> None:
        """Switch fault and release every request (and held event) waiting under the previous one."""
        self.fault = fault
        # A seeded error rate replays the same answer sequence each time it is set.
        self.rng = random.Random(fault.seed) if isinstance(fault, ErrorRateFault) else random.Random()
        released, self.fault_changed = self.fault_changed, asyncio.Event()
        released.set()

    def take(self, order_id: str, payload: dict[str, Any]) -> tuple[LedgerEntry, bool]:
        """Take an order (idempotent); a newly active one is put on the floor's timer if there is one."""
        entry, activated = self._dc_ledger.accept(order_id, payload, datetime.now(UTC))
        if activated and self.events.ship_after_s is not None:
            self.shipper.schedule(entry, self.events.ship_after_s)
        return entry, activated

    def ship(self, order_id: str) -> LedgerEntry:
        """Ship an active order and tell drctl; shipping it again changes and sends nothing."""
        return self._change(order_id, self._dc_ledger.ship, "shipped")

    def cancel_by_dc(self, order_id: str) -> LedgerEntry:
        """The DC cancels an order itself (stock-out, damage) and tells drctl; again changes nothing."""
        return self._change(order_id, self._dc_ledger.cancel, "cancelled_by_dc")

    def _change(self, order_id: str, change: Callable[[str], LedgerEntry], event: str) -> LedgerEntry:
        """Apply a ledger change; only one that ends an accepted order is news for drctl."""
        was = self._dc_ledger.get(order_id).status
        entry = change(order_id)
        if was is OrderStatus.ACCEPTED:
            self.outbox.emit(order_id, event, datetime.now(UTC))
        return entry

    def set_events(self, config: EventsConfig) -> None:
        """Replace the events configuration; its `ship_after_s` applies to every order still accepted."""
        self.events = config
        if self.ledger is not None:
            self.shipper.rearm(self.ledger.entries(), config.ship_after_s)

    def clear_records(self) -> None:
        """Forget orders, request counts and events; back to the configuration the target started with."""
        self.ledger = _new_ledger(self.target)
        self.requests.clear()
        self.events = self.target.events or EventsConfig()
        self.shipper.clear()
        self.outbox.reset()

    def start(self) -> None:
        """Start the background tasks of a DC (event delivery, the floor's timer); needs a running loop."""
        if self.ledger is not None:
            self.outbox.start()
            self.shipper.start(self.name)

    async def close(self) -> None:
        await self.shipper.close()
        await self.outbox.close()

    def _events_held(self) -> asyncio.Event | None:
        # A DC whose network is cut cannot reach drctl either; its events wait for the fault to change.
        if isinstance(self.fault, DownFault | PartitionFault):
            return self.fault_changed
        return None

    def _ship_due(self, entry: LedgerEntry, taken_at: datetime) -> None:
        # Skip what changed since it was scheduled: cancelled, shipped, retaken, or a ledger since reset.
        ledger = self.ledger
        if ledger is None or entry.status is not OrderStatus.ACCEPTED or entry.received_at != taken_at:
            return
        try:
            current = ledger.get(entry.order_id)
        except UnknownOrder:
            return
        if current is entry:
            self.ship(entry.order_id)


class SimulatorControls(Protocol):
    """What the HTTP apps may ask of the running simulator; implemented by `server.Simulator`."""

    @property
    def states(self) -> Mapping[str, TargetState]: ...

    def is_listening(self, name: str) -> bool: ...

    async def set_fault(self, name: str, fault: Fault, keep_client: Client | None = None) -> None:
        """Apply a fault; `keep_client` is the connection asking, which must live to get its answer."""
        ...

    def drop_connection(self, name: str, client: Client | None) -> bool:
        """Abort one client connection of a target without answering it."""
        ...

    async def reset(self) -> None:
        """Clear every fault, ledger, request count and event; restore each target's events config."""
        ...
