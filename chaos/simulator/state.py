"""Live state of every target (ledger, fault, request counts) and the controls the HTTP apps use."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from chaos.simulator.faults import ErrorRateFault, Fault, NoFault
from chaos.simulator.ledger import Ledger
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

    def __post_init__(self) -> None:
        if self.ledger is None:
            self.ledger = _new_ledger(self.target)

    @property
    def name(self) -> str:
        return self.target.name

    def change_fault(self, fault: Fault) -> None:
        """Switch fault and release every request hung under the previous one."""
        self.fault = fault
        # A seeded error rate replays the same answer sequence each time it is set.
        self.rng = random.Random(fault.seed) if isinstance(fault, ErrorRateFault) else random.Random()
        released, self.fault_changed = self.fault_changed, asyncio.Event()
        released.set()

    def clear_records(self) -> None:
        """Forget orders and request counts (the fault is handled by the caller)."""
        self.ledger = _new_ledger(self.target)
        self.requests.clear()


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
        """Clear every fault, ledger and request count."""
        ...
