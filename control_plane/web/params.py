"""Path parameters as the store can hold them: a row id fits a BIGINT, a code or id has a length.

An id past 2^63 - 1 reached PostgreSQL as an out-of-range integer (a 500); bounded here it is a 422.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

RowId = Annotated[int, Path(ge=1, le=2**63 - 1, description="a stored row's id")]
Code = Annotated[str, Path(min_length=1, max_length=64, description="a site, integration or breaker code")]
OrderId = Annotated[str, Path(min_length=1, max_length=36, description="an order id")]
Uuid = Annotated[str, Path(min_length=1, max_length=36, description="an id the control plane gave out")]
