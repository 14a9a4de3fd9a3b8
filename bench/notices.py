"""bench/notices: notices/s delivered through the outbox to a real local SMTP server, beside a raw
`smtplib` loop sending the same messages over one connection, in the same run.

The SMTP server (aiosmtpd) runs in its own process and counts what it accepted. On a fresh
PostgreSQL database, N late orders of N customers get their notices written by the order path's
writer; then the notices outbox (`NoticeDelivery`, the shared outbox worker: claim, read, suppress,
render, send, record) delivers them all. The raw loop sends N pre-rendered messages of the same
size, just before each outbox measurement (its ratio is to that neighbour). Goal (issue 11): outbox
>= 0.5x the raw loop.

Run: .venv/bin/python -m bench.notices [--notices 1000] [--runs 3]
Needs PostgreSQL on 127.0.0.1:5432.
"""

from __future__ import annotations

import argparse
import json
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy import func, select

from bench.intake import bench_world, fresh_database, log
from chaos.order_stream import OrderFactory
from chaos.ports import free_port
from chaos.sim_process import wait_until
from control_plane.domain import OrderStatus
from control_plane.metrics import Metrics
from control_plane.notices.channels import SmtpNoticeChannel
from control_plane.notices.channels.mime import notice_email
from control_plane.notices.jobs import DeliveryConfig, NoticeDelivery
from control_plane.notices.letters import Cause, Envelope, Letter, LetterOrder, NoticeKind
from control_plane.notices.render import render_email, render_sms
from control_plane.notices.service import NoticePolicy, NoticeWriter
from control_plane.orders import repository as order_repo
from control_plane.orders.schemas import OrderIn
from control_plane.orders.slips import Slip, SlipReason
from control_plane.store.db import make_engine, make_session_factory
from control_plane.store.migrate import upgrade
from control_plane.store.tables import NoticeRow
from control_plane.world.loader import load_world_file
from control_plane.world.repository import save_world
from failover.breakers import BreakerBoard, BreakerPolicy

SENDER = "notices@shop.example"
POLICY = NoticePolicy(timedelta(hours=12), 0.0, "Asia/Seoul", "https://shop.example/help")
# a tiny SMTP server in its own process: accepts everything, answers how many it took on stdout
SINK = """
import asyncio, sys
from aiosmtpd.controller import Controller
class Count:
    n = 0
    async def handle_DATA(self, server, session, envelope):
        Count.n += 1
        return "250 OK"
c = Controller(Count(), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
print("ready", flush=True)
for line in sys.stdin:
    print(Count.n, flush=True)
"""


class SmtpSinkProcess:
    def __init__(self) -> None:
        self.port = free_port()
        self._proc = subprocess.Popen(
            [sys.executable, "-c", SINK, str(self.port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self._proc.stdout is not None and self._proc.stdout.readline().strip() == "ready"

    def count(self) -> int:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write("?\n")
        self._proc.stdin.flush()
        return int(self._proc.stdout.readline())

    def close(self) -> None:
        self._proc.kill()
        self._proc.wait(10)


def write_late_orders(url: str, world_path: Path, n: int) -> None:
    """N orders of N customers, moved past their promise: N notices in N letters, due now."""
    world, _ = load_world_file(world_path)
    engine = make_engine(url, pool_size=2)
    upgrade(engine)
    now = datetime.now(UTC)
    sessions = make_session_factory(engine)
    factory = OrderFactory(world, seed=11)
    with sessions.begin() as s:
        save_world(s, world, now)
    writer = NoticeWriter(POLICY)
    for start in range(0, n, 500):
        with sessions.begin() as s:
            slips = []
            for i in range(start, min(n, start + 500)):
                body = factory.order()
                body["customer"].update({"id": f"c-{i}", "email": f"customer{i}@example.com", "locale": "ko"})
                req = OrderIn.model_validate(body).to_request(now, 48)
                eta = req.promised_by + timedelta(hours=6)
                # accepted by its DC: nothing for the retry loop to do with it meanwhile
                order_repo.insert_order(s, f"o-{i}", req, OrderStatus.ACCEPTED, "daejeon", eta, now, None)
                row = order_repo.get_order(s, f"o-{i}")
                assert row is not None
                slips.append(Slip.of(row, eta, "icheon", SlipReason.MOVED))
            writer.record(s, slips, now)
    engine.dispose()


def delivery_for(url: str, port: int) -> tuple[NoticeDelivery, Any]:
    engine = make_engine(url, pool_size=6)
    channel = SmtpNoticeChannel("127.0.0.1", port, SENDER)
    delivery = NoticeDelivery(
        make_session_factory(engine), {"email": channel, "sms": channel},
        BreakerBoard(BreakerPolicy(5, 30, 1)), Metrics(CollectorRegistry()), POLICY,
        DeliveryConfig(rate_per_s={"smtp": 1e6}),
        lambda: datetime.now(UTC),
    )  # fmt: skip
    return delivery, engine


def deliver_all(delivery: NoticeDelivery, max_s: float = 600) -> None:
    started = time.perf_counter()
    while time.perf_counter() - started < max_s and delivery.deliver_due():
        pass


def worker_main(url: str, port: int) -> None:
    """One outbox process of a multi-process run: ready, wait for go, deliver until nothing is due."""
    delivery, engine = delivery_for(url, port)
    print("ready", flush=True)
    sys.stdin.readline()
    deliver_all(delivery)
    delivery.close()
    engine.dispose()


def outbox_run(url: str, port: int, n: int, processes: int) -> float:
    """Seconds for `processes` outbox processes (replicas) to deliver the N due notices."""
    if processes == 1:
        delivery, engine = delivery_for(url, port)
        started = time.perf_counter()
        deliver_all(delivery)
        seconds = time.perf_counter() - started
        delivery.close()
        engine.dispose()
    else:
        workers = [
            subprocess.Popen([sys.executable, "-m", "bench.notices", "--worker", url, str(port)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            for _ in range(processes)
        ]  # fmt: skip
        for w in workers:
            assert w.stdout is not None and w.stdout.readline().strip() == "ready"
        started = time.perf_counter()
        for w in workers:
            assert w.stdin is not None
            w.stdin.write("go\n")
            w.stdin.flush()
        for w in workers:
            w.wait(600)
        seconds = time.perf_counter() - started
    engine = make_engine(url, pool_size=1)
    with engine.connect() as c:
        delivered = c.scalar(select(func.count()).where(NoticeRow.status == "sent")) or 0
    engine.dispose()
    if delivered != n:
        raise RuntimeError(f"outbox delivered {delivered} of {n}")
    return seconds


def raw_run(port: int, n: int) -> float:
    """The same kind of message N times over one smtplib connection: the ceiling."""
    now = datetime.now(UTC)
    orders = (LetterOrder("o", "ext-00000001", now, now + timedelta(hours=6)),)
    letter = Letter(
        NoticeKind.DELAY, "Customer", "ko", "Asia/Seoul", Cause.FULFILLMENT_CENTER, orders, POLICY.support_url
    )
    envelope = Envelope("k", "customer@example.com", render_email(letter), render_sms(letter))
    message = notice_email(envelope, SENDER, now)
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for _ in range(n):
            smtp.send_message(message, from_addr=SENDER, to_addrs=[envelope.to])
    return time.perf_counter() - started


def one_run(n: int, processes: list[int]) -> dict[str, Any]:
    """Each outbox measurement right after a raw loop of its own, on the same box state (the late
    orders written, the same SMTP server): the ratio compares neighbours, not minutes apart."""
    sink = SmtpSinkProcess()
    out: dict[str, Any] = {}
    try:
        for p in processes:
            with tempfile.TemporaryDirectory(prefix="drctl-bench-notices-") as tmp, fresh_database() as url:
                write_late_orders(url, bench_world(Path(tmp)), n)
                out[f"raw_{p}p_per_s"] = n / raw_run(sink.port, n)
                before = sink.count()
                seconds = outbox_run(url, sink.port, n, p)
                if not wait_until(lambda b=before: sink.count() == b + n, 10, 0.1):
                    raise RuntimeError(f"the SMTP server counted {sink.count() - before} of {n} notices")
            out[f"outbox_{p}p_per_s"] = n / seconds
            out[f"ratio_{p}p"] = out[f"outbox_{p}p_per_s"] / out[f"raw_{p}p_per_s"]
    finally:
        sink.close()
    return out


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        worker_main(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notices", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2],
                        help="outbox processes (replicas) to measure, each beside the raw loop")  # fmt: skip
    args = parser.parse_args()
    runs = []
    for i in range(args.runs):
        run = one_run(args.notices, args.processes)
        log(f"run {i + 1}: " + "; ".join(
            f"raw smtplib {run[f'raw_{p}p_per_s']:.0f}/s, outbox x{p} {run[f'outbox_{p}p_per_s']:.0f}/s"
            f" (ratio {run[f'ratio_{p}p']:.2f})" for p in args.processes))  # fmt: skip
        runs.append(run)
    result: dict[str, Any] = {"bench": "notices", "notices": args.notices, "runs": args.runs}
    result["raw_smtplib_per_s_median"] = round(
        statistics.median(r[f"raw_{p}p_per_s"] for r in runs for p in args.processes), 1
    )
    for p in args.processes:
        result[f"outbox_{p}p_per_s_median"] = round(
            statistics.median(r[f"outbox_{p}p_per_s"] for r in runs), 1
        )
        result[f"ratio_{p}p_median"] = round(statistics.median(r[f"ratio_{p}p"] for r in runs), 3)
    result["ratio_goal"] = 0.5
    print(json.dumps(result))


if __name__ == "__main__":
    main()
