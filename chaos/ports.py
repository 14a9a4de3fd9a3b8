"""Free loopback ports for the servers tests, drills and benchmarks start; never the same one twice.

A simulated DC that is 'down' has released its port: without the memory the next server started
could be given that port and collide with the DC when it comes back.

Ports come from below the kernel's ephemeral range (32768-60999 on Linux): a port the kernel hands
out for `bind(0)` is also what it hands out as the local end of outgoing connections, and under load
(16 clients, nginx, a Locust run) one of those took a port between our choosing it and a server
binding it ("Address already in use").

`DRCTL_PORT_RANGE=LOW-HIGH` narrows the range: parallel test workers each get a slice of their own
(tests/conftest.py), since one worker's DC that is down has released a port the other would take.
"""

from __future__ import annotations

import os
import random
import socket

_HANDED_OUT: set[int] = set()
LOW, HIGH = 20000, 32767
_pick = random.SystemRandom()  # parallel test workers must not walk the same sequence


def port_range() -> tuple[int, int]:
    text = os.environ.get("DRCTL_PORT_RANGE", "")
    low, sep, high = text.partition("-")
    if sep and low.isdigit() and high.isdigit() and LOW <= int(low) < int(high) <= HIGH:
        return int(low), int(high)
    return LOW, HIGH


def free_port() -> int:
    low, high = port_range()
    for _ in range(2000):
        port = _pick.randint(low, high)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {low}-{high} after 2000 tries")
