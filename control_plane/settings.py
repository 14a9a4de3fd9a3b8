"""Runtime settings, read from `DRCTL_*` environment variables (one class, one place)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SQLITE = Path(".drctl") / "drctl.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DRCTL_", extra="ignore")

    # storage: PostgreSQL (postgresql+psycopg://...) in production, a SQLite file by default
    database_url: str = Field(default=f"sqlite:///{DEFAULT_SQLITE}")
    db_pool_size: int = 20
    redis_url: str | None = None  # shared breaker state between replicas when set
    # each Redis call's connect and read timeout: a Redis that stops answering must not hold a request
    redis_timeout_s: float = Field(default=0.25, gt=0, le=10)

    # circuit breakers around every DC call
    breaker_fail_max: int = 5
    breaker_reset_timeout_s: float = 10.0
    breaker_success_threshold: int = 2
    breakers: bool = True  # false only for a drill's negative control: nothing trips, ever

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
    # a failover moves in-flight orders this many at a time (cancel at the old DC, move, dispatch)
    move_parallelism: int = 16
    # a running failover/failback renews its lease this often; past it, another process may take over
    change_lease_s: float = 30.0

    # DC events (DESIGN §4): HMAC-signed webhooks; each site's secret is derived from this one
    dc_event_secret: SecretStr | None = None
    # DCs that cannot call out: poll GET {wms_url}/orders/{id} for orders accepted longer than this
    dc_poll_after_s: float = 3600.0
    dc_poll_interval_s: float = 60.0  # 0 turns polling off
    dc_poll_batch: int = 100

    # routing and ETA model (DESIGN §3)
    eta_base_hours: float = 6.0
    eta_km_per_hour: float = 60.0
    default_promise_hours: float = 48.0
    # the times an order may claim: a client clock off by years, or a channel replaying last month,
    # is refused (422) rather than routed against a promise nobody can keep
    order_max_age_hours: float = Field(default=720.0, gt=0)
    order_max_clock_skew_s: float = Field(default=300.0, ge=0)
    promise_max_hours: float = Field(default=2160.0, gt=0)
    state_refresh_s: float = 1.0  # how stale the cached site state may be

    # failover safety rules (each refusal names its rule; `force` with a reason overrides, audited)
    safety_min_accepting_sites: int = 2
    safety_capacity_margin: float = 1.2
    safety_health_required_for_failback: bool = True
    # targets short of the failed site's critical SKUs (the latest BIA's class A) for this many hours
    # of its demand (default: the BIA's coverage_hours): flag the failover, or refuse it
    safety_target_stock: Literal["warn", "refuse"] = "warn"
    safety_target_stock_hours: float | None = Field(default=None, gt=0, le=720)
    # automatic failover when a site's breaker stays open: off | propose | on
    auto_failover: Literal["off", "propose", "on"] = "off"
    auto_failover_after_s: float = 60.0
    # a failover given an expiry: once it has passed, propose the failback (incident event and the
    # FailoverExpired alert) or, with `auto`, do it (ramped) as soon as its safety rules pass
    failover_expiry_policy: Literal["propose", "auto"] = "propose"
    failover_expiry_ramp_s: float = Field(default=600.0, ge=0, le=86_400)

    # chaos drills: none starts inside a peak window of the commerce calendar unless forced; a
    # running drill that has not been heard from for this long is shown as lost (killed?)
    commerce_calendar: Path | None = None
    drill_heartbeat_timeout_s: float = 30.0

    # the BIA as a batch job: the leader re-runs it over this many days of the store's orders every
    # `bia_schedule_s` (0: never) and after each world load
    bia_schedule_s: float = Field(default=7 * 86400.0, ge=0)
    bia_schedule_days: int = Field(default=90, ge=1, le=3660)

    # runbooks: the library directory (default: the shipped one), how often the leader advances
    # executions, whether an approval must come from another operator than the one who started it,
    # and whether alerts start runbooks at all (besides the POST /v1/runbooks/pause kill switch)
    runbook_dir: Path | None = None
    runbook_tick_s: float = Field(default=1.0, gt=0, le=60)
    runbook_approver_must_differ: bool = True
    runbook_auto_start: bool = True
    # how long an execution stays with a process that stopped renewing it (it renews every third):
    # after a crash, the next leader resumes the execution once this has run out
    runbook_lease_s: float = Field(default=30.0, gt=0, le=3600)

    # the status dashboard: how long a login lasts; Secure cookies also over plain HTTP (behind a
    # TLS-terminating proxy that does not pass the scheme on); over https they are Secure anyway
    dashboard_session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    dashboard_secure_cookie: bool = False

    # scheduler: periodic monitoring jobs run on one elected replica (PostgreSQL advisory lock)
    scheduler: bool = True
    leader_poll_s: float = 1.0  # how often a follower tries to take the lead (bounds hand-over time)

    # probes of every DC and integration, with hysteresis (Route 53 style)
    probe_interval_s: float = 10.0
    probe_timeout_s: float = 2.0
    probe_failure_threshold: int = 3
    probe_success_threshold: int = 2

    # built-in alert engine (turn off when Prometheus + Alertmanager do the alerting)
    alert_engine: bool = True
    alert_eval_interval_s: float = 15.0
    alert_repeat_interval_s: float = 4 * 3600.0
    alert_keep_resolved_s: float = 3600.0
    # per-rule `for` override in seconds, JSON: DRCTL_ALERT_FOR_S='{"SiteDown": 30}'
    alert_for_s: dict[str, float] = Field(default_factory=dict)
    alert_delivery_interval_s: float = 1.0
    alert_delivery_timeout_s: float = 5.0
    alert_delivery_max_attempts: int = 6
    # channels: each is on when its settings are given; several may be on at once
    alert_webhook_url: SecretStr | None = None  # Slack-compatible; Slack's URL is itself a secret
    alert_sns_topic_arn: str | None = None
    alert_ses_from: str | None = None
    alert_ses_to: str = ""  # comma-separated addresses
    alert_smtp_host: str | None = None
    alert_smtp_port: int = 25
    alert_smtp_from: str | None = None
    alert_smtp_to: str = ""  # comma-separated addresses
    alert_smtp_user: str | None = None
    alert_smtp_password: SecretStr | None = None
    alert_smtp_starttls: bool = False
    aws_region: str = "ap-northeast-2"
    aws_endpoint_url: str | None = None  # e.g. a local moto server; unset: AWS itself

    # customer delay notices
    notices: bool = True
    notice_promise_slack_s: float = 12 * 3600.0  # a held order is late once its promise is this close
    notice_coalesce_s: float = 30.0  # a letter waits this long for more late orders of its customer
    notice_timezone: str = "Asia/Seoul"  # dates in notices are shown in it (an IANA name)
    notice_support_url: str = "https://example.com/support"
    notice_follow_up: bool = False  # "on its way again" when a held order that got a notice ships
    # a typo'd channel is refused at start, not quietly replaced by the log
    notice_email_channel: Literal["log", "smtp", "ses"] = "log"
    notice_sms_channel: Literal["log", "sns"] = "log"
    notice_webhook_url: SecretStr | None = None  # marketplace relay (AlimTalk-style); signed
    notice_webhook_secret: SecretStr | None = None
    notice_log_path: str = ".drctl/notices.jsonl"
    notice_smtp_host: str = "127.0.0.1"
    notice_smtp_port: int = 25
    notice_smtp_user: str | None = None
    notice_smtp_password: SecretStr | None = None
    notice_smtp_starttls: bool = False
    notice_from: str = "no-reply@example.com"  # the sender of notice e-mails (SES: verified)
    notice_ses_endpoint_url: str | None = None  # default: aws_endpoint_url
    notice_sns_endpoint_url: str | None = None  # default: aws_endpoint_url
    notice_rate_per_s: dict[str, float] = Field(default_factory=dict)  # per channel; default 50/s
    notice_timeout_s: float = 5.0
    notice_max_attempts: int = 8
    notice_delivery_interval_s: float = 1.0
    notice_batch: int = 20

    # serving
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 1024 * 1024
    # requests with unknown tokens, per client address: a burst, then this many a second
    auth_failure_burst: int = Field(default=30, ge=1)
    auth_failures_per_s: float = Field(default=1.0, gt=0)
    log_level: str = "INFO"
    log_json: bool = True
    background_jobs: bool = True

    @field_validator("notice_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        # checked at start: an unknown zone would otherwise fail every notice at send time
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as Asia/Seoul)") from None
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
