"""The e-mail as notify builds it (services/notify/channels.py, ``EmailChannel.build``): read back
with Python's own parser (the one the fake SMTP relay decodes with) it gives exactly the subject,
sender, recipient, text and keys it was given; on the wire it is 7-bit, CRLF, lines of at most 78
characters. And the kept-open connections' bookkeeping, without a server."""
from __future__ import annotations

from email import message_from_bytes, policy
from email.header import decode_header, make_header

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.notify import channels as channel_module
from services.notify.channels import EmailChannel, Outgoing, PermanentError, message_id_for
from services.notify.templates import KEYS, defaults, render, sample_context

SENDER = "Một cửa Gò Vấp <motcua@govap.example.vn>"
KEY = "3f2c6a1e-9b0d-4c8e-a1f3-5d7e9b2c4a60:email:0123456789abcdef"


def read(raw: bytes) -> dict:
    mail = message_from_bytes(raw, policy=policy.default)
    part = mail.get_body(preferencelist=("plain",))
    return {"from": str(mail["From"]), "to": str(mail["To"]), "subject": str(mail["Subject"]),
            "body": part.get_content().replace("\r\n", "\n"), "message_id": str(mail["Message-ID"]),
            "key": str(mail["X-Idempotency-Key"]), "charset": part.get_content_charset(),
            "cte": str(mail["Content-Transfer-Encoding"]), "auto": str(mail["Auto-Submitted"]),
            "date": mail["Date"].datetime}


def assert_wire_format(raw: bytes) -> None:
    assert raw.isascii()
    assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78


def mail(subject, text, key=KEY, to="nguyen.thi.dao@example.vn") -> Outgoing:
    return Outgoing(channel="email", to=to, subject=subject, text=text, idempotency_key=key)


@pytest.mark.parametrize("key", sorted(KEYS))
def test_every_template_reads_back_as_it_was_rendered(key):
    rendered = render(defaults()[(key, "email")], sample_context(key))
    raw = EmailChannel("relay", 25, SENDER).build(mail(rendered.subject, rendered.text))
    assert_wire_format(raw)
    got = read(raw)
    assert got["subject"] == rendered.subject and got["body"] == rendered.text + "\n"
    assert got["from"] == SENDER and got["to"] == "nguyen.thi.dao@example.vn"
    assert (got["message_id"], got["key"]) == (message_id_for(KEY), KEY)
    assert (got["charset"], got["cte"], got["auto"]) == ("utf-8", "quoted-printable", "auto-generated")
    assert got["date"].tzinfo is not None


def test_the_vietnamese_sender_name_and_subject_are_encoded_words():
    raw = EmailChannel("relay", 25, SENDER).build(mail("[Một cửa] Đã tiếp nhận hồ sơ", "Kính gửi Ông/Bà"))
    head = raw.split(b"\r\n\r\n")[0].decode()
    assert "From: =?utf-8?b?" in head and "<motcua@govap.example.vn>" in head
    assert "Subject: =?utf-8?b?" in head
    assert b"K=C3=ADnh g=E1=BB=ADi" in raw       # the body: UTF-8 in quoted-printable


def test_a_plain_sender_and_an_ascii_subject_stay_as_they_are():
    channel = EmailChannel("relay", 25, "motcua@govap.example.vn")
    head = channel.build(mail("Thu nghiem", "x")).split(b"\r\n\r\n")[0].decode()
    assert "From: motcua@govap.example.vn\r\n" in head and "Subject: Thu nghiem\r\n" in head
    assert channel.envelope_from == "motcua@govap.example.vn"


def test_a_sender_name_with_a_comma_is_quoted():
    channel = EmailChannel("relay", 25, "UBND Phường 5, Gò Vấp <p5@govap.example.vn>")
    assert channel.envelope_from == "p5@govap.example.vn"
    assert read(channel.build(mail("s", "t")))["from"] == '"UBND Phường 5, Gò Vấp" <p5@govap.example.vn>'


def test_a_long_vietnamese_sender_name_is_folded_and_reads_back():
    sender = "Bộ phận Tiếp nhận và Trả kết quả Ủy ban nhân dân Phường Hạnh Thông quận Gò Vấp <p1@govap.example.vn>"
    raw = EmailChannel("relay", 25, sender).build(mail("s", "t"))
    assert_wire_format(raw)
    # RFC 2047's reading (the spaces between encoded words are not text); the address parser of
    # policy.default puts a space there (as it did with the EmailMessage this replaced)
    header = message_from_bytes(raw, policy=policy.compat32)["From"]
    assert str(make_header(decode_header(header))) == sender


def test_line_ends_dots_and_trailing_blanks_survive():
    text = "dòng 1\r\ndòng 2\rdòng 3 \n.một chấm\n=bằng\ttab \n" + "ư" * 200
    got = read(EmailChannel("relay", 25, SENDER).build(mail("s", text)))
    assert got["body"] == "dòng 1\ndòng 2\ndòng 3 \n.một chấm\n=bằng\ttab \n" + "ư" * 200 + "\n"


def test_text_that_looks_like_an_encoded_word_is_kept_literally():
    got = read(EmailChannel("relay", 25, SENDER).build(mail("Mã =?utf-8?q?x?= lạ", "t")))
    assert got["subject"] == "Mã =?utf-8?q?x?= lạ"


@settings(max_examples=150, deadline=None)
@given(subject=st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=300),
       text=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=600).filter(str.strip),
       key=st.text(st.characters(min_codepoint=33, max_codepoint=0x1EF9, blacklist_categories=("Cs", "Cc", "Z")),
                   min_size=1, max_size=90))
def test_any_subject_and_text_read_back_exactly(subject, text, key):
    raw = EmailChannel("relay", 25, SENDER).build(mail(subject, text, key=key))
    assert_wire_format(raw)
    got = read(raw)
    assert got["subject"] == " ".join(subject.split())
    # lines end at CR, LF or CRLF (as EmailMessage.set_content had it), one after the last
    assert got["body"] == "\n".join(line.decode() for line in text.encode().splitlines()) + "\n"
    assert got["key"] == key and got["message_id"] == message_id_for(key)


def test_not_an_address_is_permanent_before_any_connection():
    with pytest.raises(PermanentError):
        EmailChannel("relay", 25, SENDER).send(mail("s", "t", to="0912 345 678"))


class FakeSMTP:
    closed = 0

    def __init__(self):
        self.sock = None

    def quit(self):
        pass

    def close(self):
        FakeSMTP.closed += 1


def test_idle_connections_are_closed_after_the_idle_time_and_all_at_stop():
    now = [100.0]
    channel = EmailChannel("relay", 25, SENDER, idle_seconds=5, clock=lambda: now[0])
    FakeSMTP.closed = 0
    channel._idle = [(FakeSMTP(), 90.0), (FakeSMTP(), 99.0)]
    channel_module.close_idle({"email": channel, "webhook": channel_module.WebhookChannel()})
    assert FakeSMTP.closed == 1 and len(channel._idle) == 1
    taken, reused = channel._take()                  # the one used a second ago
    assert reused and isinstance(taken, FakeSMTP)
    channel._idle = [(FakeSMTP(), 99.0)]
    channel_module.close_all({"email": channel})
    assert FakeSMTP.closed == 2 and channel._idle == []
