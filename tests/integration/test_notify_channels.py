"""The delivery channels against real local servers: the fake SMTP relay and the fake HTTP
gateway (``tests/fakes``), each run as a subprocess on a free port. Nothing serves inside the
test process (it runs under ``eventlet.monkey_patch()``)."""
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from services.notify.channels import (
    EmailChannel, Outgoing, PermanentError, SmsChannel, TransientError, WebhookChannel, build_channels,
)
from services.notify.templates import defaults, render, sample_context

ROOT = Path(__file__).resolve().parents[2]
PHONE = "0912 345 678"
EMAIL = "nguyen.thi.dao@example.vn"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Fake:
    """A fake provider subprocess: started, waited for ("ready"), terminated."""

    def __init__(self, module: str, directory: Path, *args: str):
        self.port = free_port()
        self.out = directory / f"{module.rsplit('.', 1)[-1]}-{self.port}.jsonl"
        self.err = directory / f"{module.rsplit('.', 1)[-1]}-{self.port}.stderr"
        with self.err.open("w") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", module, "--port", str(self.port), "--out", str(self.out), *args],
                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=err,
                text=True,
            )
        watchdog = threading.Timer(15, self.process.kill)   # never wait for ever
        watchdog.start()
        try:
            line = self.process.stdout.readline()
        finally:
            watchdog.cancel()
        if line.strip() != "ready":
            self.stop()
            raise RuntimeError(f"{module} did not start: {line!r} {self.err.read_text()}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def records(self) -> list[dict]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text(encoding="utf-8").splitlines() if line]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()
        return self.process.returncode


@pytest.fixture(scope="module")
def fakes_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("notify-fakes")


@pytest.fixture(scope="module")
def smtp(fakes_dir):
    fake = Fake("tests.fakes.smtp_server", fakes_dir, "--reject", "nobody@", "--defer", "busy@")
    yield fake
    assert fake.stop() == 0   # SIGTERM is a clean stop


@pytest.fixture(scope="module")
def gateway(fakes_dir):
    fake = Fake("tests.fakes.http_gateway", fakes_dir)
    yield fake
    assert fake.stop() == 0


def message(channel: str, to: str, text: str, key: str, subject=None, **metadata) -> Outgoing:
    return Outgoing(channel=channel, to=to, subject=subject, text=text, idempotency_key=key, metadata=metadata)


def assert_private(error: Exception) -> None:
    text = str(error)
    assert PHONE not in text and PHONE.replace(" ", "") not in text and "912345678" not in text
    assert EMAIL not in text and "@example.vn" not in text


# --- e-mail ------------------------------------------------------------------------------------


def test_email_arrives_in_vietnamese(smtp):
    rendered = render(defaults()[("received", "email")], sample_context("received"))
    channel = EmailChannel("127.0.0.1", smtp.port, "Một cửa Gò Vấp <motcua@govap.example.vn>", timeout=5)
    key = "received.000.07.20.H29-260213-0042.email"
    provider_id = channel.send(message("email", EMAIL, rendered.text, key, subject=rendered.subject))
    assert provider_id == f"<{key}@motcua>"
    [record] = [r for r in smtp.records() if r["idempotency_key"] == key]
    assert record["to"] == EMAIL and record["from"] == "motcua@govap.example.vn"
    assert record["subject"] == "[Một cửa] Đã tiếp nhận hồ sơ 000.07.20.H29-260213-0042"
    assert "Kính gửi Ông/Bà Tôn Nữ Hoàng Thị Phương Nguyệt Quỳnh Anh" in record["body"]
    assert "Ngày hẹn trả kết quả: 06/03/2026" in record["body"]
    assert record["body"].strip() == rendered.text
    assert record["message_id"] == f"<{key}@motcua>"


def test_a_resent_email_has_the_same_message_id(smtp):
    channel = EmailChannel("127.0.0.1", smtp.port, "motcua@govap.example.vn", timeout=5)
    key = "notify:42:received:email"   # ":" is not allowed in a Message-ID: hashed, still stable
    first = channel.send(message("email", EMAIL, "Lần 1", key, subject="Thử"))
    second = channel.send(message("email", EMAIL, "Lần 2", key, subject="Thử"))
    assert first == second and first.endswith("@motcua>")
    records = [r for r in smtp.records() if r["idempotency_key"] == key]
    assert [r["message_id"] for r in records] == [first, first]


def test_a_refused_recipient_is_permanent_and_not_named(smtp):
    channel = EmailChannel("127.0.0.1", smtp.port, "motcua@govap.example.vn", timeout=5)
    with pytest.raises(PermanentError) as caught:
        channel.send(message("email", "nobody@example.vn", "x", "refused-rcpt", subject="Thử"))
    assert "550" in str(caught.value) and "nobody@example.vn" not in str(caught.value)
    assert caught.value.code == 550


def test_a_deferred_recipient_is_transient(smtp):
    channel = EmailChannel("127.0.0.1", smtp.port, "motcua@govap.example.vn", timeout=5)
    with pytest.raises(TransientError) as caught:
        channel.send(message("email", "busy@example.vn", "x", "deferred-rcpt", subject="Thử"))
    assert "451" in str(caught.value) and "busy@example.vn" not in str(caught.value)


def test_email_connection_refused_is_transient():
    channel = EmailChannel("127.0.0.1", free_port(), "motcua@govap.example.vn", timeout=2)
    with pytest.raises(TransientError) as caught:
        channel.send(message("email", EMAIL, "x", "no-server", subject="Thử"))
    assert_private(caught.value)


def test_not_an_email_address_is_permanent():
    channel = EmailChannel("127.0.0.1", 25, "motcua@govap.example.vn")
    with pytest.raises(PermanentError):
        channel.send(message("email", PHONE, "x", "bad-address", subject="Thử"))


def test_emails_share_one_kept_open_connection(smtp):
    channel = EmailChannel("127.0.0.1", smtp.port, "Một cửa Gò Vấp <motcua@govap.example.vn>", timeout=5)
    keys = [f"kept-open-{n}" for n in range(6)]
    for key in keys:
        channel.send(message("email", EMAIL, f"Thư số {key}", key, subject="Thử kết nối"))
    records = [r for r in smtp.records() if r["idempotency_key"] in keys]
    assert [r["idempotency_key"] for r in records] == keys
    assert len({r["connection"] for r in records}) == 1 < len(keys)
    assert all(r["subject"] == "Thử kết nối" for r in records)
    channel.close()
    assert channel._idle == []


def test_a_connection_the_relay_closed_while_idle_is_replaced_and_the_email_goes_once(fakes_dir):
    relay = Fake("tests.fakes.smtp_server", fakes_dir, "--timeout", "1")
    try:
        channel = EmailChannel("127.0.0.1", relay.port, "motcua@govap.example.vn", timeout=5, idle_seconds=30)
        channel.send(message("email", EMAIL, "Trước", "before-timeout", subject="Thử"))
        time.sleep(1.5)                               # the relay drops the idle connection
        channel.send(message("email", EMAIL, "Sau", "after-timeout", subject="Thử"))
        records = relay.records()
        assert [r["idempotency_key"] for r in records] == ["before-timeout", "after-timeout"]
        assert records[0]["connection"] != records[1]["connection"]
        channel.close()
    finally:
        relay.stop()


def test_a_connection_idle_past_its_time_is_closed_and_a_new_one_opened(smtp):
    channel = EmailChannel("127.0.0.1", smtp.port, "motcua@govap.example.vn", timeout=5, idle_seconds=0.2)
    channel.send(message("email", EMAIL, "Một", "idle-1", subject="Thử"))
    time.sleep(0.3)
    channel.close_idle()
    assert channel._idle == []
    channel.send(message("email", EMAIL, "Hai", "idle-2", subject="Thử"))
    first, second = ([r for r in smtp.records() if r["idempotency_key"] == key][0] for key in ("idle-1", "idle-2"))
    assert first["connection"] != second["connection"]
    channel.close()


def test_a_refused_recipient_does_not_spoil_the_next_email(smtp):
    channel = EmailChannel("127.0.0.1", smtp.port, "motcua@govap.example.vn", timeout=5)
    with pytest.raises(PermanentError):
        channel.send(message("email", "nobody@example.vn", "x", "refused-then", subject="Thử"))
    channel.send(message("email", EMAIL, "Tiếp", "after-refused", subject="Thử"))
    assert [r["to"] for r in smtp.records() if r["idempotency_key"] == "after-refused"] == [EMAIL]
    channel.close()


# --- SMS ---------------------------------------------------------------------------------------


def test_sms_arrives_unaccented(gateway):
    rendered = render(defaults()[("apology", "sms")], sample_context("apology"))
    channel = SmsChannel(gateway.url + "/sms", api_key="k3y", timeout=5)
    provider_id = channel.send(message("sms", PHONE, rendered.text, "apology.0042.sms"))
    assert provider_id.startswith("sms-")
    [record] = [r for r in gateway.records() if r["json"].get("idempotency_key") == "apology.0042.sms"]
    assert record["path"] == "/sms"
    assert record["headers"]["Idempotency-Key"] == "apology.0042.sms"
    assert record["headers"]["Authorization"] == "Bearer k3y"
    assert record["json"]["to"] == PHONE
    text = record["json"]["text"]
    assert text == rendered.text and text.isascii()
    assert text.startswith("Phong Tai nguyen va Moi truong quan Go Vap xin loi: ho so 000.07.20.H29-260213-0042")
    assert "hen lai ngay 13/03/2026" in text


def test_the_same_idempotency_key_is_recorded_once(gateway):
    channel = SmsChannel(gateway.url + "/sms", timeout=5)
    first = channel.send(message("sms", PHONE, "Ho so X da co ket qua.", "twice-1"))
    second = channel.send(message("sms", PHONE, "Ho so X da co ket qua.", "twice-1"))
    assert first == second
    assert len([r for r in gateway.records() if r["headers"].get("Idempotency-Key") == "twice-1"]) == 1


def test_fail_first_gives_transient_errors_then_success(fakes_dir):
    fake = Fake("tests.fakes.http_gateway", fakes_dir, "--fail-first", "2")
    try:
        channel = SmsChannel(fake.url + "/sms", timeout=5)
        outgoing = message("sms", PHONE, "Ho so X da co ket qua.", "retried")
        for _ in range(2):
            with pytest.raises(TransientError) as caught:
                channel.send(outgoing)
            assert "503" in str(caught.value) and caught.value.retry_after == 1
            assert_private(caught.value)
        assert channel.send(outgoing) == "sms-1"
        assert len(fake.records()) == 1
    finally:
        assert fake.stop() == 0


def test_fail_always_is_always_transient(fakes_dir):
    fake = Fake("tests.fakes.http_gateway", fakes_dir, "--fail-always")
    try:
        channel = SmsChannel(fake.url + "/sms", timeout=5)
        for _ in range(3):
            with pytest.raises(TransientError):
                channel.send(message("sms", PHONE, "x", "never"))
        assert fake.records() == []
    finally:
        assert fake.stop() == 0


@pytest.mark.parametrize("status, error", [
    (400, PermanentError), (401, PermanentError), (404, PermanentError), (422, PermanentError),
    (408, TransientError), (429, TransientError), (500, TransientError), (502, TransientError),
])
def test_http_status_classes(gateway, status, error):
    """The gateway's answer repeats the request (the phone number): the error masks it."""
    channel = SmsChannel(f"{gateway.url}/status/{status}", timeout=5)
    with pytest.raises(error) as caught:
        channel.send(message("sms", PHONE, "Ho so X da co ket qua.", f"status-{status}"))
    assert str(status) in str(caught.value) and caught.value.code == status
    assert_private(caught.value)


def test_sms_connection_refused_is_transient_and_private():
    channel = SmsChannel(f"http://127.0.0.1:{free_port()}/sms", timeout=2)
    with pytest.raises(TransientError) as caught:
        channel.send(message("sms", PHONE, "x", "refused"))
    assert "connection refused" in str(caught.value)
    assert_private(caught.value)


def test_sms_timeout_is_transient(gateway):
    channel = SmsChannel(f"{gateway.url}/delay/1/sms", timeout=0.3)
    with pytest.raises(TransientError) as caught:
        channel.send(message("sms", PHONE, "x", "slow"))
    assert "timed out" in str(caught.value)
    assert_private(caught.value)


def test_not_a_phone_number_is_permanent():
    with pytest.raises(PermanentError) as caught:
        SmsChannel("http://127.0.0.1:9/sms").send(message("sms", EMAIL, "x", "bad-phone"))
    assert_private(caught.value)


# --- webhooks ----------------------------------------------------------------------------------


def test_webhook_posts_the_text_and_metadata(gateway):
    rendered = render(defaults()[("received", "webhook")], sample_context("received"))
    to = f"{gateway.url}/hooks/phuong-hanh-thong?token=s3cr3t"
    metadata = {"code": "000.07.20.H29-260213-0042", "template": "received", "text": "never overrides the text"}
    provider_id = WebhookChannel(timeout=5).send(Outgoing("webhook", to, None, rendered.text, "received.0042.webhook",
                                                          metadata))
    assert provider_id.startswith("sms-")   # the fake gateway's id
    [record] = [r for r in gateway.records() if r["headers"].get("Idempotency-Key") == "received.0042.webhook"]
    assert record["path"] == "/hooks/phuong-hanh-thong?token=s3cr3t"
    assert record["json"] == {"text": rendered.text, "subject": None, "idempotency_key": "received.0042.webhook",
                              "code": "000.07.20.H29-260213-0042", "template": "received"}
    assert "Đã tiếp nhận hồ sơ 000.07.20.H29-260213-0042" in record["json"]["text"]


def test_webhook_errors_do_not_carry_the_url_token(gateway):
    with pytest.raises(PermanentError) as caught:
        WebhookChannel(timeout=5).send(message("webhook", f"{gateway.url}/status/403?token=s3cr3t", "x", "wh-403"))
    assert "403" in str(caught.value) and "s3cr3t" not in str(caught.value)
    with pytest.raises(PermanentError):
        WebhookChannel().send(message("webhook", "ftp://example.vn/x", "x", "wh-ftp"))


# --- configuration -----------------------------------------------------------------------------


def test_build_channels_from_configuration():
    assert set(build_channels({})) == {"webhook"}
    channels = build_channels({"SMTP_HOST": "relay.govap.example.vn", "SMTP_PORT": "2525",
                               "SMTP_SENDER": "motcua@govap.example.vn",
                               "SMS_GATEWAY_URL": "https://sms.example.vn/send", "SMS_GATEWAY_KEY": "k"})
    assert set(channels) == {"email", "sms", "webhook"}
    assert channels["email"].port == 2525 and channels["sms"].api_key == "k"
    assert set(build_channels({"SMS_GATEWAY_URL": "", "SMTP_HOST": None})) == {"webhook"}
    with pytest.raises(ValueError):
        build_channels({"SMTP_HOST": "relay.govap.example.vn"})   # no sender


def test_the_sms_channel_reads_the_proxy_settings_once(monkeypatch):
    """Proxy and CA settings come from the environment when the channel is built, not per message."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.quan.local:3128")
    monkeypatch.setenv("NO_PROXY", "sms.internal")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/district-ca.pem")
    through_proxy = SmsChannel("https://sms.example.vn/send")
    assert through_proxy.session.proxies.get("https") == "http://proxy.quan.local:3128"
    assert through_proxy.session.verify == "/etc/ssl/district-ca.pem"
    assert not SmsChannel("https://sms.internal/send").session.proxies
    monkeypatch.delenv("HTTPS_PROXY")
    assert through_proxy.session.proxies.get("https") == "http://proxy.quan.local:3128"   # read once
