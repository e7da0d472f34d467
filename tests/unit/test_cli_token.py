"""``motcua token``: an official's access token from the identity provider's token endpoint
(password grant), which the services then accept."""
import pytest

from apps.cli import main
from motcua.runtime.auth import Authenticator
from tests.fakes.oidc_provider import OidcProvider


@pytest.fixture(scope="module")
def idp():
    provider = OidcProvider().start()
    provider.add_user("lan", "s3cret", name="Nguyễn Thị Lan", unit="000.05.20.H29", roles=["desk_officer"])
    yield provider
    provider.stop()


def test_the_token_printed_is_one_the_services_accept(idp, monkeypatch, capsys):
    monkeypatch.setenv("MOTCUA_PASSWORD", "s3cret")
    assert main(["token", "--issuer", idp.issuer, "--username", "lan"]) == 0
    token = capsys.readouterr().out.strip()
    actor = Authenticator.from_config(idp.settings()).authorise(
        "intake", "POST", "/api/v1/dossiers", {"Authorization": f"Bearer {token}"})
    assert (actor.name, actor.unit, actor.roles) == ("Nguyễn Thị Lan", "000.05.20.H29", {"desk_officer"})


def test_a_wrong_password_is_a_usage_error_naming_the_providers_reason(idp, monkeypatch, capsys):
    monkeypatch.setenv("MOTCUA_PASSWORD", "wrong")
    assert main(["token", "--issuer", idp.issuer, "--username", "lan"]) == 2
    assert "Invalid user credentials" in capsys.readouterr().err


def test_no_provider_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.delenv("OIDC_ISSUER", raising=False)
    monkeypatch.setenv("MOTCUA_PASSWORD", "x")
    assert main(["token", "--username", "lan"]) == 2
    assert "OIDC_ISSUER" in capsys.readouterr().err
