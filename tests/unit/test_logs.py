import json
import logging

import structlog

from motcua.runtime.logs import configure_logging, mask_text


def test_mask_text_hides_ids_phones_and_emails():
    text = "CCCD 079203001234, phone 0903 123 456 or +84903123456, mail an.nguyen@example.vn, code 000.01.20.H29-260213-0001"
    masked = mask_text(text)
    for secret in ("079203001234", "0903 123 456", "+84903123456", "an.nguyen@example.vn"):
        assert secret not in masked
    assert mask_text('"GET /api/v1/status/X?secret=K7P4-9QX2&x=1 HTTP/1.1"') == '"GET /api/v1/status/X?secret=***&x=1 HTTP/1.1"'
    # Dossier codes, dates and amounts stay readable.
    assert "000.01.20.H29-260213-0001" in masked


def test_json_lines_with_masking_for_structlog_and_stdlib(capsys):
    configure_logging("catalog", json_lines=True)
    structlog.contextvars.bind_contextvars(correlation_id="c-1")
    structlog.get_logger("test").info("received", id_number="079203001234", note="call 0912345678")
    logging.getLogger("nameko.test").warning("citizen 079203001234 wrote from a.b@c.vn")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["event"] for line in lines] == ["received", "citizen [CCCD ***] wrote from [e-mail ***]"]
    assert lines[0]["id_number"] == "***" and "0912345678" not in lines[0]["note"]
    assert lines[0]["correlation_id"] == "c-1" and lines[0]["service"] == "catalog"
    assert lines[1]["logger"] == "nameko.test" and lines[1]["level"] == "warning"
    structlog.contextvars.clear_contextvars()


def test_an_entry_points_kind_is_that_of_its_nearest_known_class():
    """The platform's HTTP entry point (a subclass that answers 503) keeps the label "http" that
    the alerts and dashboards select on."""
    from nameko.rpc import Rpc
    from nameko.timer import Timer
    from nameko.web.handlers import HttpRequestHandler

    from motcua.runtime.observability import entrypoint_kind
    from motcua.runtime.web import HttpEntrypoint
    kinds = [entrypoint_kind(cls.__new__(cls)) for cls in (HttpEntrypoint, HttpRequestHandler, Rpc, Timer)]
    assert kinds == ["http", "http", "rpc", "timer"]
