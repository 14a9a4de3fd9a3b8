"""The order-level RPO check: a PostgreSQL backup taken with `pg_dump` while 16 clients post orders
is restored, and `drctl reconcile` (the real CLI, against a real control plane and simulator DCs)
names exactly the orders taken after the dump; `--repair` re-imports them, after which the store
and every DC ledger agree order by order and the stock reserved is what the live orders hold.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from sqlalchemy import select, text
from test_db_connections_dropped_e2e import HALF_WRITTEN
from test_failover_under_load_e2e import CLIENTS, Load, reconcile_live, wait_quiet

from chaos.order_stream import OrderFactory
from chaos.sim_process import wait_until
from control_plane.store.tables import OrderRow

from harness import control_plane, engine_for, prepare_database, start_simulator, write_test_world

# real servers under load but no timing bound: runs beside the other tests, not in the serial e2e phase
pytestmark = pytest.mark.load
# orders the backup caught mid-dispatch are re-posted (idempotently) 3 s after, not 30
LEASE = {"DRCTL_DISPATCH_LEASE_S": "3"}


def database_and_schema(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    options = parse_qs(parts.query)["options"][0]  # -csearch_path=<schema>
    return parts.path.lstrip("/"), options.split("=", 1)[1]


def pg_dump(url: str, out: Path) -> None:
    database, schema = database_and_schema(url)
    subprocess.run(
        ["pg_dump", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-n", schema, "-Fc", "-f", str(out)],
        check=True,
        timeout=120,
    )


def restore(url: str, dump: Path) -> None:
    """What an operator does after losing the database: drop what is left, restore the backup."""
    database, schema = database_and_schema(url)
    dsn = f"host=127.0.0.1 user=postgres dbname={database}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    subprocess.run(
        ["pg_restore", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "--no-owner", str(dump)],
        check=True,
        timeout=120,
    )


def stored_ids(url: str) -> set[str]:
    engine = engine_for(url)
    with engine.connect() as c:
        ids = set(c.scalars(select(OrderRow.id)))
    engine.dispose()
    return ids


def drctl(base_url: str, token: str, *args: str) -> tuple[int, dict[str, Any]]:
    env = {**os.environ, "DRCTL_URL": base_url, "DRCTL_TOKEN": token}
    done = subprocess.run(
        [sys.executable, "-m", "control_plane", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def test_a_restored_backup_is_reconciled_against_the_ledgers_and_repaired(
    pg_url: str, tmp_path: Path
) -> None:
    world, path = write_test_world(tmp_path / "world.yaml")
    issued = prepare_database(pg_url, world)
    factory = OrderFactory(world, seed=57)
    bodies = [factory.order() for _ in range(3000)]
    dump = tmp_path / "drctl.dump"
    with start_simulator(path) as sim:
        with control_plane(pg_url, tmp_path, LEASE) as cp:
            with Load(cp.base_url, issued["ingest"], bodies) as load:
                assert wait_until(lambda: load.posted() >= 300, 90, 0.05), "the load never got going"
                before = load.posted()  # answered before the dump began: in the backup
                pg_dump(pg_url, dump)
                after = load.posted()
                assert wait_until(lambda: load.posted() >= after + 400, 90, 0.05), (
                    "intake stalled after the dump"
                )
            wait_quiet(pg_url)
        answers = load.answers
        assert {r.status_code for r in answers} == {201}, {r.status_code for r in answers}
        taken = [r.json()["id"] for r in answers]
        restore(pg_url, dump)
        kept = stored_ids(pg_url)
        assert set(taken[:before]) <= kept
        # an answer past `after + CLIENTS` is for a request sent after the dump had finished
        assert not set(taken[after + CLIENTS :]) & kept
        lost = set(taken) - kept
        assert len(lost) >= 400
        with control_plane(pg_url, tmp_path, LEASE) as cp:
            code, report = drctl(cp.base_url, issued["operator"], "reconcile")
            assert code == 1 and report["clean"] is False
            named = {f["order_id"] for f in report["findings"]}
            assert named == lost  # exactly the orders taken after the dump
            assert {(f["kind"], f["action"]) for f in report["findings"]} == {("unknown_to_store", "import")}
            code, repaired = drctl(
                cp.base_url, issued["operator"], "reconcile", "--repair", "--reason", "restored the backup"
            )
            assert code == 0, [f for f in repaired["findings"] if not f["repaired"]][:3]
            code, again = drctl(cp.base_url, issued["operator"], "reconcile")
            assert code == 0 and again["findings"] == [] and again["clean"] is True
            wait_quiet(pg_url)
        # and, checked independently of the reconciler: every order taken is stored once and lives
        # in exactly its one DC ledger, and each site's reserved stock is what its live orders hold
        assert stored_ids(pg_url) == set(taken)
        statuses = reconcile_live(pg_url, sim, world, ignore_victim=False)
        assert statuses == {"accepted": len(taken)}
        engine = engine_for(pg_url)
        with engine.connect() as c:
            broken = {what: int(c.scalar(text(sql)) or 0) for what, sql in HALF_WRITTEN.items()}
        engine.dispose()
        assert broken == dict.fromkeys(HALF_WRITTEN, 0), broken
