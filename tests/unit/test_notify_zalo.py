"""Zalo ZNS, without a network: the template mapping checked when loaded (each mistake named by
its field), the template data built from a message's data, the request the channel would send,
and the aggregate queueing exactly the channels the citizen chose."""
import copy
import json
from datetime import datetime, time, timezone

import pytest
import yaml

from motcua.contracts.events import new_event
from services.notify import zalo
from services.notify.channels import Outgoing, PermanentError, ZaloChannel, build_channels
from services.notify.messages import Context, DossierMessages
from services.notify.templates import sample_context

DATA = yaml.safe_load(zalo.DATA_FILE.read_text(encoding="utf-8"))
UNIT = "000.05.20.H29"


def invalid(data) -> zalo.ZaloTemplateInvalid:
    with pytest.raises(zalo.ZaloTemplateInvalid) as caught:
        zalo.validate(data)
    return caught.value


def changed(edit) -> dict:
    data = copy.deepcopy(DATA)
    edit(data)
    return data


# --- the mapping, checked -------------------------------------------------------------------------

def test_the_packaged_mapping_covers_every_citizen_message():
    mapping = zalo.load()
    assert set(mapping) == set(zalo.CITIZEN_KEYS)
    assert mapping["received"].params["dossier_code"] == zalo.Param("code", "code")


def test_an_unknown_message_kind_is_named():
    error = invalid(changed(lambda d: d.update(recieved=d["received"])))
    assert error.field == "recieved" and "unknown message kind" in error.reason


def test_a_message_to_officials_is_refused():
    error = invalid(changed(lambda d: d.update(at_risk=d["received"])))
    assert error.field == "at_risk" and "officials" in error.reason


def test_a_missing_citizen_message_is_named():
    error = invalid(changed(lambda d: d.pop("apology")))
    assert error.field == "apology" and "missing" in error.reason


def test_a_parameter_not_provided_by_the_message_is_named():
    error = invalid(changed(lambda d: d["refused"]["params"].update(date={"from": "appointment_date", "type": "date"})))
    assert error.field == "refused.params.date.from"
    assert "does not provide 'appointment_date'" in error.reason and "reason" in error.reason


@pytest.mark.parametrize("setting", ["from", "type"])
def test_a_parameter_without_its_source_or_type_is_named(setting):
    error = invalid(changed(lambda d: d["received"]["params"]["dossier_code"].pop(setting)))
    assert error.field == f"received.params.dossier_code.{setting}" and "required" in error.reason


def test_an_unknown_type_is_named():
    error = invalid(changed(lambda d: d["received"]["params"]["dossier_code"].update(type="qr")))
    assert error.field == "received.params.dossier_code.type" and "unknown type 'qr'" in error.reason


def test_a_value_of_the_wrong_type_is_named():
    # the name is text, not a date; the amount is a number, not a name
    error = invalid(changed(lambda d: d["received"]["params"]["customer_name"].update(type="date")))
    assert error.field == "received.params.customer_name" and "date" in error.reason
    error = invalid(changed(lambda d: d["refunded"]["params"]["amount"].update(**{"from": "reason"})))
    assert error.field == "refunded.params.amount" and "whole number" in error.reason


def test_a_numeric_template_id_must_be_quoted():
    error = invalid(changed(lambda d: d["received"].update(template_id=300001)))
    assert error.field == "received.template_id" and "quote" in error.reason


def test_an_unknown_setting_and_empty_params_are_named():
    assert invalid(changed(lambda d: d["received"].update(text="x"))).field == "received.text"
    assert invalid(changed(lambda d: d["received"].update(params={}))).field == "received.params"
    error = invalid(changed(lambda d: d["received"]["params"]["dossier_code"].update(max=30)))
    assert error.field == "received.params.dossier_code.max"


def test_a_bad_file_is_refused_naming_the_file_and_the_field(tmp_path):
    path = tmp_path / "zalo.yml"
    path.write_text(yaml.safe_dump(changed(lambda d: d["received"]["params"].update(x={"from": "nope", "type": "code"}))),
                    encoding="utf-8")
    with pytest.raises(zalo.ZaloTemplateInvalid) as caught:
        zalo.load(path)
    assert caught.value.field == "received.params.x.from" and str(path) in str(caught.value)


# --- the template data --------------------------------------------------------------------------

def test_template_data_from_the_message_data():
    mapping = zalo.load()
    data = zalo.template_data(mapping["received"], sample_context("received"))
    assert data["dossier_code"] == "000.07.20.H29-260213-0042"
    assert data["appointment_date"] == "06/03/2026"
    assert data["customer_name"] == "Tôn Nữ Hoàng Thị Phương Nguyệ…" and len(data["customer_name"]) == 30
    assert all(isinstance(value, str) for value in data.values())
    paid = zalo.template_data(mapping["payment_received"], {**sample_context("payment_received"), "receipt_number": ""})
    assert paid["amount"] == "1.250.000" and paid["receipt_number"] == "-"
    returned = zalo.template_data(mapping["returned"], sample_context("returned"))
    assert returned["returned_date"] == "06/03/2026"          # 02:30 UTC is 09:30 in Viet Nam


@pytest.mark.parametrize("phone, zns", [("0912 345 678", "84912345678"), ("+84 912.345.678", "84912345678"),
                                        ("84912345678", "84912345678"), ("091234567", None), ("12345", None)])
def test_the_phone_as_zns_takes_it(phone, zns):
    assert zalo.zns_phone(phone) == zns


# --- the request -----------------------------------------------------------------------------------

def outgoing(text=None, to="0912 345 678", **metadata) -> Outgoing:
    text = text or zalo.message_text(zalo.load()["received"], sample_context("received"))
    return Outgoing(channel="zalo", to=to, subject=None, text=text, idempotency_key="ev-1:zalo:abc",
                    metadata={"code": "X", "template": "received", "message_id": 42, **metadata})


def test_the_request_names_the_template_the_phone_and_the_message():
    channel = ZaloChannel("https://business.openapi.zalo.me/message/template", "TOKEN")
    headers, body = channel.request(outgoing())
    assert headers["access_token"] == "TOKEN"
    assert body["phone"] == "84912345678" and body["template_id"] == "300001" and body["tracking_id"] == "42"
    assert body["template_data"]["dossier_code"] == "000.07.20.H29-260213-0042"
    assert set(body) == {"phone", "template_id", "template_data", "tracking_id"}


def test_the_token_header_is_configurable():
    headers, _ = ZaloChannel("https://zns.example/send", "T", token_header="X-Access-Token").request(outgoing())
    assert headers["X-Access-Token"] == "T" and "access_token" not in headers


def test_a_bad_recipient_or_content_is_permanent_and_private():
    channel = ZaloChannel("https://zns.example/send", "T")
    with pytest.raises(PermanentError) as caught:
        channel.request(outgoing(to="0912 34"))
    assert "0912" not in str(caught.value)
    with pytest.raises(PermanentError):
        channel.request(outgoing(text="Đã tiếp nhận hồ sơ"))     # a text, not a ZNS message


def test_build_channels_zalo_is_off_without_its_url_and_needs_a_token():
    assert "zalo" not in build_channels({})
    assert isinstance(build_channels({"ZALO_API_URL": "http://127.0.0.1:1/t", "ZALO_ACCESS_TOKEN": "T"})["zalo"],
                      ZaloChannel)
    with pytest.raises(ValueError, match="ZALO_ACCESS_TOKEN"):
        build_channels({"ZALO_API_URL": "http://127.0.0.1:1/t"})
    with pytest.raises(ValueError, match="ZALO_API_URL"):
        build_channels({"ZALO_API_URL": "ftp://x/t", "ZALO_ACCESS_TOKEN": "T"})


# --- the citizen's channels -------------------------------------------------------------------

def received(channels=None, **payload):
    body = {"code": "000.05.20.H29-260302-0001", "procedure_code": "1.000656", "procedure_version": 1,
            "channel": "desk", "received_at": "2026-03-02T02:00:00+00:00", "appointment_date": "2026-03-06",
            "time_limit": "3d", "handling_agency": UNIT, "applicant": {"name": "Nguyễn Thị Đào",
                                                                       "phone": "0912345678"},
            "quantities": {"pages": 1, "copies": 1}, "secret": "K7QM3XPA", **payload}
    if channels is not None:
        body["notifications"] = {"channels": channels, "optional": True}
    return new_event("dossier.received", body, UNIT)


def context(hour=9):
    return Context(now=datetime(2026, 3, 2, hour - 7, 0, tzinfo=timezone.utc), unit_name=lambda code: "Phường 5",
                   procedure_name=lambda code, version: "Đăng ký kết hôn", officials={},
                   public_url="https://motcua.example", quiet_hours=(time(21, 0), time(7, 0)))


@pytest.mark.parametrize("channels", [["zalo"], ["sms", "zalo"], ["sms"]])
def test_messages_go_on_exactly_the_chosen_channels(channels):
    aggregate = DossierMessages("000.05.20.H29-260302-0001")
    aggregate.received(received(channels), context())
    assert sorted(m.channel for m in aggregate.messages) == sorted(channels)
    for message in aggregate.messages:
        if message.channel == "zalo":
            sent = json.loads(message.text)
            assert sent["template_id"] == "300001" and sent["template_data"]["customer_name"] == "Nguyễn Thị Đào"
            assert message.recipient == "0912345678"


def test_an_event_without_the_choice_is_sms_as_before():
    aggregate = DossierMessages("000.05.20.H29-260302-0001")
    aggregate.received(received(), context())
    assert [m.channel for m in aggregate.messages] == ["sms"]


def test_no_zalo_message_in_the_quiet_hours():
    aggregate = DossierMessages("000.05.20.H29-260302-0001")
    aggregate.received(received(["zalo"]), context(hour=22))
    (message,) = aggregate.messages
    assert message.next_attempt_at == datetime(2026, 3, 3, 0, 0, tzinfo=timezone.utc)   # 07:00 in Viet Nam
