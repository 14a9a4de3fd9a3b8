"""What crosses the HTTP boundary for drill runs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator

from control_plane.web.inputs import StrictIn

Seconds = Annotated[float, Field(ge=0, le=10_000_000)]
Count = Annotated[int, Field(ge=0, le=100_000_000)]
Reason = Annotated[str, Field(min_length=3, max_length=2000)]


def _printable(value: str | None) -> str | None:
    if value is not None and not value.replace("\n", " ").isprintable():
        raise ValueError("has a control character")
    return value


class DrillStartIn(StrictIn):
    """A drill starting against this control plane (the CLI sends it before any load or fault)."""

    experiment: Annotated[str, Field(min_length=1, max_length=300)]
    subject: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
    force: bool = Field(default=False, description="start inside a peak window (needs a reason; audited)")
    reason: Reason | None = None

    _check_text = field_validator("experiment", "reason")(_printable)


class DrillResultIn(StrictIn):
    """The drill's outcome and its journal, sent once when it ends."""

    status: Literal["completed", "deviated", "aborted", "failed"]
    detect_s: Seconds | None = None
    mitigate_s: Seconds | None = None
    recover_s: Seconds | None = None
    rto_s: Seconds | None = None
    lost: Count | None = None
    duplicated: Count | None = None
    held: Count | None = None
    deviations: list[Annotated[str, Field(max_length=2000)]] = Field(default_factory=list, max_length=500)
    journal: dict[str, Any] | None = None


class AbortIn(StrictIn):
    reason: Reason

    _check_text = field_validator("reason")(_printable)


class AbortOut(BaseModel):
    aborted: list[int]  # the drills told to stop; each runs its rollbacks when it hears it


class HeartbeatOut(BaseModel):
    abort: bool
    reason: str | None = None


class DrillOut(BaseModel):
    id: int
    experiment: str
    subject: str
    status: str  # running | completed | deviated | aborted | failed | lost (running, not heard from)
    started_by: str
    started_at: datetime
    heartbeat_at: datetime
    ended_at: datetime | None
    forced_reason: str | None
    abort_requested_at: datetime | None
    abort_reason: str | None
    detect_s: float | None
    mitigate_s: float | None
    recover_s: float | None
    rto_s: float | None
    within_rto: bool | None
    lost: int | None
    duplicated: int | None
    held: int | None
    deviations: list[str]
    journal: dict[str, Any] | None = None
