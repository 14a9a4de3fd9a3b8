"""Engine and session factory for PostgreSQL (psycopg 3) or the embedded SQLite file."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")


def make_engine(url: str, pool_size: int = 20) -> Engine:
    """Build an engine; SQLite gets WAL and IMMEDIATE transactions so concurrent writers queue."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            u,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
            max_overflow=pool_size,
        )
        _sqlite_immediate_transactions(engine)
        return engine
    if u.drivername == "postgresql":
        # plain postgresql:// means psycopg2 to SQLAlchemy (DESIGN §12); we ship psycopg 3
        u = u.set(drivername="postgresql+psycopg")
    # No pool_pre_ping: it costs a round trip per checkout on the intake path (several per order).
    # A connection broken by a database restart fails one request, and the pool then replaces it.
    return create_engine(u, pool_size=pool_size, max_overflow=pool_size // 2, pool_recycle=1800)


def _sqlite_immediate_transactions(engine: Engine) -> None:
    # A deferred transaction that later writes can fail at once with "database is locked" when
    # another writer got there first; BEGIN IMMEDIATE takes the write lock up front and waits.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def is_postgresql(session: Session) -> bool:
    """Whether the session talks to PostgreSQL (row locks, SKIP LOCKED) rather than SQLite."""
    return session.bind is not None and session.bind.dialect.name == "postgresql"


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def engine_of(sessions: sessionmaker[Session]) -> Engine:
    """The engine a session factory is bound to, for hot paths that run Core statements on it."""
    engine = sessions.kw.get("bind")
    if not isinstance(engine, Engine):
        raise TypeError("the session factory is not bound to an engine")
    return engine


RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock detected, serialization failure


def retry_on_deadlock(work: Callable[[], T], attempts: int = 5) -> T:
    """Run a transaction again when PostgreSQL chose it as a deadlock (or serialization) victim.

    Two orders failing over at once can release stock at one site and reserve at another in
    opposite orders; the database breaks the cycle by aborting one, which is then simply retried.
    """
    for n in range(attempts):
        try:
            return work()
        except DBAPIError as exc:
            sqlstate = getattr(exc.orig, "sqlstate", None)
            if n == attempts - 1 or sqlstate not in RETRYABLE_SQLSTATES:
                raise
            time.sleep(0.005 * (n + 1))
    raise AssertionError("unreachable")


@contextmanager
def autocommit_connection(engine: Engine) -> Iterator[Any]:
    """The pooled psycopg connection itself, in autocommit mode, for hot paths whose statements
    are each their own transaction (SQLAlchemy's execution layer costs more CPU than they do)."""
    pooled = engine.raw_connection()
    conn = pooled.driver_connection
    try:
        conn.autocommit = True
        yield conn
    finally:
        if conn.broken:
            pooled.invalidate()  # a dead connection must not go back to the pool
        else:
            conn.autocommit = False  # the pool's other users expect SQLAlchemy's transactions
        pooled.close()


@contextmanager
def scratch_database(server_url: str, prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on the server of `server_url`, dropped afterwards; its URL.

    For work that must not touch the database the URL names (a drill's world, a benchmark): only
    the server and the credentials are taken from it.
    """
    import psycopg  # PostgreSQL only
    from psycopg import sql

    u = make_url(server_url)
    if u.get_backend_name() != "postgresql":
        raise ValueError("a scratch database needs a PostgreSQL server URL")
    name = f"{prefix}_{os.urandom(4).hex()}"
    # the server and credentials only: options such as a search_path name things in the old database
    u = u.set(query={})
    admin = u.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield u.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
