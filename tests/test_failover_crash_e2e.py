"""A control plane SIGKILLed in the middle of a failover: the change is taken over, finished, reconciled.

1,000 orders accepted by Icheon; an operator fails it over; half-way through the move the control
plane process is killed. Its `site_changes` row stays `running` (nobody could mark it), so the
site is stuck until the change's lease runs out. A new control plane then re-runs the failover:
it takes the dead change over (marked `failed`), resumes the move without rules (the decision was
taken and audited), and ends with nothing live at Icheon. In the end every order is in exactly one
live DC ledger, the one the store names: none lost, none twice, none left at Icheon.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, func, select
from test_operations_e2e import icheon_orders
from test_order_path_e2e import post_all, reconcile

from chaos.sim_process import wait_until
from control_plane.store.tables import OrderRow, SiteChangeRow

from harness import control_plane, engine_for, prepare_database, start_simulator, write_test_world

pytestmark = pytest.mark.e2e

VICTIM = "icheon"
ORDERS = 1000
CHANGE_LEASE_S = 2.0
# Both processes: a dead change is taken over after 2 s; an order the kill left mid-dispatch at its
# new DC is re-posted after 5 s instead of the default 30 (the wait below stays short).
ENV = {"DRCTL_CHANGE_LEASE_S": str(CHANGE_LEASE_S), "DRCTL_DISPATCH_LEASE_S": "5"}


def live_at_victim(engine: Engine) -> int:
    with engine.connect() as c:
        n = c.scalar(
            select(func.count()).where(OrderRow.site == VICTIM, OrderRow.status.in_(("routed", "accepted")))
        )
    return int(n or 0)


def changes_of_victim(engine: Engine) -> list[tuple[int, str, str]]:
    with engine.connect() as c:
        rows = c.execute(
            select(SiteChangeRow.id, SiteChangeRow.kind, SiteChangeRow.status)
            .where(SiteChangeRow.site == VICTIM)
            .order_by(SiteChangeRow.id)
        )
        return [(i, k, s) for i, k, s in rows]


def statuses(engine: Engine) -> Counter[str]:
    with engine.connect() as c:
        return Counter(s for (s,) in c.execute(select(OrderRow.status)))


def routed_now(engine: Engine) -> list[tuple[object, ...]]:
    """Orders still mid-dispatch, with what the retry loop needs to know about them (diagnostics)."""
    with engine.connect() as c:
        rows = c.execute(
            select(OrderRow.id, OrderRow.site, OrderRow.next_attempt_at, OrderRow.attempts_count)
            .where(OrderRow.status == "routed")
            .limit(5)
        )
        return [tuple(r) for r in rows]


def failover(base_url: str, token: str, timeout_s: float = 300) -> httpx.Response:
    return httpx.post(
        f"{base_url}/v1/sites/{VICTIM}/failover",
        headers={"Authorization": f"Bearer {token}"},
        json={"reason": "flood at Icheon", "force": True},
        timeout=timeout_s,
        trust_env=False,
    )


def test_failover_killed_mid_move_is_taken_over_and_finished(pg_url: str, tmp_path: Path) -> None:
    world, path = write_test_world(tmp_path / "world.yaml")
    tokens = prepare_database(pg_url, world)
    engine = engine_for(pg_url)
    try:
        with start_simulator(path) as sim:
            with control_plane(pg_url, tmp_path, extra_env=ENV) as first:
                # given 1,000 orders accepted by Icheon
                answers = post_all(first.base_url, tokens["ingest"], icheon_orders(world, ORDERS), 16)
                assert Counter(r.json()["site"] for r in answers) == Counter({VICTIM: ORDERS})
                assert live_at_victim(engine) == ORDERS

                # when an operator fails it over ...
                outcome: list[object] = []

                def press() -> None:
                    try:
                        outcome.append(failover(first.base_url, tokens["operator"]))
                    except httpx.HTTPError as exc:  # the process is killed under the request
                        outcome.append(exc)

                presser = threading.Thread(target=press, daemon=True)
                presser.start()

                # ... and the control plane is SIGKILLed while the move is half-way (a few hundred
                # orders moved, a few hundred still live at Icheon)
                def half_way() -> bool:
                    left = live_at_victim(engine)
                    return 200 <= left <= ORDERS - 200 or not presser.is_alive()

                assert wait_until(half_way, 120, 0.02), "the failover never started moving orders"
                assert presser.is_alive(), f"the failover ended before it could be killed: {outcome}"
                first.proc.kill()
                first.proc.wait(10)
                presser.join(30)
                assert not presser.is_alive(), "the failover request did not end after the kill"
                assert outcome and isinstance(outcome[0], httpx.HTTPError), outcome

            left_after_kill, at_kill = live_at_victim(engine), statuses(engine)
            assert 0 < left_after_kill < ORDERS, left_after_kill
            # then the change is stuck `running`: nobody could mark it
            stuck = changes_of_victim(engine)
            assert [(k, s) for _, k, s in stuck] == [("failover", "running")], stuck
            stuck_id = stuck[0][0]

            with control_plane(pg_url, tmp_path, extra_env=ENV) as second:
                # when, after the change's lease, an operator runs the failover again
                time.sleep(CHANGE_LEASE_S + 0.5)
                started = time.monotonic()
                again = failover(second.base_url, tokens["operator"])
                took = time.monotonic() - started
                assert again.status_code == 200, again.text
                body = again.json()
                # then it resumes the dead change's work and leaves nothing live at Icheon
                assert body["resumed"] is True, body
                assert body["moved"]["live_left"] == 0, body["moved"]
                changes = changes_of_victim(engine)
                assert changes[0] == (stuck_id, "failover", "failed"), changes  # taken over
                assert [(k, s) for _, k, s in changes[1:]] == [("failover", "done")], changes
                # and a third press finds nothing left to do
                third = failover(second.base_url, tokens["operator"])
                assert third.status_code == 409, third.text
                assert third.json()["rule"] == "already_failed_over", third.json()
                assert len(changes_of_victim(engine)) == 2

                # once nothing is mid-dispatch (orders the kill left routed are re-posted) ...
                assert wait_until(lambda: statuses(engine)["routed"] == 0, 60, 0.25), (
                    statuses(engine),
                    routed_now(engine),
                    second.logs()[-3000:],
                )
                # ... and the outbox has delivered every cancel owed at Icheon (it is up) ...
                assert wait_until(lambda: sim.ledger(VICTIM) == [], 30, 0.25), len(sim.ledger(VICTIM))
                assert live_at_victim(engine) == 0
                # every order is in exactly one live ledger, the one the store names: 0 lost, 0 twice
                ours = reconcile(pg_url, sim, world)
                assert len(ours) == ORDERS
                assert VICTIM not in ours.values()
                print(f"killed: {left_after_kill} live at {VICTIM}, {dict(at_kill)}; re-run took {took:.1f}s")
    finally:
        engine.dispose()
