"""Two control planes deliver notices from one PostgreSQL; one is SIGKILLed in the middle of its
batch. Every letter still arrives exactly once at the SMTP server: the dead one's leased letters
are taken over once the lease runs out, and none is sent twice.

The kill is placed where it says something: the SMTP server holds every new transaction at RCPT
once a third of the letters are in, so each process is inside a send it has not completed (its
other letters are recorded or not yet begun); one of them is killed there and the hold lifted.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from chaos.order_stream import OrderFactory
from chaos.sim_process import wait_until
from control_plane.domain import OrderStatus
from control_plane.notices.service import NoticePolicy, NoticeWriter
from control_plane.orders import repository as order_repo
from control_plane.orders.schemas import OrderIn
from control_plane.orders.slips import Slip, SlipReason
from control_plane.store.db import make_session_factory
from control_plane.store.tables import NoticeLetterRow, NoticeRow

from harness import control_plane, engine_for, prepare_database, write_test_world
from servers import pid_of_client, smtp_server

pytestmark = pytest.mark.e2e
LETTERS = 60


def _write_letters(url: str, world_path: Path, n: int) -> None:
    """N late orders of N customers: N letters, due at once."""
    from control_plane.world.loader import load_world_file

    world, _ = load_world_file(world_path)
    now = datetime.now(UTC)
    engine = engine_for(url)
    factory = OrderFactory(world, seed=7)
    policy = NoticePolicy(timedelta(hours=12), 0.0, "Asia/Seoul", "https://shop.example/help")
    with make_session_factory(engine).begin() as s:
        slips = []
        for i in range(n):
            body = factory.order()
            body["customer"].update({"id": f"c-{i}", "email": f"c{i}@example.com"})
            req = OrderIn.model_validate(body).to_request(now, 48)
            eta = req.promised_by + timedelta(hours=5)
            # accepted by its DC: nothing for the retry loop to do with it meanwhile
            order_repo.insert_order(s, f"o-{i}", req, OrderStatus.ACCEPTED, "daejeon", eta, now, None)
            row = order_repo.get_order(s, f"o-{i}")
            assert row is not None
            slips.append(Slip.of(row, eta, "icheon", SlipReason.MOVED))
        NoticeWriter(policy).record(s, slips, now)
    engine.dispose()


def test_a_dispatcher_killed_mid_batch_loses_and_doubles_no_notice(pg_url: str, tmp_path: Path) -> None:
    world, world_path = write_test_world(tmp_path / "world.yaml")
    prepare_database(pg_url, world)
    with smtp_server() as smtp:
        env = {
            "DRCTL_NOTICE_EMAIL_CHANNEL": "smtp",
            "DRCTL_NOTICE_SMTP_PORT": str(smtp.port),
            "DRCTL_NOTICE_FROM": "notices@shop.example",
            "DRCTL_NOTICE_BATCH": "5",
            "DRCTL_NOTICE_TIMEOUT_S": "1",  # the lease: 5 letters x 1 s x 2 + 5 s = 15 s
        }
        # given two control planes delivering notices, and the server holding sends after 20
        smtp.hold_after(LETTERS // 3)
        with control_plane(pg_url, tmp_path, env) as first, control_plane(pg_url, tmp_path, env) as second:
            _write_letters(pg_url, world_path, LETTERS)
            assert wait_until(lambda: len(smtp.held_ports) == 2, 30, 0.1), (
                len(smtp.received), smtp.held_ports, first.logs()[-2000:], second.logs()[-2000:],
            )  # fmt: skip
            # when one of them is killed inside its send, and the server lets the rest through
            victim = pid_of_client(smtp.held_ports[0])
            assert victim in (first.proc.pid, second.proc.pid), (victim, first.proc.pid, second.proc.pid)
            os.kill(victim, signal.SIGKILL)
            smtp.hold_after(None)
            survivor = second if victim == first.proc.pid else first
            # then the survivor delivers everything, the dead one's leased letters after the lease
            assert wait_until(lambda: len(smtp.received) >= LETTERS, 60, 0.25), (
                len(smtp.received), survivor.logs()[-3000:],
            )  # fmt: skip
            wait_until(lambda: False, 3, 0.5)  # a duplicate arriving late would show here
        received = smtp.received
    per_address = Counter(r.rcpt_tos[0] for r in received)
    assert len(received) == LETTERS and set(per_address.values()) == {1}, per_address.most_common(3)
    assert len({r.message["Message-ID"] for r in received}) == LETTERS
    engine = engine_for(pg_url)
    with engine.connect() as c:
        assert Counter(c.execute(select(NoticeRow.status)).scalars()) == Counter({"sent": LETTERS})
        assert Counter(c.execute(select(NoticeLetterRow.status)).scalars()) == Counter({"sent": LETTERS})
    engine.dispose()
