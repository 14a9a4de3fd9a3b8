"""The built-in alert engine end to end: a DC goes down, SiteDown reaches real receivers, then resolves.

Receivers are real: a webhook server, SNS and SES on a moto server (read back through moto's API)
and an SMTP server. The control plane runs as a child process on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chaos.sim_process import SimProcess, wait_until

from harness import ControlPlane, control_plane, prepare_database, start_simulator, write_test_world
from servers import MotoServer, SmtpSink, WebhookReceiver, moto_server, smtp_server, webhook_receiver

pytestmark = pytest.mark.e2e

REPEAT_S = 6.0
SETTINGS = {
    "DRCTL_PROBE_INTERVAL_S": "0.5",
    "DRCTL_PROBE_TIMEOUT_S": "0.4",
    "DRCTL_PROBE_FAILURE_THRESHOLD": "2",
    "DRCTL_PROBE_SUCCESS_THRESHOLD": "1",
    "DRCTL_LEADER_POLL_S": "0.25",
    "DRCTL_ALERT_EVAL_INTERVAL_S": "0.25",
    "DRCTL_ALERT_FOR_S": json.dumps({"SiteDown": 1}),
    "DRCTL_ALERT_REPEAT_INTERVAL_S": str(REPEAT_S),
    "DRCTL_ALERT_DELIVERY_INTERVAL_S": "0.2",
    "DRCTL_ALERT_DELIVERY_TIMEOUT_S": "2",
}
SENDER = "alerts@drctl.example"


@dataclass
class Stack:
    sim: SimProcess
    cp: ControlPlane
    tokens: dict[str, str]
    hook: WebhookReceiver
    smtp: SmtpSink
    moto: MotoServer
    queue_url: str

    def site_down_posts(self, kind: str | None = None) -> list[dict[str, Any]]:
        posts = [r.body["drctl"] for r in self.hook.requests if r.body and r.status < 300]
        return [
            p
            for p in posts
            if p["labels"].get("alertname") == "SiteDown" and (kind is None or p["kind"] == kind)
        ]


@contextlib.contextmanager
def alerting_stack(pg_url: str, tmp_path: Path) -> Iterator[Stack]:
    world, path = write_test_world(tmp_path / "world.yaml")
    tokens = prepare_database(pg_url, world)
    with webhook_receiver() as hook, smtp_server() as smtp, moto_server() as moto:
        moto.verify_sender(SENDER)
        topic_arn, queue_url = moto.sns_topic_with_queue(f"drctl-alerts-{time.time_ns()}")
        env = {
            **SETTINGS,
            **moto.env(),
            "DRCTL_AWS_ENDPOINT_URL": moto.endpoint_url,
            "DRCTL_AWS_REGION": moto.region,
            "DRCTL_ALERT_WEBHOOK_URL": hook.url,
            "DRCTL_ALERT_SNS_TOPIC_ARN": topic_arn,
            "DRCTL_ALERT_SES_FROM": SENDER,
            "DRCTL_ALERT_SES_TO": "oncall@retailer.example",
            "DRCTL_ALERT_SMTP_HOST": smtp.host,
            "DRCTL_ALERT_SMTP_PORT": str(smtp.port),
            "DRCTL_ALERT_SMTP_FROM": SENDER,
            "DRCTL_ALERT_SMTP_TO": "oncall@retailer.example, sre@retailer.example",
        }
        with start_simulator(path) as sim, control_plane(pg_url, tmp_path, env) as cp:
            yield Stack(sim, cp, tokens, hook, smtp, moto, queue_url)


def deliveries(cp: ControlPlane, token: str) -> list[dict[str, Any]]:
    with cp.client(token) as c:
        return list(c.get("/v1/alert-deliveries").json())


def test_site_down_notifies_once_repeats_after_the_interval_and_resolves_once(
    pg_url: str, tmp_path: Path
) -> None:
    with alerting_stack(pg_url, tmp_path) as st:
        viewer = st.cp.client(st.tokens["viewer"])
        # when Icheon goes down
        st.sim.set_fault("icheon", "down")
        assert wait_until(lambda: len(st.site_down_posts("firing")) == 1, 15), st.hook.requests
        first = time.monotonic()
        firing = st.site_down_posts("firing")[0]
        assert firing["labels"] == {"alertname": "SiteDown", "severity": "critical", "site": "icheon"}
        assert firing["annotations"]["summary"] == "DC icheon is down"

        # then nothing more until the repeat interval has passed, then exactly one repeat
        time.sleep(REPEAT_S - 2)
        assert len(st.site_down_posts()) == 1, st.site_down_posts()
        assert wait_until(lambda: len(st.site_down_posts("repeat")) == 1, 5)
        assert time.monotonic() - first >= REPEAT_S - 0.5

        # when Icheon is back: exactly one resolve, and no more firing
        st.sim.clear_fault("icheon")
        assert wait_until(lambda: len(st.site_down_posts("resolved")) == 1, 10)
        time.sleep(2)
        kinds = [p["kind"] for p in st.site_down_posts()]
        assert kinds == ["firing", "repeat", "resolved"], kinds

        # every other channel got the same three, read back at its server
        sns = st.moto.sns_received(st.queue_url, 3, timeout_s=10)
        assert [m["Subject"].split("]")[0] for m in sns] == ["[FIRING", "[FIRING", "[RESOLVED"]
        assert all("SiteDown" in m["Subject"] and "icheon" in m["Message"] for m in sns)
        ses = [m for m in st.moto.ses_sent() if m["source"] == SENDER]
        assert len(ses) == 3 and all("SiteDown" in m["subject"] for m in ses), ses
        mails = st.smtp.wait_for(3, timeout_s=10)
        assert ["RESOLVED" in m["Subject"] for m in mails] == [False, False, True]
        assert all(m["To"] == "oncall@retailer.example, sre@retailer.example" for m in mails)
        sent = {
            (d["channel"], d["kind"]) for d in deliveries(st.cp, st.tokens["viewer"]) if d["status"] == "sent"
        }
        assert sent == {
            (ch, k) for ch in ("webhook", "sns", "ses", "smtp") for k in ("firing", "repeat", "resolved")
        }

        # and the alert opened an incident that its resolve closed
        incidents = viewer.get("/v1/incidents").json()
        assert [(i["subject"], i["trigger"], i["status"]) for i in incidents] == [
            ("icheon", "alert", "resolved")
        ]
        timeline = [e["kind"] for e in viewer.get(f"/v1/incidents/{incidents[0]['id']}").json()["timeline"]]
        # the alert's own events; the DC-outage runbook it started waited for an approval and was
        # aborted once the incident resolved (its events are the `runbook` ones)
        assert [k for k in timeline if not k.startswith("runbook")] == [
            "opened",
            "alert_firing",
            "alert_resolved",
            "resolved",
        ], timeline

        def runs() -> list[tuple[str, str]]:
            found = viewer.get("/v1/runbook-executions", params={"runbook": "dc-outage"}).json()
            return [(r["started_by"], r["status"]) for r in found]

        assert wait_until(lambda: runs() == [("alert:SiteDown", "aborted")], 10), runs()


def test_a_silence_suppresses_site_down_and_a_failing_channel_blocks_no_other(
    pg_url: str, tmp_path: Path
) -> None:
    with alerting_stack(pg_url, tmp_path) as st:
        operator = st.cp.client(st.tokens["operator"])
        # given a silence on SiteDown for Icheon, and an SMTP server refusing every message
        silence = operator.post(
            "/v1/silences",
            json={
                "matchers": [{"name": "alertname", "value": "SiteDown"}, {"name": "site", "value": "icheon"}],
                "duration_s": 600,
                "comment": "planned maintenance at Icheon",
            },
        )
        assert silence.status_code == 201, silence.text
        st.smtp.fail_with(451)

        # when Icheon goes down, the alert fires but under the silence nobody is told
        st.sim.set_fault("icheon", "down")

        def firing() -> list[dict[str, Any]]:
            return [a for a in operator.get("/v1/alerts", params={"status": "firing"}).json()]

        assert wait_until(lambda: bool(firing()), 15)
        assert firing()[0]["silenced_by"] == [silence.json()["id"]]
        time.sleep(2)
        assert st.site_down_posts() == []

        # when the silence is expired, the firing notification goes out at the next evaluation
        assert operator.delete(f"/v1/silences/{silence.json()['id']}").status_code == 200
        assert wait_until(lambda: len(st.site_down_posts("firing")) == 1, 10)

        # and the failing SMTP channel held up neither the webhook nor SNS nor SES
        st.moto.sns_received(st.queue_url, 1, timeout_s=10)
        assert wait_until(lambda: any(m["source"] == SENDER for m in st.moto.ses_sent()), 10)
        assert wait_until(lambda: deliveries_attempted(st, "smtp"), 10)
        smtp = [d for d in deliveries(st.cp, st.tokens["viewer"]) if d["channel"] == "smtp"]
        assert smtp[0]["status"] == "pending" and smtp[0]["last_error"].startswith("smtp:"), smtp
        assert st.smtp.messages == []

        # both the silence and its expiry are audited
        admin = st.cp.client(st.tokens["admin"])
        actions = [a["action"] for a in admin.get("/v1/audit").json()]
        assert {"silence.create", "silence.expire"} <= set(actions)


def deliveries_attempted(st: Stack, channel: str) -> bool:
    return any(d["channel"] == channel and d["attempts"] >= 1 for d in deliveries(st.cp, st.tokens["viewer"]))
