"""What the order repository's modules share: the dialect test (the store's)."""

from __future__ import annotations

from control_plane.store.db import is_postgresql

__all__ = ["is_postgresql"]
