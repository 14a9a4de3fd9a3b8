"""Poll DCs that cannot call out: `GET {wms_url}/orders/{id}` for orders accepted a while ago.

A DC that shipped or gave up an order without telling us (no webhooks, or an event lost) is found
here: for up to `dc_poll_batch` orders accepted longer than `dc_poll_after_s` ago, each asked at
most once per run and once per `dc_poll_interval_s`, the DC's answer is applied as the event it
implies (`shipped`, or `cancelled` -> `cancelled_by_dc`) through the same service as the webhook.
A run is bounded: a DC that does not answer (or whose breaker is open) is skipped for the rest of
the run, and the run stops after one interval of wall time; what it skipped is due next run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import httpx
from sqlalchemy.orm import Session, sessionmaker

from control_plane.domain import BreakerState, InvalidInput, NotFound
from control_plane.orders import repository as repo
from control_plane.orders.lifecycle import DcEvent, DcEventKind, OrderLifecycle, build_lifecycle
from control_plane.world.state import SiteStateCache
from failover.breakers import BreakerBoard
from failover.dispatch import DcRejected, DcUnavailable, FailureKind

if TYPE_CHECKING:
    from control_plane.context import AppContext  # the type only: the context is built above every area

log = logging.getLogger("drctl.dc_poll")

# the DC contract's order states (DESIGN §4) that are events for us
_EVENT_OF_STATUS = {"shipped": DcEventKind.SHIPPED, "cancelled": DcEventKind.CANCELLED_BY_DC}


@dataclass(frozen=True, slots=True)
class PollConfig:
    after_s: float
    interval_s: float
    batch: int


@dataclass(frozen=True, slots=True)
class DcOrderState:
    """The DC's view of one order: its status, and when it changed if the DC says so."""

    status: str
    changed_at: datetime | None = None


@dataclass
class PollReport:
    polled: int = 0
    shipped: int = 0
    cancelled_by_dc: int = 0
    unknown_at_dc: list[str] = field(default_factory=list)  # accepted here, unknown there
    skipped: int = 0  # the DC did not answer, its breaker is open, or the run ran out of time


def fetch_dc_order(http: httpx.Client, wms_url: str, order_id: str) -> DcOrderState | None:
    """`GET {wms_url}/orders/{order_id}`; None when the DC does not know the order (404).

    Raises DcUnavailable (no answer, 5xx) or DcRejected (another 4xx), as the DC client does.
    """
    try:
        resp = http.get(f"{wms_url.rstrip('/')}/orders/{order_id}")
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise DcUnavailable(FailureKind.REFUSED, type(exc).__name__, may_have_reached_dc=False) from None
    except httpx.TimeoutException as exc:
        raise DcUnavailable(FailureKind.TIMEOUT, type(exc).__name__) from None
    except httpx.TransportError as exc:
        raise DcUnavailable(FailureKind.BROKEN, type(exc).__name__) from None
    if resp.status_code == 404:
        return None
    if resp.status_code >= 500:
        raise DcUnavailable(FailureKind.SERVER_ERROR, f"HTTP {resp.status_code}")
    if resp.status_code != 200:
        raise DcRejected(resp.status_code, resp.text[:200])
    try:
        body = resp.json()
        status = str(body["status"])
    except (ValueError, KeyError, TypeError):
        raise DcRejected(resp.status_code, "not a DC order view") from None
    return DcOrderState(status, _time_or_none(body.get(f"{status}_at")))


def _time_or_none(value: object) -> datetime | None:
    """A DC's optional `shipped_at` / `cancelled_at`; the simulator sends none (we then use our time)."""
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return None
    return at if at.tzinfo is not None else None


class DcPoller:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        sites: SiteStateCache,
        board: BreakerBoard,
        lifecycle: OrderLifecycle,
        config: PollConfig,
        http: httpx.Client,
        clock: Callable[[], datetime],
    ) -> None:
        self._sessions = sessions
        self._sites = sites
        self._board = board
        self._lifecycle = lifecycle
        self._cfg = config
        self._http = http
        self._clock = clock

    def close(self) -> None:
        self._http.close()

    def poll_due(self, leading: Callable[[], bool] = lambda: True) -> PollReport:
        """Ask the DCs about the orders due a poll and apply what they say; `leading` is checked
        before each order, so a deposed leader stops at once."""
        now = self._clock()
        with self._sessions.begin() as s:
            due = repo.claim_poll_due(
                s,
                now,
                accepted_before=now - timedelta(seconds=self._cfg.after_s),
                next_poll_at=now + timedelta(seconds=self._cfg.interval_s),
                limit=self._cfg.batch,
            )
        report = PollReport()
        silent: set[str] = set()  # DCs that did not answer in this run
        ends = time.monotonic() + max(self._cfg.interval_s, 1.0)
        for order_id, site in due:
            if not leading():
                break
            if site in silent or time.monotonic() > ends:
                report.skipped += 1
                continue
            if self._board.get(site).routable_state is BreakerState.OPEN:
                silent.add(site)
                report.skipped += 1
                continue
            self._poll_one(order_id, site, silent, report)
        return report

    def _poll_one(self, order_id: str, site: str, silent: set[str], report: PollReport) -> None:
        try:
            state = fetch_dc_order(self._http, self._sites.site(site).wms_url, order_id)
        except (DcUnavailable, DcRejected, KeyError) as exc:
            log.warning("poll of a DC got no answer", extra={"site": site, "error": str(exc)})
            silent.add(site)
            report.skipped += 1
            return
        report.polled += 1
        if state is None:
            log.error("an accepted order is unknown at its DC", extra={"order_id": order_id, "site": site})
            report.unknown_at_dc.append(order_id)
            return
        kind = _EVENT_OF_STATUS.get(state.status)
        if kind is None:
            return  # still accepted there
        at = state.changed_at or self._clock()
        try:
            result = self._lifecycle.apply_event(DcEvent(site, order_id, kind, at, via="poll"))
        except InvalidInput:  # the DC's clock is off: its word stands, at our time
            result = self._lifecycle.apply_event(DcEvent(site, order_id, kind, self._clock(), via="poll"))
        except NotFound:
            return
        if kind is DcEventKind.SHIPPED:
            report.shipped += 1
        else:
            report.cancelled_by_dc += 1
        log.info(
            "DC poll found an event",
            extra={"order_id": order_id, "site": site, "event": kind.value, "outcome": result.outcome.value},
        )


def build_poller(ctx: AppContext) -> DcPoller:
    s = ctx.settings
    http = httpx.Client(
        timeout=httpx.Timeout(s.dc_read_timeout_s, connect=s.dc_connect_timeout_s),
        trust_env=False,
        follow_redirects=False,
    )
    return DcPoller(
        ctx.sessions,
        ctx.sites,
        ctx.board,
        build_lifecycle(ctx),
        PollConfig(after_s=s.dc_poll_after_s, interval_s=s.dc_poll_interval_s, batch=s.dc_poll_batch),
        http,
        ctx.clock,
    )
