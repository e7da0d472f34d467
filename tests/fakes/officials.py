"""How a test acts as an official of a unit: the HTTP headers of one call.

Every test that calls the officials' HTTP APIs takes its headers from here, so that the way an
official proves who they are is decided in one place."""
from urllib.parse import quote


def official_headers(name: str, unit: str, role: str = "desk_officer") -> dict[str, str]:
    """The headers of a call by ``name`` (any Unicode) of ``unit`` acting as ``role``."""
    return {"X-Official": quote(name), "X-Unit": unit}
