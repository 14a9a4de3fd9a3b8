"""Build the leader's jobs from settings: probe policy, alert rules, channels and the scheduler."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

from control_plane.alerting.channels import AlertChannel, SesChannel, SmtpChannel, SnsChannel, WebhookChannel
from control_plane.alerting.delivery import AlertDelivery, DeliveryPolicy
from control_plane.alerting.engine import AlertRule
from control_plane.alerting.incidents import AlertHook
from control_plane.alerting.jobs import AlertEvaluator
from control_plane.alerting.rules import builtin_rules
from control_plane.context import AppContext
from control_plane.domain import BreakerState, FieldError, InvalidInput
from control_plane.monitoring.health import ProbePolicy
from control_plane.monitoring.jobs import Prober
from control_plane.monitoring.leader import lock_for
from control_plane.monitoring.probes import HttpProbe
from control_plane.monitoring.scheduler import Intervals, LeaderJob, LeaderScheduler
from control_plane.notices.service import NoticeWriter
from control_plane.orders.lifecycle_jobs import build_poller
from control_plane.settings import Settings
from failover.breakers import BreakerBoard, BreakerPolicy

log = logging.getLogger("drctl.alert_delivery")


def probe_policy(settings: Settings) -> ProbePolicy:
    return ProbePolicy(
        interval_s=settings.probe_interval_s,
        timeout_s=settings.probe_timeout_s,
        failure_threshold=settings.probe_failure_threshold,
        success_threshold=settings.probe_success_threshold,
    )


def alert_rules(settings: Settings) -> tuple[AlertRule, ...]:
    """The built-in rules with `DRCTL_ALERT_FOR_S` overrides applied (unknown names refused)."""
    rules = builtin_rules()
    known = {r.name for r in rules}
    unknown = sorted(set(settings.alert_for_s) - known)
    if unknown:
        raise InvalidInput(
            "DRCTL_ALERT_FOR_S names unknown rules",
            [FieldError(f"alert_for_s.{n}", f"not one of {', '.join(sorted(known))}") for n in unknown],
        )
    return tuple(
        replace(r, for_s=float(settings.alert_for_s[r.name])) if r.name in settings.alert_for_s else r
        for r in rules
    )


def check_settings(settings: Settings) -> None:
    """Refuse monitoring settings that cannot work, before any process starts (InvalidInput)."""
    probe_policy(settings)
    alert_rules(settings)
    if settings.alert_smtp_password is not None and not settings.alert_smtp_starttls:
        raise InvalidInput(
            "an SMTP password would travel in clear text",
            [FieldError("alert_smtp_starttls", "set DRCTL_ALERT_SMTP_STARTTLS=true to log in over SMTP")],
        )


def _addresses(text: str) -> list[str]:
    return [a.strip() for a in text.split(",") if a.strip()]


def build_channels(settings: Settings) -> dict[str, AlertChannel]:
    """Every channel whose settings are given (none: alerts are logged and kept, not sent)."""
    timeout = settings.alert_delivery_timeout_s
    channels: list[AlertChannel] = []
    if settings.alert_webhook_url is not None:
        channels.append(WebhookChannel(settings.alert_webhook_url.get_secret_value(), timeout))
    if settings.alert_sns_topic_arn:
        channels.append(
            SnsChannel(settings.alert_sns_topic_arn, settings.aws_region, settings.aws_endpoint_url, timeout)
        )
    if settings.alert_ses_from and _addresses(settings.alert_ses_to):
        channels.append(
            SesChannel(
                settings.alert_ses_from,
                _addresses(settings.alert_ses_to),
                settings.aws_region,
                settings.aws_endpoint_url,
                timeout,
            )
        )
    if settings.alert_smtp_host and settings.alert_smtp_from and _addresses(settings.alert_smtp_to):
        password = settings.alert_smtp_password.get_secret_value() if settings.alert_smtp_password else None
        channels.append(
            SmtpChannel(
                settings.alert_smtp_host,
                settings.alert_smtp_port,
                settings.alert_smtp_from,
                _addresses(settings.alert_smtp_to),
                settings.alert_smtp_user,
                password,
                settings.alert_smtp_starttls,
                timeout,
            )
        )
    return {c.name: c for c in channels}


def _channel_breaker_changed(name: str, old: BreakerState, new: BreakerState) -> None:
    log.warning("alert channel breaker %s: %s -> %s", name, old.value, new.value)


def build_scheduler(
    ctx: AppContext, prober: Prober, extra_jobs: Sequence[LeaderJob] = (), on_alert: AlertHook | None = None
) -> LeaderScheduler:
    s = ctx.settings
    channels = build_channels(s)
    # a channel failing 3 times in a row is left alone for a minute instead of being retried hot
    channel_breakers = BreakerBoard(
        BreakerPolicy(fail_max=3, reset_timeout_s=60.0, success_threshold=1), None, _channel_breaker_changed
    )
    delivery = AlertDelivery(
        ctx.sessions,
        channels,
        channel_breakers,
        ctx.metrics,
        DeliveryPolicy(timeout_s=s.alert_delivery_timeout_s, max_attempts=s.alert_delivery_max_attempts),
        ctx.clock,
    )
    evaluator = (
        AlertEvaluator(
            ctx.sessions,
            alert_rules(s),
            ctx.sites,
            ctx.board,
            lambda: delivery.channel_names,
            ctx.clock,
            s.alert_repeat_interval_s,
            s.alert_keep_resolved_s,
            on_alert,
        )
        if s.alert_engine
        else None
    )
    intervals = Intervals(
        probe_s=s.probe_interval_s,
        alert_s=s.alert_eval_interval_s,
        delivery_s=s.alert_delivery_interval_s,
        leader_poll_s=s.leader_poll_s,
    )
    poller = build_poller(ctx)
    jobs = [LeaderJob("poll-dcs", poller.poll_due, s.dc_poll_interval_s, poller.close), *extra_jobs]
    if s.notices:
        jobs.append(LeaderJob("notice-held-orders", lambda leading: sweep_held_orders(ctx), 60.0))
    return LeaderScheduler(
        lock_for(s.database_url), intervals, prober, evaluator, delivery, ctx.metrics, jobs
    )


def build_prober(ctx: AppContext) -> Prober:
    return Prober(
        ctx.sessions,
        HttpProbe(ctx.clock),
        probe_policy(ctx.settings),
        ctx.metrics,
        # the leader's own routing sees a change at once; other replicas within DRCTL_STATE_REFRESH_S
        lambda _transition: ctx.sites.refresh(),
    )


def sweep_held_orders(ctx: AppContext) -> int:
    """Held orders that came within the promise slack while held get their delay notice."""
    writer = NoticeWriter(ctx.notice_policy)
    with ctx.sessions.begin() as session:
        return writer.sweep_held(session, ctx.clock())
