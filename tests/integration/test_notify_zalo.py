"""The Zalo channel against a fake ZNS API (``tests/fakes/zalo_api.py``), a real local HTTP server
in its own process: what arrives, the answer's msg_id, and ZNS's error codes as transient or
permanent, never with the phone number in the error."""
import pytest

from services.notify import zalo
from services.notify.channels import Outgoing, PermanentError, TransientError, ZaloChannel
from services.notify.templates import sample_context
from tests.integration.test_notify_channels import Fake, assert_private, free_port

TOKEN = "oa-token-123"
PHONE = "0912 345 678"


@pytest.fixture(scope="module")
def fakes_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("zalo-fakes")


@pytest.fixture()
def zns(fakes_dir, request):
    fakes = []

    def start(*args: str) -> Fake:
        fake = Fake("tests.fakes.zalo_api", fakes_dir, "--token", TOKEN, *args)
        fakes.append(fake)
        return fake

    yield start
    for fake in fakes:
        assert fake.stop() == 0


def received(message_id=7) -> Outgoing:
    text = zalo.message_text(zalo.load()["received"], sample_context("received"))
    return Outgoing(channel="zalo", to=PHONE, subject=None, text=text, idempotency_key=f"ev:zalo:{message_id}",
                    metadata={"code": "000.07.20.H29-260213-0042", "template": "received", "message_id": message_id})


def channel(fake: Fake, token=TOKEN) -> ZaloChannel:
    return ZaloChannel(f"{fake.url}/message/template", token)


def test_a_message_arrives_as_zns_takes_it(zns):
    fake = zns()
    assert channel(fake).send(received()) == "zns-1"
    (record,) = fake.records()
    assert record["path"] == "/message/template"
    assert {k.lower(): v for k, v in record["headers"].items()}["access_token"] == TOKEN
    body = record["json"]
    assert body["phone"] == "84912345678" and body["template_id"] == "300001" and body["tracking_id"] == "7"
    assert body["template_data"]["appointment_date"] == "06/03/2026"
    assert body["template_data"]["customer_name"].startswith("Tôn Nữ Hoàng")


def test_unknown_error_is_transient_then_the_retry_is_one_message(zns):
    fake = zns("--fail-first", "1")
    with pytest.raises(TransientError) as caught:
        channel(fake).send(received())
    assert caught.value.code == -100
    assert channel(fake).send(received()) == "zns-1"
    assert len(fake.records()) == 1


@pytest.mark.parametrize("code", [-108, -109, -112, -118])
def test_the_recipients_and_the_templates_errors_are_permanent_and_private(zns, code):
    fake = zns("--error", str(code))
    with pytest.raises(PermanentError) as caught:
        channel(fake).send(received())
    assert caught.value.code == code and str(code) in str(caught.value)
    assert_private(caught.value)
    assert "84912345678" not in str(caught.value)
    assert fake.records() == []


@pytest.mark.parametrize("code", [-115, -133, -999])
def test_quota_hours_and_unknown_codes_are_transient(zns, code):
    fake = zns("--error", str(code))
    with pytest.raises(TransientError) as caught:
        channel(fake).send(received())
    assert caught.value.code == code
    assert "84912345678" not in str(caught.value) and "912345678" not in str(caught.value)


def test_a_wrong_access_token_is_transient_and_not_in_the_error(zns):
    fake = zns()
    with pytest.raises(TransientError) as caught:
        channel(fake, token="expired-token").send(received())
    assert caught.value.code == -124 and "expired-token" not in str(caught.value)


def test_an_unreachable_api_is_transient_and_private():
    with pytest.raises(TransientError) as caught:
        ZaloChannel(f"http://127.0.0.1:{free_port()}/message/template", TOKEN).send(received())
    assert "refused" in str(caught.value)
    assert_private(caught.value)
