"""The base of every request model: unknown fields refused, and no control characters in any text.

PostgreSQL cannot store NUL in text (psycopg refuses to send it, which surfaced as a 500), and the
other C0 controls in a name or an id only ever come from a broken or hostile client; they would end
up in logs, e-mails and the dashboard. Tab, newline and carriage return stay allowed in free text.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def control_character(value: Any) -> str | None:
    """The first control character in `value` (text, or text nested in lists and mappings), or None."""
    if isinstance(value, str):
        found = _CONTROL.search(value)
        return found.group() if found else None
    if isinstance(value, (list, tuple, set, frozenset)):
        return next((c for c in map(control_character, value) if c is not None), None)
    if isinstance(value, dict):
        return next((c for kv in value.items() for c in map(control_character, kv) if c is not None), None)
    return None


class StrictIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_characters(cls, value: Any) -> Any:
        found = control_character(value)
        if found is not None:
            raise ValueError(f"contains the control character U+{ord(found):04X}")
        return value
