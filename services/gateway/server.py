"""The gateway process: gRPC on 50051 (unpatched: grpcio cannot live under eventlet), the
services reached through nameko's standalone RPC proxies, the unit events consumed from the
broker, and ``/metrics`` and ``/health`` on its HTTP port.

Handlers are thin: check the request, call the service that owns the data, convert the answer.
"""
from __future__ import annotations

import json
import signal
from collections import Counter
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from motcua.contracts.refusals import Invalid, NotFound
from motcua.runtime.observability import health_report
from motcua.v1 import (agency_service_pb2 as agency_pb, agency_service_pb2_grpc as agency_grpc,
                       catalogue_service_pb2 as catalogue_pb, catalogue_service_pb2_grpc as catalogue_grpc,
                       desk_service_pb2 as desk_pb, desk_service_pb2_grpc as desk_grpc,
                       event_service_pb2 as event_pb, event_service_pb2_grpc as event_grpc,
                       payment_service_pb2 as payment_pb, payment_service_pb2_grpc as payment_grpc)
from services.gateway import consumers, convert, feed, ingest
from services.gateway.convert import required
from services.gateway.platform import SUBSCRIBERS, Platform, handler

log = structlog.get_logger("motcua.gateway")


def _platform(servicer) -> Platform:
    return servicer.platform


def _code(request) -> str:
    return request.code


def _act(platform: Platform, caller, code: str, action: str, body: dict | None = None) -> dict:
    return platform.call("intake", "act", caller.official, caller.unit, code, action, body,
                         deadline=caller.deadline, idempotency_key=caller.idempotency_key)


class Servicer:
    def __init__(self, platform: Platform):
        self.platform = platform


def _official(request, caller) -> None:
    caller.official = required(request.official, "official")


class DeskService(Servicer, desk_grpc.DeskServiceServicer):
    def _submission(self, request, caller, method: str) -> dict:
        _official(request, caller)
        if not request.HasField("submission"):
            raise Invalid("submission", "is required")
        try:
            # A check changes nothing; a receipt sent again with its key gives the same dossier.
            key = caller.idempotency_key if method == "receive" else None
            return self.platform.call("intake", method, caller.official, caller.unit,
                                      convert.submission(request.submission), deadline=caller.deadline,
                                      idempotency_key=key)
        except Invalid as refusal:      # the desk names the submission's fields; the request nests them
            raise Invalid(f"submission.{refusal.field}", refusal.reason, refusal.details) from None

    @handler(_platform, "CheckDossier")
    def CheckDossier(self, request, caller, context):
        result = self._submission(request, caller, "check")
        return desk_pb.CheckDossierResponse(complete=result["complete"], guidance=result.get("guidance", []),
                                            detail=convert.struct(result))

    @handler(_platform, "ReceiveDossier")
    def ReceiveDossier(self, request, caller, context):
        return desk_pb.ReceiveDossierResponse(dossier=convert.dossier(self._submission(request, caller, "receive")))

    def _action(self, request, caller, action: str, body: dict | None = None):
        _official(request, caller)
        return convert.dossier(_act(self.platform, caller, required(request.code, "code"), action, body))

    @handler(_platform, "RefuseDossier", _code)
    def RefuseDossier(self, request, caller, context):
        return desk_pb.RefuseDossierResponse(dossier=self._action(request, caller, "refuse",
                                                                  {"reason": request.reason}))

    @handler(_platform, "RequestSupplement", _code)
    def RequestSupplement(self, request, caller, context):
        body = {"reason": request.reason, "documents": convert.documents(request.documents, "documents")}
        return desk_pb.RequestSupplementResponse(dossier=self._action(request, caller, "request_supplement", body))

    @handler(_platform, "ReceiveSupplement", _code)
    def ReceiveSupplement(self, request, caller, context):
        body = {"documents": convert.documents(request.documents, "documents")}
        return desk_pb.ReceiveSupplementResponse(dossier=self._action(request, caller, "receive_supplement", body))

    @handler(_platform, "WithdrawDossier", _code)
    def WithdrawDossier(self, request, caller, context):
        return desk_pb.WithdrawDossierResponse(dossier=self._action(request, caller, "withdraw",
                                                                    {"reason": request.reason}))

    @handler(_platform, "ReturnResult", _code)
    def ReturnResult(self, request, caller, context):
        return desk_pb.ReturnResultResponse(dossier=self._action(request, caller, "return",
                                                                 {"collected_by": request.collected_by}))

    @handler(_platform, "GetDossier", _code)
    def GetDossier(self, request, caller, context):
        _official(request, caller)
        view = self.platform.call("intake", "get_dossier", caller.official, caller.unit,
                                  required(request.code, "code"), deadline=caller.deadline)
        return desk_pb.GetDossierResponse(dossier=convert.dossier(view))

    @handler(_platform, "ListTrackingBook")
    def ListTrackingBook(self, request, caller, context):
        _official(request, caller)
        book = self.platform.call("intake", "tracking_book", caller.official, caller.unit,
                                  request.from_date or None, request.to_date or None, deadline=caller.deadline)
        return desk_pb.ListTrackingBookResponse(unit=book["unit"], lines=[
            desk_pb.TrackingBookLine(volume=line["volume"] or 0, line=line["line"] or 0, code=line["code"],
                                     status=line["status"], procedure=line["procedure"],
                                     applicant=line["applicant"], appointment_date=line["appointment_date"] or "")
            for line in book["lines"]])


class AgencyService(Servicer, agency_grpc.AgencyServiceServicer):
    def _act(self, request, caller, action: str, step: int | None = None, body: dict | None = None):
        _official(request, caller)
        view = self.platform.call("routing", "act", caller.official, caller.unit, required(request.code, "code"),
                                  action, step, body, deadline=caller.deadline,
                                  idempotency_key=caller.idempotency_key)
        return convert.workflow(view)

    @staticmethod
    def _step(request) -> int:
        if request.step <= 0:
            raise Invalid("step", "is required: the step's number (Workflow.steps[].id)")
        return request.step

    @handler(_platform, "AcceptHandOver", _code)
    def AcceptHandOver(self, request, caller, context):
        return agency_pb.AcceptHandOverResponse(workflow=self._act(request, caller, "accept", self._step(request)))

    @handler(_platform, "CompleteStep", _code)
    def CompleteStep(self, request, caller, context):
        if request.result not in convert.STEP_RESULTS:
            raise Invalid("result", "is required: DONE, NEEDS_SUPPLEMENT, REFUSE or STOP")
        body = {"result": convert.STEP_RESULTS[request.result], "note": request.note or None}
        if request.result == agency_pb.STEP_RESULT_NEEDS_SUPPLEMENT:
            body.update(documents=convert.documents(request.documents, "documents"), reason=request.reason)
        return agency_pb.CompleteStepResponse(workflow=self._act(request, caller, "complete", self._step(request),
                                                                 body))

    @handler(_platform, "TransferDossier", _code)
    def TransferDossier(self, request, caller, context):
        """To the next stage's agencies, or, after the last stage, back to the desk (processed)."""
        _official(request, caller)
        code = required(request.code, "code")
        view = self.platform.call("routing", "get_dossier", caller.official, caller.unit, code,
                                  deadline=caller.deadline)
        action = "return_to_desk" if ingest.next_move(view, caller.unit) == "return_to_desk" else "transfer"
        return agency_pb.TransferDossierResponse(workflow=self._act(request, caller, action, None,
                                                                    {"note": request.note or None}))

    @handler(_platform, "ReportDelay", _code)
    def ReportDelay(self, request, caller, context):
        body = {"reason": request.reason}
        if request.proposed_date:
            body["new_date"] = request.proposed_date
        return agency_pb.ReportDelayResponse(workflow=self._act(request, caller, "apologise", None, body))

    @handler(_platform, "RequestObligation", _code)
    def RequestObligation(self, request, caller, context):
        body = {"description": request.description, "amount": request.amount}
        return agency_pb.RequestObligationResponse(workflow=self._act(request, caller, "obligation", None, body))

    @handler(_platform, "GetWorkflow", _code)
    def GetWorkflow(self, request, caller, context):
        _official(request, caller)
        view = self.platform.call("routing", "get_dossier", caller.official, caller.unit,
                                  required(request.code, "code"), deadline=caller.deadline)
        return agency_pb.GetWorkflowResponse(workflow=convert.workflow(view))


class PaymentService(Servicer, payment_grpc.PaymentServiceServicer):
    METHODS = {payment_pb.PAYMENT_METHOD_CASH: "cash", payment_pb.PAYMENT_METHOD_TRANSFER: "transfer"}

    @handler(_platform, "RecordPayment", _code)
    def RecordPayment(self, request, caller, context):
        _official(request, caller)
        if request.method not in self.METHODS:
            raise Invalid("method", "is required: CASH or TRANSFER (online payments come signed from the "
                          "payment gateway)")
        payment = {"method": self.METHODS[request.method], "amount": request.amount}
        if request.reference:
            payment["reference"] = request.reference
        result = self.platform.call("fees", "pay", caller.official, caller.unit, required(request.code, "code"),
                                    payment, deadline=caller.deadline, idempotency_key=caller.idempotency_key)
        return payment_pb.RecordPaymentResponse(recorded=bool(result.get("recorded")),
                                                outstanding=result.get("outstanding") or 0,
                                                detail=convert.struct(result))


class CatalogueService(Servicer, catalogue_grpc.CatalogueServiceServicer):
    @handler(_platform, "GetProcedure")
    def GetProcedure(self, request, caller, context):
        code = required(request.code, "code")
        found = self.platform.call("catalog", "get_procedure", code, at=request.at or None, deadline=caller.deadline)
        if found is None:
            raise NotFound("code", f"no procedure {code} in force" + (f" on {request.at}" if request.at else ""))
        return catalogue_pb.GetProcedureResponse(procedure=convert.procedure(found))

    @handler(_platform, "ListProcedures")
    def ListProcedures(self, request, caller, context):
        found = self.platform.call("catalog", "list_procedures", unit=request.unit or None,
                                   field=request.field or None, q=request.query or None, deadline=caller.deadline)
        return catalogue_pb.ListProceduresResponse(procedures=[convert.procedure(p) for p in found])


class EventService(Servicer, event_grpc.EventServiceServicer):
    def __init__(self, platform: Platform, poll_seconds: float, max_batch: int):
        super().__init__(platform)
        self.poll_seconds, self.max_batch = poll_seconds, max_batch

    def _routing(self, caller):
        def call(method, *args):
            return self.platform.call("routing", method, *args, deadline=caller.deadline)
        return call

    @handler(_platform, "PublishEvents")
    def PublishEvents(self, request_iterator, caller, context):
        acks, published = [], []
        for batch in request_iterator:
            if len(batch.events) > self.max_batch:
                raise Invalid("events", f"a batch holds at most {self.max_batch} events, got {len(batch.events)}")
            events = [convert.unit_event(message) for message in batch.events]
            # Every signature of the batch first: one that does not hold refuses the batch, nothing applied.
            for index, data in enumerate(events):
                consumers.verified(self.platform, caller.unit, data, "grpc", f"events[{index}]")
            for data in events:
                published.append(data)
                acks.append(consumers.ingest_one(self.platform, caller.unit, data, "grpc", self._routing(caller)))
        codes = {data.get("dossier_code") for data in published}
        caller.dossier = codes.pop() if len(codes) == 1 else ""
        counts = Counter(a.outcome for a in acks)
        caller.summary = f"{len(acks)} events: " + ", ".join(f"{n} {o}" for o, n in sorted(counts.items()))
        return event_pb.PublishEventsResponse(acks=[
            event_pb.EventAck(idempotency_key=a.key, outcome=convert.OUTCOMES[a.outcome], field=a.field,
                              reason=a.reason) for a in acks])

    @handler(_platform, "Subscribe", streaming=True)
    def Subscribe(self, request, caller, context):
        if request.after_position < 0:
            raise Invalid("after_position", "must be 0 or a position already received")
        position, types = request.after_position, list(request.types)
        SUBSCRIBERS.inc()
        try:
            while context.is_active():
                with self.platform.transaction() as session:
                    rows = feed.after(session, caller.unit, position, types)
                for row in rows:
                    yield convert.feed_event(row, self.platform.pii)
                    position = row.position
                if not rows:
                    time.sleep(self.poll_seconds)
        finally:
            SUBSCRIBERS.dec()


SERVICE_NAMES = ("motcua.v1.DeskService", "motcua.v1.AgencyService", "motcua.v1.PaymentService",
                 "motcua.v1.CatalogueService", "motcua.v1.EventService")


def build_server(config: dict, platform: Platform) -> tuple[grpc.Server, health.HealthServicer]:
    """The gRPC server: at most ``MAX_CONCURRENT_RPCS`` calls at once (more get RESOURCE_EXHAUSTED
    at once rather than waiting in an unbounded queue), health checking and reflection."""
    workers = int(config.get("MAX_WORKERS", 32))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
                         maximum_concurrent_rpcs=int(config.get("MAX_CONCURRENT_RPCS", workers)))
    desk_grpc.add_DeskServiceServicer_to_server(DeskService(platform), server)
    agency_grpc.add_AgencyServiceServicer_to_server(AgencyService(platform), server)
    payment_grpc.add_PaymentServiceServicer_to_server(PaymentService(platform), server)
    catalogue_grpc.add_CatalogueServiceServicer_to_server(CatalogueService(platform), server)
    event_grpc.add_EventServiceServicer_to_server(
        EventService(platform, float(config.get("FEED_POLL_SECONDS", 0.5)), int(config.get("MAX_BATCH", 500))),
        server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", *SERVICE_NAMES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    return server, health_servicer


def listen(server: grpc.Server, address: str, cert_file: str | None, key_file: str | None) -> int:
    """TLS when a certificate and its key are configured (tokens then never cross the network in
    clear); plaintext otherwise, for a gateway behind a TLS-terminating proxy, said in the log."""
    if bool(cert_file) != bool(key_file):
        raise SystemExit("gateway: GATEWAY_TLS_CERT_FILE and GATEWAY_TLS_KEY_FILE go together")
    if cert_file:
        with open(key_file, "rb") as key, open(cert_file, "rb") as cert:
            credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
        return server.add_secure_port(address, credentials)
    log.warning("gRPC without TLS: put the gateway behind a TLS-terminating proxy or set GATEWAY_TLS_CERT_FILE "
                "and GATEWAY_TLS_KEY_FILE", address=address)
    return server.add_insecure_port(address)


def http_server(address: str, platform: Platform) -> ThreadingHTTPServer:
    """``/metrics`` for Prometheus and ``/health`` (database and broker), as every service has."""
    host, _, port = address.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY))
            elif self.path == "/health":
                body = health_report("gateway", platform.ping, platform.config["AMQP_URI"])
                self._send(200 if body["status"] == "ok" else 503, "application/json", json.dumps(body).encode())
            else:
                self._send(404, "text/plain", b"not found")

        def _send(self, status: int, content_type: str, body: bytes):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):   # scrapes every few seconds: not worth a log line each
            pass

    server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler)
    server.daemon_threads = True
    return server


def serve(config: dict) -> int:
    platform = Platform(config)
    platform.pii            # no start without the personal-data keys (a ConfigError naming them)
    server, health_servicer = build_server(config, platform)
    address = str(config.get("GRPC_ADDRESS", "0.0.0.0:50051"))
    if listen(server, address, config.get("TLS_CERT_FILE"), config.get("TLS_KEY_FILE")) == 0:
        raise SystemExit(f"gateway: cannot listen on {address}")
    web = http_server(str(config.get("HTTP_ADDRESS", "0.0.0.0:8006")), platform)
    workers = consumers.start(config, platform)
    server.start()
    threading.Thread(target=web.serve_forever, name="http", daemon=True).start()
    log.info("gateway started", grpc=address, http=config.get("HTTP_ADDRESS"))

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    while not stopping.wait(1):
        if not all(worker.is_alive() for worker in workers):
            log.error("a consumer stopped; stopping the gateway")
            break
    health_servicer.enter_graceful_shutdown()
    server.stop(grace=float(config.get("STOP_GRACE_SECONDS", 5))).wait()
    for worker in workers:
        worker.stop()
    web.shutdown()
    platform.close()
    log.info("gateway stopped")
    return 0
