"""Runtime settings, read from `DRCTL_*` environment variables (one class, one place)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SQLITE = Path(".drctl") / "drctl.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DRCTL_", extra="ignore")

    # storage: PostgreSQL (postgresql+psycopg://...) in production, a SQLite file by default
    database_url: str = Field(default=f"sqlite:///{DEFAULT_SQLITE}")
    db_pool_size: int = 20
    redis_url: str | None = None  # shared breaker state between replicas when set

    # circuit breakers around every DC call
    breaker_fail_max: int = 5
    breaker_reset_timeout_s: float = 10.0
    breaker_success_threshold: int = 2

    # DC calls (httpx)
    dc_connect_timeout_s: float = 0.5
    dc_read_timeout_s: float = 1.0
    dc_cancel_timeout_s: float = 5.0
    dc_pool_per_site: int = 64

    # held-order retry and stuck-dispatch recovery
    retry_interval_s: float = 1.0
    retry_backoff_base_s: float = 1.0
    retry_backoff_max_s: float = 30.0
    retry_batch: int = 200
    dispatch_lease_s: float = 30.0  # a routed order not acknowledged by then is re-dispatched
    # a DC that answered 404 to a cancel may still be processing a slow POST: confirm only after this
    cancel_settle_s: float = 5.0

    # routing and ETA model (DESIGN §3)
    eta_base_hours: float = 6.0
    eta_km_per_hour: float = 60.0
    default_promise_hours: float = 48.0
    state_refresh_s: float = 1.0  # how stale the cached site state may be

    # failover safety rules (each refusal names its rule; `force` with a reason overrides, audited)
    safety_min_accepting_sites: int = 2
    safety_capacity_margin: float = 1.2
    safety_health_required_for_failback: bool = True
    # automatic failover when a site's breaker stays open: off | propose | on
    auto_failover: Literal["off", "propose", "on"] = "off"
    auto_failover_after_s: float = 60.0

    # serving
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 1024 * 1024
    log_level: str = "INFO"
    log_json: bool = True
    background_jobs: bool = True

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
