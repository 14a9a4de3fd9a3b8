"""`drctl notices list` against a running control plane: what an operator sees (JSON or a table),
the filters, and the exit codes (DESIGN §6: 0 ok, 1 unreachable, 2 usage or bad input).

One control plane serves the whole module (SQLite, background jobs off, so nothing but the test
changes a notice); the notices are written into its store the way the order path and the sender
write them (`NoticeWriter`, `NoticeDelivery` with a log channel).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from chaos.order_stream import OrderFactory
from chaos.ports import free_port
from control_plane.domain import OrderStatus, World
from control_plane.metrics import Metrics
from control_plane.notices.channels import LogNoticeChannel
from control_plane.notices.jobs import DeliveryConfig, NoticeDelivery
from control_plane.notices.service import NoticePolicy, NoticeWriter
from control_plane.operations import repository as incident_repo
from control_plane.orders import repository as order_repo
from control_plane.orders.schemas import OrderIn
from control_plane.orders.slips import Slip, SlipReason
from control_plane.store.db import make_engine, make_session_factory
from control_plane.store.tables import OrderRow
from failover.breakers import BreakerBoard, BreakerPolicy

from harness import ControlPlane, control_plane, prepare_database, write_test_world

# real processes, but what an operator sees and exit codes, no timing bound:
# these run beside the other tests, not in the serial end-to-end phase

POLICY = NoticePolicy(
    slack=timedelta(hours=12), coalesce_s=30, timezone="Asia/Seoul", support_url="https://shop.example/help"
)


@dataclass
class Served:
    cp: ControlPlane
    tokens: dict[str, str]
    url: str
    world: World
    log_dir: Path

    def drctl(self, *args: str, token: str | None = None, env: dict[str, str] | None = None) -> Result:
        """Run `drctl` as an operator's shell would, with DRCTL_URL and a viewer's DRCTL_TOKEN set
        (an empty value in `env` unsets that variable)."""
        full = {**os.environ, "DRCTL_URL": self.cp.base_url, "DRCTL_TOKEN": token or self.tokens["viewer"]}
        full.update(env or {})
        return run_drctl(*args, env={k: v for k, v in full.items() if v})


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        assert self.code == 0, self.stderr
        return json.loads(self.stdout)

    def orders(self) -> list[str]:
        return [n["order_id"] for n in self.json()]


def run_drctl(*args: str, env: dict[str, str]) -> Result:
    done = subprocess.run(
        [sys.executable, "-m", "control_plane", *args], env=env, capture_output=True, text=True, timeout=60
    )
    return Result(done.returncode, done.stdout, done.stderr)


@dataclass(frozen=True)
class Written:
    """The notices the module wrote: order ids (UUIDs, as the order path makes them) by what happened."""

    incident: int
    sent: list[str]  # moved off icheon (its incident) and told
    pending: list[str]  # moved off busan (no incident), letter not due yet


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One control plane for the module, on a store with the test world and no notice yet."""
    tmp = tmp_path_factory.mktemp("cli-notices")
    url = f"sqlite:///{tmp / 'drctl.db'}"
    world, _ = write_test_world(tmp / "world.yaml")
    tokens = prepare_database(url, world)
    with control_plane(url, tmp, {"DRCTL_BACKGROUND_JOBS": "false"}) as cp:
        yield Served(cp, tokens, url, world, tmp)


@pytest.fixture(scope="module")
def written(served: Served) -> Written:
    """Given icheon's outage: one customer's two orders moved off it and told; another customer's
    order moved off busan, its letter still waiting for more late orders."""
    engine = make_engine(served.url, pool_size=2)
    now = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    try:
        sessions = make_session_factory(engine)
        factory = OrderFactory(served.world, seed=3)
        with sessions.begin() as s:
            incident = incident_repo.ensure_open_incident(
                s, "site_outage", "icheon", "operator", "flood", now
            ).id
        sent = [late_order(sessions, factory, "cust-1", "icheon", now) for _ in range(2)]
        now += timedelta(seconds=31)
        log_channel = LogNoticeChannel(served.log_dir / "sent.jsonl")
        NoticeDelivery(
            sessions,
            {"email": log_channel, "sms": log_channel},
            BreakerBoard(BreakerPolicy(fail_max=3, reset_timeout_s=30, success_threshold=1)),
            Metrics(CollectorRegistry()),
            POLICY,
            DeliveryConfig(timeout_s=1.0, max_attempts=3, backoff_base_s=1, backoff_max_s=2),
            lambda: now,
        ).deliver_due()
        pending = [late_order(sessions, factory, "cust-2", "busan", now)]
        return Written(incident, sent, pending)
    finally:
        engine.dispose()


def late_order(
    sessions: sessionmaker[Session], factory: OrderFactory, customer: str, left: str, now: datetime
) -> str:
    """An order promised in 20 h that was moved off `left` to an ETA 30 h out: late, so noticed."""
    order_id = str(uuid.uuid4())
    body = factory.order()
    body["customer"].update({"id": customer, "locale": "en"})
    req = replace(OrderIn.model_validate(body).to_request(now, 48), promised_by=now + timedelta(hours=20))
    eta = now + timedelta(hours=30)
    with sessions.begin() as s:
        order_repo.insert_order(s, order_id, req, OrderStatus.ROUTED, "daejeon", now, now, now)
        s.execute(update(OrderRow).where(OrderRow.id == order_id).values(eta=eta))
        row = s.get(OrderRow, order_id)
        assert row is not None
        NoticeWriter(POLICY).record(s, [Slip.of(row, eta, left, SlipReason.MOVED)], now)
    return order_id


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def error_line(stderr: str) -> str:
    """The line that names the problem (click prints its usage lines above it)."""
    errors = [line for line in stderr.splitlines() if line.lower().startswith("error")]
    assert len(errors) == 1, stderr
    return errors[0]


# --- what an operator sees ---------------------------------------------------------------------------
# (this test runs first: it sees the store before `written` fills it)


def test_list_json_is_empty_before_any_notice_and_lists_notices_once_written(
    served: Served, request: pytest.FixtureRequest
) -> None:
    # given a control plane no order has been late on
    empty = served.drctl("notices", "list", "--json")
    assert empty.json() == [], "the store must still be empty: this test runs before `written` fills it"
    # when orders are late and noticed
    notices: Written = request.getfixturevalue("written")
    # then the list shows them, newest first, each with its notice's fields
    listed = served.drctl("notices", "list", "--json").json()
    assert [n["order_id"] for n in listed] == [*reversed(notices.pending), *reversed(notices.sent)]
    assert {(n["status"], n["channel"]) for n in listed} == {("sent", "email"), ("pending", "email")}
    assert all(n["incident_id"] == notices.incident for n in listed if n["status"] == "sent"), listed


def test_the_table_in_a_wide_terminal_shows_each_notices_order_and_status(
    served: Served, written: Written
) -> None:
    done = served.drctl("notices", "list", env={"COLUMNS": "200"})
    assert done.code == 0, done.stderr
    rows = {line.split("│")[2].strip(): line for line in done.stdout.splitlines() if line.count("│") > 2}
    assert set(written.sent + written.pending) <= set(rows), done.stdout
    assert all("sent" in rows[o] for o in written.sent) and "pending" in rows[written.pending[0]]


def test_the_table_at_80_columns_still_shows_the_whole_order_id(served: Served, written: Written) -> None:
    # given output to a pipe or an 80-column terminal (Rich then lays the table out in 80 columns)
    done = served.drctl("notices", "list", env={"COLUMNS": "80"})
    assert done.code == 0, done.stderr
    # then the order id, what an operator copies into --order or greps for, is shown whole
    missing = [o for o in written.sent + written.pending if o not in done.stdout]
    assert not missing, (
        "BUG control_plane/cli/notices.py list_notices(): the table's order column is ellipsized at 80 "
        "columns (a UUID order id shows as '1234abcd…'), so `drctl notices list | grep ORDER` finds "
        f"nothing; the column needs no_wrap/min_width (or overflow='fold'):\n{done.stdout}"
    )


def test_the_table_says_when_there_is_no_notice(served: Served, written: Written) -> None:
    done = served.drctl("notices", "list", "--order", "never-placed")
    assert done.code == 0, done.stderr
    assert "no notices" in done.stdout


def test_status_sent_lists_only_the_notices_that_went_out(served: Served, written: Written) -> None:
    listed = served.drctl("notices", "list", "--status", "sent", "--json").json()
    assert [n["order_id"] for n in listed] == list(reversed(written.sent))
    assert {n["status"] for n in listed} == {"sent"}
    assert all(n["sent_via"] == "log" and n["sent_at"] for n in listed), listed


def test_order_incident_and_limit_narrow_the_list(served: Served, written: Written) -> None:
    first = written.sent[0]
    assert served.drctl("notices", "list", "--order", first, "--json").orders() == [first]
    by_incident = served.drctl("notices", "list", "--incident", str(written.incident), "--json").orders()
    assert by_incident == list(reversed(written.sent))
    assert served.drctl("notices", "list", "--limit", "1", "--json").orders() == written.pending


# --- bad input: exit 2, nothing listed ---------------------------------------------------------------


def test_a_typod_option_exits_2_naming_it_and_lists_nothing(served: Served, written: Written) -> None:
    # when an operator means --status but types --staus
    done = served.drctl("notices", "list", "--staus", "sent")
    # then it is refused naming the option (and the one meant), and no table or list is printed
    assert done.code == 2, done.stderr
    line = error_line(done.stderr)
    assert "--staus" in line and "--status" in line, line
    assert done.stdout == ""


def test_a_typod_option_is_reported_in_one_line(served: Served) -> None:
    done = served.drctl("notices", "list", "--staus", "sent")
    assert done.code == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, (
        "BUG control_plane/cli/main.py main(): a usage error is shown with click's exc.show() (a Usage "
        "line, a Try line, a blank line, then Error: ...) although main.py, cli/errors.py and README "
        f"promise bad input as one line on stderr; got {len(lines)} lines:\n{done.stderr}"
    )


@pytest.mark.parametrize(
    ("args", "named"),
    [(["--status", "bogus"], "--status"), (["--limit", "0"], "--limit"), (["--incident", "0"], "--incident")],
)
def test_a_bad_option_value_exits_2_naming_the_option(served: Served, args: list[str], named: str) -> None:
    done = served.drctl("notices", "list", *args, "--json")
    assert done.code == 2, done.stderr
    assert named in error_line(done.stderr)
    assert done.stdout == ""


def test_without_a_token_it_exits_2_saying_how_to_get_one(served: Served) -> None:
    done = served.drctl("notices", "list", env={"DRCTL_TOKEN": ""})
    assert done.code == 2, done.stderr
    line = one_line(done.stderr)
    assert "a token is needed" in line and "--token or DRCTL_TOKEN" in line, line
    assert done.stdout == ""


def test_an_unknown_token_exits_2_with_the_apis_answer_in_one_line(served: Served) -> None:
    done = served.drctl("notices", "list", token="drctl_not-a-real-token")
    assert done.code == 2, done.stderr
    line = one_line(done.stderr)
    assert "401" in line and "unknown, revoked or expired token" in line, line
    assert "drctl_not-a-real-token" not in done.stderr


# --- the control plane cannot be reached: exit 1 ----------------------------------------------------


def test_an_unreachable_control_plane_exits_1_in_one_line(served: Served) -> None:
    done = served.drctl("notices", "list", "--url", f"http://127.0.0.1:{free_port()}")
    assert done.code == 1, done.stderr
    line = one_line(done.stderr)
    assert "cannot reach the control plane" in line, line
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("variable", "value"),
    [("DRCTL_NOTICE_EMAIL_CHANNEL", "sms"), ("DRCTL_NOTICE_TIMEZONE", "Asia/Seol")],
)
def test_a_typod_notice_setting_exits_2_naming_it_and_serves_nothing(
    tmp_path: Path, variable: str, value: str
) -> None:
    database = tmp_path / "never.db"
    env = {**os.environ, "DRCTL_DATABASE_URL": f"sqlite:///{database}", variable: value}
    done = run_drctl("serve", "--port", "1", env=env)
    assert done.code == 2
    assert one_line(done.stderr).startswith(f"bad setting {variable}: "), done.stderr
    assert not database.exists()
