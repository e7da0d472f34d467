"""A refusal crosses nameko RPC intact: class, field, reason and details (motcua.runtime.rpc)."""
from nameko.exceptions import deserialize, serialize

from motcua.contracts.refusals import Conflict, Forbidden, Invalid, NotFound, Refusal, portable


class Incomplete(Invalid):                # a service's own refusal, unknown to other processes
    def __init__(self, missing):
        super().__init__("documents", "the dossier is incomplete", {"guidance": missing})


def test_a_refusal_keeps_its_message():
    assert str(Forbidden("code", "belongs to another unit")) == "code: belongs to another unit"


def test_a_services_own_refusal_is_sent_as_its_platform_class():
    sent = portable(Incomplete(["Tờ khai: còn thiếu 1 bản"]))
    assert type(sent) is Invalid and sent.field == "documents" and sent.details["guidance"]
    assert portable(sent) is sent


def test_the_caller_rebuilds_the_refusal():
    for refusal in (Invalid("applicant.id_number", "must be 12 digits"), Forbidden("code", "not yours"),
                    NotFound("code", "no dossier"), Conflict("step", "already done"),
                    portable(Incomplete(["a", "b"]))):
        rebuilt = deserialize(serialize(refusal))
        assert type(rebuilt) is type(refusal) and isinstance(rebuilt, Refusal)
        assert (rebuilt.field, rebuilt.reason, rebuilt.details) == (refusal.field, refusal.reason, refusal.details)
