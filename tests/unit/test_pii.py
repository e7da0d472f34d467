"""Sealing ID and phone numbers at rest (motcua/contracts/pii.py) and the keys' settings (runtime)."""
import base64

import pytest

from motcua.contracts.pii import (ID_NUMBER, PHONE, KeyRing, PiiError, is_sealed, key_id_of, new_key,
                                  parse_keys)
from motcua.runtime.config import ConfigError
from motcua.runtime.pii import keyring, new_settings

K1, K2, H = new_key(), new_key(), new_key()
CCCD, TEL = "079203001234", "0912345678"


def ring(keys="k1", active="k1") -> KeyRing:
    return keyring({"PII_KEYS": ",".join(f"{k}={ {'k1': K1, 'k2': K2}[k]}" for k in keys.split(",")),
                    "PII_ACTIVE_KEY": active, "PII_HASH_KEY": H})


def test_seal_and_open_round_trip_without_the_number_in_the_sealed_text():
    r = ring()
    sealed = r.seal(CCCD, ID_NUMBER)
    assert is_sealed(sealed) and key_id_of(sealed) == "k1"
    assert CCCD not in sealed and not any(CCCD[i:i + 6] in sealed for i in range(7))
    assert r.open(sealed, ID_NUMBER) == CCCD
    assert r.seal(CCCD, ID_NUMBER) != sealed          # a fresh nonce each time
    assert r.seal(None, PHONE) is None and r.open(None, PHONE) is None


def _flip(sealed: str, index: int) -> str:
    prefix, body = sealed.rsplit(":", 1)
    data = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    data[index] ^= 1
    return prefix + ":" + base64.urlsafe_b64encode(bytes(data)).decode().rstrip("=")


@pytest.mark.parametrize("index", [0, 13, -1])      # the nonce, the ciphertext, the tag
def test_a_tampered_value_is_refused_without_showing_it(index):
    r = ring()
    tampered = _flip(r.seal(TEL, PHONE), index)
    with pytest.raises(PiiError) as refused:
        r.open(tampered, PHONE)
    assert "authentication" in str(refused.value) and TEL not in str(refused.value)


def test_a_value_sealed_for_one_purpose_or_key_id_is_refused_for_another():
    r = ring("k1,k2")
    sealed = r.seal(TEL, PHONE)
    with pytest.raises(PiiError):
        r.open(sealed, ID_NUMBER)
    with pytest.raises(PiiError):               # the key id is authenticated too
        r.open(sealed.replace(":k1:", ":k2:"), PHONE)
    for garbage in ("0912345678", "pii1:k1:", "pii1:k1:AAAA", "pii1:k1:***"):
        with pytest.raises(PiiError):
            r.open(garbage, PHONE)


def test_rotation_old_keys_still_open_and_reseal_moves_to_the_active_key():
    old = ring("k1")
    sealed = old.seal(CCCD, ID_NUMBER)
    rotated = ring("k1,k2", active="k2")
    assert not rotated.current(sealed) and old.current(sealed)
    assert rotated.open(sealed, ID_NUMBER) == CCCD
    again = rotated.reseal(sealed, ID_NUMBER)
    assert key_id_of(again) == "k2" and rotated.current(again)
    assert rotated.open(again, ID_NUMBER) == CCCD
    with pytest.raises(PiiError, match="does not hold"):        # k1 retired after the rotation
        ring("k2", active="k2").open(sealed, ID_NUMBER)
    assert rotated.reseal(CCCD, ID_NUMBER) != CCCD and rotated.open(rotated.sealed(CCCD, ID_NUMBER), ID_NUMBER) == CCCD
    assert rotated.sealed(again, ID_NUMBER) == again


def test_keyed_hash_finds_equal_numbers_only_and_survives_a_rotation():
    r, rotated = ring(), ring("k1,k2", active="k2")
    assert r.digest(CCCD, ID_NUMBER) == rotated.digest(CCCD, ID_NUMBER)
    assert r.digest(CCCD, ID_NUMBER) != r.digest("079203001235", ID_NUMBER)
    assert r.digest(TEL, PHONE) != r.digest(TEL, ID_NUMBER)
    other = keyring({"PII_KEYS": f"k1={K1}", "PII_ACTIVE_KEY": "k1", "PII_HASH_KEY": new_key()})
    assert other.digest(CCCD, ID_NUMBER) != r.digest(CCCD, ID_NUMBER)       # keyed: no rainbow table
    assert CCCD not in r.digest(CCCD, ID_NUMBER)


@pytest.mark.parametrize("config, field", [
    ({}, "PII_KEYS, PII_ACTIVE_KEY, PII_HASH_KEY"),
    ({"PII_KEYS": "k1", "PII_ACTIVE_KEY": "k1", "PII_HASH_KEY": H}, "PII_KEYS"),
    ({"PII_KEYS": "k1=c2hvcnQ=", "PII_ACTIVE_KEY": "k1", "PII_HASH_KEY": H}, "PII_KEYS"),
    ({"PII_KEYS": f"k 1={K1}", "PII_ACTIVE_KEY": "k 1", "PII_HASH_KEY": H}, "PII_KEYS"),
    ({"PII_KEYS": f"k1={K1},k1={K2}", "PII_ACTIVE_KEY": "k1", "PII_HASH_KEY": H}, "PII_KEYS"),
    ({"PII_KEYS": f"k1={K1}", "PII_ACTIVE_KEY": "k9", "PII_HASH_KEY": H}, "PII_ACTIVE_KEY"),
    ({"PII_KEYS": f"k1={K1}", "PII_ACTIVE_KEY": "k1", "PII_HASH_KEY": K1}, "PII_HASH_KEY"),
    ({"PII_KEYS": f"k1={K1}", "PII_ACTIVE_KEY": "k1", "PII_HASH_KEY": "xyz"}, "PII_HASH_KEY"),
])
def test_bad_settings_name_the_setting_and_never_the_key(config, field):
    with pytest.raises(ConfigError) as refused:
        keyring(config)
    assert str(refused.value).startswith(field)
    assert K1 not in str(refused.value) and K2 not in str(refused.value)


def test_settings_from_yaml_mapping_and_new_settings():
    assert parse_keys({"k1": K1, "k2": K2}).keys() == {"k1", "k2"}
    r = keyring({"PII_KEYS": {"k1": K1}, "PII_ACTIVE_KEY": "k1", "PII_HASH_KEY": H})
    assert r.open(r.seal(TEL, PHONE), PHONE) == TEL
    fresh = keyring(new_settings("k7"))
    assert key_id_of(fresh.seal(TEL, PHONE)) == "k7"
    assert K1 not in repr(r) and "k1" in repr(r)


def test_event_payloads_carry_the_numbers_sealed_and_a_rotation_reseals_them():
    from motcua.contracts.pii import has_clear, open_payload, reseal_payload, seal_payload
    r = ring()
    payload = {"code": "X", "applicant": {"name": "Lan", "phone": TEL, "email": None},
               "others": [{"id_number": CCCD, "phone": None}]}
    sealed = seal_payload(payload, r)
    assert has_clear(payload) and not has_clear(sealed)
    assert TEL not in str(sealed) and CCCD not in str(sealed)
    assert seal_payload(sealed, r) == sealed                     # sealed values are kept as they are
    assert open_payload(sealed, r) == payload
    rotated = ring("k1,k2", active="k2")
    assert has_clear(sealed, rotated) and not has_clear(sealed, r)
    again = reseal_payload(sealed, rotated)
    assert not has_clear(again, rotated) and open_payload(again, rotated) == payload


def test_the_desk_s_feed_line_shows_its_system_the_phone_opened():
    from datetime import datetime, timezone
    from types import SimpleNamespace

    from motcua.contracts.pii import seal_payload
    from services.gateway.convert import feed_event
    r = ring()
    payload = seal_payload({"code": "X", "applicant": {"name": "Lan", "phone": TEL}}, r)
    row = SimpleNamespace(position=1, event_id="e", type="dossier.received", dossier="X",
                          occurred_at=datetime(2026, 3, 2, tzinfo=timezone.utc), payload=payload)
    shown = feed_event(row, r).event.payload
    assert shown["applicant"]["phone"] == TEL and shown["code"] == "X"


@pytest.mark.parametrize("line", [
    '"GET /api/v1/dossiers?q=0987+654+321 HTTP/1.1" 200 203 0.099439',       # a desk's search, as logged
    '"GET /api/v1/dossiers?q=079%20188%20004%20321 HTTP/1.1" 200 203 0.05',
    '"GET /api/v1/dossiers?q=%2B84987654321 HTTP/1.1" 200 203 0.05',
    '"GET /api/v1/dossiers?q=079+188+004+321 HTTP/1.1" 200 203 0.05'])
def test_a_number_in_a_logged_url_is_masked_however_it_was_typed(line):
    from motcua.runtime.logs import mask_text
    masked = mask_text(line)
    digits = "".join(c for c in masked if c.isdigit())
    assert "987654321" not in digits and "079188004321" not in digits and "***" in masked
    assert mask_text("code 000.05.20.H29-260302-0001") == "code 000.05.20.H29-260302-0001"
