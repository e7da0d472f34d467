"""The access table (motcua/contracts/access.py): every HTTP route of every service is in it, no
role writes across the district, and the gateway's unit systems have a role of their own."""
import inspect

import pytest
from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR
from nameko.web.handlers import HttpRequestHandler

from apps.registry import SERVICES
from apps.together import service_class
from motcua.contracts import access
from motcua.runtime.web import HttpEntrypoint


def declared_routes(checked: bool | None = None):
    """(service, method, path) of every ``@http`` entry point of every built service; ``checked``
    True: only those of the platform's entry point (which applies the table), False: the others."""
    for spec in SERVICES.values():
        if not spec.nameko:
            continue
        cls = service_class(spec)
        for _, member in inspect.getmembers(cls, callable):
            for entrypoint in getattr(member, ENTRYPOINT_EXTENSIONS_ATTR, ()):
                if isinstance(entrypoint, HttpRequestHandler) and \
                        checked in (None, isinstance(entrypoint, HttpEntrypoint)):
                    for method in entrypoint.method.split(","):
                        yield spec.name, method, entrypoint.url


ROUTES = sorted(set(declared_routes()))


def test_the_services_declare_routes_at_all():
    assert len(ROUTES) > 40 and {service for service, _, _ in ROUTES} >= {"catalog", "intake", "routing", "fees",
                                                                          "notify"}


@pytest.mark.parametrize("service,method,path", ROUTES)
def test_every_route_is_in_the_table(service, method, path):
    assert access.http_rule(service, method, path) is not None, f"{method} {path} of {service} is not in the table"


def test_a_route_missing_from_the_table_is_refused_and_the_table_lists_no_route_that_does_not_exist():
    assert access.http_rule("intake", "DELETE", "/api/v1/dossiers/<string:code>") is None
    listed = {(rule.service, rule.method, rule.path) for rule in access.HTTP_RULES}
    assert listed - set(ROUTES) == set()


def test_only_public_routes_bypass_the_platforms_entry_point():
    unchecked = sorted(set(declared_routes(checked=False)))
    assert unchecked and all(path in ("/health", "/metrics", "/openapi.json") for _, _, path in unchecked)
    assert all(access.http_rule(*route).public for route in unchecked)


def test_no_role_writes_across_the_district_and_the_unit_system_has_no_http_route():
    for rule in access.HTTP_RULES:
        if rule.method != "GET":
            assert access.DISTRICT not in rule.grants.values(), rule
        assert access.UNIT_SYSTEM not in rule.grants, rule


def test_the_widest_scope_of_several_roles_counts():
    rule = access.http_rule("intake", "GET", "/api/v1/dossiers/<string:code>")
    assert rule.scope_of({"desk_officer"}) == access.OWN
    assert rule.scope_of({"desk_officer", "specialist"}) == access.ROUTED
    assert rule.scope_of({"auditor", "desk_officer"}) == access.DISTRICT
    assert rule.scope_of({"unknown"}) is None and rule.scope_of(set()) is None


def test_an_auditor_reads_and_never_writes():
    for rule in access.HTTP_RULES:
        if access.AUDITOR in rule.grants:
            assert rule.method == "GET", rule


def test_the_gateways_methods_are_the_unit_systems():
    assert access.grpc_scope("/motcua.v1.DeskService/ReceiveDossier", {access.UNIT_SYSTEM}) == access.OWN
    assert access.grpc_scope("/motcua.v1.AgencyService/CompleteStep", {access.UNIT_SYSTEM}) == access.ROUTED
    assert access.grpc_scope("/motcua.v1.DeskService/ReceiveDossier", {access.DESK_OFFICER}) is None
    assert access.grpc_scope("/motcua.v1.DeskService/Nothing", {access.UNIT_SYSTEM}) is None


def test_every_gateway_method_is_in_the_table_and_a_unit_token_may_call_it():
    import re
    from pathlib import Path

    from motcua.contracts.refusals import Forbidden
    from services.gateway import credentials

    server = (Path(__file__).resolve().parents[2] / "services/gateway/server.py").read_text()
    methods = re.findall(r'@handler\(_platform, "(\w+)"', server)
    assert len(methods) >= 20
    for method in methods:
        assert credentials.require_allowed(method) in access.SCOPES, method
    with pytest.raises(Forbidden, match="unit_system may not call DeleteEverything"):
        credentials.require_allowed("DeleteEverything")


def test_no_built_service_declares_rules_outside_the_table():
    for spec in SERVICES.values():
        if spec.nameko:
            assert not getattr(service_class(spec), "extra_access_rules", ()), spec.name


@pytest.mark.parametrize("service", ["catalog", "intake", "routing", "fees", "notify"])
def test_the_openapi_documents_say_which_routes_need_no_sign_in_as_the_table_does(service):
    import re
    from pathlib import Path

    import yaml
    document = yaml.safe_load((Path(__file__).resolve().parents[2] / f"services/{service}/openapi.yml").read_text())
    declared = {(method.upper(), re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.path)): rule.public
                for rule in access.HTTP_RULES if rule.service == service for method in (rule.method,)}
    matched = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if isinstance(operation, dict) and (method.upper(), path) in declared:
                matched += 1
                assert (operation.get("security") == []) == declared[(method.upper(), path)], (method, path)
    assert matched == len(declared), f"{len(declared) - matched} routes of the table not in {service}'s document"
