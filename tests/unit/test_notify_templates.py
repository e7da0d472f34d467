"""The notification messages: defaults, rendering, the sandbox, validation and the filters."""
import pytest

from services.notify import templates
from services.notify.templates import (
    CHANNELS, KEYS, REQUIRED, SMS_MAX_CHARS, Rendered, Template, TemplateInvalid,
    defaults, ngay, ngay_gio, render, sample_context, validate, vnd,
)

ALL = [(key, channel) for key in KEYS for channel in CHANNELS]


def test_every_key_has_every_channel_and_the_required_ones_are_citizen_messages():
    assert set(defaults()) == set(ALL)
    assert REQUIRED <= set(KEYS)
    assert all(KEYS[key] == "citizen" for key in REQUIRED)
    assert set(KEYS.values()) == {"citizen", "official"}


@pytest.mark.parametrize("key, channel", ALL)
def test_every_default_renders_with_its_sample(key, channel):
    template = defaults()[(key, channel)]
    assert (template.key, template.channel) == (key, channel)
    rendered = render(template, sample_context(key))
    assert isinstance(rendered, Rendered) and rendered.text
    if channel == "email":
        assert rendered.subject and "\n" not in rendered.subject
    if channel == "sms":
        assert rendered.subject is None
        assert templates.sms_length(rendered.text) <= SMS_MAX_CHARS
        assert rendered.text.isascii() and "\n" not in rendered.text and "  " not in rendered.text
    if "code" in sample_context(key):
        assert sample_context(key)["code"] in rendered.text


def test_samples_are_worst_cases():
    assert len(sample_context("received")["procedure"]) == 200
    assert len(sample_context("received")["name"]) > 30


def test_received_tells_the_date_and_how_to_check_the_status():
    context = sample_context("received")
    for channel in CHANNELS:
        text = render(defaults()[("received", channel)], context).text
        assert "06/03/2026" in text
        assert context["status_url"] in text and context["secret"] in text


def test_supplement_lists_each_document_with_its_form_and_count():
    context = sample_context("supplement_requested")
    email = render(defaults()[("supplement_requested", "email")], context).text
    assert "Hợp đồng chuyển nhượng quyền sử dụng đất đã công chứng: 1 bản chính" in email
    assert "Căn cước công dân của bên nhận chuyển nhượng: 2 bản sao có chứng thực" in email
    assert context["reason"] in email
    sms = render(defaults()[("supplement_requested", "sms")], context).text
    assert "1 ban chinh Hop dong chuyen nhuong" in sms and "2 ban sao co chung thuc Can cuoc" in sms


def test_apology_gives_the_agency_the_reason_and_the_new_date():
    context = sample_context("apology")
    for channel in CHANNELS:
        text = render(defaults()[("apology", channel)], context).text
        assert "13/03/2026" in text and "06/03/2026" in text
    email = render(defaults()[("apology", "email")], context).text
    assert context["agency_name"] in email and context["reason"] in email


def test_refusal_gives_the_reason():
    context = sample_context("refused")
    email = render(defaults()[("refused", "email")], context).text
    assert context["reason"] in email


def test_diacritics_are_kept_in_email_and_stripped_in_sms():
    context = {**sample_context("result_ready"), "name": "Nguyễn Thị Đào", "unit_name": "Ủy ban nhân dân Phường 7"}
    email = render(defaults()[("result_ready", "email")], context)
    assert "Nguyễn Thị Đào" in email.text and "Ủy ban nhân dân Phường 7" in email.text
    assert "đã có kết quả" in email.subject
    sms = render(defaults()[("result_ready", "sms")], context).text
    assert "Uy ban nhan dan Phuong 7" in sms and "da co ket qua" in sms
    assert sms.isascii()


def test_sms_collapses_whitespace_and_replaces_typographic_punctuation():
    template = validate("refused", "sms", None, "Hồ sơ   {{ code }}\n\n “từ chối” – {{ reason|length > 0 }}")
    text = render(template, sample_context("refused")).text
    assert text == 'Ho so 000.07.20.H29-260213-0042 "tu choi" - True'


def test_an_unknown_variable_is_rejected_at_validation():
    with pytest.raises(TemplateInvalid) as caught:
        validate("received", "email", "Hồ sơ {{ code }}", "Kính gửi {{ citizen_name }}")
    assert caught.value.field == "body" and "citizen_name" in caught.value.reason
    # also in a branch the sample does not take
    with pytest.raises(TemplateInvalid) as caught:
        validate("received", "email", "{% if false %}{{ nope }}{% endif %}Hồ sơ", "{{ code }}")
    assert caught.value.field == "subject"


def test_strict_undefined_at_rendering():
    template = Template("received", "email", "Hồ sơ", "{{ code }} {{ missing }}")
    with pytest.raises(TemplateInvalid) as caught:
        render(template, sample_context("received"))
    assert caught.value.field == "body" and "missing" in caught.value.reason
    with pytest.raises(TemplateInvalid):
        render(defaults()[("received", "sms")], {"code": "x"})


def test_a_too_long_sms_is_rejected_naming_its_length():
    body = "{{ procedure }} {{ procedure }}"
    expected = templates.sms_length(render(Template("received", "sms", None, body), sample_context("received")).text)
    assert expected > SMS_MAX_CHARS
    with pytest.raises(TemplateInvalid) as caught:
        validate("received", "sms", None, body)
    assert caught.value.field == "body"
    assert f"{expected} characters, the limit is {SMS_MAX_CHARS}" in caught.value.reason


def test_an_sms_that_would_not_be_gsm_7_bit_is_rejected():
    with pytest.raises(TemplateInvalid) as caught:
        validate("received", "sms", None, "{{ code }} 日本")
    assert "GSM" in caught.value.reason


@pytest.mark.parametrize("subject, body, field", [
    ("Hồ sơ {{ code }}", "{{ code ", "body"),
    ("Hồ sơ {{ code }", "{{ code }}", "subject"),
    ("Hồ sơ", "{% for d in documents %}{{ d }}", "body"),
    ("Hồ sơ", "{{ code|no_such_filter }}", "body"),
])
def test_a_syntax_error_is_rejected(subject, body, field):
    with pytest.raises(TemplateInvalid) as caught:
        validate("received", "email", subject, body)
    assert caught.value.field == field


@pytest.mark.parametrize("body", [
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ code.__class__.__init__.__globals__ }}",
    "{{ status_url.__len__() }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{% set x = [1] %}{{ x.append(2) }}",
    "{{ 'x' * 100000 }}",
    "{{ 9 ** 999999 }}",
    "{{ range(10 ** 6)|length }}",
])
def test_the_sandbox_refuses_unsafe_access(body):
    with pytest.raises(TemplateInvalid) as caught:
        validate("received", "email", "Hồ sơ {{ code }}", body)
    assert caught.value.field == "body"


def test_email_needs_a_subject_and_sms_has_none():
    with pytest.raises(TemplateInvalid) as caught:
        validate("received", "email", None, "{{ code }}")
    assert caught.value.field == "subject"
    with pytest.raises(TemplateInvalid) as caught:
        validate("received", "sms", "Tiêu đề", "{{ code }}")
    assert caught.value.field == "subject"
    assert validate("received", "webhook", None, "{{ code }}").subject is None


@pytest.mark.parametrize("key, channel, field", [("no_such", "email", "key"), ("received", "fax", "channel")])
def test_unknown_key_or_channel(key, channel, field):
    with pytest.raises(TemplateInvalid) as caught:
        validate(key, channel, "S", "{{ code }}")
    assert caught.value.field == field


def test_an_empty_body_is_rejected():
    with pytest.raises(TemplateInvalid) as caught:
        validate("received", "webhook", None, "{% if false %}x{% endif %}")
    assert caught.value.field == "body"


def test_filter_ngay():
    assert ngay("2026-02-13") == "13/02/2026"
    assert ngay("2026-02-13T09:30:00+07:00") == "13/02/2026"
    assert ngay("2026-02-13T20:00:00+00:00") == "14/02/2026"   # already the 14th in Viet Nam
    assert ngay_gio("2026-02-13T02:30:00Z") == "09:30 ngày 13/02/2026"
    with pytest.raises(ValueError):
        ngay("13/02/2026")


def test_filter_vnd():
    assert vnd(5000) == "5.000 đồng"
    assert vnd(0) == "0 đồng"
    assert vnd(1_250_000) == "1.250.000 đồng"
    for bad in (5000.0, "5000", True):
        with pytest.raises(ValueError):
            vnd(bad)


def test_filters_in_templates():
    template = validate("refunded", "email", "Hoàn {{ amount|vnd }}", "{{ amount|vnd }}")
    assert render(template, {**sample_context("refunded"), "amount": 5000}) == Rendered("Hoàn 5.000 đồng", "5.000 đồng")
    sms = validate("apology", "sms", None, "{{ new_date|ngay }} {{ 5000|vnd }}")
    assert render(sms, sample_context("apology")).text == "13/03/2026 5.000 dong"
    with pytest.raises(TemplateInvalid):
        render(template, {**sample_context("refunded"), "amount": "năm nghìn"})


def test_defaults_returns_a_copy():
    first = defaults()
    first.clear()
    assert len(defaults()) == len(ALL)
