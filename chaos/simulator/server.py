"""Run every target and the admin API as uvicorn servers in one asyncio loop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable, Mapping, Sequence

import uvicorn
from starlette.types import ASGIApp

from chaos.simulator.apps import build_admin_app, build_target_app
from chaos.simulator.faults import DownFault, Fault, NoFault
from chaos.simulator.state import Client, TargetState
from chaos.simulator.targets import SimTarget, validate_targets

_BACKLOG = 2048
# Shutdown does not wait for slow (latency-faulted) requests longer than this.
_GRACEFUL_SHUTDOWN_S = 1


class ListenError(OSError):
    """A port could not be bound."""


class Listener:
    """One uvicorn server on one port whose listening socket can be closed and opened again.

    We bind the socket ourselves and hand it to `Server.startup(sockets=...)` instead of calling
    `Server.serve()`: `serve()` installs process-wide signal handlers (the last of many servers would
    win), and `startup()` can be called again with a fresh socket to listen after a `down` fault.
    """

    def __init__(self, app: ASGIApp, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.config = uvicorn.Config(
            app,
            host=host,
            port=port,
            lifespan="off",
            access_log=False,
            log_level="warning",
            ws="none",
            # Forwarded headers from 127.0.0.1 would otherwise rewrite scope["client"], which is how a
            # hung request finds the connection to drop.
            proxy_headers=False,
            backlog=_BACKLOG,
            timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_S,
        )
        self.config.load()
        self.server = uvicorn.Server(self.config)
        # Set by Server._serve() normally; startup() and shutdown() need it.
        self.server.lifespan = self.config.lifespan_class(self.config)
        self._socket: socket.socket | None = None
        self._ticker: asyncio.Task[None] | None = None

    @property
    def listening(self) -> bool:
        return self._socket is not None

    async def start(self) -> None:
        """Bind the port and accept connections."""
        if self._socket is not None:
            return
        sock = _bind(self.host, self.port)
        await self.server.startup(sockets=[sock])
        self._socket = sock
        if self._ticker is None:
            # main_loop() refreshes the Date header each second and ends when should_exit is set.
            self._ticker = asyncio.create_task(self.server.main_loop())

    def stop_listening(self, keep_client: Client | None = None) -> None:
        """Close the listening socket (new connections are refused) and abort open connections."""
        if self._socket is None:
            return
        for server in self.server.servers:
            server.close()
        # The servers already closed (asyncio) or detached (uvloop) this socket object; closing it here
        # makes sure no listening descriptor survives whichever loop runs us, so connects are refused.
        self._socket.close()
        self._socket = None
        self.drop_connections(keep=keep_client)

    def drop_connections(self, keep: Client | None = None) -> None:
        for connection in list(self.server.server_state.connections):
            if keep is None or _client_of(connection) != keep:
                _abort(connection)

    def drop_connection(self, client: Client | None) -> bool:
        for connection in self.server.server_state.connections:
            if client is not None and _client_of(connection) == client:
                _abort(connection)
                return True
        return False

    async def close(self) -> None:
        """Stop for good: refuse new connections, drop open ones, let uvicorn finish its tasks."""
        self.stop_listening()
        self.drop_connections()
        if not self.server.started:
            return
        self.server.should_exit = True
        if self._ticker is not None:
            await self._ticker
        await self.server.shutdown()


class Simulator:
    """Every target's state and listener, plus the admin API; implements `SimulatorControls`."""

    def __init__(self, targets: Sequence[SimTarget], admin_port: int, host: str = "127.0.0.1") -> None:
        validate_targets(targets, admin_port)
        self.host = host
        self.admin_port = admin_port
        self._states = {t.name: TargetState(t) for t in targets}
        self._listeners = {
            name: Listener(build_target_app(state, self), host, state.target.port)
            for name, state in self._states.items()
        }
        self._admin = Listener(build_admin_app(self), host, admin_port)
        # Fault changes open and close sockets across awaits; one change per target at a time.
        self._locks = {name: asyncio.Lock() for name in self._states}

    @property
    def states(self) -> Mapping[str, TargetState]:
        return self._states

    async def start(self) -> None:
        """Listen on every port, or on none: a port that cannot be bound stops the whole start."""
        try:
            await self._admin.start()
            for listener in self._listeners.values():
                await listener.start()
        except ListenError:
            await self.close()
            raise
        for state in self._states.values():
            state.start()

    async def close(self) -> None:
        listeners = [self._admin, *self._listeners.values()]
        await asyncio.gather(*(listener.close() for listener in listeners))
        await asyncio.gather(*(state.close() for state in self._states.values()))

    def is_listening(self, name: str) -> bool:
        return self._listeners[name].listening

    async def set_fault(self, name: str, fault: Fault, keep_client: Client | None = None) -> None:
        async with self._locks[name]:
            listener = self._listeners[name]
            self._states[name].change_fault(fault)
            if isinstance(fault, DownFault):
                listener.stop_listening(keep_client)
            else:
                await listener.start()

    def drop_connection(self, name: str, client: Client | None) -> bool:
        return self._listeners[name].drop_connection(client)

    async def reset(self) -> None:
        for name, state in self._states.items():
            await self.set_fault(name, NoFault())
            state.clear_records()


def run_simulator(targets: Sequence[SimTarget], admin_port: int, host: str = "127.0.0.1") -> None:
    """Serve every target and the admin API until SIGINT/SIGTERM (blocking)."""
    validate_targets(targets, admin_port)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_serve_until_signalled(targets, admin_port, host))


async def _serve_until_signalled(targets: Sequence[SimTarget], admin_port: int, host: str) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        simulator = Simulator(targets, admin_port, host)
        await simulator.start()
        try:
            print(f"simulator ready admin=http://{host}:{admin_port} targets={len(targets)}", flush=True)
            await stop.wait()
        finally:
            await simulator.close()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # Lets a target that was `down` listen again at once, even with connections in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(_BACKLOG)
    except OSError as exc:
        sock.close()
        raise ListenError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


def _client_of(connection: object) -> Client | None:
    # uvicorn's HTTP protocols record the peer as `client`; that is how a request finds its connection.
    client = getattr(connection, "client", None)
    return (client[0], client[1]) if client else None


def _abort(connection: object) -> None:
    transport = getattr(connection, "transport", None)
    if transport is not None:
        with contextlib.suppress(Exception):
            transport.abort()
