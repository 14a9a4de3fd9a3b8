"""Notice channels: one contract run against SMTP, SES, SNS, the webhook relay and the log on real local
receivers; what only one channel does; masking and E.164 of contacts."""

from __future__ import annotations

import email
import email.policy
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from control_plane.notices.channels import (
    LogNoticeChannel,
    NoticeChannel,
    NoticeChannelError,
    SesNoticeChannel,
    SmtpNoticeChannel,
    SnsSmsChannel,
    WebhookNoticeChannel,
    verify_signature,
)
from control_plane.notices.channels.mime import message_id
from control_plane.notices.contacts import mask_contact, mask_email, mask_phone, to_e164
from control_plane.notices.letters import Envelope, RenderedEmail, RenderedSms, Sent

from servers import (
    MotoServer,
    SmtpSink,
    WebhookReceiver,
    closed_port,
    moto_server,
    smtp_server,
    webhook_receiver,
)

TIMEOUT_S = 1.0
SECRET = "SECRETxyz"  # SMTP password, webhook signing secret and the token in the relay's URL
RELAY_PATH = f"/relay/{SECRET}/notices"
SENDER = "notices@shop.test"
EMAIL = "kim.minsu@example.com"
PHONE = "+821012345678"
CUSTOMER = "cust-1042"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

SUBJECT = "[쇼핑몰] 주문 배송이 늦어지고 있습니다"
TEXT = "김민수님, 주문 A-1001의 배송이 늦어지고 있습니다.\n새 도착 예정일: 11월 26일\n"
HTML = "<p>김민수님, 주문 <b>A-1001</b>의 배송이 늦어지고 있습니다.</p>"
SMS_TEXT = "[쇼핑몰] 주문 A-1001 배송 지연: 11/26 도착 예정"
LMS_TEXT = "[쇼핑몰] 김민수님, 주문 A-1001, A-1002의 배송이 물류센터 사정으로 늦어지고 있습니다. " * 2


def envelope(to: str, key: str = "delay:cust-1042:inc-7", sms: RenderedSms | None = None) -> Envelope:
    return Envelope(
        key=key,
        to=to,
        email=RenderedEmail(SUBJECT, TEXT, HTML),
        sms=sms or RenderedSms(SMS_TEXT, "sms", 50),
        data={"orders": ["A-1001"], "new_eta": "2026-11-26"},
    )


def body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    assert part is not None, f"no text/{subtype} part"
    # base64 text is encoded in MIME's canonical form (CRLF line ends); mail readers show \n
    return str(part.get_content()).replace("\r\n", "\n")


# --- one contract, every channel ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Arrived:
    """What a real receiver recorded of one send, reduced to what every channel has."""

    to: str
    subject: str | None  # None: the medium has no subject (SMS)
    text: str | None  # the e-mail text, or the SMS text; None: the receiver keeps no text (log)
    provider_id: str  # the id the receiver knows the message by


@dataclass
class NoticeCase:
    make: Callable[[], NoticeChannel]  # a channel on the live receiver
    envelope: Envelope  # addressed for the channel's medium
    expected: Arrived  # what should arrive (provider_id: filled in with what `send` returned)
    arrived: Callable[[], list[Arrived]]  # everything the receiver got so far
    make_failing: Callable[[], NoticeChannel]  # one whose receiver fails the send
    private: tuple[str, ...]  # must never appear in a NoticeChannelError
    opened: list[NoticeChannel] = field(default_factory=list)

    def channel(self, factory: Callable[[], NoticeChannel]) -> NoticeChannel:
        made = factory()
        self.opened.append(made)
        return made


PRIVATE = (EMAIL, PHONE, "01012345678", "1234-5678", SECRET)


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture
def moto_env(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """The module's moto server, with its credentials in this test's environment only."""
    for key, value in moto.env().items():
        monkeypatch.setenv(key, value)
    return moto


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    with smtp_server(login=("notices", SECRET)) as sink:
        yield sink


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as got:
        yield got


def smtp_channel(sink: SmtpSink) -> SmtpNoticeChannel:
    return SmtpNoticeChannel(sink.host, sink.port, SENDER, "notices", SECRET, timeout_s=TIMEOUT_S)


def _smtp_case(request: pytest.FixtureRequest, tmp_path: Path) -> NoticeCase:
    sink: SmtpSink = request.getfixturevalue("smtp_sink")

    def arrived() -> list[Arrived]:
        return [
            Arrived(
                ", ".join(r.rcpt_tos),
                str(r.message["Subject"]),
                body(r.message, "plain"),
                r.message["Message-ID"],
            )
            for r in sink.received
        ]

    def failing() -> NoticeChannel:
        sink.fail_with(554)
        return smtp_channel(sink)

    return NoticeCase(
        make=lambda: smtp_channel(sink),
        envelope=envelope(EMAIL),
        expected=Arrived(EMAIL, SUBJECT, TEXT, ""),
        arrived=arrived,
        make_failing=failing,
        private=PRIVATE,
    )


def _ses_case(request: pytest.FixtureRequest, tmp_path: Path) -> NoticeCase:
    moto: MotoServer = request.getfixturevalue("moto_env")
    sender = f"notices-{uuid.uuid4().hex[:8]}@shop.test"
    moto.verify_sender(sender)

    def arrived() -> list[Arrived]:
        got = []
        for sent in moto.ses_raw_sent():
            if sent["source"] != sender:
                continue  # another test's
            message = email.message_from_string(sent["raw_data"], policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            # moto adds the To header's address to the destinations we named: the same one, twice
            to = ", ".join(sorted(set(sent["destinations"])))
            got.append(Arrived(to, str(message["Subject"]), body(message, "plain"), sent["id"]))
        return got

    return NoticeCase(
        make=lambda: SesNoticeChannel(sender, moto.region, moto.endpoint_url, TIMEOUT_S),
        envelope=envelope(EMAIL),
        expected=Arrived(EMAIL, SUBJECT, TEXT, ""),
        arrived=arrived,
        # SES (and moto) refuse a sender that was never verified
        make_failing=lambda: SesNoticeChannel("unverified@elsewhere.test", moto.region, moto.endpoint_url),
        private=(*PRIVATE, moto.env()["AWS_SECRET_ACCESS_KEY"]),
    )


def _sns_case(request: pytest.FixtureRequest, tmp_path: Path) -> NoticeCase:
    moto: MotoServer = request.getfixturevalue("moto_env")
    phone = f"+8210{uuid.uuid4().int % 10**8:08d}"  # a number of this test's own

    def arrived() -> list[Arrived]:
        return [
            Arrived(sms["phone_number"], None, sms["message"], sms["message_id"])
            for sms in moto.sns_sms_sent()
            if sms["phone_number"] == phone
        ]

    closed = f"http://127.0.0.1:{closed_port()}"
    return NoticeCase(
        make=lambda: SnsSmsChannel(moto.region, moto.endpoint_url, TIMEOUT_S),
        envelope=envelope(phone),
        expected=Arrived(phone, None, SMS_TEXT, ""),
        arrived=arrived,
        make_failing=lambda: SnsSmsChannel(moto.region, closed, TIMEOUT_S),
        private=(*PRIVATE, phone, phone[3:], closed, moto.env()["AWS_SECRET_ACCESS_KEY"]),
    )


def _webhook_case(request: pytest.FixtureRequest, tmp_path: Path) -> NoticeCase:
    relay: WebhookReceiver = request.getfixturevalue("receiver")
    url = relay.base_url + RELAY_PATH

    def arrived() -> list[Arrived]:
        return [
            Arrived(
                r.body["to"],
                r.body["email"]["subject"],
                r.body["email"]["text"],
                r.headers["idempotency-key"],
            )
            for r in relay.requests
            if r.status == 200
        ]

    def failing() -> NoticeChannel:
        relay.fail_with(500)
        return WebhookNoticeChannel(url, SECRET, TIMEOUT_S)

    return NoticeCase(
        make=lambda: WebhookNoticeChannel(url, SECRET, TIMEOUT_S, clock=lambda: NOW),
        envelope=envelope(CUSTOMER),
        expected=Arrived(CUSTOMER, SUBJECT, TEXT, ""),
        arrived=arrived,
        make_failing=failing,
        private=(*PRIVATE, url, RELAY_PATH),
    )


def _log_case(request: pytest.FixtureRequest, tmp_path: Path) -> NoticeCase:
    path = tmp_path / "notices.jsonl"

    def arrived() -> list[Arrived]:
        if not path.exists():
            return []
        lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        return [Arrived(line["to"], line["subject"], None, f"log:{line['key']}") for line in lines]

    # a directory where the file should be: every open fails
    return NoticeCase(
        make=lambda: LogNoticeChannel(path, clock=lambda: NOW),
        envelope=envelope(EMAIL),
        expected=Arrived(mask_email(EMAIL), SUBJECT, None, ""),
        arrived=arrived,
        make_failing=lambda: LogNoticeChannel(tmp_path),
        private=(*PRIVATE, str(tmp_path)),
    )


CASES = {"smtp": _smtp_case, "ses": _ses_case, "sns": _sns_case, "webhook": _webhook_case, "log": _log_case}


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NoticeCase]:
    built = CASES[request.param](request, tmp_path)
    yield built
    for opened in built.opened:
        opened.close()  # a second close (the tests close some) must be harmless too


class TestEveryChannel:
    """The contract every `NoticeChannel` keeps, against its real receiver."""

    def test_send_arrives_exactly_once_with_recipient_and_content(self, case: NoticeCase) -> None:
        channel = case.channel(case.make)

        sent = channel.send(case.envelope)

        assert case.arrived() == [replace(case.expected, provider_id=sent.provider_id)]

    def test_send_returns_a_provider_id(self, case: NoticeCase) -> None:
        channel = case.channel(case.make)

        sent = channel.send(case.envelope)

        assert isinstance(sent, Sent)
        assert sent.provider_id.strip()

    def test_channel_names_itself_and_its_medium(self, case: NoticeCase) -> None:
        channel = case.channel(case.make)

        assert channel.name in ("smtp", "ses", "sns", "webhook", "log")
        assert channel.medium in ("email", "sms", "webhook")

    def test_failing_receiver_raises_error_naming_no_contact_url_or_secret(self, case: NoticeCase) -> None:
        channel = case.channel(case.make_failing)

        with pytest.raises(NoticeChannelError) as err:
            channel.send(case.envelope)

        message = str(err.value)
        assert message.startswith(f"{channel.name}: ")
        for private in case.private:
            assert private not in message
        # nor in a logged traceback: the original error (whose text may name them) is not chained
        assert err.value.__cause__ is None
        assert err.value.__context__ is None or err.value.__suppress_context__
        assert case.arrived() == []

    def test_close_works_after_a_send_and_after_a_failure(self, case: NoticeCase) -> None:
        good = case.channel(case.make)
        good.send(case.envelope)
        bad = case.channel(case.make_failing)
        with pytest.raises(NoticeChannelError):
            bad.send(case.envelope)

        good.close()
        bad.close()


# --- SMTP ----------------------------------------------------------------------------------------------


def test_smtp_burst_of_sends_goes_over_one_connection(smtp_sink: SmtpSink) -> None:
    channel = smtp_channel(smtp_sink)

    for n in range(5):
        channel.send(envelope(EMAIL, key=f"delay:cust-{n}:inc-7"))
    channel.close()

    assert len(smtp_sink.messages) == 5
    assert smtp_sink.connections == 1


def test_smtp_send_after_server_dropped_the_connection_reconnects_transparently(smtp_sink: SmtpSink) -> None:
    channel = smtp_channel(smtp_sink)
    channel.send(envelope(EMAIL, key="k1"))
    smtp_sink.drop_connections()

    channel.send(envelope(EMAIL, key="k2"))
    channel.close()

    assert [m["X-Drctl-Notice-Key"] for m in smtp_sink.messages] == ["k1", "k2"]
    assert smtp_sink.connections == 2


def test_smtp_421_on_a_kept_connection_is_retried_once_on_a_new_one(smtp_sink: SmtpSink) -> None:
    channel = smtp_channel(smtp_sink)
    channel.send(envelope(EMAIL, key="k1"))
    smtp_sink.fail_next_with(421)

    channel.send(envelope(EMAIL, key="k2"))
    channel.close()

    assert [m["X-Drctl-Notice-Key"] for m in smtp_sink.messages] == ["k1", "k2"]
    assert smtp_sink.connections == 2


def test_smtp_refusal_on_a_fresh_connection_is_not_retried(smtp_sink: SmtpSink) -> None:
    channel = smtp_channel(smtp_sink)
    smtp_sink.fail_next_with(421)

    with pytest.raises(NoticeChannelError, match=r"^smtp: SMTPDataError 421$"):
        channel.send(envelope(EMAIL))
    channel.close()

    assert smtp_sink.messages == []


def test_smtp_keeps_the_connection_after_a_5xx_refusal(smtp_sink: SmtpSink) -> None:
    channel = smtp_channel(smtp_sink)
    channel.send(envelope(EMAIL, key="k1"))
    smtp_sink.fail_next_with(554)
    with pytest.raises(NoticeChannelError, match=r"^smtp: SMTPDataError 554$"):
        channel.send(envelope(EMAIL, key="k2"))

    channel.send(envelope(EMAIL, key="k3"))
    channel.close()

    assert [m["X-Drctl-Notice-Key"] for m in smtp_sink.messages] == ["k1", "k3"]
    assert smtp_sink.connections == 1


def test_smtp_sends_from_many_threads_all_arrive(smtp_sink: SmtpSink) -> None:
    channel = smtp_channel(smtp_sink)
    threads = [threading.Thread(target=channel.send, args=(envelope(EMAIL, key=f"k{n}"),)) for n in range(8)]

    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    channel.close()

    assert sorted(m["X-Drctl-Notice-Key"] for m in smtp_sink.messages) == sorted(f"k{n}" for n in range(8))
    assert smtp_sink.connections == 1


def test_smtp_wrong_password_raises_error_without_the_password() -> None:
    with smtp_server(login=("notices", "right-password")) as sink:
        channel = SmtpNoticeChannel(sink.host, sink.port, SENDER, "notices", SECRET, timeout_s=TIMEOUT_S)

        with pytest.raises(NoticeChannelError) as err:
            channel.send(envelope(EMAIL))
        channel.close()

    assert str(err.value) == "smtp: SMTPAuthenticationError 535"


def test_smtp_email_is_text_and_html_alternatives(smtp_sink: SmtpSink) -> None:
    channel = smtp_channel(smtp_sink)

    channel.send(envelope(EMAIL))
    channel.close()

    got = smtp_sink.messages[0]
    assert got.get_content_type() == "multipart/alternative"
    assert body(got, "plain") == TEXT
    assert body(got, "html").strip() == HTML
    assert got["From"] == SENDER
    assert got["To"] == EMAIL


def test_smtp_resend_of_the_same_notice_carries_the_same_message_id(smtp_sink: SmtpSink) -> None:
    channel = smtp_channel(smtp_sink)
    first = channel.send(envelope(EMAIL, key="delay:cust-1042:inc-7"))
    again = channel.send(envelope(EMAIL, key="delay:cust-1042:inc-7"))
    other = channel.send(envelope(EMAIL, key="delay:cust-1043:inc-7"))
    channel.close()

    ids = [m["Message-ID"] for m in smtp_sink.messages]
    assert ids == [first.provider_id, again.provider_id, other.provider_id]
    assert first.provider_id == again.provider_id == "<delay%3Acust-1042%3Ainc-7@shop.test>"
    assert other.provider_id != first.provider_id


def test_smtp_refuses_a_recipient_that_is_not_one_address(smtp_sink: SmtpSink) -> None:
    channel = smtp_channel(smtp_sink)

    with pytest.raises(NoticeChannelError) as err:
        channel.send(envelope(f"{EMAIL}, other@example.com"))
    channel.close()

    assert EMAIL not in str(err.value)
    assert smtp_sink.messages == []


@pytest.mark.parametrize(
    "key",
    ["delay:cust-1042:inc-7", "키/with spaces <and> @signs%", "a" * 500, "..", ""],
)
def test_message_id_is_a_valid_msg_id_whatever_the_key(key: str) -> None:
    made = message_id(key, "shop.test")

    parsed = email.message_from_string(f"Message-ID: {made}\n\n", policy=email.policy.default)
    assert str(parsed["Message-ID"]) == made
    assert made.isascii()
    assert made.startswith("<") and made.endswith("@shop.test>")
    assert made.count("@") == 1
    assert ".." not in made and " " not in made
    assert len(made) < 200


def test_message_ids_of_distinct_keys_differ() -> None:
    keys = ["a:b", "a%3Ab", "a b", "a_b", "a/b"]

    assert len({message_id(k, "shop.test") for k in keys}) == len(keys)


# --- SES and SNS ---------------------------------------------------------------------------------------


def test_ses_sends_the_raw_mime_message_with_the_stable_message_id(moto_env: MotoServer) -> None:
    sender = f"notices-{uuid.uuid4().hex[:8]}@shop.test"
    moto_env.verify_sender(sender)
    channel = SesNoticeChannel(sender, moto_env.region, moto_env.endpoint_url, TIMEOUT_S)

    sent = channel.send(envelope(EMAIL, key="delay:cust-1042:inc-7"))
    channel.close()

    raw = next(m for m in moto_env.ses_raw_sent() if m["id"] == sent.provider_id)
    got = email.message_from_string(raw["raw_data"], policy=email.policy.default)
    assert isinstance(got, EmailMessage)
    assert got["Message-ID"] == "<delay%3Acust-1042%3Ainc-7@shop.test>"
    assert got["X-Drctl-Notice-Key"] == "delay:cust-1042:inc-7"
    assert body(got, "html").strip() == HTML


def test_sns_lms_is_reported_as_lms(moto_env: MotoServer) -> None:
    channel = SnsSmsChannel(moto_env.region, moto_env.endpoint_url, TIMEOUT_S, sender_id="SHOP")
    lms = envelope(PHONE, sms=RenderedSms(LMS_TEXT, "lms", len(LMS_TEXT.encode("euc-kr"))))

    sent = channel.send(lms)
    channel.close()

    assert sent.detail == "lms"
    assert [s["message"] for s in moto_env.sns_sms_sent() if s["message_id"] == sent.provider_id] == [
        LMS_TEXT
    ]


def test_sns_short_sms_is_reported_as_sms(moto_env: MotoServer) -> None:
    channel = SnsSmsChannel(moto_env.region, moto_env.endpoint_url, TIMEOUT_S)

    sent = channel.send(envelope(PHONE))
    channel.close()

    assert sent.detail == "sms"


def test_sns_publishes_a_national_number_as_e164(moto_env: MotoServer) -> None:
    channel = SnsSmsChannel(moto_env.region, moto_env.endpoint_url, TIMEOUT_S)

    sent = channel.send(envelope("010-9876-5432"))
    channel.close()

    got = [s for s in moto_env.sns_sms_sent() if s["message_id"] == sent.provider_id]
    assert [s["phone_number"] for s in got] == ["+821098765432"]


def test_sns_refuses_a_recipient_that_is_not_a_phone_number(moto_env: MotoServer) -> None:
    channel = SnsSmsChannel(moto_env.region, moto_env.endpoint_url, TIMEOUT_S)

    with pytest.raises(NoticeChannelError) as err:
        channel.send(envelope(EMAIL))
    channel.close()

    assert str(err.value) == "sns: the recipient is not a phone number"


# --- webhook -------------------------------------------------------------------------------------------


def relay_channel(receiver: WebhookReceiver, now: datetime = NOW) -> WebhookNoticeChannel:
    return WebhookNoticeChannel(receiver.base_url + RELAY_PATH, SECRET, TIMEOUT_S, clock=lambda: now)


def test_webhook_body_carries_key_recipient_both_forms_and_data(receiver: WebhookReceiver) -> None:
    channel = relay_channel(receiver)

    channel.send(envelope(CUSTOMER))
    channel.close()

    got = receiver.wait_for(1)[0]
    assert got.path == RELAY_PATH
    assert got.headers["content-type"] == "application/json"
    assert got.headers["idempotency-key"] == "delay:cust-1042:inc-7"
    assert got.body == {
        "key": "delay:cust-1042:inc-7",
        "to": CUSTOMER,
        "email": {"subject": SUBJECT, "text": TEXT, "html": HTML},
        "sms": {"text": SMS_TEXT, "kind": "sms"},
        "data": {"orders": ["A-1001"], "new_eta": "2026-11-26"},
    }


def test_webhook_signature_verifies_with_the_shared_secret(receiver: WebhookReceiver) -> None:
    channel = relay_channel(receiver)

    channel.send(envelope(CUSTOMER))
    channel.close()

    got = receiver.wait_for(1)[0]
    timestamp, signature = got.headers["x-drctl-timestamp"], got.headers["x-drctl-signature"]
    assert timestamp == str(int(NOW.timestamp()))
    assert signature.startswith("sha256=")
    assert verify_signature(SECRET, timestamp, got.raw, signature, now=NOW + timedelta(seconds=5))


def test_webhook_signature_fails_with_a_wrong_secret_body_or_timestamp(receiver: WebhookReceiver) -> None:
    channel = relay_channel(receiver)
    channel.send(envelope(CUSTOMER))
    channel.close()
    got = receiver.wait_for(1)[0]
    timestamp, signature = got.headers["x-drctl-timestamp"], got.headers["x-drctl-signature"]

    assert not verify_signature("other-secret", timestamp, got.raw, signature, now=NOW)
    assert not verify_signature(SECRET, timestamp, got.raw + b" ", signature, now=NOW)
    assert not verify_signature(SECRET, str(int(timestamp) + 1), got.raw, signature, now=NOW)
    assert not verify_signature(SECRET, timestamp, got.raw, None, now=NOW)
    assert not verify_signature(SECRET, timestamp, got.raw, "sha256=서명", now=NOW)


def test_webhook_signature_of_a_stale_or_future_request_fails(receiver: WebhookReceiver) -> None:
    channel = relay_channel(receiver, now=NOW)
    channel.send(envelope(CUSTOMER))
    channel.close()
    got = receiver.wait_for(1)[0]
    timestamp, signature = got.headers["x-drctl-timestamp"], got.headers["x-drctl-signature"]

    assert verify_signature(SECRET, timestamp, got.raw, signature, now=NOW + timedelta(seconds=300))
    assert not verify_signature(SECRET, timestamp, got.raw, signature, now=NOW + timedelta(seconds=301))
    assert not verify_signature(SECRET, timestamp, got.raw, signature, now=NOW - timedelta(seconds=301))
    assert not verify_signature(SECRET, "not-a-time", got.raw, signature, now=NOW)


def test_webhook_error_is_the_status_only(receiver: WebhookReceiver) -> None:
    channel = relay_channel(receiver)
    receiver.fail_with(503)

    with pytest.raises(NoticeChannelError) as err:
        channel.send(envelope(CUSTOMER))
    channel.close()

    assert str(err.value) == "webhook: HTTP 503"


def test_webhook_refused_connection_names_no_url() -> None:
    url = f"http://127.0.0.1:{closed_port()}{RELAY_PATH}"
    channel = WebhookNoticeChannel(url, SECRET, TIMEOUT_S)

    with pytest.raises(NoticeChannelError) as err:
        channel.send(envelope(CUSTOMER))
    channel.close()

    assert str(err.value) == "webhook: ConnectError"


def test_webhook_refuses_envelope_data_that_is_not_json(receiver: WebhookReceiver) -> None:
    channel = relay_channel(receiver)
    odd: dict[str, Any] = {"when": NOW}

    with pytest.raises(NoticeChannelError, match=r"^webhook: data is not JSON"):
        channel.send(replace(envelope(CUSTOMER), data=odd))
    channel.close()

    assert receiver.requests == []


# --- log -----------------------------------------------------------------------------------------------


def test_log_line_has_key_masked_recipient_subject_kind_and_time(tmp_path: Path) -> None:
    path = tmp_path / "notices.jsonl"
    channel = LogNoticeChannel(path, medium="sms", clock=lambda: NOW)

    sent = channel.send(envelope(PHONE, sms=RenderedSms(LMS_TEXT, "lms", 200)))
    channel.close()

    assert channel.medium == "sms"
    assert sent.provider_id == "log:delay:cust-1042:inc-7"
    assert json.loads(path.read_text(encoding="utf-8")) == {
        "at": "2026-11-23T12:00:00Z",
        "key": "delay:cust-1042:inc-7",
        "to": "+82******5678",
        "subject": SUBJECT,
        "sms_kind": "lms",
    }


def test_log_keeps_every_line_whole_under_many_threads(tmp_path: Path) -> None:
    path = tmp_path / "notices.jsonl"
    channel = LogNoticeChannel(path)

    def send_many(worker: int) -> None:
        for n in range(50):
            channel.send(envelope(EMAIL, key=f"k{worker}-{n}"))

    threads = [threading.Thread(target=send_many, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    keys = [json.loads(line)["key"] for line in path.read_text(encoding="utf-8").splitlines()]
    assert sorted(keys) == sorted(f"k{w}-{n}" for w in range(8) for n in range(50))


# --- contacts (pure) -----------------------------------------------------------------------------------


def test_mask_email_keeps_first_letter_and_domain() -> None:
    assert mask_email("kim.minsu@example.com") == "k***@example.com"
    assert mask_email("not an address") == "***"


def test_mask_phone_keeps_country_code_and_last_four() -> None:
    assert mask_phone("+821012345678") == "+82******5678"
    assert mask_phone("010-1234-5678") == "+82******5678"
    assert mask_phone("call me") == "***"


def test_mask_contact_masks_addresses_and_numbers_but_not_customer_ids() -> None:
    assert mask_contact(EMAIL) == "k***@example.com"
    assert mask_contact(PHONE) == "+82******5678"
    assert mask_contact(CUSTOMER) == CUSTOMER


@pytest.mark.parametrize(
    ("written", "e164"),
    [
        ("010-1234-5678", "+821012345678"),
        ("01012345678", "+821012345678"),
        ("+82 10-1234-5678", "+821012345678"),
        ("+82 010-1234-5678", "+821012345678"),
        ("+821012345678", "+821012345678"),
        (" 010.1234.5678 ", "+821012345678"),
        ("011-123-4567", "+82111234567"),
        ("(02) 123-4567", "+8221234567"),
        ("+1 202 555 0123", "+12025550123"),
    ],
)
def test_to_e164_reads_the_ways_korean_numbers_are_written(written: str, e164: str) -> None:
    assert to_e164(written) == e164


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "kim.minsu@example.com",
        "1012345678",
        "010-1234",
        "010-1234-5678-9999",
        "+0821012345678",
        "010-12a4-5678",
    ],
)
def test_to_e164_returns_none_for_what_is_not_a_number(garbage: str) -> None:
    assert to_e164(garbage) is None


def test_to_e164_knows_only_korean_national_numbers() -> None:
    with pytest.raises(ValueError, match="JP"):
        to_e164("090-1234-5678", default_country="JP")


_mobile = st.tuples(st.sampled_from(["10", "11", "16", "17", "18", "19"]), st.integers(0, 10**8 - 1))
_separator = st.sampled_from(["", "-", " ", "."])


@given(_mobile, _separator, st.booleans())
def test_every_way_of_writing_a_mobile_number_gives_one_e164(
    mobile: tuple[str, int], separator: str, international: bool
) -> None:
    prefix, rest = mobile
    middle, last = f"{rest:08d}"[:4], f"{rest:08d}"[4:]
    written = (f"+82 {prefix}" if international else f"0{prefix}") + separator + middle + separator + last

    assert to_e164(written) == f"+82{prefix}{middle}{last}"


@given(st.text(max_size=30))
def test_to_e164_gives_e164_or_none_and_is_idempotent(written: str) -> None:
    e164 = to_e164(written)

    if e164 is not None:
        assert e164.startswith("+") and e164[1:].isdigit() and e164[1] != "0"
        assert 9 <= len(e164) <= 16
        assert to_e164(e164) == e164


@given(_mobile)
def test_masked_number_shows_no_digit_but_country_code_and_last_four(mobile: tuple[str, int]) -> None:
    prefix, rest = mobile
    e164 = f"+82{prefix}{rest:08d}"

    masked = mask_phone(e164)

    assert masked == "+82" + "*" * (len(e164) - 7) + e164[-4:]
