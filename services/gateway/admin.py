"""``motcua gateway ...``: what an operator does for the unit systems: tokens, the audit chain,
and RabbitMQ users that may publish only their own unit's events."""
from __future__ import annotations

import re
import secrets
from datetime import timedelta
from urllib.parse import quote, urlparse

import requests
from kombu import Connection

from motcua.runtime import broker
from motcua.contracts.refusals import Invalid
from motcua.contracts.events import UNITS_EXCHANGE
from services.gateway import audit, credentials
from services.gateway.platform import Platform


def issue_token(config: dict, unit: str, label: str = "", days: int | None = None) -> str:
    platform = Platform(config)
    try:
        now = platform.now()
        with platform.transaction() as session:
            return credentials.issue(session, unit, now, label=label,
                                     expires_at=now + timedelta(days=days) if days else None)
    finally:
        platform.close()


def revoke_token(config: dict, token_id: str) -> None:
    platform = Platform(config)
    try:
        with platform.transaction() as session:
            credentials.revoke(session, token_id, platform.now())
    finally:
        platform.close()


def list_tokens(config: dict, unit: str | None = None) -> list[dict]:
    platform = Platform(config)
    try:
        with platform.transaction() as session:
            return credentials.listing(session, unit)
    finally:
        platform.close()


def verify_audit(config: dict, progress=None) -> tuple[int, list[audit.Break]]:
    platform = Platform(config)
    try:
        with platform.transaction() as session:
            def counted():
                for number, entry in enumerate(audit.entries(session), 1):
                    if progress and number % 10000 == 0:
                        progress(number)
                    yield entry
            return audit.verify(counted())
    finally:
        platform.close()


def unit_user_name(unit: str) -> str:
    return f"unit.{unit}"


def unit_permissions(unit: str) -> dict:
    """RabbitMQ permissions of a unit's user: write to the units' exchange only, and there only
    routing keys that start with its own unit code (topic permissions)."""
    exchange = re.escape(UNITS_EXCHANGE)
    return {
        "permissions": {"configure": "^$", "write": f"^{exchange}$", "read": "^$"},
        "topic_permissions": {"exchange": UNITS_EXCHANGE, "write": f"^{re.escape(unit)}\\.[a-z_]+$", "read": "^$"},
    }


def _management_api(management_url: str, admin: tuple[str, str]) -> str:
    """The first node of a ``;``-separated list whose management API answers (users and permissions
    are the cluster's: any node will do)."""
    errors = []
    for url in broker.node_uris(management_url):
        api = url.rstrip("/") + "/api"
        try:
            requests.get(f"{api}/overview", auth=admin, timeout=5).raise_for_status()
            return api
        except requests.RequestException as exc:
            errors.append(f"{url}: {exc}")
    raise RuntimeError("no RabbitMQ management API answers: " + "; ".join(errors))


def rabbitmq_user(config: dict, unit: str, management_url: str, admin: tuple[str, str]) -> tuple[str, str]:
    """Create (or reset) the unit's RabbitMQ user; returns its name and new password."""
    if not re.fullmatch(r"[0-9A-Za-z.\-]+", unit or ""):
        raise Invalid("unit", f"is not a unit code, got {unit!r}")
    uri = broker.amqp_uri(config)
    with Connection(uri) as connection:      # the exchange exists before anyone may publish to it
        broker.declare_topology(connection.default_channel, config)
    vhost = quote(urlparse(broker.node_uris(uri)[0]).path[1:] or "/", safe="")    # every node: one vhost
    user, password = unit_user_name(unit), secrets.token_urlsafe(24)
    api = _management_api(management_url, admin)
    name = quote(user, safe="")
    rules = unit_permissions(unit)
    for method, url, body in (
            ("PUT", f"{api}/users/{name}", {"password": password, "tags": ""}),
            ("PUT", f"{api}/permissions/{vhost}/{name}", rules["permissions"]),
            ("PUT", f"{api}/topic-permissions/{vhost}/{name}", rules["topic_permissions"])):
        response = requests.request(method, url, json=body, auth=admin, timeout=10)
        if response.status_code not in (201, 204):
            raise RuntimeError(f"RabbitMQ management API {method} {url}: {response.status_code} {response.text}")
    return user, password


