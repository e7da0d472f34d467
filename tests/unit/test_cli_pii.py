"""``motcua pii keys`` and the services that keep ID or phone numbers refusing to run without keys."""
import pytest

from apps.cli import main
from motcua.runtime.pii import SETTINGS, keyring


@pytest.fixture
def no_keys(monkeypatch):
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)


def test_pii_keys_prints_a_usable_set(capsys):
    assert main(["pii", "keys", "--key-id", "k7"]) == 0
    settings = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines())
    assert set(settings) == set(SETTINGS) and settings["PII_ACTIVE_KEY"] == "k7"
    assert keyring(settings).active == "k7"


@pytest.mark.parametrize("command", [["run", "intake"], ["run", "notify"], ["run", "gateway"], ["up"],
                                     ["pii", "rotate", "notify"]])
def test_no_service_keeping_the_numbers_starts_without_the_keys(capsys, no_keys, command):
    assert main(command) == 2
    assert "PII_KEYS, PII_ACTIVE_KEY, PII_HASH_KEY: not set" in capsys.readouterr().err


def test_rotate_names_a_service_that_keeps_none(capsys, no_keys):
    assert main(["pii", "rotate", "fees"]) == 2
    assert "fees keeps no ID or phone numbers" in capsys.readouterr().err
