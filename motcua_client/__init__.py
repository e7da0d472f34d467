"""A small client for unit systems (ward and agency software) talking to the Một Cửa gateway.

    from motcua_client import Client
    with Client("gateway.govap.example:50051", token="<token id>.<secret>") as client:
        dossier = client.receive("Nguyễn Thị Lan", {"procedure_code": "1.004873", ...})
        for position, event in client.follow(after_position=0):
            ...

Every method takes the acting official's name; the unit is the token's. Refusals raise
``GatewayError`` with the gRPC code, the message and the field violations.
"""
from motcua_client.client import Client, GatewayError, submission

__all__ = ["Client", "GatewayError", "submission"]
