"""What a service answers instead of doing something: nothing was changed.

Every service refuses with these, so that an API, an RPC caller or the gateway always gets
the field at fault, the reason, and the HTTP status that says what kind of refusal it is.
"""
from __future__ import annotations


class Refusal(ValueError):
    status = 400

    def __init__(self, field: str, reason: str, details: dict | None = None):
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason
        self.details = details or {}     # more for the caller, e.g. the guidance slip of an incomplete dossier


class Invalid(Refusal):
    status = 400


class Unauthenticated(Refusal):
    status = 401


class Forbidden(Refusal):
    status = 403


class NotFound(Refusal):
    status = 404


class Conflict(Refusal):
    status = 409
