"""A fleet of fake fulfillment centers and integrations speaking the DC/WMS contract (DESIGN §4).

One process serves every target on its own 127.0.0.1 port, plus an admin port. Each target keeps an
in-memory ledger for reconciliation and can be put into a fault (down, latency, error_rate, partition,
slow) that behaves like the real failure on the wire: refused connections, read timeouts, 503s.
A DC can also tell drctl what happened to its orders (shipped, cancelled by the DC) through signed
webhooks, held while its network is cut.
"""

from chaos.simulator.events import EventsConfig
from chaos.simulator.server import run_simulator
from chaos.simulator.targets import SimTarget

__all__ = ["EventsConfig", "SimTarget", "run_simulator"]
