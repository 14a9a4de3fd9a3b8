"""Faults a target can be put into, as parsed from `PUT /_sim/faults` bodies."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _FaultModel(BaseModel):
    # Typos such as `latency` for `latency_ms` must fail loudly, not leave a fault half-set.
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoFault(_FaultModel):
    """Serve normally."""

    mode: Literal["none"] = "none"


class DownFault(_FaultModel):
    """Stop listening: connections are refused."""

    mode: Literal["down"] = "down"


class LatencyFault(_FaultModel):
    """Wait before processing every request; processing still happens if the client gave up."""

    mode: Literal["latency"] = "latency"
    latency_ms: int = Field(ge=0, le=600_000)


class ErrorRateFault(_FaultModel):
    """Answer 503 without processing with probability `p`."""

    mode: Literal["error_rate"] = "error_rate"
    p: float = Field(ge=0.0, le=1.0)
    seed: int | None = None


class PartitionFault(_FaultModel):
    """Accept connections but never answer and never process."""

    mode: Literal["partition"] = "partition"


class SlowFault(_FaultModel):
    """Delay only `/health`, as a DC whose probes time out while it still takes orders."""

    mode: Literal["slow"] = "slow"
    latency_ms: int = Field(ge=0, le=600_000)


Fault = NoFault | DownFault | LatencyFault | ErrorRateFault | PartitionFault | SlowFault

FAULT_MODELS: dict[str, type[Fault]] = {
    "none": NoFault,
    "down": DownFault,
    "latency": LatencyFault,
    "error_rate": ErrorRateFault,
    "partition": PartitionFault,
    "slow": SlowFault,
}


class FieldError(BaseModel):
    """One reason a fault body was refused, naming the field."""

    field: str
    message: str


class InvalidFault(ValueError):
    """Raised when a fault body does not describe a fault; carries one error per bad field."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


def parse_fault(body: Any) -> Fault:
    """Turn a decoded JSON body into a fault, naming every bad field on failure."""
    if not isinstance(body, dict):
        raise InvalidFault([FieldError(field="body", message="must be a JSON object")])
    mode = body.get("mode")
    model = FAULT_MODELS.get(mode) if isinstance(mode, str) else None
    if model is None:
        allowed = ", ".join(FAULT_MODELS)
        raise InvalidFault([FieldError(field="mode", message=f"must be one of {allowed}; got {mode!r}")])
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise InvalidFault(
            [
                FieldError(field=".".join(str(part) for part in err["loc"]) or "body", message=err["msg"])
                for err in exc.errors()
            ]
        ) from None
