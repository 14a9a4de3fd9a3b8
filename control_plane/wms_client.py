"""The DC (WMS) contract of DESIGN §4 over HTTP with httpx: the `DcClient` the order path uses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from control_plane.domain import Site
from failover.dispatch import CancelOutcome, DcAck, DcRejected, DcUnavailable, FailureKind

# Errors raised before a single byte of the request left: the DC cannot hold the order.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class HttpDcClient:
    """One pooled httpx client for every DC; connect/read timeouts from settings."""

    def __init__(
        self,
        connect_timeout_s: float,
        read_timeout_s: float,
        cancel_timeout_s: float,
        max_connections: int = 256,
    ) -> None:
        self._timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s, pool=connect_timeout_s)
        self._cancel_timeout = httpx.Timeout(cancel_timeout_s, connect=connect_timeout_s)
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._http = httpx.Client(limits=limits, timeout=self._timeout, trust_env=False)

    def close(self) -> None:
        self._http.close()

    def submit(self, site: Site, payload: Mapping[str, Any]) -> DcAck:
        resp = self._send("POST", f"{site.wms_url}/orders", json=payload, timeout=self._timeout)
        if resp.status_code in (200, 201):
            body = resp.json()
            return DcAck(dc_ref=str(body["dc_ref"]), status=str(body.get("status", "accepted")))
        raise self._unexpected(resp)

    def cancel(self, site: Site, order_id: str) -> CancelOutcome:
        resp = self._send("DELETE", f"{site.wms_url}/orders/{order_id}", timeout=self._cancel_timeout)
        if resp.status_code == 200:
            return CancelOutcome.CANCELLED
        if resp.status_code == 404:
            return CancelOutcome.UNKNOWN
        if resp.status_code == 409:
            return CancelOutcome.SHIPPED
        raise self._unexpected(resp)

    def health(self, url: str, timeout_s: float) -> httpx.Response:
        return self._send("GET", url, timeout=httpx.Timeout(timeout_s))

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, url, **kwargs)
        except _NOT_SENT as exc:
            raise DcUnavailable(
                FailureKind.REFUSED, f"{type(exc).__name__}", may_have_reached_dc=False
            ) from None
        except httpx.TimeoutException as exc:
            raise DcUnavailable(FailureKind.TIMEOUT, type(exc).__name__) from None
        except httpx.TransportError as exc:
            raise DcUnavailable(FailureKind.BROKEN, type(exc).__name__) from None

    @staticmethod
    def _unexpected(resp: httpx.Response) -> Exception:
        if resp.status_code >= 500:
            return DcUnavailable(FailureKind.SERVER_ERROR, f"HTTP {resp.status_code}")
        return DcRejected(resp.status_code, resp.text[:200])
