"""Synthetic orders shaped like the world's demand: for the demo stream, tests and benchmarks.

Regions are drawn by demand share, ship-to points scattered around the region's centroid, SKUs by
a Pareto-like popularity (rank^-1.1) so a few SKUs dominate, as in real retail.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from typing import Any

from control_plane.domain import World

DEFAULT_CHANNELS = ("web", "app", "coupang", "naver")


class OrderFactory:
    def __init__(self, world: World, seed: int = 1, channels: Sequence[str] | None = None):
        self._rnd = random.Random(seed)
        self._regions = list(world.regions)
        self._region_weights = [max(r.demand_share, 1e-6) for r in self._regions]
        self._skus = list(world.catalog)
        self._sku_weights = [1 / (rank + 1) ** 1.1 for rank in range(len(self._skus))]
        # the world's own channels (intake refuses any other); these four are the sample world's
        self._channels = list(channels or [c.code for c in world.channels] or DEFAULT_CHANNELS)
        self._seq = itertools.count(1)
        self._prefix = f"{seed:04d}"

    def order(
        self, external_id: str | None = None, channel: str | None = None, **overrides: Any
    ) -> dict[str, Any]:
        """One POST /v1/orders body."""
        rnd = self._rnd
        n = next(self._seq)
        region = rnd.choices(self._regions, self._region_weights)[0]
        lines: dict[str, int] = {}
        for _ in range(rnd.choice((1, 1, 1, 2, 2, 3))):
            sku = rnd.choices(self._skus, self._sku_weights)[0]
            lines[sku.sku] = lines.get(sku.sku, 0) + rnd.choice((1, 1, 1, 2))
        prices = {s.sku: s.unit_price for s in self._skus}
        body: dict[str, Any] = {
            "channel": channel or rnd.choice(self._channels),
            "external_id": external_id or f"ext-{self._prefix}-{n:08d}",
            "customer": {
                "id": f"cust-{rnd.randrange(1, 50_000):06d}",
                "name": f"Customer {n}",
                "email": f"customer{n}@example.com",
                "locale": rnd.choice(("ko", "ko", "ko", "en")),
                "notify_via": "email",
            },
            "ship_to": {
                "region": region.code,
                "postal_code": f"{rnd.randrange(10000, 63999):05d}",
                "lat": round(region.centroid.lat + rnd.uniform(-0.3, 0.3), 5),
                "lon": round(region.centroid.lon + rnd.uniform(-0.3, 0.3), 5),
            },
            "lines": [{"sku": sku, "qty": qty, "unit_price": str(prices[sku])} for sku, qty in lines.items()],
        }
        body.update(overrides)
        return body
