"""Who may call what: the officials' roles, and for every HTTP route of every service and every
gRPC method of the gateway, which roles may call it and over which dossiers (the scope).

Data, not code scattered in handlers: the entry point checks the role against this table before it
reads the body (a route missing from the table is refused), and the handlers check the scope where
the dossier is known. Pure: no I/O.

Scopes:
- ``own``: the official's own unit (its dossiers, its desk's books);
- ``routed``: also the dossiers routed to the official's unit (an agency reading a desk's dossier);
- ``district``: every unit of the district (reading only: no role writes across units).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

DESK_OFFICER = "desk_officer"            # cán bộ một cửa: receives and returns dossiers at a desk
SPECIALIST = "specialist"                # chuyên viên of an agency: processes the steps routed to it
UNIT_HEAD = "unit_head"                  # lãnh đạo of a unit: its desk's and its agency's work, apologies
DISTRICT_OPERATOR = "district_operator"  # the district's operator: templates, settlements, reports
AUDITOR = "auditor"                      # thanh tra: reads everything, writes nothing
UNIT_SYSTEM = "unit_system"              # a unit's own software, through the gRPC gateway (a token per unit)

ROLES = (DESK_OFFICER, SPECIALIST, UNIT_HEAD, DISTRICT_OPERATOR, AUDITOR, UNIT_SYSTEM)

OWN, ROUTED, DISTRICT = "own", "routed", "district"
SCOPES = (OWN, ROUTED, DISTRICT)
PUBLIC = "public"    # citizens' pages and callbacks with rules of their own (a signature, a rate limit)


@dataclass(frozen=True)
class Rule:
    service: str
    method: str
    path: str                        # the route as declared in @http (werkzeug syntax)
    grants: Mapping[str, str]        # role -> scope; empty for a public route
    public: bool = False

    def scope_of(self, roles) -> str | None:
        """The widest scope any of ``roles`` has here, or None: refused."""
        scopes = {self.grants[role] for role in roles if role in self.grants}
        return next((scope for scope in (DISTRICT, ROUTED, OWN) if scope in scopes), None)


def rule(service: str, method: str, path: str, **grants: str) -> Rule:
    """A route's rule: which roles may call it, with which scope."""
    for role, scope in grants.items():
        assert role in ROLES and scope in SCOPES, (service, path, role, scope)
        assert method == "GET" or scope != DISTRICT, f"{path}: no role writes across the district"
    return Rule(service, method, path, MappingProxyType(dict(grants)))


def _public(service: str, method: str, path: str) -> Rule:
    return Rule(service, method, path, MappingProxyType({}), public=True)


_READERS = {AUDITOR: DISTRICT, DISTRICT_OPERATOR: DISTRICT}
_DESK = {DESK_OFFICER: OWN, UNIT_HEAD: OWN}
_AGENCY = {SPECIALIST: ROUTED, UNIT_HEAD: ROUTED}

HTTP_RULES: tuple[Rule, ...] = (
    # every service: probes and scraping stay open (behind the cluster's network policy)
    *(_public(service, "GET", path) for service in ("catalog", "intake", "routing", "fees", "notify", "portal")
      for path in ("/health", "/metrics", "/openapi.json")),     # the API's description is no one's data
    # catalog: the public catalogue, its page and its API
    _public("catalog", "GET", "/"),
    _public("catalog", "GET", "/thu-tuc/<string:code>"),
    _public("catalog", "GET", "/api/v1/units"),
    _public("catalog", "GET", "/api/v1/procedures"),
    _public("catalog", "GET", "/api/v1/procedures/<string:code>"),
    _public("catalog", "GET", "/api/v1/procedures/<string:code>/versions"),
    # intake: the citizens' status page and online submissions (rate limited), the desk's API
    _public("intake", "GET", "/tra-cuu"),
    _public("intake", "GET", "/api/v1/status/<string:code>"),
    _public("intake", "POST", "/api/v1/online-submissions"),
    rule("intake", "POST", "/api/v1/dossiers/check", **_DESK),
    rule("intake", "POST", "/api/v1/dossiers", **_DESK),
    *(rule("intake", "POST", f"/api/v1/dossiers/<string:code>/{action}", **_DESK)
      for action in ("acceptance", "refusal", "supplement-request", "supplement", "withdrawal", "return")),
    rule("intake", "GET", "/api/v1/dossiers/<string:code>", **_DESK, specialist=ROUTED, **_READERS),
    rule("intake", "GET", "/api/v1/dossiers", **_DESK),
    rule("intake", "GET", "/api/v1/due", **_DESK),
    rule("intake", "GET", "/api/v1/tracking-book", **_DESK, **_READERS),
    *(rule("intake", "GET", f"/api/v1/dossiers/<string:code>/{form}.<string:fmt>", **_DESK, **_READERS)
      for form in ("receipt", "supplement-request", "refusal")),
    # routing: the agencies' API
    rule("routing", "GET", "/api/v1/dossiers/<string:code>", **_AGENCY, desk_officer=ROUTED, **_READERS),
    rule("routing", "GET", "/api/v1/queue", specialist=OWN, unit_head=OWN),
    rule("routing", "POST", "/api/v1/dossiers/<string:code>/steps/<int:step>/acceptance", **_AGENCY),
    rule("routing", "POST", "/api/v1/dossiers/<string:code>/steps/<int:step>/completion", **_AGENCY),
    rule("routing", "POST", "/api/v1/dossiers/<string:code>/transfer", **_AGENCY),
    rule("routing", "POST", "/api/v1/dossiers/<string:code>/return-to-desk", **_AGENCY),
    rule("routing", "POST", "/api/v1/dossiers/<string:code>/obligation", **_AGENCY),
    rule("routing", "GET", "/api/v1/dossiers/<string:code>/apology/proposal", **_AGENCY),
    # the apology letter (Mẫu 04) is signed by the head of the agency at fault
    rule("routing", "POST", "/api/v1/dossiers/<string:code>/apology", unit_head=ROUTED),
    rule("routing", "GET", "/api/v1/dossiers/<string:code>/control-slip.<string:fmt>", **_AGENCY,
          desk_officer=ROUTED, **_READERS),
    rule("routing", "GET", "/api/v1/dossiers/<string:code>/apology.<string:fmt>", **_AGENCY,
          desk_officer=ROUTED, **_READERS),
    rule("routing", "GET", "/api/v1/reports/ii06a", unit_head=OWN, **_READERS),
    # fees: the desk's cashier, the Finance office's reports and settlements, the gateway's callback
    _public("fees", "POST", "/api/v1/gateway/callback"),
    _public("fees", "GET", "/api/v1/quote"),       # what a procedure costs: the catalogue's, no one's data
    rule("fees", "GET", "/api/v1/dossiers/<string:code>", **_DESK, **_READERS),
    rule("fees", "POST", "/api/v1/dossiers/<string:code>/payments", **_DESK),
    rule("fees", "POST", "/api/v1/receipts/<int:year>/<int:number>/cancellation", **_DESK),
    rule("fees", "GET", "/api/v1/receipts/<int:year>/<int:number>.<string:fmt>", **_DESK),
    rule("fees", "POST", "/api/v1/cash-closings", **_DESK),
    rule("fees", "POST", "/api/v1/gateway/settlements", unit_head=OWN, district_operator=OWN),
    rule("fees", "GET", "/api/v1/reports/fees", unit_head=OWN, **_READERS),
    # notify: the SMS gateway's delivery reports, the messages of a dossier, the templates
    _public("notify", "POST", "/api/v1/delivery-reports"),
    rule("notify", "GET", "/api/v1/dossiers/<string:code>/messages", **_DESK, **_READERS),
    rule("notify", "GET", "/api/v1/templates", unit_head=OWN, **_READERS),
    rule("notify", "PUT", "/api/v1/templates/<string:key>/<string:channel>", district_operator=OWN),
)

# The gateway's gRPC methods: a unit system acts for its own unit (and the dossiers routed to it).
GRPC_RULES: Mapping[str, Mapping[str, str]] = MappingProxyType({
    **{f"/motcua.v1.DeskService/{name}": {UNIT_SYSTEM: OWN} for name in (
        "CheckDossier", "ReceiveDossier", "RefuseDossier", "RequestSupplement", "ReceiveSupplement",
        "WithdrawDossier", "ReturnResult", "GetDossier", "ListTrackingBook")},
    **{f"/motcua.v1.AgencyService/{name}": {UNIT_SYSTEM: ROUTED} for name in (
        "AcceptHandOver", "CompleteStep", "TransferDossier", "ReportDelay", "RequestObligation", "GetWorkflow")},
    **{f"/motcua.v1.CatalogueService/{name}": {UNIT_SYSTEM: DISTRICT} for name in ("GetProcedure", "ListProcedures")},
    **{f"/motcua.v1.EventService/{name}": {UNIT_SYSTEM: OWN} for name in ("PublishEvents", "Subscribe")},
    "/motcua.v1.PaymentService/RecordPayment": {UNIT_SYSTEM: OWN},
})

_BY_ROUTE = {(rule.service, rule.method, rule.path): rule for rule in HTTP_RULES}
assert len(_BY_ROUTE) == len(HTTP_RULES), "a route is listed twice"


def http_rule(service: str, method: str, path: str) -> Rule | None:
    """The rule of a route as declared (``path`` in werkzeug syntax); None: not in the table."""
    return _BY_ROUTE.get((service, method.upper(), path))


_GRPC_BY_NAME = {full.rsplit("/", 1)[1]: full for full in GRPC_RULES}
assert len(_GRPC_BY_NAME) == len(GRPC_RULES), "a gRPC method name is used by two services"


def grpc_scope(method: str, roles) -> str | None:
    """The scope ``roles`` have on a gRPC method (``/package.Service/Method`` or its bare name),
    or None: refused."""
    grants = GRPC_RULES.get(_GRPC_BY_NAME.get(method, method)) or {}
    scopes = {grants[role] for role in roles if role in grants}
    return next((scope for scope in (DISTRICT, ROUTED, OWN) if scope in scopes), None)


_CONVERTER = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")


def route_pattern(path: str) -> re.Pattern:
    """A declared route as a regular expression over concrete paths (tests enumerate with it)."""
    parts, last = [], 0
    for match in _CONVERTER.finditer(path):
        parts.append(re.escape(path[last:match.start()]))
        parts.append("[^/]+?")
        last = match.end()
    parts.append(re.escape(path[last:]))
    return re.compile("^" + "".join(parts) + "$")
