"""Dispatch defects: an acknowledgement we cannot read, the 404 rule, and a re-post that comes back refused.

a. A DC that answers 200 with a body that is not an acknowledgement (not JSON, or JSON without a
   `dc_ref`) may hold the order: the client must say so (BAD_ANSWER, may have reached the DC) and
   the dispatch must fail with a cancel owed, not count as accepted and not as provably absent.
b. `proves_absent`, the one rule the failover's move and the cancel outbox share, as a table.
c. An order whose dispatch died after its POST reached the DC is re-posted there once its lease
   runs out. If that re-post is refused (the DC is down now), the DC still holds the copy of the
   first POST: when the order then goes to another DC, a cancel is owed at the first one.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from test_crash_recovery import DiesAfterDcAnswers, ProcessDied

from chaos.order_stream import OrderFactory
from chaos.sim_process import SimProcess, wait_until
from control_plane.context import build_context
from control_plane.domain import AttemptOutcome, OrderStatus, Site, World
from control_plane.operations.moves import MoveConfig, SiteMover
from control_plane.orders import repository as repo
from control_plane.orders.schemas import OrderIn
from control_plane.settings import Settings
from control_plane.store.tables import DcCancelRow, OrderRow
from control_plane.store.wms_client import HttpDcClient
from failover.breakers import BreakerBoard, BreakerPolicy
from failover.dispatch import (
    CancelOutcome,
    DcAck,
    DcUnavailable,
    FailureKind,
    dispatch_once,
    proves_absent,
)
from failover.plan import plan_failover

from factories import Clock
from factories import site as make_site
from harness import control_plane, engine_for, prepare_database, start_simulator, write_test_world

POLICY = BreakerPolicy(fail_max=3, reset_timeout_s=30, success_threshold=1)

# --- a. a 200 whose body is not an acknowledgement -------------------------------------------------

UNREADABLE_ACKS = {
    "not json": (b"<html>ok</html>", "text/html"),
    "truncated json": (b'{"dc_ref": "ICH', "application/json"),
    "json without dc_ref": (b'{"status": "accepted"}', "application/json"),
    "dc_ref null": (b'{"dc_ref": null, "status": "accepted"}', "application/json"),
    "dc_ref empty": (b'{"dc_ref": "", "status": "accepted"}', "application/json"),
    "json list": (b'["ICHEON-1"]', "application/json"),
    "empty body": (b"", "application/json"),
}


class _Answer:
    """What the tiny DC answers to `POST /orders`, and every request it saw."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b""
        self.content_type = "application/json"
        self.posts: list[bytes] = []


def _handler(answer: _Answer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            answer.posts.append(self.rfile.read(length))
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def tiny_dc() -> Iterator[tuple[_Answer, Site]]:
    answer = _Answer()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(answer))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield answer, make_site("icheon", wms_url=f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def dc_client() -> Iterator[HttpDcClient]:
    client = HttpDcClient(connect_timeout_s=1.0, read_timeout_s=2.0, cancel_timeout_s=2.0)
    yield client
    client.close()


PAYLOAD = {"order_id": "o-1", "lines": [{"sku": "KR-0021", "qty": 1}]}


@pytest.mark.parametrize("case", list(UNREADABLE_ACKS))
def test_a_200_we_cannot_read_is_a_bad_answer_that_may_have_reached_the_dc(
    case: str, tiny_dc: tuple[_Answer, Site], dc_client: HttpDcClient
) -> None:
    answer, dc = tiny_dc
    answer.body, answer.content_type = UNREADABLE_ACKS[case]
    with pytest.raises(DcUnavailable) as caught:
        dc_client.submit(dc, PAYLOAD)
    assert caught.value.kind is FailureKind.BAD_ANSWER, caught.value
    assert caught.value.may_have_reached_dc is True
    assert len(answer.posts) == 1  # it did reach the DC


@pytest.mark.parametrize("case", list(UNREADABLE_ACKS))
def test_dispatch_with_an_unreadable_ack_fails_and_owes_a_cancel(
    case: str, tiny_dc: tuple[_Answer, Site], dc_client: HttpDcClient
) -> None:
    answer, dc = tiny_dc
    answer.body, answer.content_type = UNREADABLE_ACKS[case]
    board = BreakerBoard(POLICY)
    result = dispatch_once(board, dc_client, dc, PAYLOAD)
    assert result.outcome is AttemptOutcome.FAILED, result
    assert result.needs_cancel is True
    assert result.dc_ref is None
    assert board.get(dc.code).fail_counter == 1  # it counts against the DC's breaker


def test_a_readable_ack_is_accepted_by_the_same_client(
    tiny_dc: tuple[_Answer, Site], dc_client: HttpDcClient
) -> None:
    """The control case: the tiny DC and the client work; only the body makes the tests above fail."""
    answer, dc = tiny_dc
    answer.status, answer.body = 201, b'{"dc_ref": "ICHEON-7", "status": "accepted"}'
    assert dc_client.submit(dc, PAYLOAD) == DcAck("ICHEON-7", "accepted")
    result = dispatch_once(BreakerBoard(POLICY), dc_client, dc, PAYLOAD)
    assert result.outcome is AttemptOutcome.ACCEPTED and result.dc_ref == "ICHEON-7"
    assert result.needs_cancel is False


# --- b. proves_absent --------------------------------------------------------------------------------

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SETTLE_S = 5.0


SETTLED = timedelta(seconds=SETTLE_S)
ALMOST = SETTLED - timedelta(milliseconds=1)


@pytest.mark.parametrize(
    ("outcome", "last_post_at", "expected"),
    [
        pytest.param(CancelOutcome.CANCELLED, None, True, id="cancelled, no post since"),
        pytest.param(CancelOutcome.CANCELLED, NOW, True, id="cancelled, posted just now"),
        pytest.param(CancelOutcome.UNKNOWN, None, True, id="404, acknowledged, nothing sent since"),
        pytest.param(CancelOutcome.UNKNOWN, NOW, False, id="404 right after a post"),
        pytest.param(CancelOutcome.UNKNOWN, NOW - ALMOST, False, id="404 just within the settle time"),
        pytest.param(CancelOutcome.UNKNOWN, NOW - SETTLED, True, id="404 at the settle time"),
        pytest.param(CancelOutcome.UNKNOWN, NOW - SETTLED * 10, True, id="404 long after the settle time"),
        pytest.param(CancelOutcome.SHIPPED, None, False, id="shipped, no post since"),
        pytest.param(CancelOutcome.SHIPPED, NOW - timedelta(hours=1), False, id="shipped, old post"),
        pytest.param(None, None, False, id="no answer, no post since"),
        pytest.param(None, NOW - timedelta(hours=1), False, id="no answer, old post"),
    ],
)
def test_proves_absent(outcome: CancelOutcome | None, last_post_at: datetime | None, expected: bool) -> None:
    assert proves_absent(outcome, last_post_at, NOW, SETTLE_S) is expected


# --- c. a re-post after an expired dispatch lease that comes back refused ---------------------------


def _dispatch_dies(db_url: str, world: World, sim: SimProcess, clock: Any, lease_s: float) -> tuple[str, str]:
    """Post one order whose POST reaches the DC while the process dies; return (order id, its DC)."""
    ctx = build_context(Settings(database_url=db_url, dispatch_lease_s=lease_s), clock=clock)
    try:
        ctx.pipeline._client = DiesAfterDcAnswers(ctx.pipeline._client)  # type: ignore[assignment]
        req = OrderIn.model_validate(OrderFactory(world, seed=4).order()).to_request(clock(), 48)
        with pytest.raises(ProcessDied):
            ctx.pipeline.submit(req)
        with ctx.sessions() as s:
            row = repo.find_by_key(s, req.channel, req.external_id)
            assert row is not None and row.status == "routed" and row.site is not None
            order_id, first = row.id, row.site
    finally:
        ctx.close()
    # the DC does hold the copy of the unanswered POST
    assert [e["order_id"] for e in sim.ledger(first)].count(order_id) == 1
    return order_id, first


def _order_and_cancels(db_url: str, order_id: str) -> tuple[tuple[str, str | None], dict[str, str]]:
    engine = engine_for(db_url)
    try:
        with engine.connect() as c:
            status, site = c.execute(
                select(OrderRow.status, OrderRow.site).where(OrderRow.id == order_id)
            ).one()
            cancels = {
                s: st
                for s, st in c.execute(
                    select(DcCancelRow.site, DcCancelRow.status).where(DcCancelRow.order_id == order_id)
                )
            }
    finally:
        engine.dispose()
    return (status, site), cancels


def _holders(sim: SimProcess, world: World, order_id: str) -> list[str]:
    return [s.code for s in world.sites for e in sim.ledger(s.code) if e["order_id"] == order_id]


def test_refused_repost_after_an_expired_lease_owes_a_cancel_at_the_first_dc(
    db_url: str, tmp_path: Path
) -> None:
    """In process, on a controlled clock: the retry loop's one pass, step by step."""
    world, path = write_test_world(tmp_path / "world.yaml")
    prepare_database(db_url, world)
    clock = Clock()
    with start_simulator(path) as sim:
        # given an order whose POST reached its DC while the process died
        order_id, first = _dispatch_dies(db_url, world, sim, clock, lease_s=30)
        # and that DC now refuses connections
        sim.set_fault(first, mode="down")
        restarted = build_context(Settings(database_url=db_url, dispatch_lease_s=30), clock=clock)
        try:
            # when the lease runs out and the retry loop re-posts it there, refused, and it moves on
            clock.now += timedelta(seconds=31)
            assert restarted.pipeline.redispatch_due() == 1
            (status, site), cancels = _order_and_cancels(db_url, order_id)
            assert status == "accepted" and site not in (None, first), (status, site)
            # then a cancel is owed at the first DC: it still holds the copy of the first POST
            assert cancels.get(first) == "pending", (
                f"no cancel owed at {first}, which still holds the order, now also accepted at {site}: "
                f"cancels {cancels}"
            )
            # and once the first DC is back, the outbox cancels it there: one live copy in the end
            sim.clear_fault(first)

            def cancelled_at_first() -> bool:
                restarted.cancels.process_due()
                return first not in _holders(sim, world, order_id)

            assert wait_until(cancelled_at_first, 15, 0.2), _order_and_cancels(db_url, order_id)
            assert _holders(sim, world, order_id) == [site]
        finally:
            restarted.close()


@pytest.mark.e2e
def test_control_plane_owes_a_cancel_after_a_refused_repost(db_url: str, tmp_path: Path) -> None:
    """The same through a real `drctl serve`: its own retry loop finds the dead dispatch."""
    world, path = write_test_world(tmp_path / "world.yaml")
    prepare_database(db_url, world)
    with start_simulator(path) as sim:
        # given an order whose POST reached its DC while the process died, with a 1 s lease
        order_id, first = _dispatch_dies(db_url, world, sim, lambda: datetime.now(UTC), lease_s=1)
        # and that DC refusing connections before any control plane can re-post it
        sim.set_fault(first, mode="down")
        with control_plane(db_url, tmp_path) as cp:

            def accepted_elsewhere() -> bool:
                (status, site), _ = _order_and_cancels(db_url, order_id)
                return status == "accepted" and site != first

            # when the control plane's retry loop re-posts it (refused) and sends it on
            assert wait_until(accepted_elsewhere, 30, 0.2), (
                _order_and_cancels(db_url, order_id),
                cp.logs()[-2000:],
            )
            (_, site), cancels = _order_and_cancels(db_url, order_id)
            # then a cancel is owed at the first DC
            assert first in cancels, (
                f"no cancel owed at {first}, which still holds the order, now also accepted at {site}: "
                f"cancels {cancels}"
            )
            # and once it is back, the outbox cancels the copy there: exactly one live copy
            sim.clear_fault(first)
            assert wait_until(lambda: first not in _holders(sim, world, order_id), 30, 0.25), (
                _order_and_cancels(db_url, order_id)
            )
            assert _holders(sim, world, order_id) == [site]


def test_a_retry_whose_order_moved_to_another_site_meanwhile_posts_nothing(
    db_url: str, tmp_path: Path
) -> None:
    """The retry loop claimed the order routed at A; before its turn, another replica (or a
    failover) moved it to B, still `routed`. The retry must see the site changed and leave it."""
    world, path = write_test_world(tmp_path / "world.yaml")
    prepare_database(db_url, world)
    clock = Clock()
    with start_simulator(path) as sim:
        order_id, first = _dispatch_dies(db_url, world, sim, clock, lease_s=30)
        other = next(s.code for s in world.sites if s.code != first)
        # given the order has since been moved to another site (routed there, lease not yet out)
        engine = engine_for(db_url)
        with engine.begin() as c:
            c.execute(update(OrderRow).where(OrderRow.id == order_id).values(site=other))
        engine.dispose()
        posts_before = sim.stats(first)["requests"].get("POST /orders", 0)
        restarted = build_context(Settings(database_url=db_url, dispatch_lease_s=30), clock=clock)
        try:
            # when the stale claim (status routed, site = the first DC) gets its turn
            restarted.pipeline._retry(order_id, "routed", first)
        finally:
            restarted.close()
        # then nothing was posted to the first DC again, and the order still lives where it was moved
        assert sim.stats(first)["requests"].get("POST /orders", 0) == posts_before
        (status, site), _ = _order_and_cancels(db_url, order_id)
        assert (status, site) == ("routed", other)


def test_a_failover_move_does_not_trust_a_404_while_a_post_may_be_in_flight(
    db_url: str, tmp_path: Path
) -> None:
    """A routed order (no acknowledgement yet: its POST may still be on its way to a slow DC) that a
    failover moves gets a 404 to its cancel: that is no proof, so a cancel is owed there, as the
    outbox would (one rule: failover.dispatch.proves_absent)."""
    world, path = write_test_world(tmp_path / "world.yaml")
    prepare_database(db_url, world)
    clock = Clock()
    settings = Settings(database_url=db_url, cancel_settle_s=5.0)
    with start_simulator(path):
        ctx = build_context(settings, clock=clock)
        try:
            # given an order routed to a DC that has not (yet) received it: the DC answers 404
            req = OrderIn.model_validate(OrderFactory(world, seed=9).order()).to_request(clock(), 48)
            ranked = ctx.sites.snapshot()
            order_id = "routed-not-posted"
            with ctx.sessions.begin() as s:
                first = next(st.site.code for st in ranked if repo.reserve(s, st.site.code, req.lines))
                repo.insert_order(s, order_id, req, OrderStatus.ROUTED, first, clock(), clock(), clock())
            mover = SiteMover(
                ctx.sessions, ctx.sites, ctx.board, ctx.client, ctx.pipeline, ctx.eta,
                MoveConfig(parallelism=2, settle_s=5.0), clock,
            )  # fmt: skip
            orders = mover.in_flight(first)
            plan = plan_failover(first, orders, ranked, mover.stock_for(orders), None, ctx.eta, clock())
            # when the failover moves it
            report = mover.move_all(
                first, plan.assignments, {order_id: OrderStatus.ROUTED}, None, lambda: None
            )
        finally:
            ctx.close()
        # then the 404 did not count as proof: the first DC is owed a cancel
        assert report.cancel_pending == 1, report.to_json_dict()
        _, cancels = _order_and_cancels(db_url, order_id)
        assert cancels.get(first) == "pending", cancels
