"""Every route of the officials' APIs x every role x the official's unit (the dossier's own desk,
the agency it is routed to, another unit) answers as the access table (motcua/contracts/access.py)
says, through the real services signed in with real tokens of a local OpenID provider:

- a role the route does not grant, or a unit outside the scope it grants: 403 (or 404), and a
  refused write changes nothing in the services' tables;
- a granted role within its scope: a read is never 401 or 403 (it may be a 404 for an object not
  there, or a 409 for a letter not written); a write passes the sign-in and the table (it may still
  be refused by the rules of the dossier's state: a step held by another agency, a 409).

Also the sign-in's refusals over HTTP (no token, expired, wrong audience or issuer, bad signature,
alg none: 401) and a key rotated at the provider, accepted by the running services."""
import base64
import json
import re
import time

import jwt
import pytest
import requests
from sqlalchemy import text

from motcua.contracts import access
from tests.e2e.conftest import ServiceProcess
from tests.e2e.test_intake_desk import APPLICANT, wait_for
from tests.fakes.officials import dev_headers, official_headers
from tests.fakes.oidc_provider import provider

DISTRICT, LAND_REGISTRY, WARD_7 = "000.00.20.H29", "000.41.20.H29", "000.07.20.H29"
LAND_TRANSFER = "1.013831"      # received at the district's desk, routed first to the land registry
UNIT_OF = {"own": DISTRICT, "routed": LAND_REGISTRY, "other": WARD_7}
ROLES = (access.DESK_OFFICER, access.SPECIALIST, access.UNIT_HEAD, access.DISTRICT_OPERATOR, access.AUDITOR)
SERVICES = ("intake", "routing", "fees", "notify")
SCHEMAS = ("intake", "routing", "fees")


@pytest.fixture(scope="module")
def stack(process_env, catalog_process, engine, tmp_path_factory):
    catalog_url, _ = catalog_process
    logs = tmp_path_factory.mktemp("matrix")
    services = {name: ServiceProcess(name, process_env, logs).start() for name in SERVICES}
    desk = official_headers("Trần Văn Bình", DISTRICT)
    procedure = requests.get(f"{catalog_url}/api/v1/procedures/{LAND_TRANSFER}", timeout=5).json()
    answer = requests.post(services["intake"].url + "/api/v1/dossiers", headers=desk, timeout=10, json={
        "procedure_code": LAND_TRANSFER, "applicant": APPLICANT,
        "documents": [{"name": d["name"], "form": d["form"], "count": d["count"]} for d in procedure["documents"]]})
    assert answer.status_code == 201, answer.text
    code = answer.json()["code"]
    view = wait_for(lambda: (r := requests.get(f"{services['routing'].url}/api/v1/dossiers/{code}", headers=desk,
                                               timeout=5)).status_code == 200 and r.json())
    assert view["steps"][0]["agency"] == LAND_REGISTRY
    wait_for(lambda: requests.get(f"{services['fees'].url}/api/v1/dossiers/{code}", headers=desk,
                                  timeout=5).status_code == 200)
    registry = official_headers("Lê Văn Đức", LAND_REGISTRY, "specialist")      # intake knows where it went
    wait_for(lambda: requests.get(f"{services['intake'].url}/api/v1/dossiers/{code}", headers=registry,
                                  timeout=5).status_code == 200, timeout=20)
    yield {name: service.url for name, service in services.items()}, code, view["steps"][0]["id"]
    for service in services.values():
        service.stop()


def concrete(path: str, code: str, step: int) -> str:
    values = {"code": code, "step": str(step), "fmt": "json", "year": "2026", "number": "1",
              "key": "received", "channel": "sms"}
    query = "?from=2026-03-01&to=2026-03-31" if "/reports/" in path else ""
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", lambda m: values[m.group(1)], path) + query


def expected(rule, role: str, relation: str) -> bool:
    """Allowed by the table: the role is granted, and the unit is within the scope granted. A
    route that names no dossier concerns the official's own unit whatever the relation."""
    scope = rule.scope_of({role})
    if scope is None:
        return False
    if "<string:code>" not in rule.path or scope == access.DISTRICT:
        return True
    return relation == "own" or (relation == "routed" and scope == access.ROUTED)


def settled(engine) -> dict:
    """The fingerprint once the relays have marked what the set-up published."""
    previous = fingerprint(engine)
    for _ in range(20):
        time.sleep(1)
        current = fingerprint(engine)
        if current == previous:
            return current
        previous = current
    raise AssertionError("the services' tables keep changing with nobody calling")


def audited(engine) -> dict:
    """Per service, the audit log's entries of writes that were not refused (403/404)."""
    with engine.connect() as connection:
        return {schema: connection.execute(text(
            f'SELECT count(*) FROM "{schema}".audit_log WHERE status NOT IN (403, 404)')).scalar()
            for schema in SCHEMAS}


def fingerprint(engine) -> dict:
    """The content of every table of the services that keep dossiers: what a refused write must
    leave as it was (but routing's report roll-ups, folded by a timer of their own, and the audit
    log, which records every write that reached a service, a refused one too: see audited())."""
    with engine.connect() as connection:
        tables = connection.execute(text(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema = ANY(:s) "
            "AND table_type = 'BASE TABLE' AND table_name NOT LIKE 'report_rollup%' AND table_name <> 'audit_log'"),
            {"s": list(SCHEMAS)}).all()
        return {f"{schema}.{table}": connection.execute(text(
            f'SELECT md5(coalesce(string_agg(t::text, \'|\' ORDER BY t::text), \'\')) FROM "{schema}"."{table}" t'
        )).scalar() for schema, table in tables}


CELLS = [(rule, role, relation) for rule in access.HTTP_RULES if not rule.public and rule.service in SERVICES
         for role in ROLES for relation in UNIT_OF]


def call(urls, rule, path, headers):
    body = {} if rule.method != "GET" else None
    return requests.request(rule.method, urls[rule.service] + path, headers=headers, json=body, timeout=20)


def test_the_matrix_has_every_official_route(stack):
    official = [rule for rule in access.HTTP_RULES if not rule.public]
    assert {rule.service for rule in official} == set(SERVICES)      # no service of officials left out
    assert len(official) > 30 and len(CELLS) == len(official) * len(ROLES) * len(UNIT_OF)


def test_refused_cells_are_403_or_404_and_change_nothing(stack, engine):
    urls, code, step = stack
    refused = [(rule, role, relation) for rule, role, relation in CELLS if not expected(rule, role, relation)]
    assert refused
    before, entries = settled(engine), audited(engine)
    wrong = []
    for rule, role, relation in refused:
        answer = call(urls, rule, concrete(rule.path, code, step),
                      official_headers(f"Cán bộ {role}", UNIT_OF[relation], role))
        if answer.status_code not in (403, 404):
            wrong.append((rule.service, rule.method, rule.path, role, relation, answer.status_code, answer.text[:200]))
        elif answer.status_code == 403 and rule.scope_of({role}) is None:
            assert role in answer.json()["error"] and rule.path in answer.json()["error"], answer.text
    assert not wrong, "\n".join(map(str, wrong))
    assert fingerprint(engine) == before
    assert audited(engine) == entries       # what the audit log gained: refusals only


def test_allowed_reads_answer(stack):
    urls, code, step = stack
    wrong = []
    for rule, role, relation in CELLS:
        if rule.method != "GET" or not expected(rule, role, relation):
            continue
        answer = call(urls, rule, concrete(rule.path, code, step),
                      official_headers(f"Cán bộ {role}", UNIT_OF[relation], role))
        if answer.status_code in (401, 403) or answer.status_code >= 500:
            wrong.append((rule.service, rule.path, role, relation, answer.status_code, answer.text[:200]))
    assert not wrong, "\n".join(map(str, wrong))


def test_allowed_writes_pass_the_sign_in_and_the_table(stack):
    """Last: these may change the dossier (an empty body is refused by most, not all, commands)."""
    urls, code, step = stack
    wrong = []
    for rule, role, relation in CELLS:
        if rule.method == "GET" or not expected(rule, role, relation):
            continue
        answer = call(urls, rule, concrete(rule.path, code, step),
                      official_headers(f"Cán bộ {role}", UNIT_OF[relation], role))
        refused_by_table = answer.status_code in (401, 403) and answer.json().get("field") in \
            ("authorization", "role", "route")
        if refused_by_table or answer.status_code >= 500:
            wrong.append((rule.service, rule.path, role, relation, answer.status_code, answer.text[:200]))
    assert not wrong, "\n".join(map(str, wrong))


# --- the sign-in's refusals over HTTP -------------------------------------------------------------

def _forged(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    body = base64.urlsafe_b64encode(json.dumps({**claims, "roles": ["auditor"]}).encode()).rstrip(b"=").decode()
    return f"{header}.{body}.{signature}"


def test_the_sign_in_refuses_over_http(stack):
    urls, code, _ = stack
    idp = provider()
    url = f"{urls['intake']}/api/v1/dossiers/{code}"
    claims = idp.claims("Trần Văn Bình", DISTRICT, ["desk_officer"])
    tokens = {
        "expired": idp.mint("Trần Văn Bình", DISTRICT, expires_in=-300),
        "audience": idp.mint("Trần Văn Bình", DISTRICT, aud="another-api"),
        "issuer": idp.mint("Trần Văn Bình", DISTRICT, iss="https://sso.example.invalid"),
        "signature": _forged(idp.mint("Trần Văn Bình", DISTRICT)),
        "none": jwt.encode(claims, None, algorithm="none", headers={"kid": idp.kid}),
    }
    assert requests.get(url, timeout=5).status_code == 401
    for name, token in tokens.items():
        answer = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert answer.status_code == 401 and answer.json()["field"] == "authorization", (name, answer.text)
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert requests.get(url, headers=official_headers("Trần Văn Bình", DISTRICT), timeout=5).status_code == 200


def test_a_key_rotated_at_the_provider_is_accepted_by_the_running_services(stack):
    urls, code, _ = stack
    idp = provider()
    url = f"{urls['intake']}/api/v1/dossiers/{code}"
    assert requests.get(url, headers=official_headers("Trần Văn Bình", DISTRICT), timeout=5).status_code == 200
    old = idp.kid
    idp.rotate("ES256", keep_old=True)      # the old key stays published: the other modules' tokens still count
    try:
        headers = official_headers("Trần Văn Bình", DISTRICT)
        assert jwt.get_unverified_header(headers["Authorization"][7:])["kid"] != old
        # taken at the first refetch: at most OIDC_JWKS_REFETCH_SECONDS (10) after the service's last one
        assert wait_for(lambda: requests.get(url, headers=headers, timeout=5).status_code == 200, timeout=15)
    finally:
        idp.kid = old       # the session's later tokens signed as before


def test_the_role_is_refused_before_the_body_is_read(stack):
    urls, code, _ = stack
    auditor = official_headers("Đỗ Văn Khải", DISTRICT, "auditor")
    answer = requests.post(f"{urls['intake']}/api/v1/dossiers/{code}/refusal", data=b"{not json at all",
                           headers={**auditor, "Content-Type": "application/json"}, timeout=5)
    assert answer.status_code == 403 and answer.json()["field"] == "role"
    assert answer.json()["error"] == "role: auditor may not call POST /api/v1/dossiers/<string:code>/refusal of intake"


def test_the_development_mode_over_http(stack, process_env, tmp_path):
    """The old headers, accepted only by a service started with AUTH_MODE=dev-headers."""
    urls, code, _ = stack
    desk = dev_headers("Trần Văn Bình", DISTRICT)
    assert requests.get(f"{urls['intake']}/api/v1/dossiers/{code}", headers=desk, timeout=5).status_code == 401
    dev = ServiceProcess("intake", {**process_env, "AUTH_MODE": "dev-headers"}, tmp_path).start()
    try:
        assert requests.get(f"{dev.url}/api/v1/dossiers/{code}", headers=desk, timeout=5).status_code == 200
        other = requests.get(f"{dev.url}/api/v1/dossiers/{code}", headers=dev_headers("Lê Thị Hoa", WARD_7), timeout=5)
        assert other.status_code == 403
        auditor = dev_headers("Đỗ Văn Khải", WARD_7, "auditor")
        assert requests.get(f"{dev.url}/api/v1/dossiers/{code}", headers=auditor, timeout=5).status_code == 200
        assert requests.get(f"{dev.url}/api/v1/dossiers/{code}", timeout=5).status_code == 401
    finally:
        dev.stop()
