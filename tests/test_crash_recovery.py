"""A crash between our commit and the DC's answer leaves the order recoverable, never lost or doubled."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from chaos.order_stream import OrderFactory
from control_plane.context import build_context
from control_plane.domain import Site
from control_plane.orders import repository as repo
from control_plane.orders.schemas import OrderIn
from control_plane.settings import Settings
from failover.dispatch import CancelOutcome, DcAck

from factories import Clock
from harness import prepare_database, start_simulator, write_test_world


class ProcessDied(BaseException):
    """Stands for the process dying: not an error the order path may catch."""


class DiesAfterDcAnswers:
    """Forwards to the real DC, then 'dies' before we can record the answer."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def submit(self, site: Site, payload: Mapping[str, Any]) -> DcAck:
        self.real.submit(site, payload)
        raise ProcessDied

    def cancel(self, site: Site, order_id: str) -> CancelOutcome:
        return self.real.cancel(site, order_id)  # type: ignore[no-any-return]


def test_order_whose_dispatch_died_is_reposted_once_after_its_lease(db_url: str, tmp_path: Path) -> None:
    # given a DC that takes the order while our process dies before recording the answer
    world, path = write_test_world(tmp_path / "world.yaml")
    prepare_database(db_url, world)
    clock = Clock()
    with start_simulator(path) as sim:
        dying = build_context(Settings(database_url=db_url, dispatch_lease_s=30), clock=clock)
        real_client = dying.pipeline._client
        dying.pipeline._client = DiesAfterDcAnswers(real_client)  # type: ignore[assignment]
        req = OrderIn.model_validate(OrderFactory(world, seed=4).order()).to_request(clock(), 48)
        with pytest.raises(ProcessDied):
            dying.pipeline.submit(req)
        dying.close()

        # then the order is stored as routed, its reservation held, and nothing retries it early
        restarted = build_context(Settings(database_url=db_url, dispatch_lease_s=30), clock=clock)
        with restarted.sessions() as s:
            row = repo.find_by_key(s, req.channel, req.external_id)
            assert row is not None and row.status == "routed" and row.site is not None
            order_id, site = row.id, row.site
        assert restarted.pipeline.redispatch_due() == 0

        # when the lease runs out, the restarted control plane re-posts it to the same DC
        clock.now += timedelta(seconds=31)
        assert restarted.pipeline.redispatch_due() == 1
        with restarted.sessions() as s:
            row = repo.get_order(s, order_id)
            assert row is not None and row.status == "accepted" and row.site == site
        restarted.close()

        # and the DC holds it exactly once (the repeat POST was idempotent)
        entries = [e for e in sim.ledger(site) if e["order_id"] == order_id]
        assert len(entries) == 1 and entries[0]["posts"] == 2
        assert all(
            e["order_id"] != order_id for s_ in world.sites if s_.code != site for e in sim.ledger(s_.code)
        )
