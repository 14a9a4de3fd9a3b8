"""Shared fixtures: a fresh PostgreSQL database per session, SQLite files, the sample world."""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

# the headless Chromium fixture (tests/browser.py), registered here so pytest rewrites its asserts
pytest_plugins = ["browser"]


def _port_slice() -> None:
    """Each parallel worker takes free ports from its own slice (chaos.ports): one worker's DC that
    is down has released its port, and another worker must not be handed it meanwhile."""
    from chaos.ports import HIGH, LOW

    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if worker.startswith("gw") and worker[2:].isdigit() and count > 1:
        span = (HIGH - LOW + 1) // count
        first = LOW + int(worker[2:]) * span
        os.environ["DRCTL_PORT_RANGE"] = f"{first}-{first + span - 1}"


_port_slice()

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _pg_unavailable(reason: str) -> None:
    msg = (
        f"PostgreSQL at 127.0.0.1:5432 is not reachable ({reason}). Start it with "
        "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`."
    )
    if IN_CI:
        pytest.fail("CI=true: " + msg, pytrace=False)
    pytest.skip("SKIPPED LOUDLY, storage tests did not run on PostgreSQL: " + msg)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """Create a fresh database for this test session and drop it at the end; yield its admin DSN."""
    name = f"drctl_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        _pg_unavailable(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    yield name
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def fresh_schema(pg_server: str) -> Iterator[str]:
    """A clean schema inside the session's database, dropped afterwards; yield its URL."""
    schema = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN.replace("dbname=postgres", f"dbname={pg_server}"), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{pg_server}?options=-csearch_path%3D{schema}"
    with psycopg.connect(PG_ADMIN.replace("dbname=postgres", f"dbname={pg_server}"), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A clean schema for one test (dropped afterwards)."""
    with fresh_schema(pg_server) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'drctl.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each storage test runs on the embedded SQLite file and on real PostgreSQL."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


class _KeepRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # a record that cannot format is not ours to judge
        with contextlib.suppress(Exception):
            self.lines.append(record.getMessage() + " " + " ".join(str(v) for v in record.__dict__.values()))


@pytest.fixture(scope="session", autouse=True)
def no_token_in_any_log() -> Iterator[None]:
    """After the whole session: no token the suite issued appears in any log line it captured.

    In-process apps log through the root logger (kept here); control planes run as child processes
    write to files the harness lists.
    """
    from harness import CONTROL_PLANE_LOGS, ISSUED_TOKENS

    keeper = _KeepRecords()
    root = logging.getLogger()
    root.addHandler(keeper)
    yield
    root.removeHandler(keeper)
    texts = list(keeper.lines) + [p.read_text(errors="replace") for p in CONTROL_PLANE_LOGS if p.exists()]
    leaked = [
        t for t in ISSUED_TOKENS if any(t in text or t.removeprefix("drctl_") in text for text in texts)
    ]
    assert not leaked, f"{len(leaked)} issued tokens appear in log lines"
