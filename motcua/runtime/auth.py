"""Who is calling an official's HTTP API, and may they: sign-in with OpenID Connect.

An official's call carries ``Authorization: Bearer <JWT>`` issued by the district's identity
provider. The token is verified with PyJWT against the provider's keys (JWKS, found through its
discovery document ``<issuer>/.well-known/openid-configuration``): issuer, audience, expiry and an
algorithm from an allow-list (asymmetric only: a shared secret or ``none`` would let anyone who
knows the configuration sign). Keys are cached for ``OIDC_JWKS_CACHE_SECONDS``; a token signed with
a key not in the cache makes one refetch (at most one per ``OIDC_JWKS_REFETCH_SECONDS``), so a key
rotated at the provider is accepted without a restart and a flood of made-up ``kid`` cannot turn
into a flood of requests to the provider.

The official's name, unit and roles come from the token's claims (names configurable; a dotted name
reads a nested claim, e.g. Keycloak's ``realm_access.roles``). The route is then checked against the
table of ``motcua/contracts/access.py`` before the body is read.

``AUTH_MODE=dev-headers`` accepts the old ``X-Official`` / ``X-Unit`` (and ``X-Roles``) headers
instead: for the demo and benchmarks on one machine only. A service whose settings say
``DEPLOYMENT=production`` refuses to start in that mode (``motcua.runtime.config.check_auth``).
"""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable, Mapping
from urllib.parse import unquote

import jwt
import structlog

from motcua.contracts import access
from motcua.contracts.actors import Actor
from motcua.contracts.refusals import Forbidden, Refusal, Unauthenticated
from motcua.runtime.config import ConfigError, check_auth
from motcua.runtime.observability import error_response

log = structlog.get_logger("motcua.auth")

OIDC, DEV_HEADERS = "oidc", "dev-headers"
# Asymmetric algorithms only: HS* would verify with a secret every service holds, ``none`` with nothing.
ALLOWED_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
DEFAULT_ALGORITHMS = ("RS256", "ES256", "EdDSA")
DEFAULT_DEV_ROLES = (access.DESK_OFFICER, access.SPECIALIST, access.UNIT_HEAD)


class ProviderUnavailable(Exception):
    """The identity provider's discovery document or keys could not be read: try again later."""


@dataclass(frozen=True)
class Settings:
    mode: str
    issuer: str | None
    audience: str
    algorithms: tuple[str, ...]
    claim_name: str
    claim_unit: str
    claim_roles: str
    cache_seconds: float
    refetch_seconds: float
    leeway_seconds: float
    dev_roles: tuple[str, ...]

    @classmethod
    def from_config(cls, config: Mapping[str, Any], source: str = "<config>") -> "Settings":
        check_auth(config, source)
        algorithms = _words(config.get("OIDC_ALGORITHMS")) or DEFAULT_ALGORITHMS
        for name in algorithms:
            if name not in ALLOWED_ALGORITHMS:
                raise ConfigError(f"{source}: OIDC_ALGORITHMS may list only {', '.join(ALLOWED_ALGORITHMS)}, "
                                  f"not {name!r} (a shared secret or no signature proves nothing)")
        issuer = config.get("OIDC_ISSUER") or None
        return cls(mode=str(config.get("AUTH_MODE") or OIDC).strip(),
                   issuer=str(issuer).rstrip("/") if issuer else None,
                   audience=str(config.get("OIDC_AUDIENCE") or "motcua"),
                   algorithms=algorithms,
                   claim_name=str(config.get("OIDC_CLAIM_NAME") or "name"),
                   claim_unit=str(config.get("OIDC_CLAIM_UNIT") or "unit"),
                   claim_roles=str(config.get("OIDC_CLAIM_ROLES") or "roles"),
                   cache_seconds=float(config.get("OIDC_JWKS_CACHE_SECONDS", 300)),
                   refetch_seconds=float(config.get("OIDC_JWKS_REFETCH_SECONDS", 10)),
                   leeway_seconds=float(config.get("OIDC_LEEWAY_SECONDS", 30)),
                   dev_roles=_words(config.get("AUTH_DEV_ROLES")) or DEFAULT_DEV_ROLES)


def _words(value) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, (list, tuple)) else str(value).replace(",", " ").split()
    return tuple(str(item).strip() for item in items if str(item).strip())


def _fetch_json(url: str, timeout: float = 5.0) -> dict:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read().decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise ProviderUnavailable(f"cannot read {url}: {exc}") from None


class ProviderKeys:
    """The provider's signing keys by ``kid``: cached, refetched when the cache is old or a token
    names a key not in it (rate limited). Thread-safe: HTTP workers share one instance."""

    def __init__(self, issuer: str, cache_seconds: float, refetch_seconds: float,
                 fetch: Callable[[str], dict] = _fetch_json, clock: Callable[[], float] = time.monotonic):
        self.issuer, self.cache_seconds, self.refetch_seconds = issuer, cache_seconds, refetch_seconds
        self.fetch, self.clock = fetch, clock
        self.keys: dict[str, jwt.PyJWK] = {}
        self.fetched_at: float | None = None
        self.fetches = 0
        self._lock = threading.Lock()

    def _jwks_uri(self) -> str:
        discovery = self.fetch(f"{self.issuer}/.well-known/openid-configuration")
        if str(discovery.get("issuer", "")).rstrip("/") != self.issuer or not discovery.get("jwks_uri"):
            raise ProviderUnavailable(f"{self.issuer}: its discovery document names another issuer or no jwks_uri")
        return discovery["jwks_uri"]

    def _refresh(self) -> None:
        data = self.fetch(self._jwks_uri())
        try:
            key_set = jwt.PyJWKSet.from_dict(data)
        except jwt.PyJWTError as exc:
            raise ProviderUnavailable(f"{self.issuer}: unusable JWKS: {exc}") from None
        self.keys = {key.key_id: key for key in key_set.keys
                     if key.key_id and getattr(key, "public_key_use", None) in (None, "sig")}
        self.fetched_at = self.clock()
        self.fetches += 1

    def get(self, kid: str) -> jwt.PyJWK | None:
        with self._lock:
            now = self.clock()
            age = None if self.fetched_at is None else now - self.fetched_at
            if age is None or age >= self.cache_seconds or (kid not in self.keys and age >= self.refetch_seconds):
                self._refresh()
            return self.keys.get(kid)


def _claim(claims: Mapping[str, Any], name: str) -> Any:
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


class Authenticator:
    """The acting official of a request, from its bearer token (or, in dev mode, its headers)."""

    def __init__(self, settings: Settings, keys: ProviderKeys | None = None, extra_rules=()):
        self.settings = settings
        # Rules of a service that is not one of the built ones (a test's service): the built
        # services' routes are all in the table (tests/unit/test_access.py).
        self.extra_rules = {(r.service, r.method, r.path): r for r in extra_rules}
        self.keys = keys or (ProviderKeys(settings.issuer, settings.cache_seconds, settings.refetch_seconds)
                             if settings.issuer else None)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], source: str = "<config>",
                    service: str | None = None, extra_rules=()) -> "Authenticator":
        settings = Settings.from_config(config, source)
        officials = service is None or any(r.service == service and not r.public for r in access.HTTP_RULES)
        if settings.mode == DEV_HEADERS:
            log.warning("AUTH_MODE=dev-headers: X-Official/X-Unit headers are trusted; never in production")
        elif not settings.issuer and officials:
            log.warning("OIDC_ISSUER is not set: every official's call will be refused (401)")
        return cls(settings, extra_rules=extra_rules)

    def official(self, headers: Mapping[str, str]) -> tuple[str, str, frozenset[str]]:
        """(name, unit, roles) of the caller, or Unauthenticated / Forbidden."""
        if self.settings.mode == DEV_HEADERS:
            return self._from_headers(headers)
        return self._from_token(headers.get("Authorization") or "")

    def _from_headers(self, headers) -> tuple[str, str, frozenset[str]]:
        name = unquote(headers.get("X-Official") or "").strip()
        unit = (headers.get("X-Unit") or "").strip()
        if not name:
            raise Unauthenticated("X-Official", "header is required: the acting official")
        if not unit:
            raise Unauthenticated("X-Unit", "header is required: the official's unit")
        roles = _words(headers.get("X-Roles")) or self.settings.dev_roles
        return name, unit, frozenset(roles)

    def _from_token(self, authorization: str) -> tuple[str, str, frozenset[str]]:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("authorization", "header 'Authorization: Bearer <token>' is required "
                                                   "(a token of the district's identity provider)")
        if self.keys is None:
            raise Unauthenticated("authorization", "sign-in is not configured on this service (OIDC_ISSUER)")
        claims = self.verify(token.strip())
        s = self.settings
        name, unit = _claim(claims, s.claim_name), _claim(claims, s.claim_unit)
        roles = _claim(claims, s.claim_roles)
        if not isinstance(name, str) or not name.strip():
            raise Forbidden("authorization", f"the token has no claim {s.claim_name!r}: the official's name")
        if not isinstance(unit, str) or not unit.strip():
            raise Forbidden("authorization", f"the token has no claim {s.claim_unit!r}: the official's unit")
        roles = _words(roles) if isinstance(roles, (str, list, tuple)) else ()
        return name.strip(), unit.strip(), frozenset(roles)

    def verify(self, token: str) -> dict:
        s = self.settings
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("authorization", "the token is not a JWT") from None
        if header.get("alg") not in s.algorithms:
            raise Unauthenticated("authorization", f"token algorithm {header.get('alg')!r} is not accepted "
                                                   f"(accepted: {', '.join(s.algorithms)})")
        key = self.keys.get(str(header.get("kid") or ""))
        if key is None:
            raise Unauthenticated("authorization", "the token is signed with a key the provider does not publish")
        try:
            return jwt.decode(token, key.key, algorithms=list(s.algorithms), audience=s.audience, issuer=s.issuer,
                              leeway=s.leeway_seconds, options={"require": ["exp", "iss", "aud"]})
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("authorization", "the token has expired: sign in again") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated("authorization", f"the token is not meant for this API (audience {s.audience})") \
                from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated("authorization", f"the token was not issued by {s.issuer}") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated("authorization", f"the token is invalid: {exc}") from None

    def authorise(self, service: str, method: str, path: str, headers: Mapping[str, str]) -> Actor | None:
        """The Actor of a call to the route ``(service, method, path)`` (as declared), None for a
        public route; Unauthenticated, or Forbidden naming the roles and the route."""
        rule = access.http_rule(service, method, path) or self.extra_rules.get((service, method.upper(), path))
        if rule is None:
            raise Forbidden("route", f"{method} {path} of {service} is not in the access table: refused")
        if rule.public:
            return None
        name, unit, roles = self.official(headers)
        scope = rule.scope_of(roles)
        if scope is None:
            shown = ", ".join(sorted(roles)) or "no role"
            raise Forbidden("role", f"{shown} may not call {method} {path} of {service}")
        return Actor(name, unit, roles, scope)


def request_token(issuer: str, client_id: str, username: str, password: str, *,
                  client_secret: str | None = None, scope: str = "openid", timeout: float = 10.0) -> str:
    """An access token of ``username`` from the provider's token endpoint (found through its
    discovery document), by the password grant (Keycloak: "Direct access grants" on the client):
    for a developer's or an operator's own calls, never for a service."""
    issuer = issuer.rstrip("/")
    endpoint = _fetch_json(f"{issuer}/.well-known/openid-configuration", timeout).get("token_endpoint")
    if not endpoint:
        raise ProviderUnavailable(f"{issuer}: its discovery document names no token_endpoint")
    form = {"grant_type": "password", "client_id": client_id, "username": username, "password": password,
            "scope": scope, **({"client_secret": client_secret} if client_secret else {})}
    request = urllib.request.Request(endpoint, data=urllib.parse.urlencode(form).encode(), method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:      # the provider's refusal names the reason (invalid_grant ...)
        try:
            reason = json.loads(exc.read().decode("utf-8"))
        except ValueError:
            reason = {}
        raise Unauthenticated("username", f"the provider refused: {reason.get('error_description') or reason.get('error') or exc}") from None
    except (OSError, ValueError) as exc:
        raise ProviderUnavailable(f"cannot reach {endpoint}: {exc}") from None
    if not answer.get("access_token"):
        raise ProviderUnavailable(f"{endpoint} answered without an access_token")
    return answer["access_token"]


ACTOR_KEY = "motcua.actor"      # where the request keeps its Actor (motcua.runtime.web.official)
RETRY_AFTER_SECONDS = 2


def admit(authenticator: Authenticator, service: str, method: str, path: str, request):
    """The entry point's step before the body is read: the request's Actor recorded, and None;
    or the refusal's response (401 with ``WWW-Authenticate``, 403 naming the roles and the route,
    503 when the provider's keys cannot be read)."""
    try:
        request.environ[ACTOR_KEY] = authenticator.authorise(service, method, path, request.headers)
    except Refusal as refusal:
        response = error_response(refusal.status, str(refusal), refusal.field)
        if refusal.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="motcua"'
        return response
    except ProviderUnavailable as exc:
        log.warning("identity provider out of reach", error=str(exc))
        response = error_response(503, f"the identity provider is out of reach, try again: {exc}")
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    return None


def for_container(container) -> Authenticator:
    """One authenticator per service container (its HTTP entry points share the key cache)."""
    found = getattr(container, "_motcua_authenticator", None)
    if found is None:
        found = Authenticator.from_config(container.config, f"the {container.service_name} service's config",
                                          container.service_name,
                                          getattr(container.service_cls, "extra_access_rules", ()))
        container._motcua_authenticator = found
    return found


__all__ = ["ACTOR_KEY", "Authenticator", "ProviderKeys", "ProviderUnavailable", "Settings", "admit", "for_container",
           "request_token"]
