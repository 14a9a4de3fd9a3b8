"""What routing needs to know about every site, cached so one order costs no extra queries.

Static facts, the routing control (`accepting`), probed health and this hour's routed counts are
re-read from the database at most every `refresh_s`; breaker states are read live from the board.
Between refreshes the counts this process routed are added locally, so capacity is enforced to
within one refresh interval of other replicas' traffic.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from control_plane.domain import Health, Region, Site, SiteState, Sku
from control_plane.world import repository as world_repo
from failover.breakers import BreakerBoard
from failover.impairment import impaired_sites
from failover.ramp import ramp_weight

log = logging.getLogger("drctl.site_state")


@dataclass(frozen=True, slots=True)
class _SiteRuntime:
    site: Site
    accepting: bool
    health: Health
    ramp_started_at: datetime | None = None
    ramp_duration_s: float | None = None
    impaired_by: tuple[str, ...] = ()  # why an integration outage leaves it unable to ship

    def ramp_weight(self, now: datetime) -> float:
        if self.ramp_started_at is None or not self.ramp_duration_s:
            return 1.0
        return ramp_weight(self.ramp_started_at, now, self.ramp_duration_s)


def hour_start(now: datetime) -> datetime:
    return now.replace(minute=0, second=0, microsecond=0)


class SiteStateCache:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        board: BreakerBoard,
        refresh_s: float,
        clock: Callable[[], datetime],
    ) -> None:
        self._sessions = sessions
        self._board = board
        self._refresh_s = refresh_s
        self._clock = clock
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()
        self._loaded_at: datetime | None = None
        self._hour: datetime | None = None
        self._sites: dict[str, _SiteRuntime] = {}
        self._regions: dict[str, Region] = {}
        self._catalog: dict[str, Sku] = {}
        self._channels: frozenset[str] = frozenset()
        self._paused: frozenset[str] = frozenset()
        self._db_counts: dict[str, int] = {}
        self._local_counts: Counter[str] = Counter()

    def refresh(self) -> None:
        now = self._clock()
        with self._sessions() as s:
            rows = world_repo.list_site_rows(s)
            static = [world_repo.site_from_row(r) for r in rows]
            impaired = impaired_sites(
                static, world_repo.list_integrations(s), world_repo.integration_health(s)
            )
            sites = {
                r.code: _SiteRuntime(
                    site,
                    r.accepting,
                    Health(r.health),
                    r.ramp_started_at,
                    r.ramp_duration_s,
                    tuple(impaired.get(r.code, ())),
                )
                for r, site in zip(rows, static, strict=True)
            }
            regions = {r.code: r for r in world_repo.list_regions(s)}
            catalog = world_repo.catalog(s)
            channels = frozenset(c.code for c in world_repo.list_channels(s))
            paused = world_repo.paused_channels(s)
            counts = world_repo.routed_counts_since(s, hour_start(now))
        with self._lock:
            self._sites, self._regions, self._catalog = sites, regions, catalog
            self._channels, self._paused = channels, paused
            self._db_counts = counts
            self._local_counts = Counter()
            self._loaded_at, self._hour = now, hour_start(now)

    def _ensure_fresh(self) -> None:
        now = self._clock()
        loaded = self._loaded_at
        stale = loaded is None or (now - loaded).total_seconds() >= self._refresh_s
        if not (stale or self._hour != hour_start(now)):
            return
        if loaded is None:  # nothing to route with yet: the first caller loads, the others wait
            with self._refreshing:
                if self._loaded_at is None:
                    self.refresh()
            return
        # Stale: one refresh at a time, in its own thread, and every caller goes on with the state
        # it has. Refreshing in the caller would add its queries to one order's latency each second.
        if self._refreshing.acquire(blocking=False):
            threading.Thread(target=self._refresh_then_release, name="drctl-site-state", daemon=True).start()

    def _refresh_then_release(self) -> None:
        try:
            self.refresh()
        except Exception:
            log.exception("site state refresh failed; routing goes on with the previous state")
        finally:
            self._refreshing.release()

    def snapshot(self) -> list[SiteState]:
        self._ensure_fresh()
        now = self._clock()
        with self._lock:
            runtimes = list(self._sites.values())
            counts = {code: self._db_counts.get(code, 0) + self._local_counts[code] for code in self._sites}
        return [
            SiteState(
                site=rt.site,
                accepting=rt.accepting,
                health=rt.health,
                breaker=self._board.get(rt.site.code).routable_state,
                routed_this_hour=counts[rt.site.code],
                impaired=bool(rt.impaired_by),
                ramp_weight=rt.ramp_weight(now),
            )
            for rt in runtimes
        ]

    def note_routed(self, site: str) -> None:
        with self._lock:
            self._local_counts[site] += 1

    def impairments(self) -> dict[str, tuple[str, ...]]:
        """Impaired site code -> the reasons (sites that can ship are absent)."""
        self._ensure_fresh()
        with self._lock:
            return {code: rt.impaired_by for code, rt in self._sites.items() if rt.impaired_by}

    def site(self, code: str) -> Site:
        self._ensure_fresh()
        return self._sites[code].site

    def regions(self) -> dict[str, Region]:
        self._ensure_fresh()
        return self._regions

    def catalog(self) -> dict[str, Sku]:
        self._ensure_fresh()
        return self._catalog

    def channels(self) -> frozenset[str]:
        self._ensure_fresh()
        return self._channels

    def paused_channels(self) -> frozenset[str]:
        """Channels whose intake an operator or a runbook paused (their orders get 503)."""
        self._ensure_fresh()
        return self._paused
