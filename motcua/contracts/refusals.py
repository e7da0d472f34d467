"""What a service answers instead of doing something: nothing was changed.

Every service refuses with these, so that an API, an RPC caller or the gateway always gets
the field at fault, the reason, and the HTTP status that says what kind of refusal it is.
"""
from __future__ import annotations

from nameko.exceptions import deserialize_to_instance


@deserialize_to_instance
class Refusal(ValueError):
    status = 400

    def __init__(self, field: str, reason: str, details: dict | None = None):
        # The arguments are what nameko sends an RPC caller, who rebuilds the refusal from them.
        super().__init__(field, reason, details or {})
        self.field, self.reason = field, reason
        self.details = details or {}     # more for the caller, e.g. the guidance slip of an incomplete dossier

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


@deserialize_to_instance
class Invalid(Refusal):
    status = 400


@deserialize_to_instance
class Unauthenticated(Refusal):
    status = 401


@deserialize_to_instance
class Forbidden(Refusal):
    status = 403


@deserialize_to_instance
class NotFound(Refusal):
    status = 404


@deserialize_to_instance
class Conflict(Refusal):
    status = 409


PORTABLE = (Invalid, Unauthenticated, Forbidden, NotFound, Conflict)


def portable(refusal: Refusal) -> Refusal:
    """The same refusal as one of the classes every process knows (a service's own subclass,
    e.g. the desk's Incomplete, means nothing to the gateway): field, reason and details kept."""
    if type(refusal) in PORTABLE:
        return refusal
    base = next((cls for cls in PORTABLE if isinstance(refusal, cls)), Invalid)
    return base(refusal.field, refusal.reason, refusal.details)

