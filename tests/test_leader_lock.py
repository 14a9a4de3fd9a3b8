"""Leader locks: PostgreSQL advisory lock on its own connection, a file lock beside a SQLite file."""

from __future__ import annotations

from pathlib import Path

import psycopg
from sqlalchemy import text

from chaos.sim_process import wait_until
from control_plane.monitoring.leader import FileLock, LeaderElection, PgAdvisoryLock, lock_for

from conftest import PG_ADMIN


def end_session(lock: PgAdvisoryLock, database: str) -> None:
    """Have the server end the lock holder's session, as when its process is killed."""
    assert lock._conn is not None
    pid = lock._conn.execute(text("SELECT pg_backend_pid()")).scalar()
    with psycopg.connect(PG_ADMIN.replace("dbname=postgres", f"dbname={database}"), autocommit=True) as c:
        c.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_only_one_advisory_lock_holder_and_release_lets_the_next_in(pg_url: str) -> None:
    a, b = PgAdvisoryLock(pg_url), PgAdvisoryLock(pg_url)
    try:
        assert a.try_acquire() is True
        assert b.try_acquire() is False
        a.release()
        assert b.try_acquire() is True
        assert b.still_held() is True
    finally:
        a.release()
        b.release()


def test_a_dead_session_loses_the_lock_to_the_next_process(pg_url: str, pg_server: str) -> None:
    a, b = PgAdvisoryLock(pg_url), PgAdvisoryLock(pg_url)
    try:
        assert a.try_acquire()
        end_session(a, pg_server)
        assert wait_until(lambda: b.try_acquire(), 5)
        assert a.still_held() is False
        assert a.try_acquire() is False
    finally:
        a.release()
        b.release()


def test_installations_in_other_schemas_do_not_elect_each_other(pg_url: str, pg_server: str) -> None:
    other_schema = pg_url.replace("search_path%3D", "search_path%3Dother_")
    with psycopg.connect(PG_ADMIN.replace("dbname=postgres", f"dbname={pg_server}"), autocommit=True) as c:
        schema = "other_" + pg_url.rsplit("search_path%3D", 1)[1]
        c.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    a, b = PgAdvisoryLock(pg_url), PgAdvisoryLock(other_schema)
    try:
        assert a.try_acquire() and b.try_acquire()
    finally:
        a.release()
        b.release()


def test_file_lock_admits_one_holder_per_database_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'drctl.db'}"
    a, b = lock_for(url), lock_for(url)
    assert isinstance(a, FileLock)
    assert a.try_acquire() and not b.try_acquire()
    a.release()
    assert b.try_acquire()
    b.release()


def test_election_calls_elected_then_deposed_when_the_session_dies(pg_url: str, pg_server: str) -> None:
    events: list[str] = []
    lock = PgAdvisoryLock(pg_url)
    election = LeaderElection(lock, 0.05, lambda: events.append("elected"), lambda: events.append("deposed"))
    election.start()
    try:
        assert wait_until(lambda: events == ["elected"], 5)
        end_session(lock, pg_server)
        # it notices, steps down, and (the lock being free again) is elected anew
        assert wait_until(lambda: events[:3] == ["elected", "deposed", "elected"], 5), events
    finally:
        election.stop()
    assert events[-1] == "deposed"


def test_a_process_whose_jobs_fail_to_start_gives_the_lead_up(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'drctl.db'}"

    def broken() -> None:
        raise RuntimeError("scheduler would not start")

    election = LeaderElection(lock_for(url), 0.05, broken, lambda: None)
    election.tick()
    assert election.is_leader is False
    other = lock_for(url)
    assert other.try_acquire()  # the lock was released for a healthier process
    other.release()
