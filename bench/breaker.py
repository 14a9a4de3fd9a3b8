"""bench/breaker: cost of the breaker-wrapped dispatch path, and whether it serializes calls.

1. Per-call overhead (µs): `dispatch_once` through a GatedBreaker around an in-memory DC, minus
   the same DC called bare; plain pybreaker `call` shown beside it.
2. Concurrency: 16 threads dispatching to one simulator DC with a 50 ms latency fault, against one
   thread, over real HTTP: through our breaker, through plain pybreaker (which holds its lock across
   the call, DESIGN §12), and with no breaker at all. Target: ours >= 12x one-at-a-time.

Run: .venv/bin/python -m bench.breaker [--calls 200000] [--seconds 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import pybreaker

from chaos.ports import free_port
from chaos.sim_process import SimProcess, TargetSpec
from control_plane.domain import GeoPoint, Site
from control_plane.store.wms_client import HttpDcClient
from failover.breakers import BreakerBoard, BreakerPolicy
from failover.dispatch import CancelOutcome, DcAck, dispatch_once

POLICY = BreakerPolicy(fail_max=5, reset_timeout_s=30, success_threshold=1)


class InstantDc:
    def submit(self, site: Site, payload: Mapping[str, Any]) -> DcAck:
        return DcAck("X-1", "accepted")

    def cancel(self, site: Site, order_id: str) -> CancelOutcome:
        return CancelOutcome.UNKNOWN


def _site(url: str) -> Site:
    return Site("bench", "Bench DC", "r", GeoPoint(37, 127), 10**9, 0, 1.0, url)  # type: ignore[arg-type]


def per_call_us(calls: int, fn: Callable[[], object]) -> float:
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        runs.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(runs)


def overhead(calls: int) -> dict[str, float]:
    dc, site, payload = InstantDc(), _site("http://unused"), {"order_id": "o"}
    board = BreakerBoard(POLICY)
    plain = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)
    bare = per_call_us(calls, lambda: dc.submit(site, payload))
    gated = per_call_us(calls, lambda: dispatch_once(board, dc, site, payload))
    pyb = per_call_us(calls, lambda: plain.call(dc.submit, site, payload))
    return {
        "bare_call_us": round(bare, 3),
        "dispatch_once_us": round(gated, 3),
        "breaker_overhead_us": round(gated - bare, 3),
        "plain_pybreaker_overhead_us": round(pyb - bare, 3),
    }


def throughput(threads: int, seconds: float, call: Callable[[int], None]) -> float:
    stop = time.perf_counter() + seconds
    counts = [0] * threads

    def worker(i: int) -> None:
        n = 0
        while time.perf_counter() < stop:
            call(i * 10_000_000 + n)
            n += 1
        counts[i] = n

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(counts) / seconds


def concurrency(seconds: float) -> dict[str, Any]:
    admin, port = free_port(), free_port()
    with SimProcess([TargetSpec("bench", "dc", port, 10**9)], admin) as sim:
        sim.set_fault("bench", "latency", latency_ms=50)
        site = _site(f"http://127.0.0.1:{port}")
        client = HttpDcClient(1.0, 2.0, 2.0, max_connections=64)
        board = BreakerBoard(POLICY)
        plain = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)

        def ours(i: int) -> None:
            dispatch_once(board, client, site, {"order_id": f"g{i}"})

        def pyb(i: int) -> None:
            plain.call(client.submit, site, {"order_id": f"p{i}"})

        def none(i: int) -> None:
            client.submit(site, {"order_id": f"n{i}"})

        out: dict[str, Any] = {}
        for name, fn in (("gated", ours), ("plain_pybreaker", pyb), ("no_breaker", none)):
            one = throughput(1, seconds, fn)
            many = throughput(16, seconds, fn)
            out[name] = {
                "one_at_a_time_per_s": round(one, 1),
                "16_threads_per_s": round(many, 1),
                "speedup": round(many / one, 2),
            }
        client.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    print("measuring per-call overhead ...", file=sys.stderr)
    result: dict[str, Any] = {"benchmark": "breaker", "overhead": overhead(args.calls)}
    print("measuring concurrency through one 50 ms DC ...", file=sys.stderr)
    result["concurrency_50ms_dc"] = concurrency(args.seconds)
    result["target_speedup"] = 12
    result["meets_target"] = result["concurrency_50ms_dc"]["gated"]["speedup"] >= 12
    print(json.dumps(result))


if __name__ == "__main__":
    main()
