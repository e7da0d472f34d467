"""Sign-in (motcua/runtime/auth.py) against a real local OpenID provider (tests/fakes/oidc_provider.py):
what is refused (401), what a rotated key does, the settings a service refuses to start with."""
import base64
import json

import jwt
import pytest

from motcua.contracts.refusals import Forbidden, Unauthenticated
from motcua.runtime.auth import Authenticator, Settings
from motcua.runtime.config import ConfigError, check_auth
from tests.fakes.oidc_provider import OidcProvider
from tests.fakes.officials import dev_headers, official_headers

NAME, UNIT = "Trần Văn Bình", "000.05.20.H29"
ROUTE = ("intake", "GET", "/api/v1/dossiers/<string:code>")


@pytest.fixture(scope="module")
def idp():
    provider = OidcProvider().start()
    yield provider
    provider.stop()


@pytest.fixture
def authenticator(idp):
    return Authenticator.from_config({**idp.settings(), "OIDC_JWKS_REFETCH_SECONDS": 0})


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def refused(authenticator, headers) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as caught:
        authenticator.authorise(*ROUTE, headers)
    assert caught.value.status == 401
    return caught.value


def test_a_valid_token_gives_the_official_of_its_claims_with_the_routes_scope(idp, authenticator):
    actor = authenticator.authorise(*ROUTE, bearer(idp.mint(NAME, UNIT, ["desk_officer"])))
    assert (actor.name, actor.unit, actor.roles, actor.scope) == (NAME, UNIT, {"desk_officer"}, "own")
    auditor = authenticator.authorise(*ROUTE, bearer(idp.mint("Kiểm tra", UNIT, ["auditor"])))
    assert auditor.district_wide


def test_no_token_or_another_scheme_is_401(authenticator):
    assert refused(authenticator, {}).field == "authorization"
    refused(authenticator, {"Authorization": "Basic dXNlcjpwYXNz"})
    refused(authenticator, dev_headers(NAME, UNIT))      # the old headers prove nothing outside dev mode


def test_an_expired_token_is_401(idp, authenticator):
    assert "expired" in str(refused(authenticator, bearer(idp.mint(NAME, UNIT, expires_in=-120))))


def test_a_wrong_audience_or_issuer_is_401(idp, authenticator):
    assert "audience" in str(refused(authenticator, bearer(idp.mint(NAME, UNIT, aud="another-api"))))
    assert "issued" in str(refused(authenticator, bearer(idp.mint(NAME, UNIT, iss="https://evil.example"))))


def test_a_bad_signature_is_401(idp, authenticator):
    header, payload, signature = idp.mint(NAME, UNIT).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged = base64.urlsafe_b64encode(json.dumps({**claims, "unit": "000.07.20.H29"}).encode()).rstrip(b"=")
    refused(authenticator, bearer(f"{header}.{forged.decode()}.{signature}"))
    stranger = OidcProvider()       # a key the provider never published, under a published kid
    token = jwt.encode(idp.claims(NAME, UNIT, ["desk_officer"]), stranger.keys[stranger.kid][1], algorithm="RS256",
                       headers={"kid": idp.kid})
    refused(authenticator, bearer(token))


def test_alg_none_and_a_shared_secret_are_401(idp, authenticator):
    claims = idp.claims(NAME, UNIT, ["desk_officer"])
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": idp.kid})
    assert "none" in str(refused(authenticator, bearer(unsigned)))
    hs = jwt.encode(claims, "a secret anyone could know", algorithm="HS256", headers={"kid": idp.kid})
    refused(authenticator, bearer(hs))


def test_a_key_rotated_at_the_provider_is_accepted_without_a_restart(idp, authenticator):
    assert authenticator.authorise(*ROUTE, bearer(idp.mint(NAME, UNIT)))
    old_kid = idp.kid
    idp.rotate("ES256")
    actor = authenticator.authorise(*ROUTE, bearer(idp.mint(NAME, UNIT)))
    assert actor.name == NAME
    refused(authenticator, bearer(idp.mint(NAME, UNIT, kid=old_kid)))     # withdrawn: no longer accepted
    idp.rotate("EdDSA", keep_old=True)
    assert authenticator.authorise(*ROUTE, bearer(idp.mint(NAME, UNIT))).unit == UNIT


def test_unknown_keys_refetch_the_set_at_most_once_per_interval(idp):
    authenticator = Authenticator.from_config({**idp.settings(), "OIDC_JWKS_REFETCH_SECONDS": 3600})
    authenticator.authorise(*ROUTE, bearer(idp.mint(NAME, UNIT)))
    before = authenticator.keys.fetches
    for _ in range(20):
        token = jwt.encode(idp.claims(NAME, UNIT, ["desk_officer"]), idp.keys[idp.kid][1],
                           algorithm=idp.keys[idp.kid][0], headers={"kid": "made-up"})
        refused(authenticator, bearer(token))
    assert authenticator.keys.fetches == before


def test_a_token_without_a_unit_or_a_role_for_the_route_is_403(idp, authenticator):
    with pytest.raises(Forbidden) as caught:
        authenticator.authorise(*ROUTE, bearer(idp.mint(NAME, "")))
    assert "unit" in str(caught.value)
    with pytest.raises(Forbidden) as caught:
        authenticator.authorise("notify", "PUT", "/api/v1/templates/<string:key>/<string:channel>",
                                bearer(idp.mint(NAME, UNIT, ["desk_officer"])))
    assert "desk_officer may not call PUT /api/v1/templates" in str(caught.value)
    with pytest.raises(Forbidden):
        authenticator.authorise("intake", "DELETE", "/api/v1/dossiers", bearer(idp.mint(NAME, UNIT)))


def test_claim_names_are_settings_and_a_dotted_name_reads_a_nested_claim(idp):
    authenticator = Authenticator.from_config({**idp.settings(), "OIDC_CLAIM_NAME": "preferred_username",
                                               "OIDC_CLAIM_UNIT": "org.unit", "OIDC_CLAIM_ROLES": "realm_access.roles"})
    token = idp.mint("ignored", "ignored", [], preferred_username=NAME, org={"unit": UNIT},
                     realm_access={"roles": ["unit_head", "offline_access"]})
    actor = authenticator.authorise(*ROUTE, bearer(token))
    assert (actor.name, actor.unit, actor.roles) == (NAME, UNIT, {"unit_head", "offline_access"})


def test_the_public_routes_need_no_token(authenticator):
    assert authenticator.authorise("intake", "GET", "/api/v1/status/<string:code>", {}) is None


def test_dev_mode_takes_the_headers_and_production_refuses_it():
    dev = Authenticator.from_config({"AUTH_MODE": "dev-headers"})
    actor = dev.authorise(*ROUTE, dev_headers(NAME, UNIT))
    assert (actor.name, actor.unit, actor.scope) == (NAME, UNIT, "routed")     # the default dev roles
    assert dev.authorise(*ROUTE, dev_headers(NAME, UNIT, "auditor")).district_wide
    with pytest.raises(Unauthenticated):
        dev.authorise(*ROUTE, {})
    with pytest.raises(ConfigError, match="dev-headers .* refused with DEPLOYMENT=production"):
        check_auth({"AUTH_MODE": "dev-headers", "DEPLOYMENT": "production"}, "intake's config")
    with pytest.raises(ConfigError, match="AUTH_MODE"):
        check_auth({"AUTH_MODE": "headers"}, "intake's config")


@pytest.mark.parametrize("algorithms", ["HS256", "RS256,none", "RS256 HS512"])
def test_symmetric_or_no_algorithms_are_refused_settings(algorithms):
    with pytest.raises(ConfigError, match="OIDC_ALGORITHMS"):
        Settings.from_config({"OIDC_ALGORITHMS": algorithms, "OIDC_ISSUER": "https://sso.example"})


def test_official_headers_are_a_bearer_token_of_the_session_provider():
    (value,) = official_headers(NAME, UNIT, "specialist").values()
    claims = jwt.decode(value.split(" ", 1)[1], options={"verify_signature": False})
    assert (claims["name"], claims["unit"], claims["roles"]) == (NAME, UNIT, ["specialist"])


def test_a_service_with_production_settings_and_dev_mode_refuses_to_start(monkeypatch, capsys):
    from apps.cli import main
    monkeypatch.setenv("DEPLOYMENT", "production")
    monkeypatch.setenv("AUTH_MODE", "dev-headers")
    assert main(["run", "intake"]) == 2
    error = capsys.readouterr().err
    assert "services/intake/config.yml" in error and "AUTH_MODE=dev-headers" in error and "production" in error


@pytest.mark.parametrize("service", ["intake", "routing", "fees", "notify"])
def test_each_official_service_declares_the_sign_in_settings(service):
    from apps.registry import SERVICES
    from motcua.runtime.config import load_config
    config = load_config(SERVICES[service].config_file, {"OIDC_ISSUER": "https://sso.example.gov.vn/realms/motcua"})
    settings = Settings.from_config(config)
    assert (settings.mode, settings.issuer, settings.audience) == ("oidc", "https://sso.example.gov.vn/realms/motcua",
                                                                   "motcua")
    assert settings.algorithms == ("RS256", "ES256", "EdDSA") and settings.claim_roles == "roles"


def test_the_key_cache_has_a_lifetime_and_unknown_keys_refetch_at_most_once_per_interval(idp):
    from motcua.runtime.auth import ProviderKeys, _fetch_json
    now = [0.0]
    keys = ProviderKeys(idp.issuer, cache_seconds=300, refetch_seconds=10, fetch=_fetch_json, clock=lambda: now[0])
    assert keys.get(idp.kid) is not None and keys.fetches == 1
    assert keys.get(idp.kid) is not None and keys.fetches == 1          # cached
    assert keys.get("unknown") is None and keys.fetches == 1            # too soon to ask again
    now[0] = 11
    assert keys.get("unknown") is None and keys.fetches == 2            # asked once more
    assert keys.get("unknown") is None and keys.fetches == 2
    now[0] = 400
    assert keys.get(idp.kid) is not None and keys.fetches == 3          # the cache's lifetime passed


def _request(headers=None):
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request
    return Request(EnvironBuilder(path="/api/v1/dossiers/X", headers=headers or {}).get_environ())


def test_admit_records_the_actor_or_answers_the_refusal(idp, authenticator):
    from motcua.runtime.auth import ACTOR_KEY, admit
    request = _request(bearer(idp.mint(NAME, UNIT)))
    assert admit(authenticator, *ROUTE, request) is None and request.environ[ACTOR_KEY].name == NAME
    refused = admit(authenticator, *ROUTE, _request())
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert json.loads(refused.get_data())["field"] == "authorization"


def test_a_provider_out_of_reach_is_503_with_retry_after(idp):
    from motcua.runtime.auth import admit
    from tests.fakes.oidc_provider import _free_port
    down = Authenticator.from_config({**idp.settings(), "OIDC_ISSUER": f"http://127.0.0.1:{_free_port()}"})
    answer = admit(down, *ROUTE, _request(bearer(idp.mint(NAME, UNIT))))
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "2"


def test_keys_for_encryption_or_of_unknown_algorithms_in_the_set_are_left_aside(idp):
    """Keycloak's set also holds an encryption key (use "enc", alg RSA-OAEP): never a signing key."""
    from motcua.runtime.auth import ProviderKeys
    jwks = json.loads((idp.directory / "jwks.json").read_text())
    enc = {**jwks["keys"][0], "kid": "enc-1", "use": "enc", "alg": "RSA-OAEP"}
    documents = {f"{idp.issuer}/.well-known/openid-configuration": {"issuer": idp.issuer, "jwks_uri": "jwks"},
                 "jwks": {"keys": [enc, *jwks["keys"]]}}
    keys = ProviderKeys(idp.issuer, 300, 10, fetch=documents.__getitem__)
    assert keys.get("enc-1") is None and keys.get(jwks["keys"][0]["kid"]) is not None
