"""The knobs of a BIA run: money per order, tolerances, horizons and the ETA model."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from control_plane.domain import FieldError, InvalidInput


@dataclass(frozen=True, slots=True)
class BiaParams:
    """Business parameters of one analysis; every money figure is in `currency`.

    The defaults describe a Korean online retailer (KRW). Validation happens on construction so a
    bad value fails before any data is read.
    """

    gross_margin: float = 0.25  # share of revenue kept as margin
    late_order_cost: float = 5_000.0  # compensation coupon + customer-service handling per late order
    churn_probability: float = 0.05  # chance a customer with a late delivery never comes back
    customer_lifetime_value: float = 300_000.0
    cancel_probability: float = 0.2  # chance a late order is cancelled, losing its margin
    promise_slack_hours: float = 4.0  # delay an order absorbs before its delivery promise slips
    outage_durations_hours: tuple[float, ...] = (1.0, 4.0, 24.0, 72.0)
    loss_tolerance: float = 50_000_000.0  # loss one outage may cost before it hurts: sets the RTO
    rto_candidates_hours: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 12.0, 24.0, 48.0, 72.0, 168.0)
    tier1_max_rto_hours: float = 4.0
    tier2_max_rto_hours: float = 24.0
    rpo_max_orders_lost: float = 10.0  # order records we accept to lose at the peak hour's rate
    rpo_candidates_seconds: tuple[int, ...] = (0, 60, 300, 900, 3600, 14_400, 86_400)
    coverage_hours: float = 24.0  # hours of a site's critical demand its backups should be able to ship
    abc_a_share: float = 0.8  # class A: the SKUs that make the first 80% of revenue
    abc_b_share: float = 0.95
    # Same ETA model as failover.eta: transit = base + km / speed; cost grows with distance.
    transit_base_hours: float = 6.0
    transit_speed_kmh: float = 60.0
    transit_cost_per_km: float = 10.0  # extra line-haul cost per order and km
    timezone: str = "Asia/Seoul"  # hour-of-week is counted in the retailer's local time
    currency: str = "KRW"
    # The observed period [period_start, period_end), on whole local hours; naive times are local,
    # ISO 8601 strings are read as such. None: the history's real span (see bia.frame.make_period).
    period_start: datetime | None = None
    period_end: datetime | None = None

    def __post_init__(self) -> None:
        errors = _parse_period(self) or _check(self)
        if errors:
            first = errors[0]
            raise InvalidInput(f"BIA parameter {first.path}: {first.message}", errors)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def loss_durations_hours(self) -> tuple[float, ...]:
        """Every duration the loss curve is evaluated at: the asked ones plus the RTO candidates."""
        return tuple(sorted(set(self.outage_durations_hours) | set(self.rto_candidates_hours)))

    def to_json_dict(self) -> dict[str, object]:
        out = asdict(self)
        for key in ("period_start", "period_end"):
            value = out[key]
            out[key] = value.isoformat() if isinstance(value, datetime) else None
        for key in ("outage_durations_hours", "rto_candidates_hours", "rpo_candidates_seconds"):
            out[key] = list(out[key])
        return out


def _parse_period(p: BiaParams) -> list[FieldError]:
    """Read ISO 8601 period bounds (what a JSON request carries) as datetimes; refuse other types."""
    errors: list[FieldError] = []
    for name in ("period_start", "period_end"):
        value = getattr(p, name)
        if isinstance(value, str):
            try:
                object.__setattr__(p, name, datetime.fromisoformat(value))
            except ValueError:
                errors.append(FieldError(name, f"not an ISO 8601 date-time: {value!r}"))
        elif value is not None and not isinstance(value, datetime):
            errors.append(FieldError(name, f"must be a date-time, got {type(value).__name__}"))
    return errors


def _on_whole_local_hour(moment: datetime, timezone: str) -> bool:
    local = moment.astimezone(ZoneInfo(timezone)) if moment.tzinfo is not None else moment
    return local.minute == 0 and local.second == 0 and local.microsecond == 0


def _check(p: BiaParams) -> list[FieldError]:
    errors: list[FieldError] = []

    def need(ok: bool, path: str, message: str) -> None:
        if not ok:
            errors.append(FieldError(path, message))

    for name in ("gross_margin", "churn_probability", "cancel_probability"):
        value = getattr(p, name)
        need(0.0 <= value <= 1.0, name, f"must be within [0, 1], got {value}")
    for name in ("late_order_cost", "customer_lifetime_value", "loss_tolerance", "rpo_max_orders_lost"):
        value = getattr(p, name)
        need(value >= 0, name, f"must be >= 0, got {value}")
    need(p.promise_slack_hours >= 0, "promise_slack_hours", "must be >= 0")
    need(p.coverage_hours > 0, "coverage_hours", "must be > 0")
    need(p.transit_speed_kmh > 0, "transit_speed_kmh", "must be > 0")
    need(p.transit_base_hours >= 0, "transit_base_hours", "must be >= 0")
    need(p.transit_cost_per_km >= 0, "transit_cost_per_km", "must be >= 0")
    need(0 < p.abc_a_share <= p.abc_b_share <= 1, "abc_a_share", "need 0 < abc_a_share <= abc_b_share <= 1")
    need(0 < p.tier1_max_rto_hours <= p.tier2_max_rto_hours, "tier1_max_rto_hours", "need 0 < tier1 <= tier2")
    need(bool(p.outage_durations_hours), "outage_durations_hours", "need at least one duration")
    need(all(d > 0 for d in p.outage_durations_hours), "outage_durations_hours", "durations must be > 0")
    need(bool(p.rto_candidates_hours), "rto_candidates_hours", "need at least one candidate")
    need(all(d > 0 for d in p.rto_candidates_hours), "rto_candidates_hours", "candidates must be > 0")
    need(bool(p.rpo_candidates_seconds), "rpo_candidates_seconds", "need at least one candidate")
    need(all(s >= 0 for s in p.rpo_candidates_seconds), "rpo_candidates_seconds", "must be >= 0")
    try:
        ZoneInfo(p.timezone)
        zone_ok = True
    except (ZoneInfoNotFoundError, ValueError):
        errors.append(FieldError("timezone", f"unknown time zone {p.timezone!r}"))
        zone_ok = False
    if (p.period_start is None) != (p.period_end is None):
        errors.append(FieldError("period_end", "give both period_start and period_end, or neither"))
    elif p.period_start is not None and p.period_end is not None:
        try:
            need(p.period_end > p.period_start, "period_end", "must be after period_start")
        except TypeError:  # one naive, one aware
            errors.append(FieldError("period_end", "give both period ends with a time zone, or neither"))
        if zone_ok:  # the analysis counts whole local hours: a bound inside an hour cannot be kept exactly
            for name in ("period_start", "period_end"):
                value = getattr(p, name)
                need(
                    _on_whole_local_hour(value, p.timezone),
                    name,
                    f"must be on a whole local hour ({p.timezone}), got {value.isoformat()}",
                )
    return errors
