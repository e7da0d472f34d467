"""A small client for unit systems (ward and agency software) talking to the Một Cửa gateway.

    from motcua_client import Client
    with Client("gateway.govap.example:50051", token="<token id>.<secret>") as client:
        dossier = client.receive("Nguyễn Thị Lan", {"procedure_code": "1.004873", ...})
        for position, event in client.follow(after_position=0):
            ...

Every method takes the acting official's name; the unit is the token's. Events are signed with
the unit's key: ``Client(..., unit=UNIT, key_id=KEY_ID, signing_key=load_signing_key(PEM))``;
``sign_event`` signs one for RabbitMQ. Refusals raise
``GatewayError`` with the gRPC code, the message and the field violations.
"""
from motcua_client.client import Client, GatewayError, load_signing_key, sign_event, submission

__all__ = ["Client", "GatewayError", "load_signing_key", "sign_event", "submission"]
