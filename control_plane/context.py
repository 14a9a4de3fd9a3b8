"""Build every long-lived part of a control plane from its settings (no module-level state)."""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from control_plane.bia_runs.service import BiaRunner
from control_plane.domain import BreakerState
from control_plane.metrics import Metrics
from control_plane.notices.channels import (
    LogNoticeChannel,
    NoticeChannel,
    SesNoticeChannel,
    SmtpNoticeChannel,
    SnsSmsChannel,
    WebhookNoticeChannel,
)
from control_plane.notices.jobs import DeliveryConfig, NoticeDelivery
from control_plane.notices.service import NoticePolicy, NoticeWriter
from control_plane.orders.cancels import CancelConfig, CancelOutbox
from control_plane.orders.service import OrderPipeline, PipelineConfig
from control_plane.orders.slips import NoSlips, SlipSink
from control_plane.orders.validate import TimeLimits
from control_plane.settings import Settings
from control_plane.store.breaker_store import RedisHolds, StoreHealth, redis_breaker_store
from control_plane.store.db import make_engine, make_session_factory
from control_plane.store.wms_client import HttpDcClient
from control_plane.world.state import SiteStateCache
from failover.breakers import BreakerBoard, BreakerPolicy, StorageFactory
from failover.eta import EtaModel

log = logging.getLogger("drctl.breakers")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class BreakerChange:
    breaker: str
    old: BreakerState
    new: BreakerState
    at: datetime


@dataclass
class AppContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    metrics: Metrics
    board: BreakerBoard
    client: HttpDcClient
    sites: SiteStateCache
    pipeline: OrderPipeline
    cancels: CancelOutbox
    eta: EtaModel
    bia: BiaRunner
    clock: Callable[[], datetime]
    notice_policy: NoticePolicy
    notices: NoticeDelivery | None  # None: notices are off (DRCTL_NOTICES=false)
    slips: SlipSink  # writes the notices order changes make due
    order_times: TimeLimits  # the placed_at / promised_by an order may claim
    store_health: StoreHealth | None  # the shared breaker store's, when there is one (Redis)
    # breaker transitions are noted under the breaker's lock and stored later by the background loop
    breaker_changes: queue.SimpleQueue[BreakerChange] = field(default_factory=queue.SimpleQueue)

    def close(self) -> None:
        if self.store_health is not None:
            self.store_health.close()
        if self.notices is not None:
            self.notices.close()
        self.bia.close()
        self.client.close()
        self.engine.dispose()


def build_context(
    settings: Settings,
    registry: CollectorRegistry | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> AppContext:
    engine = make_engine(settings.database_url, settings.db_pool_size)
    sessions = make_session_factory(engine)
    metrics = Metrics(registry or CollectorRegistry())
    changes: queue.SimpleQueue[BreakerChange] = queue.SimpleQueue()

    def on_breaker_change(name: str, old: BreakerState, new: BreakerState) -> None:
        metrics.breaker_state.labels(name).set(new.metric_value)
        log.warning(
            "breaker %s: %s -> %s", name, old.value, new.value, extra={"breaker": name, "to": new.value}
        )
        changes.put(BreakerChange(name, old, new, clock()))

    policy = BreakerPolicy(
        fail_max=settings.breaker_fail_max,
        reset_timeout_s=settings.breaker_reset_timeout_s,
        success_threshold=settings.breaker_success_threshold,
        enabled=settings.breakers,
    )
    if not settings.breakers:
        log.warning("DRCTL_BREAKERS=false: circuit breakers are OFF, a failing DC keeps getting orders")
    storage: StorageFactory | None = None
    holds: RedisHolds | None = None
    store_health: StoreHealth | None = None
    if settings.redis_url:

        def on_store_change(up: bool) -> None:
            metrics.breaker_store_up.set(1 if up else 0)

        storage, holds, store_health = redis_breaker_store(
            settings.redis_url, settings.redis_timeout_s, on_store_change
        )
        metrics.breaker_store_up.set(1)
    board = BreakerBoard(policy, storage, on_breaker_change, holds)
    client = HttpDcClient(
        settings.dc_connect_timeout_s,
        settings.dc_read_timeout_s,
        settings.dc_cancel_timeout_s,
        max_connections=settings.dc_pool_per_site * 8,
    )
    sites = SiteStateCache(sessions, board, settings.state_refresh_s, clock)
    eta = EtaModel(settings.eta_base_hours, settings.eta_km_per_hour)
    notice_policy = NoticePolicy(
        slack=timedelta(seconds=settings.notice_promise_slack_s),
        coalesce_s=settings.notice_coalesce_s,
        timezone=settings.notice_timezone,
        support_url=settings.notice_support_url,
        follow_up=settings.notice_follow_up,
    )
    writer = NoticeWriter(notice_policy) if settings.notices else None
    pipeline = OrderPipeline(
        sessions,
        sites,
        board,
        client,
        metrics,
        eta,
        PipelineConfig(
            dispatch_lease_s=settings.dispatch_lease_s,
            backoff_base_s=settings.retry_backoff_base_s,
            backoff_max_s=settings.retry_backoff_max_s,
            retry_batch=settings.retry_batch,
        ),
        clock,
        writer,
    )
    cancels = CancelOutbox(
        sessions,
        sites,
        client,
        board,
        CancelConfig(
            settle_s=settings.cancel_settle_s,
            timeout_s=settings.dc_cancel_timeout_s,
            backoff_base_s=settings.retry_backoff_base_s,
            backoff_max_s=settings.retry_backoff_max_s,
            batch=settings.retry_batch,
        ),
        clock,
    )
    bia = BiaRunner(sessions, clock, sites.refresh)
    notices = (
        NoticeDelivery(
            sessions,
            notice_channels(settings),
            board,
            metrics,
            notice_policy,
            DeliveryConfig(
                timeout_s=settings.notice_timeout_s,
                max_attempts=settings.notice_max_attempts,
                backoff_base_s=settings.retry_backoff_base_s,
                backoff_max_s=settings.retry_backoff_max_s,
                batch=settings.notice_batch,
                rate_per_s=settings.notice_rate_per_s,
            ),
            clock,
        )
        if settings.notices
        else None
    )
    return AppContext(
        settings,
        engine,
        sessions,
        metrics,
        board,
        client,
        sites,
        pipeline,
        cancels,
        eta,
        bia,
        clock,
        notice_policy,
        notices,
        writer or NoSlips(),
        TimeLimits(
            max_age=timedelta(hours=settings.order_max_age_hours),
            clock_skew=timedelta(seconds=settings.order_max_clock_skew_s),
            max_promise=timedelta(hours=settings.promise_max_hours),
        ),
        store_health,
        changes,
    )


def notice_channels(settings: Settings) -> dict[str, NoticeChannel]:
    """The channel per medium (email, sms, webhook) the settings name; `log` is the embedded default."""
    timeout = settings.notice_timeout_s
    log_path = Path(settings.notice_log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_channel = LogNoticeChannel(log_path)
    email: NoticeChannel = log_channel
    if settings.notice_email_channel == "smtp":
        password = settings.notice_smtp_password
        email = SmtpNoticeChannel(
            settings.notice_smtp_host,
            settings.notice_smtp_port,
            settings.notice_from,
            settings.notice_smtp_user,
            password.get_secret_value() if password else None,
            settings.notice_smtp_starttls,
            timeout,
        )
    elif settings.notice_email_channel == "ses":
        email = SesNoticeChannel(
            settings.notice_from,
            settings.aws_region,
            settings.notice_ses_endpoint_url or settings.aws_endpoint_url,
            timeout,
        )
    sms: NoticeChannel = log_channel
    if settings.notice_sms_channel == "sns":
        sms = SnsSmsChannel(
            settings.aws_region, settings.notice_sns_endpoint_url or settings.aws_endpoint_url, timeout
        )
    channels = {"email": email, "sms": sms}
    if settings.notice_webhook_url is not None and settings.notice_webhook_secret is not None:
        channels["webhook"] = WebhookNoticeChannel(
            settings.notice_webhook_url.get_secret_value(),
            settings.notice_webhook_secret.get_secret_value(),
            timeout,
        )
    return channels
