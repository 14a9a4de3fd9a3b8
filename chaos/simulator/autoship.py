"""The warehouse floor on a timer: ship each accepted order a fixed time after the DC took it."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from chaos.simulator.ledger import LedgerEntry, OrderStatus

# Called when an order is due, with the entry and the take it was scheduled for.
ShipDue = Callable[[LedgerEntry, datetime], None]

_log = logging.getLogger(__name__)


class AutoShipper:
    """Due orders in a heap, shipped by one background task; stale entries are skipped by `ship_due`."""

    def __init__(self, ship_due: ShipDue) -> None:
        self._ship_due = ship_due
        self._due: list[tuple[float, int, LedgerEntry, datetime]] = []
        self._sequence = itertools.count()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self, name: str) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"autoship-{name}")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def schedule(self, entry: LedgerEntry, after_s: float) -> None:
        """Ship `entry` (as taken at its current `received_at`) `after_s` seconds from now."""
        due = asyncio.get_running_loop().time() + max(0.0, after_s)
        heapq.heappush(self._due, (due, next(self._sequence), entry, entry.received_at))
        self._changed.set()

    def rearm(self, entries: Iterable[LedgerEntry], ship_after_s: float | None) -> None:
        """Apply a new rule to every accepted order: each ships `ship_after_s` after it was taken."""
        self.clear()
        if ship_after_s is None:
            return
        now = datetime.now(UTC)
        for entry in entries:
            if entry.status is OrderStatus.ACCEPTED:
                self.schedule(entry, ship_after_s - (now - entry.received_at).total_seconds())

    def clear(self) -> None:
        self._due.clear()
        self._changed.set()

    @property
    def scheduled(self) -> int:
        return len(self._due)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._changed.clear()
            if not self._due:
                await self._changed.wait()
                continue
            wait_s = self._due[0][0] - loop.time()
            if wait_s > 0:
                # Woken early by a new or cleared schedule: look at the head again.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), wait_s)
                continue
            _, _, entry, taken_at = heapq.heappop(self._due)
            try:
                self._ship_due(entry, taken_at)
            except Exception as exc:  # one bad order must not stop the floor
                _log.error("auto-ship of %s failed: %r", entry.order_id, exc)
            await asyncio.sleep(0)  # a burst of due orders must not starve request handling
