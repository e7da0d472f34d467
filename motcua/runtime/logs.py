"""Logging: structlog JSON lines to stdout (console on a terminal), stdlib logs included.

Configured once per process (never per worker). Personal data is masked in every line:
citizens' ID numbers (CCCD, 12 digits), phone numbers and e-mail addresses, wherever they
appear in the event, including exception text from nameko and kombu.
"""
from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any

import structlog

# Between digits, as people type numbers and URLs carry them (a desk's search ``?q=0903+123+456``):
# a space, a dot, an encoded space ('+', %20); in a phone number also a dash (not in an ID number:
# a dossier code's ``29-260213-0001`` has twelve digits too).
_GAP = r"(?:[ .+]|%20)?"
CCCD = re.compile(rf"(?<!\d)\d(?:{_GAP}\d){{11}}(?!\d)")
# Vietnamese phone numbers: 0 or +84/84, then 9 digits, possibly separated as above.
PHONE = re.compile(r"(?<![\d+])(?:\+84|84|0)(?:(?:[ .+-]|%20)?\d){9}(?!\d)")
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# The status-lookup secret in a URL (access logs of the public status page).
SECRET_PARAM = re.compile(r"(secret=)[^&\s\"']+")
SENSITIVE_KEYS = frozenset({"id_number", "cccd", "phone", "phone_number", "email", "e_mail", "secret"})
MASK = "***"


def mask_text(text: str) -> str:
    """Hide ID numbers, phone numbers, e-mail addresses and status secrets in a free text."""
    text = CCCD.sub("[CCCD " + MASK + "]", text)
    text = PHONE.sub("[phone " + MASK + "]", text)
    text = SECRET_PARAM.sub(r"\1" + MASK, text)
    return EMAIL.sub("[e-mail " + MASK + "]", text)


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: (MASK if str(k).lower() in SENSITIVE_KEYS else _mask(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_mask(v) for v in value)
    return value


def mask_personal_data(logger: Any, method_name: str, event_dict: dict) -> dict:
    """structlog processor: the last step before rendering."""
    return _mask(event_dict)


def configure_logging(service: str, *, level: str | None = None, json_lines: bool | None = None) -> None:
    """Route structlog and the standard library through one renderer.

    ``LOG_FORMAT=json|console`` overrides the terminal detection; ``LOG_LEVEL`` the level.
    """
    level = (level or os.environ.get("LOG_LEVEL", "INFO")).upper()
    if json_lines is None:
        chosen = os.environ.get("LOG_FORMAT", "").lower()
        json_lines = chosen == "json" or (chosen != "console" and not sys.stdout.isatty())

    shared: list = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    renderer = (structlog.processors.JSONRenderer(ensure_ascii=False) if json_lines
                else structlog.dev.ConsoleRenderer(colors=False))

    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    mask_personal_data, renderer],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("amqp", "kombu", "nameko", "urllib3", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.getLevelName(level), logging.INFO))
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
