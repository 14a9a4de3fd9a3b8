"""Free loopback ports for the servers tests, drills and benchmarks start; never the same one twice.

A simulated DC that is 'down' has released its port: without the memory the next server started
could be given that port and collide with the DC when it comes back.
"""

from __future__ import annotations

import socket

_HANDED_OUT: set[int] = set()


def free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
