"""`/v1/alerts`, `/v1/silences`, `/v1/hooks/alertmanager`: the built-in engine and Alertmanager's hook."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from control_plane.alerting import repository as alert_repo
from control_plane.alerting.engine import fingerprint
from control_plane.alerting.incidents import AlertEvent, receive_webhook
from control_plane.alerting.silence_rules import Matcher
from control_plane.alerting.silences import create_silence, expire_silence, silence_json
from control_plane.auth.deps import Ctx, Hook, Operator, SessionDep, Viewer
from control_plane.web.idempotency import IdempotencyKey, RequestHash, run_once
from control_plane.web.inputs import StrictIn
from control_plane.web.params import Uuid

router = APIRouter(tags=["alerting"])


class AlertOut(BaseModel):
    fingerprint: str
    alertname: str
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    value: float
    active_since: datetime
    fired_at: datetime | None
    last_notified_at: datetime | None
    resolved_at: datetime | None
    silenced_by: list[str]


class DeliveryOut(BaseModel):
    id: int
    fingerprint: str
    alertname: str
    kind: str
    channel: str
    status: str
    attempts: int
    last_error: str | None
    provider_id: str | None
    created_at: datetime
    sent_at: datetime | None


@router.get("/v1/alerts")
def list_alerts(
    session: SessionDep,
    _: Viewer,
    status: Annotated[str | None, Query(pattern="^(pending|firing|resolved)$")] = None,
) -> list[AlertOut]:
    """The built-in engine's alerts: pending, firing, and recently resolved."""
    return [
        AlertOut(
            fingerprint=r.fingerprint,
            alertname=r.alertname,
            status=r.status,
            labels=r.labels,
            annotations=r.annotations,
            value=r.value,
            active_since=r.active_since,
            fired_at=r.fired_at,
            last_notified_at=r.last_notified_at,
            resolved_at=r.resolved_at,
            silenced_by=list(r.silenced_by or []),
        )
        for r in alert_repo.list_alerts(session, status)
    ]


@router.get("/v1/alert-deliveries")
def list_deliveries(
    session: SessionDep,
    _: Viewer,
    fingerprint: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[DeliveryOut]:
    """Notifications handed to each channel, newest first, with their outcome."""
    return [
        DeliveryOut.model_validate(r, from_attributes=True)
        for r in alert_repo.list_deliveries(session, fingerprint, limit)
    ]


class MatcherIn(StrictIn):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str = Field(min_length=1, max_length=100)
    value: str = Field(max_length=1000)
    is_regex: bool = Field(default=False, alias="isRegex")
    is_equal: bool = Field(default=True, alias="isEqual")


class SilenceIn(StrictIn):
    """Alertmanager's silence shape (matchers, startsAt, endsAt, comment), or a duration from now."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    matchers: list[MatcherIn] = Field(min_length=1, max_length=50)
    starts_at: datetime | None = Field(default=None, alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    duration_s: float | None = Field(default=None, gt=0, le=90 * 86400)
    comment: str = Field(min_length=3, max_length=2000, description="why: shown to whoever wonders")

    @model_validator(mode="after")
    def _one_end(self) -> SilenceIn:
        if (self.ends_at is None) == (self.duration_s is None):
            raise ValueError("give exactly one of endsAt and duration_s")
        for t in (self.starts_at, self.ends_at):
            if t is not None and t.tzinfo is None:
                raise ValueError("times need a timezone, e.g. 2026-12-01T03:00:00Z")
        return self


@router.post("/v1/silences", status_code=201)
def post_silence(
    body: SilenceIn,
    request: Request,
    ctx: Ctx,
    who: Operator,
    digest: RequestHash,
    key: IdempotencyKey = None,
) -> JSONResponse:
    """Mute the built-in engine's notifications for alerts whose labels match, for a while."""
    now = ctx.clock()
    starts = body.starts_at or now
    ends = body.ends_at or starts + timedelta(seconds=body.duration_s or 0)
    matchers = [Matcher(m.name, m.value, m.is_regex, m.is_equal) for m in body.matchers]

    def create(actor: Any) -> dict[str, Any]:
        with ctx.sessions.begin() as s:
            return create_silence(
                s, actor.name, matchers, starts, ends, body.comment, now, actor.idempotency_key
            )

    return run_once(request, who, key, 201, create, request_hash=digest)


@router.get("/v1/silences")
def list_silences(ctx: Ctx, session: SessionDep, _: Viewer, expired: bool = False) -> list[dict[str, Any]]:
    now = ctx.clock()
    return [silence_json(r, now) for r in alert_repo.list_silences(session, expired, now)]


@router.delete("/v1/silences/{silence_id}")
def delete_silence(silence_id: Uuid, ctx: Ctx, who: Operator) -> dict[str, Any]:
    """Expire a silence now."""
    with ctx.sessions.begin() as s:
        return expire_silence(s, who.name, silence_id, ctx.clock())


# Alertmanager's webhook is not operator input: it is machine-written, so the typo that strict
# models guard against cannot happen, while a field a newer Alertmanager adds (as `truncatedAlerts`
# was, within version 4) would turn every notification into a 422 — which Alertmanager does not
# retry, so alerts would be lost after an upgrade. Every documented field is modelled; others are
# ignored, not refused.
class AmAlertIn(StrictIn):
    """One alert of Alertmanager's webhook payload."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")  # 0001-01-01T00:00:00Z while firing
    generator_url: str = Field(default="", alias="generatorURL", max_length=10_000)
    fingerprint: str | None = Field(default=None, max_length=64)

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("times need a timezone, as Alertmanager sends them (…Z)")
        return value


class AmWebhookIn(StrictIn):
    """Alertmanager's webhook payload (version 4)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    version: str = "4"
    group_key: str = Field(default="", alias="groupKey", max_length=2000)
    truncated_alerts: int = Field(default=0, ge=0, alias="truncatedAlerts")
    status: Literal["firing", "resolved"]
    receiver: str = ""
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL", max_length=10_000)
    alerts: list[AmAlertIn] = Field(max_length=10_000)


@router.post("/v1/hooks/alertmanager")
def alertmanager_hook(body: AmWebhookIn, request: Request, ctx: Ctx, who: Hook) -> dict[str, Any]:
    """Turn each alert of an Alertmanager notification into a control-plane event (incidents)."""
    now = ctx.clock()
    events = [
        AlertEvent(
            alertname=a.labels.get("alertname", ""),
            status=a.status,
            fingerprint=a.fingerprint or fingerprint(a.labels.get("alertname", ""), a.labels),
            starts_at=a.starts_at,
            labels=a.labels,
            summary=a.annotations.get("summary", ""),
            ends_at=a.ends_at if a.status == "resolved" else None,
            source="alertmanager",
        )
        for a in body.alerts
    ]
    with ctx.sessions.begin() as s:
        outcomes = receive_webhook(
            s, who.name, events, body.group_key, now, getattr(request.app.state, "alert_hook", None)
        )
    return {
        "received": len(outcomes),
        "outcomes": [
            {
                "fingerprint": o.fingerprint,
                "alertname": o.alertname,
                "action": o.action,
                "incident_id": o.incident_id,
                "reason": o.reason,
            }
            for o in outcomes
        ],
    }
