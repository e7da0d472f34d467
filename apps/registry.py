"""The registry of services: which services are built, where their code, configuration and
migrations live, and their HTTP ports. The applications (the CLI, the demo) start them from here."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SERVICES_DIR = Path(__file__).resolve().parent.parent / "services"


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    port: int
    nameko: bool = True     # the gateway is a plain gRPC process (grpcio cannot run under eventlet)

    @property
    def module(self) -> str:
        return f"services.{self.name}.service"

    @property
    def directory(self) -> Path:
        return SERVICES_DIR / self.name

    @property
    def config_file(self) -> Path:
        return self.directory / "config.yml"


# The built services, in start-up order. Ports: catalog 8001, intake 8002, routing 8003,
# fees 8004, notify 8005; the gateway's /metrics and /health 8006, its gRPC 50051; portal 8007.
SERVICES = {spec.name: spec for spec in (ServiceSpec("catalog", 8001), ServiceSpec("intake", 8002),
                                                 ServiceSpec("routing", 8003), ServiceSpec("fees", 8004),
                                                 ServiceSpec("notify", 8005), ServiceSpec("portal", 8007),
                                                 ServiceSpec("gateway", 8006, nameko=False))}
DEFAULT_CATALOGUE = SERVICES_DIR / "catalog" / "data" / "catalogue.yml"
