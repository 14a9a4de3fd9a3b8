"""The Locust suite for chaos drills: shoppers post orders shaped like the world's demand while faults land.

Shoppers post `POST /v1/orders` bodies from `chaos.order_stream.OrderFactory` (regions by demand
share, Pareto SKU popularity, basket sizes); a few operators poll `GET /v1/sites` and
`GET /v1/incidents`. One load shape (steady, a sale peak, or a ramp) runs for the drill's duration
and then ends the run. Everything is set by environment variables, so the drill runner and a person
at a shell start it the same way; Locust's own -u/-r/-t are ignored because the shape decides.

Run it on its own against `drctl demo` (http://127.0.0.1:8000; use the admin token it prints) or
`drctl serve` (a token from `drctl token create --role ingest` on the same DRCTL_DATABASE_URL):

    DRCTL_DRILL_INGEST_TOKEN=<token> DRCTL_DRILL_SHAPE=peak \\
        .venv/bin/locust -f chaos/locustfile.py --headless --host http://127.0.0.1:8000

Environment (all optional except the ingest token):
  DRCTL_DRILL_INGEST_TOKEN   bearer token for POST /v1/orders (ingest role or above)
  DRCTL_DRILL_VIEWER_TOKEN   if set, operators (about 1 user in 10, at least 1) poll every 2 s with it
  DRCTL_DRILL_WORLD          world YAML (default examples/kr-retail/world.yaml in this repo)
  DRCTL_DRILL_SHAPE          steady | peak | ramp (default steady)
  DRCTL_DRILL_USERS          base shopper count (default 8)
  DRCTL_DRILL_DURATION_S     run length; the run ends by itself after it (default 60)
  DRCTL_DRILL_SPAWN_RATE     users started or stopped per second (default 20)
  DRCTL_DRILL_PEAK_FACTOR    shoppers multiply by this in the peak, and ramp up to it (default 10)
  DRCTL_DRILL_PEAK_START_S   peak window start (default a third of the duration)
  DRCTL_DRILL_PEAK_END_S     peak window end (default two thirds of the duration)
  DRCTL_DRILL_SEED           demand seed; part of every external id (default 1)
  DRCTL_DRILL_OUTCOMES       JSON-lines file: one line appended per order, with its final outcome
"""

from __future__ import annotations

import email.utils
import itertools
import json
import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any, Literal, cast

import gevent
import httpx
import yaml
from locust import LoadTestShape, User, between, constant_pacing, events, task
from locust.env import Environment
from locust.stats import CSV_STATS_INTERVAL_SEC

from chaos.order_stream import OrderFactory
from control_plane.domain import GeoPoint, InvalidInput, Region, Sku, World

ShapeName = Literal["steady", "peak", "ramp"]
SHAPES: tuple[ShapeName, ...] = ("steady", "peak", "ramp")
DEFAULT_WORLD = Path(__file__).resolve().parent.parent / "examples" / "kr-retail" / "world.yaml"

ACCEPTED = frozenset({200, 201, 202})  # 200: a retry of an order the first try already placed
RETRYABLE = frozenset({0, 429, 503})  # 0: no HTTP answer at all (refused, reset, timed out)
MAX_TRIES = 5
MAX_RETRY_WAIT_S = 2.0
REQUEST_TIMEOUT_S = 10.0
# a user stopped in the middle of an order finishes it (and writes its outcome line) instead of
# being killed with the request in flight, which would leave an order the outcomes never mention
GRACEFUL_STOP_S = 15.0
OPERATOR_POLL_S = 2.0

# httpx logs every request at INFO, which Locust's log setup shows: thousands of lines a minute
logging.getLogger("httpx").setLevel(logging.WARNING)


@dataclass(frozen=True, slots=True)
class DrillLoad:
    """What the environment asks of this run."""

    ingest_token: str | None
    viewer_token: str | None
    world_path: Path
    shape: ShapeName
    users: int
    duration_s: float
    spawn_rate: float
    peak_factor: float
    peak_start_s: float
    peak_end_s: float
    seed: int
    outcomes_path: Path | None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DrillLoad:
        """Read DRCTL_DRILL_*; raise InvalidInput naming the variable that is wrong."""

        def number(name: str, default: float, minimum: float) -> float:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise InvalidInput(f"{name}={raw!r} is not a number") from None
            if not math.isfinite(value) or value < minimum:
                raise InvalidInput(f"{name}={raw!r} must be a number >= {minimum:g}")
            return value

        def whole(name: str, default: int, minimum: int) -> int:
            value = number(name, default, minimum)
            if value != int(value):
                raise InvalidInput(f"{name}={env[name]!r} must be a whole number")
            return int(value)

        shape = env.get("DRCTL_DRILL_SHAPE", "").strip() or "steady"
        if shape not in SHAPES:
            raise InvalidInput(f"DRCTL_DRILL_SHAPE={shape!r} must be one of {', '.join(SHAPES)}")
        duration = number("DRCTL_DRILL_DURATION_S", 60.0, 1.0)
        start = number("DRCTL_DRILL_PEAK_START_S", duration / 3, 0.0)
        end = number("DRCTL_DRILL_PEAK_END_S", 2 * duration / 3, 0.0)
        if shape == "peak" and not start < end <= duration:
            raise InvalidInput(
                f"the peak window {start:g}-{end:g} s must start before it ends, within {duration:g} s"
            )
        outcomes = env.get("DRCTL_DRILL_OUTCOMES", "").strip()
        return cls(
            ingest_token=env.get("DRCTL_DRILL_INGEST_TOKEN", "").strip() or None,
            viewer_token=env.get("DRCTL_DRILL_VIEWER_TOKEN", "").strip() or None,
            world_path=Path(env.get("DRCTL_DRILL_WORLD", "").strip() or DEFAULT_WORLD),
            shape=cast(ShapeName, shape),
            users=whole("DRCTL_DRILL_USERS", 8, 1),
            duration_s=duration,
            spawn_rate=number("DRCTL_DRILL_SPAWN_RATE", 20.0, 0.1),
            peak_factor=number("DRCTL_DRILL_PEAK_FACTOR", 10.0, 1.0),
            peak_start_s=start,
            peak_end_s=end,
            seed=whole("DRCTL_DRILL_SEED", 1, 0),
            outcomes_path=Path(outcomes) if outcomes else None,
        )

    @property
    def operators(self) -> int:
        # people watching the dashboard do not multiply with a sale: sized from the base load only
        return max(1, round(self.users / 9)) if self.viewer_token else 0


def shoppers_at(load: DrillLoad, t: float) -> int | None:
    """How many shoppers the shape wants `t` seconds into the run; None once the run is over."""
    if t >= load.duration_s:
        return None
    top = max(1, round(load.users * load.peak_factor))
    if load.shape == "peak":
        return top if load.peak_start_s <= t < load.peak_end_s else load.users
    if load.shape == "ramp":
        return max(1, round(1 + (top - 1) * t / load.duration_s))
    return load.users


def read_demand(path: Path) -> tuple[World, tuple[str, ...] | None]:
    """The regions and catalog of a world file (all OrderFactory needs), and its sales channels if any.

    The full loader lives in control_plane.world, which chaos may not import (DESIGN §2): this reads
    only the two sections demand is drawn from and leaves validating the world to `drctl world load`.
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInput(f"DRCTL_DRILL_WORLD: cannot read {path} ({exc.strerror})") from None
    except yaml.YAMLError:
        raise InvalidInput(f"DRCTL_DRILL_WORLD: {path} is not valid YAML") from None
    if not isinstance(data, dict) or not data.get("regions") or not data.get("catalog"):
        raise InvalidInput(f"DRCTL_DRILL_WORLD: {path} has no regions or no catalog")
    try:
        regions = tuple(
            Region(
                str(r["code"]),
                str(r.get("name", r["code"])),
                GeoPoint(float(r["centroid"]["lat"]), float(r["centroid"]["lon"])),
                float(r.get("demand_share", 0.0)),
            )
            for r in data["regions"]
        )
        catalog = tuple(
            Sku(str(s["sku"]), str(s.get("name", s["sku"])), Decimal(str(s["unit_price"])))
            for s in data["catalog"]
        )
    except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
        raise InvalidInput(f"DRCTL_DRILL_WORLD: {path}: a region or SKU is incomplete ({exc})") from None
    # the world schema has no channel list today; a file that grows one is honoured
    raw_channels = data.get("channels") or []
    channels = tuple(str(c["code"] if isinstance(c, dict) else c) for c in raw_channels)
    world = World(str(data.get("name", path.stem)), regions, (), (), catalog, {})
    return world, channels or None


def retry_wait_s(code: int, retry_after: str | None, tries: int) -> float | None:
    """How long to wait before trying the same order again; None when this answer is final."""
    if code not in RETRYABLE or tries >= MAX_TRIES:
        return None
    backoff = min(MAX_RETRY_WAIT_S, 0.25 * 2 ** (tries - 1))
    if not retry_after:
        return backoff
    try:
        asked = float(retry_after)
    except ValueError:
        try:  # the other form HTTP allows: a date
            asked = email.utils.parsedate_to_datetime(retry_after).timestamp() - time.time()
        except (TypeError, ValueError):
            asked = backoff
    # the server's wish, but a drill measures recovery in seconds: never sit out longer than the cap
    return min(MAX_RETRY_WAIT_S, max(0.0, asked))


PASSED_OVER = ("failed", "refused", "breaker_open")


def passed_over(answer: dict[str, Any]) -> list[str]:
    """The sites the order's route attempts could not use: the evidence that it was rerouted."""
    attempts = answer.get("attempts") or []
    return sorted({a["site"] for a in attempts if a.get("site") and a.get("outcome") in PASSED_OVER})


@dataclass(frozen=True, slots=True)
class Outcome:
    """One order's final answer, as a line of the outcomes file."""

    t: float
    latency_ms: float
    code: int
    external_id: str
    channel: str
    region: str
    order_id: str | None
    status: str | None
    site: str | None
    attempts: int
    # sites the control plane tried for it and could not use (failed, refused, breaker open)
    passed_over: list[str]


class OutcomeLog:
    """The outcomes file: one handle per process, each line written whole by a single write."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fh: IO[bytes] | None = None

    def write(self, outcome: Outcome) -> None:
        if self._fh is None:
            # opened on first use so that each process Locust forks (--processes) gets its own handle;
            # unbuffered append: every line reaches the file at once, and whole, even from many processes
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self._path.open("ab", buffering=0)
        self._fh.write(json.dumps(asdict(outcome), separators=(",", ":")).encode() + b"\n")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class NotAccepted(Exception):
    """The control plane's final answer was not the one the user asked for."""


try:
    LOAD = DrillLoad.from_env(os.environ)
    WORLD, WORLD_CHANNELS = read_demand(LOAD.world_path)
except InvalidInput as exc:
    raise SystemExit(f"chaos/locustfile.py: {exc}") from None

# all shoppers of a process draw from one factory: greenlets never switch inside order(), and one
# sequence keeps the demand reproducible for a seed
FACTORY = OrderFactory(WORLD, seed=LOAD.seed, **({"channels": WORLD_CHANNELS} if WORLD_CHANNELS else {}))
# the seed alone repeats across runs and the pid alone across containers: with the start time, two
# runs never reuse a (channel, external_id); the pid is read per order, after any --processes fork
RUN_TAG = f"{LOAD.seed}-{int(time.time() * 1000):x}"
ORDER_NUMBERS = itertools.count(1)
OUTCOMES = OutcomeLog(LOAD.outcomes_path) if LOAD.outcomes_path else None


def next_external_id() -> str:
    return f"drill-{RUN_TAG}-{os.getpid()}-{next(ORDER_NUMBERS)}"


@events.init.add_listener
def _check_before_any_user(environment: Environment, **_: Any) -> None:
    if LOAD.ingest_token is None:
        raise SystemExit(
            "chaos/locustfile.py: DRCTL_DRILL_INGEST_TOKEN is not set; create one with "
            "`drctl token create --role ingest` (or use the token `drctl demo` prints)"
        )
    if not environment.stop_timeout:
        environment.stop_timeout = GRACEFUL_STOP_S


@events.test_stop.add_listener
def _let_the_csv_catch_up(environment: Environment, **_: Any) -> None:
    # Locust 2.47 rewrites --csv stats once a second and never once more at exit: without this turn,
    # orders that finished while users stopped gracefully are in the summary but not in the CSV
    if environment.parsed_options is not None and environment.parsed_options.csv_prefix:
        gevent.sleep(CSV_STATS_INTERVAL_SEC + 0.2)


@events.quitting.add_listener
def _close_outcomes(**_: Any) -> None:
    if OUTCOMES is not None:
        OUTCOMES.close()


class DrctlUser(User):
    """A client of the control plane's HTTP API that reports each call to Locust itself."""

    abstract = True
    token: str | None = None

    def on_start(self) -> None:
        self.http = httpx.Client(
            base_url=self.host or "",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=REQUEST_TIMEOUT_S,
            trust_env=False,
        )

    def on_stop(self) -> None:
        self.http.close()

    def report(self, method: str, path: str, started: float, size: int, error: Exception | None) -> None:
        self.environment.events.request.fire(
            request_type=method,
            name=path,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=size,
            exception=error,
            context={},
        )


class Shopper(DrctlUser):
    """Places orders one after another, retrying an order the control plane could not take yet."""

    wait_time = between(0.2, 0.5)
    token = LOAD.ingest_token

    @task
    def place_order(self) -> None:
        body = FACTORY.order(external_id=next_external_id())
        t, started = time.time(), time.perf_counter()
        code, reply, error, tries = 0, None, None, 0
        while True:
            tries += 1
            retry_after = None
            try:
                resp = self.http.post("/v1/orders", json=body)
            except httpx.TransportError as exc:
                code, reply, error = 0, None, exc
            else:
                code, reply, retry_after = resp.status_code, resp, resp.headers.get("Retry-After")
                error = None if code in ACCEPTED else NotAccepted(f"HTTP {code} {resp.reason_phrase}")
            wait = retry_wait_s(code, retry_after, tries)
            if wait is None:
                break
            gevent.sleep(wait)
        answer: dict[str, Any] = {}
        if reply is not None and code in ACCEPTED:
            try:
                answer = reply.json()
            except ValueError:  # a proxy's page, not the control plane: the order's fate is unknown
                error = NotAccepted(f"HTTP {code} without an order in the body")
        self.report("POST", "/v1/orders", started, len(reply.content) if reply is not None else 0, error)
        if OUTCOMES is not None:
            OUTCOMES.write(
                Outcome(
                    t=t,
                    latency_ms=round((time.perf_counter() - started) * 1000, 3),
                    code=code,
                    external_id=body["external_id"],
                    channel=body["channel"],
                    region=body["ship_to"]["region"],
                    order_id=answer.get("id"),
                    status=answer.get("status"),
                    site=answer.get("site"),
                    attempts=tries,
                    passed_over=passed_over(answer),
                )
            )


class Operator(DrctlUser):
    """Watches the status an operator sees during an incident: sites and open incidents."""

    # a fixed head count rather than a weight: a 9:1 weight would take every tenth user away from the
    # shoppers DRCTL_DRILL_USERS counts, and put ten times as many watchers on a sale peak
    abstract = LOAD.operators == 0
    fixed_count = LOAD.operators
    wait_time = constant_pacing(OPERATOR_POLL_S)
    token = LOAD.viewer_token

    @task
    def watch(self) -> None:
        for path in ("/v1/sites", "/v1/incidents"):
            started = time.perf_counter()
            try:
                resp = self.http.get(path)
            except httpx.TransportError as exc:
                self.report("GET", path, started, 0, exc)
                continue
            refused = None if resp.status_code == 200 else NotAccepted(f"HTTP {resp.status_code}")
            self.report("GET", path, started, len(resp.content), refused)


class DrillShape(LoadTestShape):
    """The one load shape of the run, chosen by DRCTL_DRILL_SHAPE.

    Locust 2.47 takes the first LoadTestShape subclass it finds in the file and says nothing about
    the others (--class-picker only offers them in the web UI), so one class reads the choice instead
    of three classes competing for it.
    """

    def tick(self) -> tuple[int, float] | None:
        shoppers = shoppers_at(LOAD, self.get_run_time())
        if shoppers is None:
            return None
        # fixed-count operators come out of the total first: add them so shoppers get the full count
        return shoppers + LOAD.operators, LOAD.spawn_rate
