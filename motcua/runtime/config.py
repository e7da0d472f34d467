"""Service configuration: one YAML file per service with ``${VAR:default}`` substitution.

The syntax is nameko's own (``${AMQP_URI:amqp://guest:guest@localhost}``), so a nameko
config file reads the same here and in ``nameko run``. A value that is entirely one
placeholder is re-read as YAML, so ``${PORT:8001}`` gives an int and ``${X:null}`` None.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

import yaml

_PLACEHOLDER = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<default>[^}]*))?\}")


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the file and the key."""


def substitute(text: str, environ: Mapping[str, str], source: str = "<config>") -> Any:
    """Replace every ``${VAR:default}`` in one scalar."""

    def value_of(match: re.Match) -> str:
        name, default = match.group("name"), match.group("default")
        if name in environ:
            return environ[name]
        if default is None:
            raise ConfigError(f"{source}: environment variable {name} is not set and has no default")
        return default

    whole = _PLACEHOLDER.fullmatch(text)
    replaced = _PLACEHOLDER.sub(value_of, text)
    if whole:
        return yaml.safe_load(replaced) if replaced != "" else ""
    return replaced


def _walk(node: Any, environ: Mapping[str, str], source: str) -> Any:
    if isinstance(node, str):
        return substitute(node, environ, source)
    if isinstance(node, list):
        return [_walk(item, environ, source) for item in node]
    if isinstance(node, dict):
        return {key: _walk(value, environ, source) for key, value in node.items()}
    return node


def load_config(path: str | os.PathLike, environ: Mapping[str, str] | None = None) -> dict:
    """Read a service's YAML config, substituting environment variables."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a mapping of settings")
    config = _walk(raw, os.environ if environ is None else environ, str(path))
    check_numbers(config, str(path))
    check_auth(config, str(path))
    return config


def truthy(value: Any) -> bool:
    """A switch from YAML or the environment: ``false``, ``0``, ``no``, ``off`` and empty are off."""
    return value if isinstance(value, bool) else str(value).strip().lower() not in ("false", "0", "no", "off", "")


# Settings that size pools or set times: a wrong one would deadlock a pool or crash a worker later,
# far from its cause. Checked when the file is read, naming the file and the key.
POSITIVE_WHOLE_NUMBERS = ("max_workers", "HTTP_MAX_WORKERS", "NOTIFY_SENDERS")
NON_NEGATIVE_SECONDS = ("CATALOGUE_CACHE_SECONDS",)


def check_numbers(config: Mapping[str, Any], source: str) -> None:
    for key in POSITIVE_WHOLE_NUMBERS:
        value = config.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{source}: {key} must be a whole number of at least 1, not {value!r}")
    for key in NON_NEGATIVE_SECONDS:
        value = config.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise ConfigError(f"{source}: {key} must be a number of seconds, 0 or more, not {value!r}")


AUTH_MODES = ("oidc", "dev-headers")
DEPLOYMENTS = ("development", "production")


def check_auth(config: Mapping[str, Any], source: str) -> None:
    """``AUTH_MODE`` (``oidc``, the default, or ``dev-headers``) and ``DEPLOYMENT``: trusting the
    X-Official/X-Unit headers lets anyone who reaches the service act as any official, so a
    production deployment refuses to start with it rather than run open."""
    mode = str(config.get("AUTH_MODE") or "oidc").strip()
    deployment = str(config.get("DEPLOYMENT") or "development").strip()
    if mode not in AUTH_MODES:
        raise ConfigError(f"{source}: AUTH_MODE must be one of {', '.join(AUTH_MODES)}, not {mode!r}")
    if deployment not in DEPLOYMENTS:
        raise ConfigError(f"{source}: DEPLOYMENT must be one of {', '.join(DEPLOYMENTS)}, not {deployment!r}")
    if mode == "dev-headers" and deployment == "production":
        raise ConfigError(f"{source}: AUTH_MODE=dev-headers trusts the X-Official/X-Unit headers (anyone could act "
                          f"as any official) and is refused with DEPLOYMENT=production: sign in with OpenID "
                          f"Connect (AUTH_MODE=oidc, OIDC_ISSUER, OIDC_AUDIENCE)")
