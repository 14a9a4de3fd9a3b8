"""A simulated DC tells drctl what happened to its orders: signed webhooks (DESIGN §4), over real HTTP.

The simulator runs as a subprocess; a small HTTP server on a loopback port plays drctl's
`/v1/sites/{code}/events` endpoint, checks each signature with the site's secret and records what came.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_simulator import eventually, start_simulator, stop, wait_ready

from chaos.ports import free_port
from chaos.simulator import EventsConfig, SimTarget
from chaos.simulator.server import Simulator
from chaos.simulator.targets import InvalidTargets, validate_targets

REPO = Path(__file__).resolve().parent.parent
READY = re.compile(r"^simulator ready admin=http://127\.0\.0\.1:(\d+) targets=(\d+)$")
SECRET = "icheon-webhook-secret-3f9a"
EVENTS_PATH = "/v1/sites/icheon/events"


# --- a stand-in for drctl's events endpoint -------------------------------------------------------


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    signature_ok: bool
    arrived: float  # time.monotonic() on arrival

    @property
    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


def expected_signature(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


class Receiver:
    """Records every POST; answers 401 to a bad signature, else the next scripted status (default 204)."""

    def __init__(self, secret: str = SECRET) -> None:
        self.secret = secret
        self.statuses: list[int] = []  # answers for the next requests, in order; then `status`
        self.status = 204
        self.delay_s = 0.0
        self._lock = threading.Lock()
        self._received: list[Received] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = receiver._record(self.path, dict(self.headers.items()), body)
                time.sleep(receiver.delay_s)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def _record(self, path: str, headers: dict[str, str], body: bytes) -> int:
        headers = {name.lower(): value for name, value in headers.items()}
        ok = hmac.compare_digest(headers.get("x-drctl-signature", ""), expected_signature(body, self.secret))
        with self._lock:
            self._received.append(Received(path, headers, body, ok, time.monotonic()))
            if not ok:
                return 401
            return self.statuses.pop(0) if self.statuses else self.status

    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


# --- the simulator ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sim:
    admin: str
    icheon: str
    http: httpx.Client


@pytest.fixture(scope="module")
def sim() -> Iterator[Sim]:
    admin, icheon, carrier = (free_port() for _ in range(3))
    process = start_simulator(
        [f"--admin-port={admin}", f"--dc=icheon={icheon}", f"--integration=cj={carrier}"]
    )
    http = httpx.Client(timeout=5, trust_env=False)
    try:
        wait_ready(process)
        yield Sim(admin=f"http://127.0.0.1:{admin}", icheon=f"http://127.0.0.1:{icheon}", http=http)
    finally:
        http.close()
        assert stop(process) == 0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(autouse=True)
def fresh_state(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "sim" in request.fixturenames:
        sim: Sim = request.getfixturevalue("sim")
        sim.http.post(f"{sim.admin}/_sim/reset").raise_for_status()


def configure(sim: Sim, receiver: Receiver, secret: str = SECRET, **fields: Any) -> dict[str, Any]:
    response = sim.http.put(
        f"{sim.admin}/_sim/targets/icheon/events", json={"url": receiver.url, "secret": secret, **fields}
    )
    response.raise_for_status()
    return dict(response.json())


def take(sim: Sim) -> str:
    order_id = f"ord-{uuid.uuid4().hex[:12]}"
    sim.http.post(f"{sim.icheon}/orders", json={"order_id": order_id}).raise_for_status()
    return order_id


def ship(sim: Sim, order_id: str) -> httpx.Response:
    return sim.http.post(f"{sim.admin}/_sim/targets/icheon/orders/{order_id}/ship")


def event_stats(sim: Sim) -> dict[str, Any]:
    return dict(sim.http.get(f"{sim.admin}/_sim/targets/icheon/stats").json()["events"])


# --- events on the wire -------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["admin", "target"])
def test_shipping_sends_exactly_one_signed_shipped_event(sim: Sim, receiver: Receiver, port: str) -> None:
    configure(sim, receiver)
    order_id = take(sim)
    ship_url = (
        f"{sim.admin}/_sim/targets/icheon/orders/{order_id}/ship"
        if port == "admin"
        else f"{sim.icheon}/_sim/orders/{order_id}/ship"
    )
    before = datetime.now(UTC)

    shipped = sim.http.post(ship_url)
    assert eventually(lambda: len(receiver.received()) == 1)
    after = datetime.now(UTC)
    again = sim.http.post(ship_url)  # already shipped: nothing happened, nothing to tell
    time.sleep(0.3)

    assert (shipped.status_code, shipped.json()["status"]) == (200, "shipped")
    assert (again.status_code, again.json()["status"]) == (200, "shipped")
    (event,) = receiver.received()
    assert event.path == EVENTS_PATH
    assert event.headers["content-type"] == "application/json"
    assert event.headers["x-drctl-signature"] == expected_signature(event.body, SECRET)
    assert event.signature_ok
    body = event.json
    assert set(body) == {"order_id", "event", "at"}
    assert (body["order_id"], body["event"]) == (order_id, "shipped")
    at = datetime.fromisoformat(body["at"])
    assert at.utcoffset() == timedelta(0)
    assert before - timedelta(milliseconds=1) <= at <= after
    assert event_stats(sim) == {
        "sent": 1,
        "failed": 0,
        "dropped": 0,
        "pending": 0,
        "attempts": 1,
        "held": False,
    }


def test_an_event_signed_with_another_secret_is_refused_and_not_retried(sim: Sim, receiver: Receiver) -> None:
    configure(sim, receiver, secret="not-the-site-secret")

    ship(sim, take(sim)).raise_for_status()

    assert eventually(lambda: event_stats(sim)["failed"] == 1)
    time.sleep(0.3)
    (event,) = receiver.received()  # the receiver answered 401: once is enough
    assert not event.signature_ok
    assert event.headers["x-drctl-signature"] == expected_signature(event.body, "not-the-site-secret")
    assert event_stats(sim)["sent"] == 0


def test_ship_after_s_ships_accepted_orders_automatically(sim: Sim, receiver: Receiver) -> None:
    configure(sim, receiver, ship_after_s=0.5)
    taken_at = time.monotonic()
    kept, cancelled = take(sim), take(sim)
    sim.http.delete(f"{sim.icheon}/orders/{cancelled}").raise_for_status()
    still_waiting = sim.http.get(f"{sim.icheon}/orders/{kept}").json()["status"]

    assert eventually(lambda: len(receiver.received()) == 1)
    time.sleep(0.5)  # past the cancelled order's due time too

    assert still_waiting == "accepted"
    (event,) = receiver.received()
    assert (event.json["order_id"], event.json["event"]) == (kept, "shipped")
    assert event.arrived - taken_at >= 0.45
    assert event.signature_ok
    assert sim.http.get(f"{sim.icheon}/orders/{kept}").json()["status"] == "shipped"
    assert sim.http.get(f"{sim.icheon}/orders/{cancelled}").json()["status"] == "cancelled"


def test_ship_after_s_applies_to_orders_taken_before_it_was_set(sim: Sim, receiver: Receiver) -> None:
    order_id = take(sim)
    time.sleep(0.2)
    assert sim.http.get(f"{sim.icheon}/orders/{order_id}").json()["status"] == "accepted"

    configure(sim, receiver, ship_after_s=0.0)

    assert eventually(lambda: sim.http.get(f"{sim.icheon}/orders/{order_id}").json()["status"] == "shipped")
    assert eventually(lambda: [e.json["order_id"] for e in receiver.received()] == [order_id])


def test_cancel_by_dc_cancels_and_sends_cancelled_by_dc(sim: Sim, receiver: Receiver) -> None:
    configure(sim, receiver)
    order_id, shipped_id = take(sim), take(sim)
    ship(sim, shipped_id).raise_for_status()
    assert eventually(lambda: len(receiver.received()) == 1)
    cancel_url = f"{sim.admin}/_sim/targets/icheon/orders/{{}}/cancel-by-dc"

    cancelled = sim.http.post(cancel_url.format(order_id))
    assert eventually(lambda: len(receiver.received()) == 2)
    again = sim.http.post(cancel_url.format(order_id))
    of_shipped = sim.http.post(cancel_url.format(shipped_id))
    of_unknown = sim.http.post(cancel_url.format("never-seen"))
    of_integration = sim.http.post(f"{sim.admin}/_sim/targets/cj/orders/{order_id}/cancel-by-dc")
    time.sleep(0.3)

    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")
    assert (again.status_code, again.json()["status"]) == (200, "cancelled")
    assert (of_shipped.status_code, of_unknown.status_code, of_integration.status_code) == (409, 404, 404)
    assert sim.http.get(f"{sim.icheon}/orders/{order_id}").json()["status"] == "cancelled"
    assert [(e.json["order_id"], e.json["event"]) for e in receiver.received()] == [
        (shipped_id, "shipped"),
        (order_id, "cancelled_by_dc"),
    ]
    assert all(e.signature_ok for e in receiver.received())


def test_cancel_by_dc_on_the_target_port(sim: Sim, receiver: Receiver) -> None:
    configure(sim, receiver)
    order_id = take(sim)

    response = sim.http.post(f"{sim.icheon}/_sim/orders/{order_id}/cancel-by-dc")

    assert response.json()["status"] == "cancelled"
    assert eventually(lambda: [e.json["event"] for e in receiver.received()] == ["cancelled_by_dc"])


@pytest.mark.parametrize("mode", ["down", "partition"])
def test_events_are_held_while_the_dc_is_cut_off_and_sent_after(
    sim: Sim, receiver: Receiver, mode: str
) -> None:
    configure(sim, receiver)
    order_id = take(sim)
    sim.http.put(f"{sim.admin}/_sim/targets/icheon/faults", json={"mode": mode}).raise_for_status()

    ship(sim, order_id).raise_for_status()  # the floor keeps working; the network does not
    time.sleep(0.5)
    during = receiver.received()
    held = event_stats(sim)
    sim.http.delete(f"{sim.admin}/_sim/targets/icheon/faults").raise_for_status()

    assert during == []
    assert (held["pending"], held["held"], held["attempts"]) == (1, True, 0)
    assert eventually(lambda: len(receiver.received()) == 1)
    assert receiver.received()[0].json["order_id"] == order_id
    assert eventually(lambda: event_stats(sim)["sent"] == 1)
    assert event_stats(sim)["pending"] == 0


@pytest.mark.parametrize(
    ("status", "attempts"),
    [(500, 5), (503, 5), (429, 5), (400, 1), (404, 1)],
)
def test_an_unanswered_event_is_retried_a_bounded_number_of_times(
    sim: Sim, receiver: Receiver, status: int, attempts: int
) -> None:
    receiver.status = status
    configure(sim, receiver)
    order_id = take(sim)
    started = time.monotonic()

    ship(sim, order_id).raise_for_status()
    assert eventually(lambda: event_stats(sim)["failed"] == 1, timeout=15)
    gave_up_after = time.monotonic() - started
    time.sleep(0.5)  # and nothing more after giving up

    received = receiver.received()
    assert len(received) == attempts
    assert {e.body for e in received} == {received[0].body}  # every retry is the same signed event
    assert all(e.signature_ok for e in received)
    assert event_stats(sim) == {
        "sent": 0,
        "failed": 1,
        "dropped": 0,
        "pending": 0,
        "attempts": attempts,
        "held": False,
    }
    assert gave_up_after < 12


def test_a_2xx_after_failures_ends_the_retries(sim: Sim, receiver: Receiver) -> None:
    receiver.statuses = [500, 503]
    receiver.status = 202
    configure(sim, receiver)

    ship(sim, take(sim)).raise_for_status()

    assert eventually(lambda: event_stats(sim)["sent"] == 1, timeout=5)
    time.sleep(0.3)
    assert len(receiver.received()) == 3
    assert event_stats(sim)["attempts"] == 3


def test_a_slow_receiver_never_slows_the_dc(sim: Sim, receiver: Receiver) -> None:
    receiver.delay_s = 0.8
    configure(sim, receiver)
    orders = [take(sim) for _ in range(3)]

    started = time.monotonic()
    for order_id in orders:
        ship(sim, order_id).raise_for_status()
    health = sim.http.get(f"{sim.icheon}/health")
    handled_in = time.monotonic() - started

    assert health.status_code == 200
    assert handled_in < 0.5
    assert eventually(lambda: event_stats(sim)["sent"] == 3, timeout=8)
    assert sorted(e.json["order_id"] for e in receiver.received()) == sorted(orders)


# --- configuration ------------------------------------------------------------------------------


def test_get_masks_the_secret_everywhere(sim: Sim, receiver: Receiver) -> None:
    secret = f"secret-{uuid.uuid4().hex}"

    put = configure(sim, receiver, secret=secret, ship_after_s=30)

    answers = [
        sim.http.get(f"{sim.admin}/_sim/targets/icheon/events"),
        sim.http.get(f"{sim.icheon}/_sim/events"),
        sim.http.get(f"{sim.admin}/_sim/targets/icheon"),
        sim.http.get(f"{sim.admin}/_sim/targets"),
    ]
    shown = {"url": receiver.url, "secret": "********", "ship_after_s": 30.0}
    assert put == shown
    assert answers[0].json() == answers[1].json() == answers[2].json()["events"] == shown
    assert all(secret not in answer.text for answer in answers)


def test_events_can_be_set_on_the_target_port(sim: Sim, receiver: Receiver) -> None:
    response = sim.http.put(f"{sim.icheon}/_sim/events", json={"url": receiver.url, "secret": SECRET})

    ship(sim, take(sim)).raise_for_status()

    assert response.status_code == 200
    assert eventually(lambda: len(receiver.received()) == 1)
    assert receiver.received()[0].signature_ok


def test_delete_turns_events_off(sim: Sim, receiver: Receiver) -> None:
    configure(sim, receiver, ship_after_s=0.3)
    order_id = take(sim)

    deleted = sim.http.delete(f"{sim.admin}/_sim/targets/icheon/events")
    ship(sim, take(sim)).raise_for_status()
    time.sleep(0.6)  # past the first order's due time under the deleted rule

    assert deleted.json() == {"url": None, "secret": None, "ship_after_s": None}
    assert receiver.received() == []
    assert sim.http.get(f"{sim.icheon}/orders/{order_id}").json()["status"] == "accepted"
    assert event_stats(sim)["attempts"] == 0


def test_put_events_with_unknown_fields_is_422_naming_them(sim: Sim, receiver: Receiver) -> None:
    body = {"url": receiver.url, "secret": SECRET, "ship_after": 1, "retries": 3}

    response = sim.http.put(f"{sim.admin}/_sim/targets/icheon/events", json=body)

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/json"
    assert {"ship_after", "retries"} <= {error["field"] for error in response.json()["errors"]}
    assert sim.http.get(f"{sim.admin}/_sim/targets/icheon/events").json()["url"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://127.0.0.1/", "secret": "s"}, "url"),
        ({"url": "127.0.0.1:8000", "secret": "s"}, "url"),
        ({"url": "http://127.0.0.1:8000/?x=1", "secret": "s"}, "url"),
        ({"url": "http://user:pw@127.0.0.1:8000", "secret": "s"}, "url"),
        ({"url": "http://127.0.0.1:8000"}, "secret"),
        ({"url": "http://127.0.0.1:8000", "secret": 42}, "secret"),
        ({"ship_after_s": -1}, "ship_after_s"),
        ({"ship_after_s": "soon"}, "ship_after_s"),
        ({"ship_after_s": True}, "ship_after_s"),
        ([], "body"),
        ("not json", "body"),
    ],
    ids=[
        "not-http",
        "no-scheme",
        "query",
        "credentials",
        "no-secret",
        "secret-not-a-string",
        "negative-delay",
        "delay-not-a-number",
        "delay-bool",
        "not-an-object",
        "bad-json",
    ],
)
def test_bad_events_config_is_422_naming_the_field(sim: Sim, body: Any, field: str) -> None:
    content = body.encode() if isinstance(body, str) else json.dumps(body).encode()

    response = sim.http.put(
        f"{sim.admin}/_sim/targets/icheon/events",
        content=content,
        headers={"content-type": "application/json"},
    )

    assert response.status_code == 422
    assert field in {error["field"] for error in response.json()["errors"]}
    assert sim.http.get(f"{sim.admin}/_sim/targets/icheon/events").json() == {
        "url": None,
        "secret": None,
        "ship_after_s": None,
    }


def test_integrations_send_no_events(sim: Sim, receiver: Receiver) -> None:
    put = sim.http.put(f"{sim.admin}/_sim/targets/cj/events", json={"url": receiver.url, "secret": "s"})

    assert put.status_code == 404
    assert sim.http.get(f"{sim.admin}/_sim/targets/cj/events").status_code == 404
    assert sim.http.get(f"{sim.admin}/_sim/targets/cj/stats").json()["events"] is None
    assert sim.http.put(f"{sim.admin}/_sim/targets/atlantis/events", json={}).status_code == 404


def test_reset_turns_events_off_and_clears_their_counts(sim: Sim, receiver: Receiver) -> None:
    configure(sim, receiver)
    ship(sim, take(sim)).raise_for_status()
    assert eventually(lambda: event_stats(sim)["sent"] == 1)

    sim.http.post(f"{sim.admin}/_sim/reset").raise_for_status()

    assert sim.http.get(f"{sim.admin}/_sim/targets/icheon/events").json()["url"] is None
    assert event_stats(sim) == {
        "sent": 0,
        "failed": 0,
        "dropped": 0,
        "pending": 0,
        "attempts": 0,
        "held": False,
    }


# --- the process and construction-time configuration -------------------------------------------


def test_giving_up_is_logged_without_the_secret(receiver: Receiver) -> None:
    receiver.status = 400
    admin, dc = free_port(), free_port()
    process = start_simulator([f"--admin-port={admin}", f"--dc=icheon={dc}"], capture_stderr=True)
    try:
        wait_ready(process)
        base = f"http://127.0.0.1:{admin}/_sim/targets/icheon"
        with httpx.Client(timeout=5, trust_env=False) as http:
            http.put(f"{base}/events", json={"url": receiver.url, "secret": SECRET}).raise_for_status()
            http.post(f"http://127.0.0.1:{dc}/orders", json={"order_id": "ord-log"}).raise_for_status()
            http.post(f"{base}/orders/ord-log/ship").raise_for_status()
            assert eventually(lambda: http.get(f"{base}/stats").json()["events"]["failed"] == 1)
    finally:
        returncode = stop(process)
    assert process.stderr is not None
    stderr = process.stderr.read()

    assert returncode == 0
    assert "ord-log" in stderr and "given up" in stderr
    assert SECRET not in stderr


def test_a_dc_can_start_with_events_on(receiver: Receiver) -> None:
    admin, dc = free_port(), free_port()
    events = EventsConfig(url=receiver.url, secret=SECRET, ship_after_s=0.0)
    target = SimTarget(name="icheon", kind="dc", port=dc, events=events)
    ready, done = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    async def serve() -> None:
        simulator = Simulator([target], admin)
        await simulator.start()
        try:
            ready.set()
            deadline = time.monotonic() + 20
            while not done.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        finally:
            await simulator.close()

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        assert ready.wait(10) and not failure
        with httpx.Client(timeout=5, trust_env=False) as http:
            http.post(f"http://127.0.0.1:{dc}/orders", json={"order_id": "ord-boot"}).raise_for_status()
            shown = http.get(f"http://127.0.0.1:{admin}/_sim/targets/icheon/events").json()
        assert eventually(lambda: [e.json["order_id"] for e in receiver.received()] == ["ord-boot"])
    finally:
        done.set()
        thread.join(timeout=10)

    assert not thread.is_alive() and not failure
    assert shown == {"url": receiver.url, "secret": "********", "ship_after_s": 0.0}
    assert receiver.received()[0].signature_ok
    assert SECRET not in repr(events)


def test_only_dcs_can_start_with_events() -> None:
    events = EventsConfig(url="http://127.0.0.1:8000", secret=SECRET)

    with pytest.raises(InvalidTargets, match="only a DC"):
        validate_targets([SimTarget(name="cj", kind="integration", port=18101, events=events)], 18100)
    with pytest.raises(ValueError, match="secret"):
        EventsConfig(url="http://127.0.0.1:8000")
