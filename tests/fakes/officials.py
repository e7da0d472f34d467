"""How a test acts as an official of a unit: the HTTP headers of one call.

Every test that calls the officials' HTTP APIs takes its headers from here, so that the way an
official proves who they are is decided in one place: a bearer token minted by the session's
OpenID provider (tests/fakes/oidc_provider.py), which the services under test trust.
``dev_headers`` are the headers of the development mode (AUTH_MODE=dev-headers) only."""
from urllib.parse import quote

from tests.fakes.oidc_provider import provider

_SIGN_IN = None


def official_headers(name: str, unit: str, role: str = "desk_officer", **claims) -> dict[str, str]:
    """The headers of a call by ``name`` (any Unicode) of ``unit`` acting as ``role`` (a role or a
    list of roles); ``claims`` override the token's claims (``expires_in=-60``, ``aud="other"``)."""
    roles = [role] if isinstance(role, str) else list(role)
    claims.setdefault("expires_in", 8 * 3600)    # a working day: modules keep their officials' headers
    return {"Authorization": f"Bearer {provider().mint(name, unit, roles, **claims)}"}


def dev_headers(name: str, unit: str, role: str | None = None) -> dict[str, str]:
    """The development mode's headers: percent-encoded UTF-8 (headers are Latin-1)."""
    headers = {"X-Official": quote(name), "X-Unit": unit}
    if role:
        headers["X-Roles"] = role
    return headers


def signed_in(request):
    """``request`` (a werkzeug Request built by a unit test) as the entry point leaves it once its
    bearer token is verified: the acting official recorded (motcua.runtime.web.official)."""
    global _SIGN_IN
    from motcua.contracts.actors import Actor
    from motcua.runtime import auth
    if "Authorization" in request.headers:
        _SIGN_IN = _SIGN_IN or auth.Authenticator.from_config(provider().settings())
        request.environ[auth.ACTOR_KEY] = Actor(*_SIGN_IN.official(request.headers))
    return request
