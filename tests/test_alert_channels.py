"""Alert channels: one contract run against webhook, SNS, SES and SMTP on real local servers; formatting."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

import pytest

from control_plane.alerting.channels import (
    AlertChannel,
    ChannelError,
    SesChannel,
    SmtpChannel,
    SnsChannel,
    WebhookChannel,
    message,
)
from control_plane.alerting.engine import Notification, NotificationKind, fingerprint

from factories import NOW
from servers import (
    MotoServer,
    SmtpSink,
    WebhookReceiver,
    closed_port,
    moto_server,
    mute_port,
    smtp_server,
    webhook_receiver,
)

TIMEOUT_S = 1.0
SECRET = "SECRETxyz"
SLACK_PATH = f"/services/T000/B000/{SECRET}"
SENDER = "drctl@shop.test"
ONCALL = "oncall@shop.test"
SITE_DOWN_LABELS = {"alertname": "SiteDown", "severity": "critical", "site": "icheon"}


def site_down(kind: NotificationKind = NotificationKind.FIRING, **annotations: str) -> Notification:
    ended = NOW + timedelta(minutes=7) if kind is NotificationKind.RESOLVED else None
    return Notification(
        kind=kind,
        fingerprint=fingerprint("SiteDown", SITE_DOWN_LABELS),
        labels=SITE_DOWN_LABELS,
        annotations={
            "summary": "DC icheon is down",
            "description": "Probes of icheon fail past the failure threshold.",
            **annotations,
        },
        starts_at=NOW,
        ends_at=ended,
    )


# --- one contract, every channel --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivered:
    """What the real server recorded, reduced to what every channel has."""

    subject: str
    body: str
    provider_id: str


@dataclass
class ChannelCase:
    make: Callable[[], AlertChannel]  # a channel on the live server
    read_back: Callable[[str], Delivered]  # what the server got, by the id `send` returned
    make_rejected: Callable[[], AlertChannel]  # one the live server answers with an error
    make_at: Callable[[int, float], AlertChannel]  # one pointed at another loopback port
    secret: str  # must never appear in a ChannelError
    opened: list[AlertChannel] = field(default_factory=list)

    def channel(self, factory: Callable[[], AlertChannel]) -> AlertChannel:
        made = factory()
        self.opened.append(made)
        return made


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


def _webhook_case(request: pytest.FixtureRequest) -> ChannelCase:
    receiver: WebhookReceiver = request.getfixturevalue("receiver")
    url = receiver.base_url + SLACK_PATH

    def read_back(provider_id: str) -> Delivered:
        got = receiver.wait_for(1, timeout_s=5.0)[-1]
        assert got.path == SLACK_PATH
        return Delivered(got.body["text"], json.dumps(got.body), f"HTTP {got.status}")

    def rejected() -> AlertChannel:
        receiver.fail_with(500)
        return WebhookChannel(url, TIMEOUT_S)

    return ChannelCase(
        make=lambda: WebhookChannel(url, TIMEOUT_S),
        read_back=read_back,
        make_rejected=rejected,
        make_at=lambda port, t: WebhookChannel(f"http://127.0.0.1:{port}{SLACK_PATH}", t),
        secret=SECRET,
    )


def _smtp_case(request: pytest.FixtureRequest) -> ChannelCase:
    sink: SmtpSink = request.getfixturevalue("smtp_sink")

    def smtp_at(port: int, timeout_s: float) -> AlertChannel:
        return SmtpChannel(sink.host, port, SENDER, [ONCALL], "alerts", SECRET, timeout_s=timeout_s)

    def read_back(provider_id: str) -> Delivered:
        got = sink.wait_for(1, timeout_s=5.0)[-1]
        return Delivered(str(got["Subject"]), str(got.get_content()), str(got["Message-ID"]))

    def rejected() -> AlertChannel:
        sink.fail_with(554)
        return smtp_at(sink.port, TIMEOUT_S)

    return ChannelCase(
        make=lambda: smtp_at(sink.port, TIMEOUT_S),
        read_back=read_back,
        make_rejected=rejected,
        make_at=smtp_at,
        secret=SECRET,
    )


def _sns_case(request: pytest.FixtureRequest) -> ChannelCase:
    moto: MotoServer = request.getfixturevalue("moto_env")
    topic_arn, queue_url = moto.sns_topic_with_queue(f"alerts-{uuid.uuid4().hex[:8]}")

    def read_back(provider_id: str) -> Delivered:
        got = moto.sns_received(queue_url, 1, timeout_s=5.0)[-1]
        return Delivered(got["Subject"], got["Message"], got["MessageId"])

    missing_topic = f"arn:aws:sns:{moto.region}:{moto.account}:no-such-topic"
    return ChannelCase(
        make=lambda: SnsChannel(topic_arn, moto.region, moto.endpoint_url, TIMEOUT_S),
        read_back=read_back,
        make_rejected=lambda: SnsChannel(missing_topic, moto.region, moto.endpoint_url, TIMEOUT_S),
        make_at=lambda port, t: SnsChannel(topic_arn, moto.region, f"http://127.0.0.1:{port}", t),
        secret=moto.env()["AWS_SECRET_ACCESS_KEY"],
    )


def _ses_case(request: pytest.FixtureRequest) -> ChannelCase:
    moto: MotoServer = request.getfixturevalue("moto_env")
    sender = f"drctl-{uuid.uuid4().hex[:8]}@shop.test"
    moto.verify_sender(sender)

    def read_back(provider_id: str) -> Delivered:
        got = moto.ses_message(provider_id, timeout_s=5.0)
        assert got["source"] == sender
        assert got["destinations"]["ToAddresses"] == [ONCALL]
        return Delivered(got["subject"], got["body"], got["id"])

    def ses(sender: str, endpoint_url: str, timeout_s: float) -> AlertChannel:
        return SesChannel(sender, [ONCALL], moto.region, endpoint_url, timeout_s)

    return ChannelCase(
        make=lambda: ses(sender, moto.endpoint_url, TIMEOUT_S),
        read_back=read_back,
        # SES (and moto) refuse a sender that was never verified
        make_rejected=lambda: ses("unverified@elsewhere.test", moto.endpoint_url, TIMEOUT_S),
        make_at=lambda port, t: ses(sender, f"http://127.0.0.1:{port}", t),
        secret=moto.env()["AWS_SECRET_ACCESS_KEY"],
    )


CASES = {"webhook": _webhook_case, "smtp": _smtp_case, "sns": _sns_case, "ses": _ses_case}


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as got:
        yield got


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    with smtp_server(login=("alerts", SECRET)) as sink:
        yield sink


@pytest.fixture
def moto_env(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """The module's moto server, with its credentials in this test's environment only."""
    for key, value in moto.env().items():
        monkeypatch.setenv(key, value)
    return moto


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> Iterator[ChannelCase]:
    built = CASES[request.param](request)
    yield built
    for opened in built.opened:
        opened.close()


class TestEveryChannel:
    """The contract every `AlertChannel` keeps, on its real server."""

    def test_firing_notification_arrives_with_alert_name_labels_and_summary(self, case: ChannelCase) -> None:
        channel = case.channel(case.make)

        provider_id = channel.send(site_down())

        got = case.read_back(provider_id)
        assert got.subject == "[FIRING] SiteDown site=icheon: DC icheon is down"
        assert "site" in got.body and "icheon" in got.body
        assert "Probes of icheon fail" in got.body
        assert site_down().fingerprint in got.body

    def test_resolved_notification_arrives_marked_resolved_with_its_end(self, case: ChannelCase) -> None:
        channel = case.channel(case.make)

        provider_id = channel.send(site_down(NotificationKind.RESOLVED))

        got = case.read_back(provider_id)
        assert got.subject.startswith("[RESOLVED] SiteDown site=icheon")
        assert "resolved" in got.body
        assert "2026-11-23T12:07:00Z" in got.body

    def test_send_returns_the_id_the_server_recorded(self, case: ChannelCase) -> None:
        channel = case.channel(case.make)

        provider_id = channel.send(site_down())

        assert provider_id
        assert case.read_back(provider_id).provider_id == provider_id

    def test_server_answering_an_error_raises_channel_error_without_secrets(self, case: ChannelCase) -> None:
        channel = case.channel(case.make_rejected)

        with pytest.raises(ChannelError) as err:
            channel.send(site_down())

        assert str(err.value).startswith(f"{channel.name}: ")
        assert case.secret not in str(err.value)

    def test_refused_connection_raises_channel_error_at_once(self, case: ChannelCase) -> None:
        channel = case.channel(lambda: case.make_at(closed_port(), TIMEOUT_S))

        started = time.monotonic()
        with pytest.raises(ChannelError) as err:
            channel.send(site_down())

        assert time.monotonic() - started < TIMEOUT_S
        assert str(err.value).startswith(f"{channel.name}: ")
        assert case.secret not in str(err.value)

    def test_server_that_never_answers_raises_channel_error_within_one_timeout(
        self, case: ChannelCase
    ) -> None:
        with mute_port() as port:
            channel = case.channel(lambda: case.make_at(port, TIMEOUT_S))

            started = time.monotonic()
            with pytest.raises(ChannelError) as err:
                channel.send(site_down())
            elapsed = time.monotonic() - started

        # under two timeouts: exactly one attempt (no retry inside the channel)
        assert elapsed < 1.8 * TIMEOUT_S
        assert case.secret not in str(err.value)


# --- what only one channel does ------------------------------------------------------------------------


def test_webhook_body_carries_machine_readable_drctl_object(receiver: WebhookReceiver) -> None:
    channel = WebhookChannel(receiver.url, TIMEOUT_S)

    channel.send(site_down(NotificationKind.RESOLVED))
    channel.close()

    got = receiver.wait_for(1)[0]
    assert got.headers["content-type"] == "application/json"
    assert got.body["drctl"]["kind"] == "resolved"
    assert got.body["drctl"]["labels"] == SITE_DOWN_LABELS
    assert got.body["attachments"][0]["color"] == "good"


def test_webhook_recovers_once_receiver_stops_failing(receiver: WebhookReceiver) -> None:
    channel = WebhookChannel(receiver.url, TIMEOUT_S)
    receiver.fail_with(503)
    with pytest.raises(ChannelError, match="webhook: HTTP 503"):
        channel.send(site_down())

    receiver.fail_with(None)
    provider_id = channel.send(site_down())
    channel.close()

    assert provider_id == "HTTP 200"
    assert [r.status for r in receiver.wait_for(2)] == [503, 200]


def test_smtp_wrong_password_raises_channel_error_without_the_password() -> None:
    with smtp_server(login=("alerts", "right-password")) as sink:
        channel = SmtpChannel(sink.host, sink.port, SENDER, [ONCALL], "alerts", SECRET, timeout_s=TIMEOUT_S)

        with pytest.raises(ChannelError) as err:
            channel.send(site_down())

    assert str(err.value) == "smtp: SMTPAuthenticationError 535"
    assert sink.messages == []


def test_smtp_server_going_down_raises_channel_error() -> None:
    with smtp_server() as sink:
        channel = SmtpChannel(sink.host, sink.port, SENDER, [ONCALL], timeout_s=TIMEOUT_S)
        channel.send(site_down())
        sink.stop()

        with pytest.raises(ChannelError, match=r"^smtp: "):
            channel.send(site_down(NotificationKind.RESOLVED))

    assert len(sink.messages) == 1


def test_smtp_email_names_every_recipient_and_the_alert_in_headers() -> None:
    with smtp_server() as sink:
        channel = SmtpChannel(sink.host, sink.port, SENDER, [ONCALL, "lead@shop.test"], timeout_s=TIMEOUT_S)

        channel.send(site_down())

        got = sink.received[0]
    assert got.rcpt_tos == [ONCALL, "lead@shop.test"]
    assert got.message["X-Drctl-Kind"] == "firing"
    assert got.message["X-Drctl-Fingerprint"] == site_down().fingerprint


def test_sns_subject_longer_than_sns_allows_is_shortened_and_still_published(moto_env: MotoServer) -> None:
    topic_arn, queue_url = moto_env.sns_topic_with_queue(f"long-{uuid.uuid4().hex[:8]}")
    channel = SnsChannel(topic_arn, moto_env.region, moto_env.endpoint_url, TIMEOUT_S)
    long_summary = "DC icheon is down " + "and so is everything downstream " * 5

    channel.send(site_down(summary=long_summary))
    channel.close()

    got = moto_env.sns_received(queue_url, 1)[0]
    assert len(got["Subject"]) == 100
    assert got["Subject"].startswith("[FIRING] SiteDown site=icheon: DC icheon is down")
    assert long_summary.strip() in got["Message"]


# --- message formatting (pure) -------------------------------------------------------------------------


def test_subject_of_firing_names_alert_labels_and_summary() -> None:
    assert message.subject(site_down()) == "[FIRING] SiteDown site=icheon: DC icheon is down"


def test_subject_of_resolved_says_resolved() -> None:
    subject = message.subject(site_down(NotificationKind.RESOLVED))

    assert subject == "[RESOLVED] SiteDown site=icheon: DC icheon is down"


def test_subject_of_repeat_still_fires_and_says_repeat() -> None:
    subject = message.subject(site_down(NotificationKind.REPEAT))

    assert subject == "[FIRING] SiteDown site=icheon: DC icheon is down (repeat)"


def test_subject_of_alert_without_own_labels_is_name_and_summary() -> None:
    note = Notification(
        NotificationKind.FIRING,
        "fp",
        {"alertname": "OrdersHeld", "severity": "warning"},
        {"summary": "3 orders held"},
        NOW,
    )

    assert message.subject(note) == "[FIRING] OrdersHeld: 3 orders held"


def test_subject_is_one_line_even_when_summary_has_line_breaks() -> None:
    subject = message.subject(site_down(summary="DC icheon\r\nis down"))

    assert subject == "[FIRING] SiteDown site=icheon: DC icheon is down"


def test_text_lists_description_labels_start_and_fingerprint() -> None:
    body = message.text(site_down())

    assert body.splitlines()[0] == "[FIRING] SiteDown site=icheon: DC icheon is down"
    assert "Probes of icheon fail past the failure threshold." in body
    assert "Status: firing" in body
    for line in ("  alertname=SiteDown", "  severity=critical", "  site=icheon"):
        assert line in body.splitlines()
    assert "Started: 2026-11-23T12:00:00Z" in body
    assert "Ended:" not in body
    assert f"Fingerprint: {site_down().fingerprint}" in body


def test_text_of_resolved_shows_status_and_end() -> None:
    body = message.text(site_down(NotificationKind.RESOLVED))

    assert "Status: resolved" in body
    assert "Ended: 2026-11-23T12:07:00Z" in body


def test_text_shows_annotations_beyond_summary_and_description() -> None:
    body = message.text(site_down(runbook_url="https://runbooks.test/site-down"))

    assert "  runbook_url: https://runbooks.test/site-down" in body


def test_times_are_shown_in_utc_whatever_zone_they_come_in() -> None:
    seoul = timezone(timedelta(hours=9))

    assert message.iso_utc(datetime(2026, 11, 23, 21, 0, 5, 123, tzinfo=seoul)) == "2026-11-23T12:00:05Z"
    assert message.iso_utc(datetime(2026, 11, 23, 12, 0)) == "2026-11-23T12:00:00Z"  # naive: UTC


def test_slack_payload_of_firing_is_red_with_labels_as_fields() -> None:
    payload = message.slack_payload(site_down())

    attachment = payload["attachments"][0]
    assert payload["text"] == "[FIRING] SiteDown site=icheon: DC icheon is down"
    assert attachment["color"] == "danger"
    assert {"title": "site", "value": "icheon", "short": True} in attachment["fields"]
    assert attachment["ts"] == int(NOW.timestamp())


def test_slack_payload_of_resolved_is_green_and_carries_end() -> None:
    payload = message.slack_payload(site_down(NotificationKind.RESOLVED))

    assert payload["attachments"][0]["color"] == "good"
    assert payload["drctl"]["ends_at"] == "2026-11-23T12:07:00Z"


def test_slack_payload_carries_the_notification_for_machines_as_json() -> None:
    note = site_down()

    drctl = json.loads(json.dumps(message.slack_payload(note)))["drctl"]

    assert drctl == {
        "kind": "firing",
        "fingerprint": note.fingerprint,
        "labels": SITE_DOWN_LABELS,
        "annotations": dict(note.annotations),
        "starts_at": NOW.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "ends_at": None,
    }


def test_slack_payload_escapes_markup_so_a_label_cannot_mention_the_channel() -> None:
    payload = message.slack_payload(site_down(summary="<!channel> DC icheon & co are down"))

    assert "<!channel>" not in payload["text"]
    assert "&lt;!channel&gt; DC icheon &amp; co are down" in payload["text"]
    assert payload["drctl"]["annotations"]["summary"] == "<!channel> DC icheon & co are down"
