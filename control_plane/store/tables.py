"""Tables of record (DESIGN §7). Migrations in store/migrations mirror these definitions."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from control_plane.store.types import UtcDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Money = Numeric(14, 2)
BigId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER only


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class RegionRow(Base):
    __tablename__ = "regions"
    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    demand_share: Mapped[float] = mapped_column(Float)
    max_transit_hours: Mapped[float] = mapped_column(Float)


class SiteRow(Base):
    __tablename__ = "sites"
    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    region: Mapped[str] = mapped_column(ForeignKey("regions.code"))
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    capacity_per_hour: Mapped[int] = mapped_column(Integer)
    cost_per_order: Mapped[Decimal] = mapped_column(Money)
    handling_hours: Mapped[float] = mapped_column(Float)
    wms_url: Mapped[str] = mapped_column(String(500))
    backups: Mapped[list[str]] = mapped_column(JSON, default=list)
    depends_on: Mapped[list[str]] = mapped_column(JSON, default=list)
    tier: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rto_hours: Mapped[float | None] = mapped_column(Float, nullable=True)  # from the latest BIA
    rpo_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # a failback may ramp routing back from 10 % to 100 % of the site's orders over this window
    ramp_started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    ramp_duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    # a failover given an expiry (as a zonal shift is): past it, a failback is proposed (or done)
    failover_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    failback_proposed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # runtime: routing control (operators/automation) and probed health
    accepting: Mapped[bool] = mapped_column(Boolean, default=True)
    health: Mapped[str] = mapped_column(String(16), default="unknown")
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class IntegrationRow(Base):
    __tablename__ = "integrations"
    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    health_url: Mapped[str] = mapped_column(String(500))
    scope: Mapped[list[str]] = mapped_column(JSON, default=list)
    fallback: Mapped[str | None] = mapped_column(String(64), nullable=True)
    health: Mapped[str] = mapped_column(String(16), default="unknown")
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # marked down by an operator or a runbook (a brownout the probes do not see): routing treats it
    # as down, so its fallback takes over, until it is cleared
    forced_down: Mapped[bool] = mapped_column(Boolean, default=False)


class ChannelRow(Base):
    """A sales channel of the world: intake refuses orders from any other."""

    __tablename__ = "channels"
    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # paused by an operator or a runbook (shedding load at peak): its orders get 503 until resumed
    paused: Mapped[bool] = mapped_column(Boolean, default=False)


class SkuRow(Base):
    __tablename__ = "skus"
    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    unit_price: Mapped[Decimal] = mapped_column(Money)


class StockRow(Base):
    __tablename__ = "stock"
    site: Mapped[str] = mapped_column(ForeignKey("sites.code"), primary_key=True)
    sku: Mapped[str] = mapped_column(ForeignKey("skus.sku"), primary_key=True)
    on_hand: Mapped[int] = mapped_column(Integer)
    reserved: Mapped[int] = mapped_column(Integer, default=0)
    __table_args__ = (
        CheckConstraint("reserved >= 0 AND reserved <= on_hand", name="reserved_within_on_hand"),
        Index("ix_stock_sku", "sku"),
    )


class OrderRow(Base):
    __tablename__ = "orders"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    channel: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(128))
    customer_id: Mapped[str] = mapped_column(String(128))
    customer_name: Mapped[str] = mapped_column(String(200))
    customer_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    customer_phone: Mapped[str | None] = mapped_column(String(40), nullable=True)
    customer_locale: Mapped[str] = mapped_column(String(8))
    notify_via: Mapped[str] = mapped_column(String(16))
    ship_region: Mapped[str] = mapped_column(String(64))
    ship_postal_code: Mapped[str] = mapped_column(String(16))
    ship_lat: Mapped[float] = mapped_column(Float)
    ship_lon: Mapped[float] = mapped_column(Float)
    placed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    promised_by: Mapped[datetime] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(String(16))
    site: Mapped[str | None] = mapped_column(String(64), nullable=True)
    dc_ref: Mapped[str | None] = mapped_column(String(64), nullable=True)
    eta: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    total: Mapped[Decimal] = mapped_column(Money)
    attempts_count: Mapped[int] = mapped_column(Integer, default=0)
    # when the retry loop may next pick the order up (held, or routed but unacknowledged)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    routed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # sha256 of the request as first posted: a repeat of the key with another body is refused
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    shipped_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)  # the DC's own time
    cancelled_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    __table_args__ = (
        UniqueConstraint("channel", "external_id", name="uq_orders_channel_external_id"),
        Index("ix_orders_status_next_attempt", "status", "next_attempt_at"),
        Index("ix_orders_site_routed_at", "site", "routed_at"),
        # intake per channel over a window (OrderIntakeDropped)
        Index("ix_orders_created_at", "created_at"),
    )


class OrderLineRow(Base):
    __tablename__ = "order_lines"
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True)
    line_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    sku: Mapped[str] = mapped_column(String(64))
    qty: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal] = mapped_column(Money)


class RouteAttemptRow(Base):
    __tablename__ = "route_attempts"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)  # the dashboard's reroutes per minute
    site: Mapped[str | None] = mapped_column(String(64), nullable=True)
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)


class DcCancelRow(Base):
    """An order a DC may still hold although it now lives elsewhere: cancel it there (outbox)."""

    __tablename__ = "dc_cancels"
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True)
    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # pending | done | conflict
    reason: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    __table_args__ = (Index("ix_dc_cancels_status_next", "status", "next_attempt_at"),)


class BreakerEventRow(Base):
    __tablename__ = "breaker_events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    breaker: Mapped[str] = mapped_column(String(100), index=True)
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class ApiTokenRow(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex; the token is shown once
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # an ingest token bound to these sales channels may post only for them; null: any channel
    channels: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)


class WebSessionRow(Base):
    """A dashboard login: the cookie's SHA-256 (never the cookie), the token it was opened with."""

    __tablename__ = "web_sessions"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    session_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class AuditEventRow(Base):
    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(100))
    subject: Mapped[str] = mapped_column(String(200))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)


class BiaRunRow(Base):
    """One business impact analysis: its parameters, status and the result document (bia.json)."""

    __tablename__ = "bia_runs"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    status: Mapped[str] = mapped_column(String(16))  # running | done | failed
    requested_by: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(200))  # "store:<days>d" or a file name
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    order_lines: Mapped[int | None] = mapped_column(Integer, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class IncidentRow(Base):
    __tablename__ = "incidents"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))  # site_outage | integration_outage | capacity | drill
    subject: Mapped[str] = mapped_column(String(100))  # the site or integration code
    trigger: Mapped[str] = mapped_column(String(16))  # breaker | probe | operator | alert | drill
    title: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(16))  # open | mitigated | resolved
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    detected_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    mitigated_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    orders_affected: Mapped[int] = mapped_column(Integer, default=0)
    orders_rerouted: Mapped[int] = mapped_column(Integer, default=0)
    orders_held: Mapped[int] = mapped_column(Integer, default=0)
    notices: Mapped[int] = mapped_column(Integer, default=0)


class IncidentEventRow(Base):
    __tablename__ = "incident_events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class SiteChangeRow(Base):
    """A failover or failback of one site; at most one runs per site at a time (partial unique index)."""

    __tablename__ = "site_changes"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    site: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # failover | failback
    status: Mapped[str] = mapped_column(String(16))  # running | done | refused | failed
    actor: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text)
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    incident_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # renewed while the change works; a running change past its lease belongs to a dead process
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    __table_args__ = (
        Index(
            "uq_site_changes_one_running",
            "site",
            unique=True,
            postgresql_where=text("status = 'running'"),
            sqlite_where=text("status = 'running'"),
        ),
    )


class IdempotencyKeyRow(Base):
    """The first answer to a POST with an Idempotency-Key, replayed to every repeat."""

    __tablename__ = "idempotency_keys"
    actor: Mapped[str] = mapped_column(String(100), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(300))
    status_code: Mapped[int] = mapped_column(Integer)
    body: Mapped[dict[str, Any] | list[Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)  # method, path and body


class HealthCheckRow(Base):
    """The health state machine of one probed target (`site:<code>` / `integration:<code>`)."""

    __tablename__ = "health_checks"
    target: Mapped[str] = mapped_column(String(100), primary_key=True)
    health: Mapped[str] = mapped_column(String(16))
    since: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    consecutive_successes: Mapped[int] = mapped_column(Integer, default=0)
    breaker_open: Mapped[bool] = mapped_column(Boolean, default=False)
    breaker_opened_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_probe_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_latency_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_detail: Mapped[str] = mapped_column(Text, default="")


class HealthTransitionRow(Base):
    __tablename__ = "health_transitions"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    target: Mapped[str] = mapped_column(String(100))
    from_health: Mapped[str] = mapped_column(String(16))
    to_health: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    reason: Mapped[str] = mapped_column(Text)
    __table_args__ = (Index("ix_health_transitions_target_at", "target", "at"),)


class AlertRow(Base):
    """One alert instance of the built-in engine between evaluation ticks (by fingerprint)."""

    __tablename__ = "alerts"
    fingerprint: Mapped[str] = mapped_column(String(32), primary_key=True)
    alertname: Mapped[str] = mapped_column(String(100))
    labels: Mapped[dict[str, str]] = mapped_column(JSON)
    annotations: Mapped[dict[str, str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))  # pending | firing | resolved
    value: Mapped[float] = mapped_column(Float, default=1.0)
    active_since: Mapped[datetime] = mapped_column(UtcDateTime)
    fired_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_notified_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    silenced_by: Mapped[list[str]] = mapped_column(JSON, default=list)


class SilenceRow(Base):
    __tablename__ = "silences"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    matchers: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ends_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    created_by: Mapped[str] = mapped_column(String(100))
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AlertDeliveryRow(Base):
    """One alert notification owed to one channel (an outbox: written with the alert's state)."""

    __tablename__ = "alert_deliveries"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    fingerprint: Mapped[str] = mapped_column(String(32), index=True)
    alertname: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))  # firing | repeat | resolved
    channel: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))  # pending | sent | failed | expired
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    provider_id: Mapped[str | None] = mapped_column(String(300), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    __table_args__ = (Index("ix_alert_deliveries_status_next", "status", "next_attempt_at"),)


class NoticeLetterRow(Base):
    """One message owed to one customer about one incident, naming their late orders (an outbox)."""

    __tablename__ = "notice_letters"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(128))
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"), nullable=True, index=True)
    kind: Mapped[str] = mapped_column(String(16))  # delay | back_on_track
    channel: Mapped[str] = mapped_column(String(32))  # email | sms | webhook: the outbox lane
    status: Mapped[str] = mapped_column(String(16))  # pending | sent | failed | suppressed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    provider_id: Mapped[str | None] = mapped_column(String(300), nullable=True)
    sent_via: Mapped[str | None] = mapped_column(String(32), nullable=True)  # smtp|ses|sns|log|webhook
    detail: Mapped[str | None] = mapped_column(String(200), nullable=True)  # sms | lms, fallback reason
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    __table_args__ = (
        Index("ix_notice_letters_status_next", "status", "next_attempt_at"),
        # where a new late order of the same customer and incident joins a letter not yet sent
        Index("ix_notice_letters_customer", "customer_id", "incident_id", "kind", "status"),
    )


class NoticeRow(Base):
    """One late order's notice: unique per (order, incident, kind); sent as part of a letter."""

    __tablename__ = "notices"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"), nullable=True, index=True)
    kind: Mapped[str] = mapped_column(String(16))
    # "<order>:<incident or ->:<kind>": unique, since a NULL incident would not be unique in SQL
    dedupe_key: Mapped[str] = mapped_column(String(120), unique=True)
    letter_id: Mapped[int] = mapped_column(ForeignKey("notice_letters.id"), index=True)
    customer_id: Mapped[str] = mapped_column(String(128))
    locale: Mapped[str] = mapped_column(String(8))
    channel: Mapped[str] = mapped_column(String(32))  # email | sms | webhook; the letter says if it fell back
    status: Mapped[str] = mapped_column(String(16))  # pending | sent | failed | suppressed
    reason: Mapped[str] = mapped_column(String(200))  # why it was late, or why it was suppressed
    cause_site: Mapped[str | None] = mapped_column(String(64), nullable=True)
    promised_by: Mapped[datetime] = mapped_column(UtcDateTime)
    eta: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)  # None: held
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    provider_id: Mapped[str | None] = mapped_column(String(300), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    done_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True, index=True)  # it ended


class DrillRunRow(Base):
    """One chaos drill: registered when it starts (so an abort can reach it), its result at the end."""

    __tablename__ = "drill_runs"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    experiment: Mapped[str] = mapped_column(String(300))  # its title
    subject: Mapped[str] = mapped_column(String(64), index=True)  # the site the drill is about
    # running | completed | deviated | aborted | failed
    status: Mapped[str] = mapped_column(String(16), index=True)
    started_by: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    heartbeat_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    forced_reason: Mapped[str | None] = mapped_column(Text, nullable=True)  # started inside a peak window
    abort_requested_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    abort_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    detect_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    mitigate_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    recover_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    rto_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    lost: Mapped[int | None] = mapped_column(Integer, nullable=True)
    duplicated: Mapped[int | None] = mapped_column(Integer, nullable=True)
    held: Mapped[int | None] = mapped_column(Integer, nullable=True)
    deviations: Mapped[list[str]] = mapped_column(JSON, default=list)
    journal: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class RecoveryRow(Base):
    """A measured recovery of one site, from a drill or a resolved outage incident (vs its RTO)."""

    __tablename__ = "recoveries"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    site: Mapped[str] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(String(16))  # drill | incident
    source_id: Mapped[int] = mapped_column(BigId)
    measured_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    detect_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    mitigate_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    recover_s: Mapped[float] = mapped_column(Float)
    rto_s: Mapped[float | None] = mapped_column(Float, nullable=True)  # the target when it was measured
    __table_args__ = (UniqueConstraint("source", "source_id"),)


class RunbookExecutionRow(Base):
    """One execution of a runbook: where it stands; its steps are `step_runs`."""

    __tablename__ = "runbook_executions"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    runbook: Mapped[str] = mapped_column(String(64), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # running | waiting_approval | rolling_back | succeeded | failed | rolled_back | aborted | dry_run
    status: Mapped[str] = mapped_column(String(20), index=True)
    cursor: Mapped[int] = mapped_column(Integer, default=0)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    started_by: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # an automatic start: "<runbook>:<alert fingerprint>:<alert start>", unique, so one alert
    # starts a runbook once however many replicas or repeats see it
    trigger_key: Mapped[str | None] = mapped_column(String(300), unique=True, nullable=True)
    trigger: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"), nullable=True, index=True)
    abort_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # the process advancing it now: a leader that lost the lead mid-step keeps it until it expires
    lease_owner: Mapped[str | None] = mapped_column(String(100), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class StepRunRow(Base):
    """One step (or its rollback) of an execution: started, ended, outcome; its key is unique."""

    __tablename__ = "step_runs"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    execution_id: Mapped[int] = mapped_column(ForeignKey("runbook_executions.id", ondelete="CASCADE"))
    phase: Mapped[str] = mapped_column(String(8))  # do | undo
    position: Mapped[int] = mapped_column(Integer)
    step_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    output: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    __table_args__ = (UniqueConstraint("execution_id", "phase", "position"),)


class RunbookSwitchRow(Base):
    """The kill switch for automatic starts (one row): paused, by whom, why."""

    __tablename__ = "runbook_switch"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    changed_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    changed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class WorldLoadRow(Base):
    """When the world was last loaded (one row): a BIA older than that is re-run by the leader."""

    __tablename__ = "world_load"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    loaded_at: Mapped[datetime] = mapped_column(UtcDateTime)
