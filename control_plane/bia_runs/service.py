"""BIA over the store: read the order history and the world, run `bia`, keep the result, apply targets.

A run is started over HTTP (`POST /v1/bia/runs`) or from `drctl bia run` without `--orders`; it
goes on in a background thread (one at a time) and is stored in `bia_runs`. When it finishes,
every site's tier, RTO and RPO are written to `sites`, so `/v1/sites` shows them and the failover
safety rules can read the expected demand from the latest run (`latest_site_targets`).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bia.engine import run_bia
from bia.params import BiaParams
from bia.results import BiaResult, SiteTarget, site_targets
from control_plane.bia_runs import repository as bia_repo
from control_plane.domain import InvalidInput, NotFound
from control_plane.store.tables import BiaRunRow
from control_plane.world import repository as world_repo

log = logging.getLogger("drctl.bia")


class BiaRunner:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Callable[[], datetime],
        on_targets_applied: Callable[[], None] = lambda: None,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._on_targets_applied = on_targets_applied
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drctl-bia")

    def start(self, actor: str, days: int, params: BiaParams) -> tuple[int, Future[BiaResult | None]]:
        """Queue a run over the last `days` of orders in the store; return its id at once."""
        if not 1 <= days <= 3660:
            raise InvalidInput("days must be between 1 and 3660")
        now = self._clock()
        with self._sessions.begin() as s:
            row = BiaRunRow(
                status="running",
                requested_by=actor,
                source=f"store:{days}d",
                params=params.to_json_dict(),
                created_at=now,
            )
            s.add(row)
            s.flush()
            run_id = row.id
        return run_id, self._pool.submit(self._run, run_id, now - timedelta(days=days), params)

    def _run(self, run_id: int, since: datetime, params: BiaParams) -> BiaResult | None:
        try:
            with tempfile.TemporaryDirectory(prefix="drctl-bia-") as workdir:
                with self._sessions() as s:
                    world = world_repo.load_world(s)
                    history, lines = bia_repo.order_history(s, since, Path(workdir))
                if lines == 0:
                    raise InvalidInput("no orders in the store for that period: nothing to analyse")
                result = run_bia(history, world, params, now=self._clock())
            doc = result.to_json_dict()
        except Exception as exc:
            log.exception("BIA run %s failed", run_id)
            self._finish(run_id, "failed", None, str(exc)[:2000], None)
            return None
        self._finish(run_id, "done", doc, None, lines)
        return result

    def _finish(
        self, run_id: int, status: str, doc: dict[str, Any] | None, error: str | None, lines: int | None
    ) -> None:
        now = self._clock()
        with self._sessions.begin() as s:
            row = s.get(BiaRunRow, run_id)
            assert row is not None
            _finish_row(s, row, status, doc, error, lines, now)
        if doc is not None:
            self._on_targets_applied()  # e.g. the site cache, so /v1/sites shows the new tiers at once

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _finish_row(
    s: Session,
    row: BiaRunRow,
    status: str,
    doc: dict[str, Any] | None,
    error: str | None,
    lines: int | None,
    now: datetime,
) -> None:
    row.status, row.result, row.error, row.order_lines, row.finished_at = status, doc, error, lines, now
    if doc is not None:
        targets = {c: (t.tier, t.rto_hours, t.rpo_seconds) for c, t in site_targets(doc).items()}
        world_repo.apply_bia_targets(s, targets, now)


def record_history_run(
    session: Session, actor: str, source: str, history: pl.DataFrame, params: BiaParams, now: datetime
) -> BiaResult:
    """Run the BIA over a history that is not in the store (the demo's generated one) and keep it
    as a finished run, its targets applied to the sites, as a run over the store would be."""
    world = world_repo.load_world(session)
    result = run_bia(history, world, params, now=now)
    row = BiaRunRow(
        status="running", requested_by=actor, source=source, params=params.to_json_dict(), created_at=now
    )
    session.add(row)
    _finish_row(session, row, "done", result.to_json_dict(), None, history.height, now)
    return result


def get_run(session: Session, run_id: int) -> BiaRunRow:
    row = session.get(BiaRunRow, run_id)
    if row is None:
        raise NotFound(f"no BIA run {run_id}")
    return row


def latest_run(session: Session) -> BiaRunRow:
    row = session.scalar(
        select(BiaRunRow).where(BiaRunRow.status == "done").order_by(BiaRunRow.finished_at.desc()).limit(1)
    )
    if row is None:
        raise NotFound("no finished BIA run yet: POST /v1/bia/runs or `drctl bia run`")
    return row


def latest_document(session: Session) -> dict[str, Any] | None:
    """The result document of the latest finished run; None when there is none."""
    try:
        row = latest_run(session)
    except NotFound:
        return None
    return row.result


def latest_site_targets(session: Session) -> dict[str, SiteTarget]:
    """Per-site expected demand, tier and RTO from the latest finished run (empty when none)."""
    return site_targets(latest_document(session) or {"sites": []})


def params_with(overrides: dict[str, Any]) -> BiaParams:
    """Default parameters with the caller's overrides (validated by BiaParams itself)."""
    known = set(BiaParams.__dataclass_fields__)
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise InvalidInput(f"unknown BIA parameter(s): {', '.join(unknown)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return replace(BiaParams(), **values)
