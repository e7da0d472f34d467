"""Signed hand-offs (motcua/contracts/signing.py, motcua/runtime/keys.py): the canonical form,
signing, verification, and the keys' validity across a rotation. Keys are made by the tests."""
import base64
from datetime import datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from motcua.contracts import signing
from motcua.contracts.signing import KeyRegistry, SignatureRefused, Signer, UnitKey
from motcua.runtime import keys

WARD_3, WARD_5 = "000.03.20.H29", "000.05.20.H29"
T0 = datetime(2026, 12, 1, 0, 0, tzinfo=timezone.utc)
CODE = "000.03.20.H29-261201-0001"


def key_of(unit: str, key_id: str, start=T0, end=None) -> tuple[UnitKey, Ed25519PrivateKey]:
    private = Ed25519PrivateKey.generate()
    return UnitKey(unit, key_id, signing.public_key_text(private), start, end), private


def handover(unit=WARD_3, key_id="k1", **changes) -> dict:
    fields = dict(unit=unit, key_id=key_id, dossier=CODE, step=7, action="hand_over",
                  at="2026-12-02T09:30:00+07:00", from_agency=WARD_3, to_agency="000.41.20.H29",
                  giver="Trần Thị Hoa", result_class="on_time", note="Đủ hồ sơ")
    fields.update(changes)
    return signing.handover_content(**fields)


# --- the canonical form ----------------------------------------------------------------------------

def test_the_canonical_form_sorts_keys_drops_whitespace_and_keeps_utf8():
    assert signing.canonical({"b": 1, "a": ["x", None], "é": "Phường 3"}) == \
        '{"a":["x",null],"b":1,"é":"Phường 3"}'.encode("utf-8")


def test_an_instant_is_signed_in_utc_whatever_offset_it_came_with():
    assert signing.instant("2026-12-02T09:30:00+07:00") == signing.instant("2026-12-02T02:30:00Z") == \
        "2026-12-02T02:30:00.000000+00:00"
    with pytest.raises(ValueError):
        signing.instant("2026-12-02T09:30:00")


def test_what_is_signed_names_the_unit_dossier_step_action_instant_and_key():
    content = handover()
    assert {"unit", "dossier", "step", "action", "at", "key_id"} <= set(content)
    assert content["at"] == "2026-12-02T02:30:00.000000+00:00"


def test_a_unit_event_reads_the_same_however_it_travelled():
    """As the client signs it (local offset, untrimmed text, default document fields) and as the
    gateway reads it (UTC from the protobuf timestamp, trimmed, defaults filled)."""
    sent = {"idempotency_key": "k1", "type": "supplement_needed", "dossier_code": CODE, "step": 7,
            "official": " Chủ tịch ", "occurred_at": "2026-12-02T10:32:00+07:00", "reason": "thiếu",
            "documents": [{"name": "Tờ khai"}]}
    read = {**sent, "official": "Chủ tịch", "occurred_at": "2026-12-02T03:32:00+00:00", "note": "",
            "proposed_date": "", "documents": [{"name": "Tờ khai", "form": "original", "count": 1}]}
    assert signing.unit_event_content(WARD_3, "k1", sent) == signing.unit_event_content(WARD_3, "k1", read)


# --- signing and verifying -------------------------------------------------------------------------

def test_a_signature_verifies_and_any_change_is_refused():
    key, private = key_of(WARD_3, "k1")
    registry = KeyRegistry([key])
    signature = signing.sign(private, handover())
    assert signing.verify(registry, handover(), signature, T0 + timedelta(days=1)) == key
    for change in ({"note": "Đủ hồ sơ."}, {"step": 8}, {"dossier": CODE[:-1] + "2"}, {"action": "return_to_desk"},
                   {"at": "2026-12-02T09:30:01+07:00"}, {"to_agency": "000.42.20.H29"}):
        with pytest.raises(SignatureRefused) as refused:
            signing.verify(registry, handover(**change), signature, T0 + timedelta(days=1))
        assert (refused.value.field, refused.value.why) == ("signature", signing.MISMATCH)


def test_one_byte_changed_in_the_signature_is_refused():
    key, private = key_of(WARD_3, "k1")
    raw = bytearray(base64.b64decode(signing.sign(private, handover())))
    raw[10] ^= 1
    with pytest.raises(SignatureRefused) as refused:
        signing.verify(KeyRegistry([key]), handover(), base64.b64encode(bytes(raw)).decode(), T0)
    assert refused.value.why == signing.MISMATCH


@pytest.mark.parametrize("signature,why", [(None, signing.MISSING), ("", signing.MISSING),
                                           ("not base64!", signing.MALFORMED), ("AAAA", signing.MALFORMED)])
def test_a_missing_or_malformed_signature(signature, why):
    key, _ = key_of(WARD_3, "k1")
    with pytest.raises(SignatureRefused) as refused:
        signing.verify(KeyRegistry([key]), handover(), signature, T0)
    assert (refused.value.field, refused.value.why) == ("signature", why)


def test_a_key_signed_by_another_key_of_the_same_unit_is_refused():
    k1, _ = key_of(WARD_3, "k1")
    k2, private2 = key_of(WARD_3, "k2")
    forged = signing.sign(private2, handover(key_id="k1"))     # claims k1, signed with k2
    with pytest.raises(SignatureRefused) as refused:
        signing.verify(KeyRegistry([k1, k2]), handover(key_id="k1"), forged, T0)
    assert refused.value.why == signing.MISMATCH


def test_an_unknown_key_and_another_units_key_are_refused():
    ward5, private5 = key_of(WARD_5, "w5")
    registry = KeyRegistry([ward5])
    with pytest.raises(SignatureRefused) as refused:
        signing.verify(registry, handover(key_id="nope"), "x", T0)
    assert (refused.value.field, refused.value.why) == ("key_id", signing.UNKNOWN_KEY)
    # Phường 5's key cannot sign for Phường 3, even with a signature that is mathematically right.
    content = handover(key_id="w5")
    with pytest.raises(SignatureRefused) as refused:
        signing.verify(registry, content, signing.sign(private5, content), T0)
    assert (refused.value.field, refused.value.why) == ("key_id", signing.OTHER_UNIT)
    assert "000.05.20.H29" in refused.value.reason


# --- rotation ------------------------------------------------------------------------------------------

def test_a_rotation_overlaps_then_only_the_new_key_verifies():
    registry, first, first_private = keys.new_key(KeyRegistry(), WARD_3, T0)
    rotated_at, overlap = T0 + timedelta(days=30), timedelta(days=7)
    registry, second, second_private = keys.new_key(registry, WARD_3, rotated_at, overlap=overlap, rotate=True)
    old = registry.get(first.key_id)
    assert old.valid_until == rotated_at + overlap and registry.get(second.key_id).valid_until is None

    def check(key_id, private, at):
        content = handover(key_id=key_id)
        return signing.verify(registry, content, signing.sign(private, content), at).key_id

    assert check(first.key_id, first_private, rotated_at - timedelta(microseconds=1)) == first.key_id
    with pytest.raises(SignatureRefused) as refused:         # the new key, before it starts
        check(second.key_id, second_private, rotated_at - timedelta(microseconds=1))
    assert refused.value.why == signing.NOT_YET_VALID
    for at in (rotated_at, rotated_at + overlap - timedelta(microseconds=1)):   # the overlap: both
        assert check(first.key_id, first_private, at) == first.key_id
        assert check(second.key_id, second_private, at) == second.key_id
    with pytest.raises(SignatureRefused) as refused:         # the overlap's end is excluded
        check(first.key_id, first_private, rotated_at + overlap)
    assert (refused.value.field, refused.value.why) == ("key_id", signing.EXPIRED)
    assert check(second.key_id, second_private, rotated_at + overlap) == second.key_id


def test_the_signer_takes_the_newest_key_it_holds_valid_at_the_instant():
    registry, first, first_private = keys.new_key(KeyRegistry(), WARD_3, T0)
    rotated_at = T0 + timedelta(days=30)
    registry, second, second_private = keys.new_key(registry, WARD_3, rotated_at, overlap=timedelta(days=7),
                                                    rotate=True)
    signer = Signer(registry, {first.key_id: first_private, second.key_id: second_private})
    assert signer.key_id(WARD_3, T0 + timedelta(days=1)) == first.key_id
    assert signer.key_id(WARD_3, rotated_at + timedelta(days=1)) == second.key_id
    assert signer.key_id(WARD_5, rotated_at) is None
    assert Signer(registry, {first.key_id: first_private}).key_id(WARD_3, rotated_at + timedelta(days=8)) is None


def test_generate_refuses_a_second_current_key_and_rotate_needs_one():
    registry, _, _ = keys.new_key(KeyRegistry(), WARD_3, T0)
    with pytest.raises(ValueError, match="rotate"):
        keys.new_key(registry, WARD_3, T0 + timedelta(days=1))
    with pytest.raises(ValueError, match="generate"):
        keys.new_key(registry, WARD_5, T0, rotate=True, overlap=timedelta(days=1))


def test_the_registry_file_round_trips_and_bad_entries_are_named(tmp_path):
    registry, key, private = keys.new_key(KeyRegistry(), WARD_3, T0)
    path = tmp_path / "registry.yml"
    keys.write_registry(path, registry)
    assert keys.read_registry(path).keys == registry.keys
    keys.write_private_key(tmp_path / "private", key.key_id, private)
    assert (tmp_path / "private" / f"{key.key_id}.pem").stat().st_mode & 0o777 == 0o600
    assert list(keys.read_private_keys(tmp_path / "private")) == [key.key_id]
    path.write_text("keys:\n- {unit: X, key_id: k, public_key: abc, valid_from: '2026-12-01T00:00:00+00:00'}\n")
    with pytest.raises(ValueError, match=r"keys\[0\]\.public_key"):
        keys.read_registry(path)
    with pytest.raises(ValueError, match="twice"):
        KeyRegistry([key, key])


def test_key_files_see_a_rotation_without_a_restart(tmp_path):
    registry_file, folder = tmp_path / "registry.yml", tmp_path / "private"
    files = keys.KeyFiles(registry_file, folder, recheck_seconds=0)
    assert files.signer().key_id(WARD_3, T0) is None
    registry, key, private = keys.new_key(KeyRegistry(), WARD_3, T0)
    keys.write_private_key(folder, key.key_id, private)
    keys.write_registry(registry_file, registry)
    assert files.signer().key_id(WARD_3, T0) == key.key_id


# --- routing's hand-overs ------------------------------------------------------------------------------

def test_routing_signs_a_hand_over_for_the_giving_unit_and_the_desk_for_its_own():
    from services.routing import signatures
    from services.routing.workflow import DESK
    registry, key, private = keys.new_key(KeyRegistry(), WARD_3, T0)
    signer = Signer(registry, {key.key_id: private})
    row = dict(code=CODE, step_id=7, from_agency=DESK, to_agency=WARD_3, at=T0 + timedelta(days=1),
               giver=DESK, receiver=None, result_class="on_time", note=None)
    desk = signatures.signed(signer, WARD_3, row)
    assert (desk["signed_by"], desk["key_id"]) == (WARD_3, key.key_id)     # the receiving desk is the ward's
    assert signatures._problem(registry, desk, WARD_3) is None
    assert "mismatch" in signatures._problem(registry, {**desk, "note": "x"}, WARD_3)
    assert "given by" in signatures._problem(registry, {**desk, "signed_by": WARD_5}, WARD_3)
    unheld = signatures.signed(signer, WARD_3, {**row, "from_agency": WARD_5})   # no key held for Phường 5
    assert unheld["signature"] is None and signatures._problem(registry, unheld, WARD_5) == "not signed"


def test_a_registry_broken_by_hand_keeps_the_keys_read_last(tmp_path):
    registry_file = tmp_path / "registry.yml"
    registry, key, _ = keys.new_key(KeyRegistry(), WARD_3, T0)
    keys.write_registry(registry_file, registry)
    files = keys.KeyFiles(registry_file, None, recheck_seconds=0)
    assert files.registry().get(key.key_id) == key
    registry_file.write_text("keys: [{unit: 000.03.20.H29}]\n")
    assert files.registry().get(key.key_id) == key


def test_motcua_keys_generate_rotate_and_list(tmp_path, capsys, monkeypatch):
    import json
    monkeypatch.delenv(keys.KEYS_ENV, raising=False)

    from apps.cli import main
    where = ["--registry", str(tmp_path / "registry.yml")]
    private = ["--keys-dir", str(tmp_path / "private")]
    assert main(["keys", "generate", WARD_3, *where, *private, "--valid-from", "2026-12-01T00:00:00+07:00"]) == 0
    first = capsys.readouterr().out.strip()
    assert main(["keys", "generate", WARD_3, *where, *private]) == 2
    assert "motcua keys rotate" in capsys.readouterr().err
    assert main(["keys", "rotate", WARD_3, *where, *private, "--valid-from", "2026-12-10T00:00:00+07:00",
                 "--overlap-days", "2"]) == 0
    second = capsys.readouterr().out.strip()
    assert main(["keys", "list", *where, "--unit", WARD_3]) == 0
    listed = {key["key_id"]: key for key in json.loads(capsys.readouterr().out)}
    assert listed[first]["valid_until"] == "2026-12-12T00:00:00+07:00" and listed[second]["valid_until"] is None
    assert sorted(p.stem for p in (tmp_path / "private").iterdir()) == sorted([first, second])
    assert all(set(key) == {"unit", "key_id", "public_key", "valid_from", "valid_until"} for key in listed.values())
    assert main(["keys", "rotate", WARD_3, "--registry", str(tmp_path / "r.yml")]) == 2     # no --keys-dir


def test_the_unit_systems_client_signs_without_nameko():
    """A ward's system installs the client, not the platform: signing must not pull nameko in."""
    import subprocess
    import sys

    from tests.conftest import ROOT
    result = subprocess.run([sys.executable, "-c", "import sys, motcua_client; assert 'nameko' not in sys.modules"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
