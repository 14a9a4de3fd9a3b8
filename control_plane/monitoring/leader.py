"""Leader election among control-plane processes: exactly one runs the periodic jobs.

PostgreSQL: a session-level advisory lock held on a dedicated connection outside the pool (a
pooled connection would carry the lock back into the pool and leak it, DESIGN §12). When the
leader dies, even by SIGKILL, its session ends, PostgreSQL drops the lock and the next follower to
try takes it. The lock key is derived from the schema, so installations sharing a database do
not elect each other. SQLite (one machine): an exclusive `flock` on a file beside the database,
released by the kernel when the process exits, so several workers on one file elect one too.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Protocol

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

log = logging.getLogger("drctl.leader")


class LeaderLock(Protocol):
    def try_acquire(self) -> bool:
        """Take the lock if free; True when this process holds it now."""
        ...

    def still_held(self) -> bool:
        """Whether the lock is still ours (False once the connection behind it is gone)."""
        ...

    def release(self) -> None: ...


def lock_key(namespace: str) -> int:
    """A stable signed 64-bit advisory-lock key for `namespace`."""
    digest = hashlib.blake2b(f"drctl.scheduler:{namespace}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, signed=True)


class PgAdvisoryLock:
    def __init__(self, url: str, connect_timeout_s: float = 3.0) -> None:
        u = make_url(url)
        if u.drivername == "postgresql":
            u = u.set(drivername="postgresql+psycopg")
        # NullPool: the connection is ours alone and really closes on release. Client-side keepalives
        # and a user timeout make a check fail within ~10 s when the server vanishes (host loss, HA
        # failover) instead of hanging for the kernel's ~15 min while we still believe we lead.
        self._engine = create_engine(
            u,
            poolclass=NullPool,
            connect_args={
                "connect_timeout": max(1, int(connect_timeout_s)),
                "keepalives": 1,
                "keepalives_idle": 5,
                "keepalives_interval": 2,
                "keepalives_count": 3,
                "tcp_user_timeout": 10_000,
            },
        )
        self._conn: Connection | None = None
        self._key: int | None = None

    def try_acquire(self) -> bool:
        try:
            conn = self._connection()
            assert self._key is not None
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self._key}).scalar())
        except Exception as exc:
            log.warning("leader lock: cannot reach the database (%s)", type(exc).__name__)
            self._drop()
            return False
        return got

    def still_held(self) -> bool:
        if self._conn is None:
            return False
        try:
            # a session-level lock lives as long as its session: a live connection still holds it
            self._conn.execute(text("SELECT 1"))
        except Exception as exc:
            log.warning("leader lock: connection lost (%s)", type(exc).__name__)
            self._drop()
            return False
        return True

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
        self._drop()
        self._engine.dispose()

    def _connection(self) -> Connection:
        if self._conn is None:
            conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            # The server drops a vanished leader's session (and so its lock) after ~15 s of silence
            # instead of the kernel's default of hours, e.g. when its host loses power; no statement
            # on this connection may wait longer than 5 s.
            for setting in (
                "tcp_keepalives_idle = 5",
                "tcp_keepalives_interval = 2",
                "tcp_keepalives_count = 3",
                "statement_timeout = '5s'",
            ):
                with contextlib.suppress(Exception):
                    conn.execute(text(f"SET {setting}"))
            schema = conn.execute(text("SELECT current_database() || '.' || current_schema()")).scalar()
            self._key = lock_key(str(schema))
            self._conn = conn
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.invalidate()
                self._conn.close()
        self._conn = None


class FileLock:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._file: IO[bytes] | None = None

    def try_acquire(self) -> bool:
        if self._file is not None:
            return True
        self._path.parent.mkdir(parents=True, exist_ok=True)
        f = self._path.open("ab")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            return False
        self._file = f
        return True

    def still_held(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def lock_for(database_url: str) -> LeaderLock:
    """The leader lock that fits the database: advisory lock on PostgreSQL, a file lock on SQLite."""
    u = make_url(database_url)
    if u.get_backend_name() == "sqlite":
        db = u.database if u.database and u.database != ":memory:" else f"drctl-{os.getpid()}.db"
        return FileLock(Path(db + ".leader"))
    return PgAdvisoryLock(database_url)


class LeaderElection:
    """Try for the lock every `poll_s`; call `on_elected` / `on_deposed` as leadership changes."""

    def __init__(
        self,
        lock: LeaderLock,
        poll_s: float,
        on_elected: Callable[[], None],
        on_deposed: Callable[[], None],
    ) -> None:
        self._lock = lock
        self._poll_s = poll_s
        self._on_elected = on_elected
        self._on_deposed = on_deposed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drctl-leader", daemon=True)
        self.is_leader = False

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self.halt(timeout_s)
        self.release()

    def halt(self, timeout_s: float = 10.0) -> None:
        """Stop trying for the lead and step down, but keep the lock (the caller drains its jobs first)."""
        self._stop.set()
        self._thread.join(timeout_s)
        if self.is_leader:
            self._step_down("stopping")

    def release(self) -> None:
        self._lock.release()

    def _run(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:
                log.exception("leader election tick failed")
            if self._stop.wait(self._poll_s):
                return

    def tick(self) -> None:
        if not self.is_leader:
            if self._lock.try_acquire():
                try:
                    self._on_elected()
                except Exception:
                    # holding the lock without running the jobs would leave nobody probing anywhere
                    log.exception("starting the leader's jobs failed; giving the lead up")
                    self._on_deposed()
                    self._lock.release()
                    return
                self.is_leader = True
                log.warning("this process is now the scheduler leader (pid %s)", os.getpid())
        elif not self._lock.still_held():
            self._step_down("lock lost")

    def _step_down(self, why: str) -> None:
        self.is_leader = False
        log.warning("this process is no longer the scheduler leader: %s", why)
        self._on_deposed()
