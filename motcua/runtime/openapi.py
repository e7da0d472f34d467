"""Each service's OpenAPI document: a file kept beside the service (``services/<name>/openapi.yml``),
served as JSON at ``/openapi.json``; and the service's own ``@http`` routes, in the document's
spelling, for the test that holds the two together."""
from __future__ import annotations

import re
import sys
from functools import lru_cache
from pathlib import Path

import yaml

FILE_NAME = "openapi.yml"
_PLACEHOLDER = re.compile(r"<(?:[^:>]+:)?([^>]+)>")


def document_path(service_cls: type) -> Path:
    return Path(sys.modules[service_cls.__module__].__file__).parent / FILE_NAME


@lru_cache(maxsize=None)
def document(service_cls: type) -> dict | None:
    """The service's document, read once per process; None if it has none."""
    path = document_path(service_cls)
    if not path.exists():
        return None
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def openapi_path(rule: str) -> str:
    """werkzeug's ``/a/<int:year>/<string:code>`` as OpenAPI's ``/a/{year}/{code}``."""
    return _PLACEHOLDER.sub(r"{\1}", rule)


def routes(service_cls: type) -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every ``@http`` entry point of the service, inherited ones too."""
    found = set()
    for klass in service_cls.__mro__:
        for attribute in vars(klass).values():
            for entrypoint in getattr(attribute, "nameko_entrypoints", ()):
                if hasattr(entrypoint, "url") and hasattr(entrypoint, "method"):
                    for method in entrypoint.method.split(","):
                        found.add((method.strip().lower(), openapi_path(entrypoint.url)))
    return found
