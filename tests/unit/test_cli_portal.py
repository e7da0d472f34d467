"""``motcua portal reconcile``: bad input exits 2 with a message and asks nobody (the command's
work against a real portal and database is in tests/e2e/test_portal_sync.py)."""
import pytest

from apps.cli import main


@pytest.mark.parametrize("args, message", [
    (["--from", "2026-03-40", "--to", "2026-03-31"], "--from/--to"),
    (["--from", "2026-03-31", "--to", "2026-03-01"], "ends before it starts"),
])
def test_a_bad_period_is_refused(capsys, monkeypatch, args, message):
    monkeypatch.setenv("PORTAL_URL", "http://127.0.0.1:9")
    assert main(["portal", "reconcile", *args]) == 2
    assert message in capsys.readouterr().err


def test_without_the_portals_url_nothing_can_be_asked(capsys, monkeypatch):
    monkeypatch.delenv("PORTAL_URL", raising=False)
    assert main(["portal", "reconcile", "--from", "2026-03-01", "--to", "2026-03-31"]) == 2
    assert "PORTAL_URL is not set" in capsys.readouterr().err


def test_a_broken_fields_file_is_named(capsys, monkeypatch, tmp_path):
    broken = tmp_path / "fields.yml"
    broken.write_text("send: {}\n", encoding="utf-8")
    monkeypatch.setenv("PORTAL_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("PORTAL_FIELDS_FILE", str(broken))
    assert main(["portal", "reconcile", "--from", "2026-03-01", "--to", "2026-03-31"]) == 2
    assert str(broken) in capsys.readouterr().err
