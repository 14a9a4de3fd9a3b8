"""The DC/integration simulator, driven as a real subprocess over real HTTP (DESIGN §4)."""

from __future__ import annotations

import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from chaos.ports import free_port

REPO = Path(__file__).resolve().parent.parent
READY = re.compile(r"^simulator ready admin=http://127\.0\.0\.1:(\d+) targets=(\d+)$")


@dataclass(frozen=True)
class Sim:
    """A running simulator process and the base URLs of what it serves."""

    process: subprocess.Popen[str]
    admin: str
    icheon: str
    daejeon: str
    carrier: str
    http: httpx.Client


def free_ports(count: int) -> list[int]:
    return [free_port() for _ in range(count)]


def start_simulator(args: list[str], capture_stderr: bool = False) -> subprocess.Popen[str]:
    # A long-lived child's stderr goes to ours: an unread pipe could fill up and stall it.
    return subprocess.Popen(
        [sys.executable, "-m", "chaos.simulator", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if capture_stderr else None,
        text=True,
    )


def wait_ready(process: subprocess.Popen[str], timeout: float = 15.0) -> str:
    """Return the ready line, failing with the process's stderr if it never comes."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            process.kill()
            pytest.fail(f"simulator not ready after {timeout}s")
    line = process.stdout.readline().strip()
    if not line:
        process.wait(timeout=5)
        pytest.fail(f"simulator exited with {process.returncode} before it was ready")
    return line


def stop(process: subprocess.Popen[str], sig: int = signal.SIGTERM) -> int:
    process.send_signal(sig)
    try:
        return process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()


def new_order(**fields: Any) -> dict[str, Any]:
    return {
        "order_id": f"ord-{uuid.uuid4().hex[:12]}",
        "lines": [{"sku": "SKU-1", "qty": 2, "unit_price": 15000}],
        "ship_to": {"region": "capital", "postal_code": "04524"},
        **fields,
    }


def ledger_ids(sim: Sim, target: str = "icheon", include_cancelled: bool = False) -> list[str]:
    params = {"all": "true"} if include_cancelled else {}
    body = sim.http.get(f"{sim.admin}/_sim/targets/{target}/ledger", params=params).json()
    return [entry["order_id"] for entry in body["orders"]]


def set_fault(sim: Sim, target: str, fault: dict[str, Any]) -> None:
    sim.http.put(f"{sim.admin}/_sim/targets/{target}/faults", json=fault).raise_for_status()


def clear_fault(sim: Sim, target: str) -> None:
    sim.http.delete(f"{sim.admin}/_sim/targets/{target}/faults").raise_for_status()


def eventually(check: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


@pytest.fixture(scope="module")
def sim() -> Iterator[Sim]:
    admin, icheon, daejeon, carrier = free_ports(4)
    process = start_simulator(
        [
            f"--admin-port={admin}",
            f"--dc=icheon={icheon}:1800",
            f"--dc=daejeon={daejeon}",
            f"--integration=cj-logistics={carrier}",
        ]
    )
    http = httpx.Client(timeout=5, trust_env=False)
    try:
        assert READY.match(wait_ready(process))
        yield Sim(
            process=process,
            admin=f"http://127.0.0.1:{admin}",
            icheon=f"http://127.0.0.1:{icheon}",
            daejeon=f"http://127.0.0.1:{daejeon}",
            carrier=f"http://127.0.0.1:{carrier}",
            http=http,
        )
    finally:
        http.close()
        assert stop(process) == 0


@pytest.fixture(autouse=True)
def fresh_state(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "sim" in request.fixturenames:
        sim: Sim = request.getfixturevalue("sim")
        sim.http.post(f"{sim.admin}/_sim/reset", timeout=5).raise_for_status()


# --- the DC contract ---------------------------------------------------------------------------


def test_new_order_is_accepted_with_a_dc_ref(sim: Sim) -> None:
    order = new_order()

    response = sim.http.post(f"{sim.icheon}/orders", json=order)

    assert response.status_code == 201
    body = response.json()
    assert body["order_id"] == order["order_id"]
    assert body["status"] == "accepted"
    assert re.fullmatch(r"ICHEON-\d{8}", body["dc_ref"])


def test_repeated_post_returns_same_dc_ref_and_counts_posts(sim: Sim) -> None:
    order = new_order()
    first = sim.http.post(f"{sim.icheon}/orders", json=order)

    repeats = [sim.http.post(f"{sim.icheon}/orders", json=order) for _ in range(2)]

    assert [r.status_code for r in repeats] == [200, 200]
    assert {r.json()["dc_ref"] for r in repeats} == {first.json()["dc_ref"]}
    (entry,) = sim.http.get(f"{sim.icheon}/_sim/ledger").json()["orders"]
    assert entry["posts"] == 3


def test_each_dc_keeps_its_own_ledger(sim: Sim) -> None:
    order = new_order()

    sim.http.post(f"{sim.icheon}/orders", json=order)

    assert ledger_ids(sim, "icheon") == [order["order_id"]]
    assert ledger_ids(sim, "daejeon") == []


@pytest.mark.parametrize(
    "body",
    [b"{}", b'{"order_id": ""}', b'{"order_id": 42}', b"not json", b"[]"],
    ids=["missing", "empty", "not-a-string", "bad-json", "not-an-object"],
)
def test_order_without_a_valid_order_id_is_rejected(sim: Sim, body: bytes) -> None:
    headers = {"content-type": "application/json"}

    response = sim.http.post(f"{sim.icheon}/orders", content=body, headers=headers)

    assert response.status_code == 422
    assert ledger_ids(sim, include_cancelled=True) == []


def test_get_order_returns_the_stored_entry(sim: Sim) -> None:
    order = new_order()
    dc_ref = sim.http.post(f"{sim.icheon}/orders", json=order).json()["dc_ref"]

    body = sim.http.get(f"{sim.icheon}/orders/{order['order_id']}").json()

    assert body["dc_ref"] == dc_ref
    assert body["status"] == "accepted"
    assert body["payload"]["ship_to"] == order["ship_to"]
    assert sim.http.get(f"{sim.icheon}/orders/nope").status_code == 404


def test_cancel_twice_is_fine_and_unknown_is_404(sim: Sim) -> None:
    order = new_order()
    sim.http.post(f"{sim.icheon}/orders", json=order)

    first = sim.http.delete(f"{sim.icheon}/orders/{order['order_id']}")
    second = sim.http.delete(f"{sim.icheon}/orders/{order['order_id']}")

    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["status"] == "cancelled"
    assert sim.http.delete(f"{sim.icheon}/orders/never-seen").status_code == 404


def test_cancel_of_shipped_order_is_409(sim: Sim) -> None:
    order = new_order()
    sim.http.post(f"{sim.icheon}/orders", json=order)
    ship = sim.http.post(f"{sim.admin}/_sim/targets/icheon/orders/{order['order_id']}/ship")

    response = sim.http.delete(f"{sim.icheon}/orders/{order['order_id']}")

    assert ship.json()["status"] == "shipped"
    assert response.status_code == 409
    assert sim.http.get(f"{sim.icheon}/orders/{order['order_id']}").json()["status"] == "shipped"


def test_shipping_an_unknown_order_is_404(sim: Sim) -> None:
    assert sim.http.post(f"{sim.icheon}/_sim/orders/ghost/ship").status_code == 404
    assert sim.http.post(f"{sim.admin}/_sim/targets/icheon/orders/ghost/ship").status_code == 404


def test_repost_after_cancel_reactivates_with_same_dc_ref(sim: Sim) -> None:
    order = new_order()
    dc_ref = sim.http.post(f"{sim.icheon}/orders", json=order).json()["dc_ref"]
    sim.http.delete(f"{sim.icheon}/orders/{order['order_id']}")

    response = sim.http.post(f"{sim.icheon}/orders", json=order)

    assert response.status_code == 201
    assert response.json() == {"order_id": order["order_id"], "dc_ref": dc_ref, "status": "accepted"}
    assert ledger_ids(sim) == [order["order_id"]]


def test_ledger_lists_only_active_orders_unless_all(sim: Sim) -> None:
    kept, shipped, cancelled = new_order(), new_order(), new_order()
    for order in (kept, shipped, cancelled):
        sim.http.post(f"{sim.icheon}/orders", json=order)
    sim.http.post(f"{sim.icheon}/_sim/orders/{shipped['order_id']}/ship")
    sim.http.delete(f"{sim.icheon}/orders/{cancelled['order_id']}")

    active = ledger_ids(sim)
    everything = ledger_ids(sim, include_cancelled=True)

    assert active == [kept["order_id"], shipped["order_id"]]
    assert everything == [kept["order_id"], shipped["order_id"], cancelled["order_id"]]


def test_order_listing_pages_through_every_status_with_each_payload(sim: Sim) -> None:
    orders = [new_order(channel="web") for _ in range(7)]
    for order in orders:
        sim.http.post(f"{sim.icheon}/orders", json=order)
    sim.http.post(f"{sim.icheon}/_sim/orders/{orders[1]['order_id']}/ship")
    sim.http.delete(f"{sim.icheon}/orders/{orders[2]['order_id']}")

    seen: list[dict[str, Any]] = []
    after: str | None = "0"
    pages = 0
    while after is not None and pages < 10:
        page = sim.http.get(f"{sim.icheon}/orders", params={"after": after, "limit": 3}).json()
        seen += page["orders"]
        after, pages = page["next"], pages + 1

    assert pages == 3
    assert [e["order_id"] for e in seen] == [o["order_id"] for o in orders]
    assert [e["status"] for e in seen[:3]] == ["accepted", "shipped", "cancelled"]
    assert seen[0]["payload"] == {k: v for k, v in orders[0].items() if k != "order_id"}
    later = sim.http.get(f"{sim.icheon}/orders", params={"since": "2999-01-01T00:00:00+00:00"}).json()
    assert later == {"orders": [], "next": None}


@pytest.mark.parametrize(
    "query", [{"limit": "0"}, {"after": "-1"}, {"since": "2026-12-01T00:00"}, {"lmit": "5"}]
)
def test_order_listing_refuses_a_bad_query(sim: Sim, query: dict[str, str]) -> None:
    response = sim.http.get(f"{sim.icheon}/orders", params=query)

    assert response.status_code == 422


def test_health_reports_backlog_and_capacity(sim: Sim) -> None:
    orders = [new_order() for _ in range(3)]
    for order in orders:
        sim.http.post(f"{sim.icheon}/orders", json=order)
    sim.http.post(f"{sim.icheon}/_sim/orders/{orders[0]['order_id']}/ship")
    sim.http.delete(f"{sim.icheon}/orders/{orders[1]['order_id']}")

    health = sim.http.get(f"{sim.icheon}/health")

    assert health.status_code == 200
    assert health.json() == {"status": "ok", "backlog": 1, "capacity_per_hour": 1800}


def test_stats_count_contract_requests_by_route(sim: Sim) -> None:
    for _ in range(3):
        sim.http.get(f"{sim.icheon}/health")
    order = new_order()
    sim.http.post(f"{sim.icheon}/orders", json=order)
    sim.http.get(f"{sim.icheon}/orders/{order['order_id']}")

    requests = sim.http.get(f"{sim.icheon}/_sim/stats").json()["requests"]

    assert requests == {"GET /health": 3, "POST /orders": 1, "GET /orders/{order_id}": 1}
    assert sim.http.get(f"{sim.admin}/_sim/targets/icheon/stats").json()["requests"] == requests


# --- faults ------------------------------------------------------------------------------------


def test_down_refuses_connections_and_clearing_restores_service_with_ledger_intact(sim: Sim) -> None:
    before = new_order()
    # a new connection per call: a pooled one aborted by 'down' would read as a reset, not a refusal
    sim.http.post(f"{sim.icheon}/orders", json=before, headers={"Connection": "close"})

    set_fault(sim, "icheon", {"mode": "down"})
    with pytest.raises(httpx.ConnectError):
        sim.http.post(f"{sim.icheon}/orders", json=new_order(), headers={"Connection": "close"})
    listed = sim.http.get(f"{sim.admin}/_sim/targets").json()["targets"]
    clear_fault(sim, "icheon")
    after = new_order()
    response = sim.http.post(f"{sim.icheon}/orders", json=after)

    assert {t["name"]: t["listening"] for t in listed} == {
        "icheon": False,
        "daejeon": True,
        "cj-logistics": True,
    }
    assert response.status_code == 201
    assert ledger_ids(sim) == [before["order_id"], after["order_id"]]


def test_down_drops_open_keep_alive_connections(sim: Sim) -> None:
    with httpx.Client(base_url=sim.icheon) as client:
        assert client.get("/health").status_code == 200

        set_fault(sim, "icheon", {"mode": "down"})

        with pytest.raises((httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError)):
            client.get("/health")


def test_target_can_take_itself_down_through_its_own_port(sim: Sim) -> None:
    response = sim.http.put(f"{sim.icheon}/_sim/faults", json={"mode": "down"})

    assert response.json() == {"mode": "down"}
    with pytest.raises(httpx.ConnectError):
        sim.http.get(f"{sim.icheon}/health")


def test_latency_beyond_read_timeout_times_out_but_the_order_is_still_taken(sim: Sim) -> None:
    order = new_order()
    set_fault(sim, "icheon", {"mode": "latency", "latency_ms": 800})

    with pytest.raises(httpx.ReadTimeout):
        sim.http.post(f"{sim.icheon}/orders", json=order, timeout=httpx.Timeout(5.0, read=0.2))

    assert ledger_ids(sim) == []  # still waiting inside the DC
    assert eventually(lambda: ledger_ids(sim) == [order["order_id"]])


def test_latency_within_the_timeout_answers_normally_after_the_wait(sim: Sim) -> None:
    set_fault(sim, "icheon", {"mode": "latency", "latency_ms": 300})

    started = time.monotonic()
    response = sim.http.post(f"{sim.icheon}/orders", json=new_order(), timeout=5)

    assert response.status_code == 201
    assert time.monotonic() - started >= 0.3


def test_partition_times_out_and_never_records_the_order_even_after_clearing(sim: Sim) -> None:
    order = new_order()
    set_fault(sim, "icheon", {"mode": "partition"})

    with pytest.raises(httpx.ReadTimeout):
        sim.http.post(f"{sim.icheon}/orders", json=order, timeout=httpx.Timeout(5.0, read=0.3))
    clear_fault(sim, "icheon")

    time.sleep(0.2)
    assert ledger_ids(sim, include_cancelled=True) == []
    assert sim.http.get(f"{sim.icheon}/health").status_code == 200


def test_clearing_a_partition_drops_hung_requests_without_answering(sim: Sim) -> None:
    set_fault(sim, "icheon", {"mode": "partition"})
    outcome: list[BaseException | httpx.Response] = []

    def post_and_hang() -> None:
        try:
            outcome.append(sim.http.post(f"{sim.icheon}/orders", json=new_order(), timeout=10))
        except httpx.HTTPError as exc:
            outcome.append(exc)

    caller = threading.Thread(target=post_and_hang)
    caller.start()
    time.sleep(0.3)
    clear_fault(sim, "icheon")
    caller.join(timeout=5)

    assert not caller.is_alive()
    assert isinstance(outcome[0], httpx.RemoteProtocolError | httpx.ReadError)
    assert ledger_ids(sim, include_cancelled=True) == []


def test_error_rate_one_answers_503_and_records_nothing(sim: Sim) -> None:
    set_fault(sim, "icheon", {"mode": "error_rate", "p": 1.0})

    statuses = {sim.http.post(f"{sim.icheon}/orders", json=new_order()).status_code for _ in range(10)}

    assert statuses == {503}
    assert sim.http.get(f"{sim.icheon}/health").status_code == 503
    assert ledger_ids(sim, include_cancelled=True) == []


def test_error_rate_zero_serves_everything(sim: Sim) -> None:
    set_fault(sim, "icheon", {"mode": "error_rate", "p": 0.0})
    orders = [new_order() for _ in range(10)]

    statuses = {sim.http.post(f"{sim.icheon}/orders", json=order).status_code for order in orders}

    assert statuses == {201}
    assert ledger_ids(sim) == [order["order_id"] for order in orders]


def test_seeded_error_rate_repeats_the_same_answers(sim: Sim) -> None:
    def twenty_health_statuses() -> list[int]:
        set_fault(sim, "icheon", {"mode": "error_rate", "p": 0.5, "seed": 7})
        return [sim.http.get(f"{sim.icheon}/health").status_code for _ in range(20)]

    first, second = twenty_health_statuses(), twenty_health_statuses()

    assert first == second
    assert set(first) == {200, 503}


def test_slow_delays_health_but_not_orders(sim: Sim) -> None:
    set_fault(sim, "icheon", {"mode": "slow", "latency_ms": 1000})

    started = time.monotonic()
    order_response = sim.http.post(f"{sim.icheon}/orders", json=new_order(), timeout=5)
    order_seconds = time.monotonic() - started
    with pytest.raises(httpx.ReadTimeout):
        sim.http.get(f"{sim.icheon}/health", timeout=httpx.Timeout(5.0, read=0.3))

    assert order_response.status_code == 201
    assert order_seconds < 0.5


def test_faults_on_one_target_leave_the_others_alone(sim: Sim) -> None:
    set_fault(sim, "icheon", {"mode": "error_rate", "p": 1.0})

    response = sim.http.post(f"{sim.daejeon}/orders", json=new_order())

    assert response.status_code == 201


def test_integration_health_follows_its_faults(sim: Sim) -> None:
    # a new connection per call: a pooled one aborted by 'down' would read as a reset, not a refusal
    fresh = {"Connection": "close"}
    healthy = sim.http.get(f"{sim.carrier}/health", headers=fresh)
    set_fault(sim, "cj-logistics", {"mode": "error_rate", "p": 1.0})
    failing = sim.http.get(f"{sim.carrier}/health", headers=fresh)
    set_fault(sim, "cj-logistics", {"mode": "down"})
    with pytest.raises(httpx.ConnectError):
        sim.http.get(f"{sim.carrier}/health", headers=fresh)
    clear_fault(sim, "cj-logistics")
    recovered = sim.http.get(f"{sim.carrier}/health", headers=fresh)

    assert (healthy.status_code, failing.status_code, recovered.status_code) == (200, 503, 200)
    assert recovered.json() == {"status": "ok"}
    assert sim.http.get(f"{sim.carrier}/_sim/stats").json()["requests"] == {"GET /health": 3}


def test_integrations_take_no_orders(sim: Sim) -> None:
    assert sim.http.post(f"{sim.carrier}/orders", json=new_order()).status_code == 404
    assert sim.http.get(f"{sim.admin}/_sim/targets/cj-logistics/ledger").status_code == 404


@pytest.mark.parametrize(
    ("fault", "field"),
    [
        ({"mode": "flood"}, "mode"),
        ({}, "mode"),
        ({"mode": "latency"}, "latency_ms"),
        ({"mode": "latency", "latency_ms": -5}, "latency_ms"),
        ({"mode": "error_rate", "p": 1.5}, "p"),
        ({"mode": "slow", "latency_ms": "soon"}, "latency_ms"),
        ({"mode": "down", "latency": 10}, "latency"),
    ],
)
def test_bad_fault_body_is_422_naming_the_field(sim: Sim, fault: dict[str, Any], field: str) -> None:
    response = sim.http.put(f"{sim.admin}/_sim/targets/icheon/faults", json=fault)

    assert response.status_code == 422
    assert field in {error["field"] for error in response.json()["errors"]}
    assert sim.http.get(f"{sim.icheon}/_sim/faults").json() == {"mode": "none"}


def test_fault_can_be_read_back_on_both_ports(sim: Sim) -> None:
    sim.http.put(f"{sim.icheon}/_sim/faults", json={"mode": "latency", "latency_ms": 50}).raise_for_status()

    on_target = sim.http.get(f"{sim.icheon}/_sim/faults").json()
    on_admin = sim.http.get(f"{sim.admin}/_sim/targets/icheon/faults").json()

    assert on_target == on_admin == {"mode": "latency", "latency_ms": 50}


# --- admin -------------------------------------------------------------------------------------


def test_admin_answers_404_for_unknown_targets(sim: Sim) -> None:
    assert sim.http.get(f"{sim.admin}/_sim/targets/atlantis/ledger").status_code == 404
    assert sim.http.put(f"{sim.admin}/_sim/targets/atlantis/faults", json={"mode": "down"}).status_code == 404


def test_reset_clears_faults_ledgers_and_stats(sim: Sim) -> None:
    sim.http.post(f"{sim.icheon}/orders", json=new_order())
    set_fault(sim, "daejeon", {"mode": "down"})

    sim.http.post(f"{sim.admin}/_sim/reset").raise_for_status()

    targets = sim.http.get(f"{sim.admin}/_sim/targets").json()["targets"]
    assert all(t["fault"] == {"mode": "none"} and t["listening"] for t in targets)
    assert ledger_ids(sim, include_cancelled=True) == []
    assert sim.http.get(f"{sim.icheon}/_sim/stats").json()["requests"] == {}


# --- the process -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--dc", "icheon=18101"],
        ["--admin-port", "18100"],
        ["--admin-port", "18100", "--dc", "icheon"],
        ["--admin-port", "18100", "--dc", "icheon=abc"],
        ["--admin-port", "18100", "--dc", "icheon=70000"],
        ["--admin-port", "18100", "--dc", "a=18101", "--dc", "b=18101"],
        ["--admin-port", "18100", "--dc", "a=18101", "--dc", "a=18102"],
        ["--admin-port", "18100", "--integration", "cj=18101:50"],
    ],
    ids=[
        "no-admin-port",
        "no-targets",
        "no-port",
        "bad-port",
        "port-out-of-range",
        "port-twice",
        "name-twice",
        "integration-capacity",
    ],
)
def test_bad_cli_arguments_exit_2_with_one_line(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "chaos.simulator", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=20,
    )

    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "error" in result.stderr


def test_port_in_use_exits_1_naming_it() -> None:
    admin, dc = free_ports(2)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", dc))
        squatter.listen()
        result = subprocess.run(
            [sys.executable, "-m", "chaos.simulator", f"--admin-port={admin}", f"--dc=icheon={dc}"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=20,
        )

    assert result.returncode == 1
    assert f"127.0.0.1:{dc}" in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_the_process_cleanly_even_with_hung_requests(sig: int) -> None:
    admin, dc = free_ports(2)
    process = start_simulator([f"--admin-port={admin}", f"--dc=icheon={dc}"], capture_stderr=True)
    try:
        assert READY.match(wait_ready(process))
        fault = {"mode": "partition"}
        httpx.put(f"http://127.0.0.1:{admin}/_sim/targets/icheon/faults", json=fault, trust_env=False)
        with socket.create_connection(("127.0.0.1", dc)) as hung:
            hung.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.2)

            started = time.monotonic()
            returncode = stop(process, sig)
            stopped_after = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()

    assert returncode == 0
    assert stopped_after < 5
    assert process.stderr is not None and process.stderr.read() == ""


def test_ready_line_counts_every_target() -> None:
    admin, a, b, c = free_ports(4)
    process = start_simulator(
        [f"--admin-port={admin}", f"--dc=a={a}", f"--dc=b={b}:10", f"--integration=c={c}"]
    )
    try:
        ready = READY.match(wait_ready(process))
        assert ready is not None and ready.groups() == (str(admin), "3")
        assert httpx.get(f"http://127.0.0.1:{b}/health", trust_env=False).json()["capacity_per_hour"] == 10
    finally:
        stop(process)
