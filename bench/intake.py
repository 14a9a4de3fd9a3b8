"""bench/intake: orders/s and latency through POST /v1/orders on PostgreSQL, beside the box's ceiling.

In one run, on a fresh PostgreSQL database:
1. peak: wrk (C, closed loop, `--connections`) against `drctl serve --workers N` with the simulator
   DCs behind it -> orders/s, p50/p99 at saturation;
2. half rate: an open-loop generator at half that rate -> p50/p99 (latency from the scheduled send
   time, so a stall is not hidden by the generator waiting);
3. ceiling: the same wrk load against a minimal endpoint doing one insert + commit per request
   (bench/ceiling.py) under the same server settings -> requests/s;
ratio = peak orders/s / ceiling requests/s. Targets (issue 3): ratio >= 0.5, p99 <= 50 ms at half rate.

4. scaling: for 1, 2 and 4 worker processes (`--processes`), wrk against drctl and against the
   ceiling with as many processes, side by side -> orders/s, requests/s and their ratio per count.

Run: .venv/bin/python -m bench.intake [--seconds 15] [--workers 2] [--connections 32]
     [--processes 1,2,4] [--scale-seconds 8]
Needs wrk (apt-get install wrk) and PostgreSQL on 127.0.0.1:5432.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml

from chaos.order_stream import OrderFactory
from chaos.ports import free_port
from chaos.sim_process import SimProcess, targets_from_world, wait_until
from control_plane.auth import repository as tokens
from control_plane.store.db import make_engine, make_session_factory, scratch_database
from control_plane.store.migrate import upgrade
from control_plane.world.loader import load_world_file
from control_plane.world.repository import save_world

ROOT = Path(__file__).resolve().parent.parent
PG_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
RETRIES_503 = 5  # an order answered 503 (store unreachable) is sent again, as the Locust suite does


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    with scratch_database(PG_SERVER, "drctl_bench") as url:
        yield url


def bench_world(tmp: Path) -> Path:
    """The sample world on free ports with capacity and stock that a benchmark cannot exhaust."""
    data = yaml.safe_load((ROOT / "examples/kr-retail/world.yaml").read_text())
    data["simulator"]["admin_port"] = free_port()
    for site in data["sites"]:
        site["wms_url"] = f"http://127.0.0.1:{free_port()}"
        site["capacity_per_hour"] *= 10_000
    for integ in data["integrations"]:
        integ["health_url"] = f"http://127.0.0.1:{free_port()}/health"
    for per_sku in data["stock"].values():
        for sku in per_sku:
            per_sku[sku] *= 10_000
    path = tmp / "world.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def serve_argv(port: int, workers: int) -> list[str]:
    """`drctl serve` on a port with N workers, as a child process."""
    return [sys.executable, "-m", "control_plane", "serve", "--port", str(port), "--workers", str(workers)]


@contextlib.contextmanager
def server(argv: list[str], env: dict[str, str], port: int, log_path: Path) -> Iterator[str]:
    with log_path.open("wb") as out:
        proc = subprocess.Popen(argv, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return httpx.get(f"{base}/docs", timeout=1, trust_env=False).status_code == 200
            except httpx.HTTPError:
                return False

        if not wait_until(lambda: up() or proc.poll() is not None, 60, 0.2) or proc.poll() is not None:
            raise RuntimeError(f"server did not start: {log_path.read_text()[-2000:]}")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def run_wrk(
    base: str, token: str, bodies: Path, seconds: float, connections: int, run: str
) -> dict[str, Any]:
    threads = min(2, connections)
    argv = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{int(seconds)}s", "--timeout", "10s",
        "-s", str(ROOT / "bench/wrk_orders.lua"), base,
    ]  # fmt: skip
    env = {**os.environ, "BODIES": str(bodies), "TOKEN": token, "RUN": run}
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60, check=True)
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    stats["per_s"] = stats["requests"] / (stats["duration_us"] / 1e6)
    return dict(stats)


def open_loop(base: str, token: str, factory: OrderFactory, rate: float, seconds: float) -> dict[str, Any]:
    """Send at a fixed rate regardless of answers; latency counted from the scheduled send time.

    One asyncio loop on keep-alive connections (a new one whenever all are busy), not a pool of
    httpx threads: the generator shares the cores with the server, and 32 threads of httpx cost
    several times the CPU and stalled on their own GIL, which was then counted as server latency.
    """
    total = max(1, int(rate * seconds))
    bodies = [json.dumps(factory.order()).encode() for _ in range(total)]
    url = urlsplit(base)
    head = f"POST /v1/orders HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer {token}\r\n"
    head += "Content-Type: application/json\r\nContent-Length: "
    requests = [head.encode() + b"%d\r\n\r\n" % len(body) + body for body in bodies]
    latencies, statuses, retried = asyncio.run(
        _send_at_rate(url.hostname or "127.0.0.1", url.port or 80, requests, rate)
    )
    latencies.sort()
    return {
        "rate_per_s": round(rate, 1),
        "requests": len(latencies),
        "non_2xx": sum(1 for code in statuses if code >= 300),
        "retried_503": retried,
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
    }


async def _send_at_rate(
    host: str, port: int, requests: list[bytes], rate: float
) -> tuple[list[float], list[int], int]:
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.5
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    latencies: list[float] = []
    statuses: list[int] = []
    retried = [0]

    async def exchange(i: int) -> tuple[int, float]:
        """Send request i on a keep-alive connection; its status and the Retry-After it asked for."""
        reader, writer = idle.pop() if idle else await asyncio.open_connection(host, port)
        writer.write(requests[i])
        status_line = await reader.readline()
        if not status_line:
            # the server closed this idle keep-alive connection (uvicorn's 5 s timeout) before it read
            # the request: send it again on a new one (orders are idempotent on their key anyway)
            writer.close()
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(requests[i])
            status_line = await reader.readline()
        status, length, retry_after = int(status_line.split()[1]), 0, 1.0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"retry-after" and value.strip().isdigit():
                retry_after = float(value)
        await reader.readexactly(length)
        idle.append((reader, writer))
        return status, retry_after

    async def one(i: int) -> None:
        due = start + i / rate
        await asyncio.sleep(due - loop.time())
        status, retry_after = await exchange(i)
        for _ in range(RETRIES_503):
            if status != 503:  # the store was unreachable: the same order again, when asked (as Locust does)
                break
            retried[0] += 1
            await asyncio.sleep(min(retry_after, 5.0))
            status, retry_after = await exchange(i)
        latencies.append(loop.time() - due)
        statuses.append(status)

    await asyncio.gather(*(one(i) for i in range(len(requests))))
    for _, writer in idle:
        writer.close()
    return latencies, statuses, retried[0]


def prepare(url: str, world_path: Path) -> str:
    world, _ = load_world_file(world_path)
    engine = make_engine(url, pool_size=2)
    upgrade(engine)
    now = datetime.now(UTC)
    with make_session_factory(engine).begin() as s:
        save_world(s, world, now)
        token = tokens.create_token(s, "bench", "ingest", now)
    engine.dispose()
    return token


def ceiling_argv(port: int, workers: int) -> list[str]:
    argv = [sys.executable, "-m", "uvicorn", "bench.ceiling:create_ceiling_app", "--factory"]
    return [
        *argv,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
    ]


def scaling(
    counts: list[int], seconds: float, connections: int, world_path: Path, bodies: Path, tmp: Path,
    serve_env: dict[str, str],
) -> list[dict[str, Any]]:  # fmt: skip
    """Peak orders/s through drctl and the ceiling's requests/s for each worker-process count."""
    rows = []
    for n in counts:
        with fresh_database() as url:
            token = prepare(url, world_path)
            port = free_port()
            with server(serve_argv(port, n), {**serve_env, "DRCTL_DATABASE_URL": url}, port,
                        tmp / f"drctl-{n}.log") as base:  # fmt: skip
                run_wrk(base, token, bodies, 2, connections, "warm")
                drctl = run_wrk(base, token, bodies, seconds, connections, f"scale-{n}")
        with fresh_database() as url:
            port = free_port()
            with server(
                ceiling_argv(port, n), {"DRCTL_DATABASE_URL": url}, port, tmp / f"ceiling-{n}.log"
            ) as base:
                run_wrk(base, token, bodies, 2, connections, "warm")
                ceiling = run_wrk(base, token, bodies, seconds, connections, f"ceiling-{n}")
        row = {
            "processes": n,
            "orders_per_s": round(drctl["per_s"], 1),
            "p99_ms": drctl.get("p99_ms"),
            "ceiling_per_s": round(ceiling["per_s"], 1),
            "ratio": round(drctl["per_s"] / ceiling["per_s"], 3),
        }
        log(f"  {n} process(es): {row['orders_per_s']:.0f} orders/s, ceiling {row['ceiling_per_s']:.0f}/s")
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--processes", default="1,2,4", help="worker counts for the scaling rows ('' skips)")
    parser.add_argument("--scale-seconds", type=float, default=8)
    args = parser.parse_args()
    try:
        counts = [int(c) for c in args.processes.split(",") if c.strip()]
    except ValueError:
        sys.exit(f"--processes must be numbers separated by commas, like 1,2,4; got {args.processes!r}")
    if any(not 1 <= c <= 64 for c in counts):
        sys.exit(f"--processes: each count must be 1..64, got {args.processes!r}")
    if shutil.which("wrk") is None:
        sys.exit("bench/intake needs wrk: apt-get install -y wrk")
    tmp = Path(tempfile.mkdtemp(prefix="drctl-bench-"))
    world_path = bench_world(tmp)
    world, model = load_world_file(world_path)
    factory = OrderFactory(world, seed=42)
    bodies = tmp / "bodies.jsonl"
    with bodies.open("w") as f:
        for _ in range(500):
            f.write(json.dumps(factory.order(external_id="__ID__")) + "\n")
    result: dict[str, Any] = {"benchmark": "intake", "workers": args.workers, "connections": args.connections,
                              "seconds": args.seconds, "database": "postgresql"}  # fmt: skip
    serve_env = {"DRCTL_LOG_LEVEL": "WARNING", "DRCTL_DB_POOL_SIZE": "20"}
    with fresh_database() as url, SimProcess(targets_from_world(world), model.simulator.admin_port):
        token = prepare(url, world_path)
        port = free_port()
        argv = serve_argv(port, args.workers)
        with server(argv, {**serve_env, "DRCTL_DATABASE_URL": url}, port, tmp / "drctl.log") as base:
            log("warm-up ...")
            run_wrk(base, token, bodies, 3, args.connections, "warm")
            log(f"peak: wrk -c{args.connections} for {args.seconds:g}s ...")
            peak = run_wrk(base, token, bodies, args.seconds, args.connections, "peak")
            log(f"  {peak['per_s']:.0f} orders/s")
            log(f"half rate: {peak['per_s'] / 2:.0f} orders/s open loop ...")
            half = open_loop(base, token, factory, peak["per_s"] / 2, args.seconds)
        with fresh_database() as ceiling_url:
            port = free_port()
            with server(
                ceiling_argv(port, args.workers),
                {"DRCTL_DATABASE_URL": ceiling_url},
                port,
                tmp / "ceiling.log",
            ) as base:
                log("ceiling: one insert + commit per request ...")
                run_wrk(base, token, bodies, 3, args.connections, "warm")
                ceiling = run_wrk(base, token, bodies, args.seconds, args.connections, "ceiling")
                log(f"  {ceiling['per_s']:.0f} requests/s")
    result["peak"] = {k: round(v, 2) if isinstance(v, float) else v for k, v in peak.items()}
    result["half_rate"] = half
    result["ceiling"] = {k: round(v, 2) if isinstance(v, float) else v for k, v in ceiling.items()}
    result["ratio"] = round(peak["per_s"] / ceiling["per_s"], 3)
    if counts:
        log(f"scaling: {counts} processes, {args.scale_seconds:g} s each ...")
        with SimProcess(targets_from_world(world), model.simulator.admin_port):
            result["scaling"] = scaling(
                counts, args.scale_seconds, args.connections, world_path, bodies, tmp, serve_env
            )
    result["targets"] = {"ratio": 0.5, "half_rate_p99_ms": 50}
    result["meets_targets"] = result["ratio"] >= 0.5 and half["p99_ms"] <= 50
    print(json.dumps(result))


if __name__ == "__main__":
    main()
