"""Real servers on 127.0.0.1 for tests: a webhook receiver, an SMTP sink, moto (SNS/SES/SQS), a mute port.

Plain context managers, not fixtures, so any test module (or a fixture of any scope) can use them.
Every wait is bounded; nothing here talks to anything but loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from shutil import which as shutil_which
from typing import Any

import boto3
import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from chaos.ports import free_port

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
MOTO_REGION = "ap-northeast-2"
MOTO_ACCOUNT = "123456789012"  # moto's default account
MOTO_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def wait_for_count(count: Callable[[], int], n: int, timeout_s: float, what: str) -> None:
    """Poll until `count()` reaches `n`; fail the test naming `what` if it does not in time."""
    deadline = time.monotonic() + timeout_s
    while count() < n:
        if time.monotonic() >= deadline:
            raise AssertionError(f"expected {n} {what} within {timeout_s}s, got {count()}")
        time.sleep(0.02)


# --- webhook receiver ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    path: str
    headers: dict[str, str]  # lower-cased names
    raw: bytes
    body: Any  # parsed JSON, or None if the body was not JSON
    status: int  # what the receiver answered


class WebhookReceiver:
    """What a `webhook_receiver()` got; `fail_with`/`hang_for` change how it answers from now on."""

    def __init__(self, port: int) -> None:
        self.base_url = f"http://127.0.0.1:{port}"
        self.url = f"{self.base_url}/hook"
        self._lock = threading.Lock()
        self._requests: list[ReceivedRequest] = []
        self._status: int | None = None
        self._hang_s: float | None = None
        self.released = threading.Event()  # set on exit: ends any hanging answer

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._requests)

    def fail_with(self, status: int | None) -> None:
        """Answer every request with `status` (e.g. 500); None: answer 200 again."""
        with self._lock:
            self._status = status

    def hang_for(self, seconds: float | None) -> None:
        """Read each request, then wait `seconds` before answering (a stuck receiver); None: don't."""
        with self._lock:
            self._hang_s = seconds

    def wait_for(self, n: int, timeout_s: float = 5.0) -> list[ReceivedRequest]:
        """Wait until `n` requests arrived (answered or not); return them all."""
        wait_for_count(lambda: len(self.requests), n, timeout_s, "webhook requests")
        return self.requests

    def _record(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, float | None]:
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with self._lock:
            status = self._status or 200
            self._requests.append(ReceivedRequest(path, headers, raw, body, status))
            return status, self._hang_s


def _webhook_handler(receiver: WebhookReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, hang_s = receiver._record(self.path, headers, raw)
            if hang_s is not None:
                receiver.released.wait(hang_s)
            reply = b"ok" if status < 300 else b"error"
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the request line holds the (secret) webhook path

    return Handler


@contextlib.contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """An HTTP server that records every POST (any path) and answers 200 unless told otherwise."""
    port = free_port()
    receiver = WebhookReceiver(port)
    server = ThreadingHTTPServer(("127.0.0.1", port), _webhook_handler(receiver))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="webhook-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.released.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- SMTP sink -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReceivedEmail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


class SmtpSink:
    """What an `smtp_server()` received; `stop()` takes it down mid-test (its port then refuses)."""

    def __init__(self, port: int, login: tuple[str, str] | None) -> None:
        self.host, self.port = "127.0.0.1", port
        self._login = login
        self._lock = threading.Lock()
        self._received: list[ReceivedEmail] = []
        self._fail_code: int | None = None
        self._fail_next: list[int] = []
        self._controller: Controller | None = None
        # every connection (aiosmtpd's per-connection SMTP protocol) a message was accepted on
        self._connections: list[SMTP] = []
        self._hold_after: int | None = None
        self._held: list[int] = []  # the client ports of the transactions held at RCPT

    @property
    def received(self) -> list[ReceivedEmail]:
        with self._lock:
            return list(self._received)

    @property
    def messages(self) -> list[EmailMessage]:
        return [r.message for r in self.received]

    def fail_with(self, code: int | None) -> None:
        """Refuse every message at DATA with `code` (e.g. 554); None: accept again."""
        with self._lock:
            self._fail_code = code

    def wait_for(self, n: int, timeout_s: float = 5.0) -> list[EmailMessage]:
        """Wait until `n` messages were accepted; return them all."""
        wait_for_count(lambda: len(self.received), n, timeout_s, "emails")
        return self.messages

    def fail_next_with(self, code: int) -> None:
        """Refuse only the next message at DATA with `code` (e.g. 421), then accept again."""
        with self._lock:
            self._fail_next.append(code)

    @property
    def connections(self) -> int:
        """How many distinct SMTP connections the accepted messages came over."""
        with self._lock:
            return len(self._connections)

    def drop_connections(self) -> None:
        """Close, from the server side, every connection a message came over (as an idle timeout does)."""
        assert self._controller is not None, "the sink is stopped"
        with self._lock:
            transports = [c.transport for c in self._connections if c.transport is not None]

        async def close_all() -> None:
            for transport in transports:
                transport.close()
            await asyncio.sleep(0.05)  # let the loop actually shut the sockets

        asyncio.run_coroutine_threadsafe(close_all(), self._controller.loop).result(timeout=5)

    def hold_after(self, n: int | None) -> None:
        """Once `n` messages were accepted, hold every new transaction at RCPT (the client waits for
        the answer, nothing is delivered) until `hold_after(None)`."""
        with self._lock:
            self._hold_after = n

    @property
    def held_ports(self) -> list[int]:
        """The client-side ports of the connections held at RCPT right now."""
        with self._lock:
            return list(self._held)

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    # aiosmtpd hooks
    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        port = int(session.peer[1]) if isinstance(session.peer, tuple) else 0
        for _ in range(600):  # bounded: at most 60 s held
            with self._lock:
                holding = self._hold_after is not None and len(self._received) >= self._hold_after
                if holding and port not in self._held:
                    self._held.append(port)
                if not holding:
                    if port in self._held:
                        self._held.remove(port)
                    break
            await asyncio.sleep(0.1)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._lock:
            if self._fail_next:
                return f"{self._fail_next.pop(0)} refused once by the test"
            if self._fail_code is not None:
                return f"{self._fail_code} refused by the test"
            if not any(c is server for c in self._connections):
                self._connections.append(server)
            raw = envelope.original_content or b""
            parsed = email.message_from_bytes(raw, policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            self._received.append(ReceivedEmail(str(envelope.mail_from), list(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            self._login is not None
            and isinstance(auth_data, LoginPassword)
            and (auth_data.login.decode(), auth_data.password.decode()) == self._login
        )
        return AuthResult(success=ok, handled=False)


@contextlib.contextmanager
def smtp_server(login: tuple[str, str] | None = None) -> Iterator[SmtpSink]:
    """An aiosmtpd server collecting what it accepts; with `login`, AUTH (without TLS) is offered."""
    sink = SmtpSink(free_port(), login)
    auth: dict[str, Any] = {}
    if login is not None:
        auth = {"authenticator": sink.authenticate, "auth_require_tls": False}
    sink._controller = Controller(
        sink, hostname=sink.host, port=sink.port, ready_timeout=10.0, server_hostname="sink.test", **auth
    )
    sink._controller.start()
    try:
        yield sink
    finally:
        sink.stop()


# --- a port that accepts and never answers ---------------------------------------------------------


@contextlib.contextmanager
def mute_port() -> Iterator[int]:
    """A listening port that never accepts: connects succeed, every read then waits forever."""
    port = free_port()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen(64)  # the kernel completes handshakes into the backlog; nobody reads
        yield port


def closed_port() -> int:
    """A loopback port nothing listens on (connects are refused at once)."""
    return free_port()


# --- moto server (SNS, SES, SQS) -------------------------------------------------------------------


class MotoServer:
    """A running `moto_server` and ways to set up and read back SNS, SES and SQS through its API."""

    def __init__(self, port: int, process: subprocess.Popen[bytes], log: Path) -> None:
        self.port = port
        self.endpoint_url = f"http://127.0.0.1:{port}"
        self.region = MOTO_REGION
        self.account = MOTO_ACCOUNT
        self.process = process
        self.log = log
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()  # boto3 sessions are not thread-safe; clients are

    def env(self) -> dict[str, str]:
        """Environment variables a child process (or monkeypatch) needs to reach this server."""
        return {
            **MOTO_CREDENTIALS,
            "AWS_DEFAULT_REGION": self.region,
            # no credentials lookup may reach the EC2 metadata address
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self, service: str) -> Any:
        """A boto3 client for `service` on this server (made once), credentials passed explicitly."""
        with self._clients_lock:
            if service not in self._clients:
                self._clients[service] = boto3.session.Session().client(
                    service,
                    region_name=self.region,
                    endpoint_url=self.endpoint_url,
                    aws_access_key_id=MOTO_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                    aws_secret_access_key=MOTO_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                )
            return self._clients[service]

    def verify_sender(self, address: str) -> None:
        """Verify an SES identity: moto, like SES in the sandbox, refuses unverified senders."""
        self.client("ses").verify_email_identity(EmailAddress=address)

    def sns_topic_with_queue(self, name: str) -> tuple[str, str]:
        """Create topic `name` and an SQS queue subscribed to it; return (topic ARN, queue URL)."""
        topic_arn = self.client("sns").create_topic(Name=name)["TopicArn"]
        sqs = self.client("sqs")
        queue_url = sqs.create_queue(QueueName=f"{name}-inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        self.client("sns").subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
        return topic_arn, queue_url

    def sns_received(self, queue_url: str, n: int, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        """Receive `n` SNS envelopes (MessageId, Subject, Message …) from a subscribed queue."""
        sqs = self.client("sqs")
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while len(got) < n and time.monotonic() < deadline:
            reply = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            for msg in reply.get("Messages", []):
                got.append(json.loads(msg["Body"]))
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=msg["ReceiptHandle"])
        if len(got) < n:
            raise AssertionError(f"expected {n} SNS messages within {timeout_s}s, got {len(got)}")
        return got

    def ses_sent(self) -> list[dict[str, Any]]:
        """Every email SES `send_email` accepted (id, source, destinations, subject, body), all regions."""
        data = httpx.get(f"{self.endpoint_url}/moto-api/data.json", timeout=5.0, trust_env=False).json()
        return list(data.get("ses", {}).get("Message", []))

    def ses_raw_sent(self) -> list[dict[str, Any]]:
        """Every raw email SES accepted (v1 `send_raw_email`, v2 `Content.Raw`): id, source,
        destinations, raw_data. moto adds the To/Cc header addresses to the given destinations."""
        return list(self._model_data().get("ses", {}).get("RawMessage", []))

    def sns_sms_sent(self) -> list[dict[str, Any]]:
        """Every SMS SNS `publish(PhoneNumber=...)` accepted: message_id, phone_number, message.
        moto keeps no message attributes (SMSType, SenderID) of an SMS."""
        return list(self._model_data().get("sns", {}).get("SMS", []))

    def _model_data(self) -> dict[str, Any]:
        reply = httpx.get(f"{self.endpoint_url}/moto-api/data.json", timeout=5.0, trust_env=False)
        reply.raise_for_status()
        data: dict[str, Any] = reply.json()
        return data

    def ses_message(self, message_id: str, timeout_s: float = 5.0) -> dict[str, Any]:
        """The sent email with this SES MessageId."""
        found: list[dict[str, Any]] = []

        def count() -> int:
            found[:] = [m for m in self.ses_sent() if m.get("id") == message_id]
            return len(found)

        wait_for_count(count, 1, timeout_s, f"SES message {message_id}")
        return found[0]

    def reset(self) -> None:
        """Forget every resource and message (all services)."""
        httpx.post(f"{self.endpoint_url}/moto-api/reset", timeout=5.0, trust_env=False).raise_for_status()


def moto_unavailable(reason: str) -> None:
    """Fail under CI; elsewhere skip loudly (as conftest does for PostgreSQL)."""
    msg = f"moto_server could not be started ({reason}). Install the dev extras: `make venv`."
    if IN_CI:
        pytest.fail("CI=true: " + msg, pytrace=False)
    pytest.skip("SKIPPED LOUDLY, AWS channel tests did not run against moto: " + msg)


@contextlib.contextmanager
def moto_server(start_timeout_s: float = 30.0) -> Iterator[MotoServer]:
    """Start `moto_server` from this venv on a free loopback port; stop it afterwards."""
    binary = Path(sys.executable).parent / "moto_server"
    if not binary.exists():
        moto_unavailable(f"{binary} does not exist")
    port = free_port()
    fd, log_name = tempfile.mkstemp(prefix="moto-", suffix=".log")
    os.close(fd)
    log = Path(log_name)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(binary), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **MOTO_CREDENTIALS},
        )
    server = MotoServer(port, process, log)
    try:
        _wait_until_answering(server, start_timeout_s)
        yield server
    finally:
        for client in server._clients.values():
            client.close()
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.unlink(missing_ok=True)


def _wait_until_answering(server: MotoServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            tail = server.log.read_text(errors="replace")[-2000:]
            moto_unavailable(f"it exited with {server.process.returncode}: {tail}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(
                f"{server.endpoint_url}/moto-api/data.json", timeout=1.0, trust_env=False
            ).is_success:
                return
        time.sleep(0.1)
    moto_unavailable(f"no answer on {server.endpoint_url} within {timeout_s}s")


def pid_of_client(port: int) -> int | None:
    """The process holding the loopback TCP socket whose local port is `port` (Linux /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in list(f)[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                        return int(pid)
    return None


# --- a Redis of the test's own (the machine's shared one is never stopped) ------------------------


class RedisServer:
    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._workdir = workdir
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        """Start (or restart, on the same port) an empty Redis that keeps nothing on disk."""
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self._workdir)]  # fmt: skip
        log = (self._workdir / f"redis-{self.port}.log").open("ab")
        self._proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server on {self.port} did not answer within {timeout_s} s")

    def kill(self) -> None:
        """SIGKILL: the way a Redis host dies, not a clean shutdown."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    if not shutil_which("redis-server"):
        msg = "redis-server is not installed (make system-deps installs it)"
        if IN_CI:
            pytest.fail("CI=true: " + msg, pytrace=False)
        pytest.skip("SKIPPED LOUDLY: " + msg)
    server = RedisServer(free_port(), workdir)
    server.start()
    try:
        yield server
    finally:
        server.kill()


# --- nginx in front of control-plane replicas -------------------------------------------------------


def nginx_conf(port: int, upstreams: list[int], workdir: Path) -> str:
    """A load balancer as an operator would run one before drctl replicas (deploy/nginx/drctl.conf)."""
    servers = "\n".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=1s;" for p in upstreams)
    temp = " ".join(
        f"{kind}_temp_path {workdir}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""daemon off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  {temp}
  upstream drctl {{
{servers}
    keepalive 32;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://drctl;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $remote_addr;
      # POST /v1/orders is idempotent on (channel, external_id): retrying it on another replica
      # when one dies mid-request is safe, and is what keeps a crash from reaching the client
      proxy_next_upstream error timeout http_502 http_503 non_idempotent;
      proxy_next_upstream_tries 3;
      proxy_connect_timeout 1s;
      proxy_read_timeout 30s;
    }}
  }}
}}
"""


@contextlib.contextmanager
def nginx_balancer(upstreams: list[int], workdir: Path) -> Iterator[str]:
    """nginx on a free loopback port in front of `upstreams`; yields its base URL."""
    binary = shutil_which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if binary is None:
        msg = "nginx is not installed (make system-deps installs nginx-light)"
        if IN_CI:
            pytest.fail("CI=true: " + msg, pytrace=False)
        pytest.skip("SKIPPED LOUDLY: " + msg)
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(nginx_conf(port, upstreams, workdir))
    log = (workdir / "nginx-stdout.log").open("wb")
    proc = subprocess.Popen(
        [binary, "-c", str(conf), "-p", str(workdir), "-e", str(workdir / "nginx-error.log")],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if proc.poll() is not None:
                raise RuntimeError((workdir / "nginx-error.log").read_text(errors="replace")[-2000:])
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
