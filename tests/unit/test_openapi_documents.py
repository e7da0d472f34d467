"""Each HTTP service's OpenAPI document (``services/<name>/openapi.yml``) is a valid OpenAPI 3.1
document that names exactly the service's ``@http`` routes, each with the answers it can give."""
from __future__ import annotations

import importlib

import pytest
from openapi_spec_validator import validate

from motcua.runtime import openapi
from motcua.runtime.observability import PlatformService

SERVICES = ["catalog", "intake", "routing", "fees", "notify", "portal"]
METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def service_class(name: str) -> type:
    module = importlib.import_module(f"services.{name}.service")
    return next(value for value in vars(module).values()
                if isinstance(value, type) and issubclass(value, PlatformService) and value is not PlatformService
                and value.__module__ == module.__name__)


def operations(document: dict):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method, path, operation


@pytest.mark.parametrize("name", SERVICES)
def test_the_document_is_valid_openapi_3_1(name):
    document = openapi.document(service_class(name))
    assert document is not None, f"services/{name}/openapi.yml is missing"
    assert document["openapi"].startswith("3.1")
    validate(document)


@pytest.mark.parametrize("name", SERVICES)
def test_every_route_is_documented_and_nothing_else(name):
    cls = service_class(name)
    documented = {(method, path) for method, path, _ in operations(openapi.document(cls))}
    routes = openapi.routes(cls)
    assert routes - documented == set(), "routes not in the document"
    assert documented - routes == set(), "documented, not routes"


@pytest.mark.parametrize("name", SERVICES)
def test_every_operation_says_its_refusals(name):
    for method, path, operation in operations(openapi.document(service_class(name))):
        where = f"{name}: {method.upper()} {path}"
        answers = set(operation["responses"])
        assert any(status.startswith("2") for status in answers), where
        if operation.get("security"):                       # an official's call
            assert "401" in answers, where
            if method != "get":
                assert {"400", "413", "429"} <= answers, where
        if "requestBody" in operation:
            assert {"400", "413"} <= answers, where
        for status in answers - {"200", "201"}:
            if status in ("429", "503") and "$ref" in operation["responses"][status]:
                reply = document_response(name, operation["responses"][status]["$ref"])
                assert "Retry-After" in reply["headers"], where
        placeholders = {part[1:-1] for part in path.split("/") for part in part.split(".")
                        if part.startswith("{")}
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert placeholders == declared, where


def document_response(name: str, ref: str) -> dict:
    document = openapi.document(service_class(name))
    return document["components"]["responses"][ref.rsplit("/", 1)[1]]


def test_the_error_body_is_the_one_error_response_writes():
    document = openapi.document(service_class("intake"))
    error = document["components"]["schemas"]["Error"]
    assert error["required"] == ["error"] and set(error["properties"]) == {"error", "field"}


def test_the_routes_are_read_in_the_documents_spelling():
    assert openapi.openapi_path("/api/v1/receipts/<int:year>/<int:number>.<string:fmt>") == \
        "/api/v1/receipts/{year}/{number}.{fmt}"
    assert openapi.openapi_path("/api/v1/units") == "/api/v1/units"
