"""Fees and charges collected at the desks: pure rules (domain reference §1 row 5a, §7).

The Finance office checks fee and charge collection at every desk. What that needs, as values:

* :func:`compute_charges` turns a procedure's fee items (the catalogue's vocabulary, as
  ``Procedure.content()["fees"]`` serialises them) into one :class:`ChargeLine` per item owed, and
  :func:`totals` adds them up keeping phí (fees) and lệ phí (charges) apart: they go to different
  budget accounts and appear separately on the receipt.
* :func:`vnd_in_words` and :func:`format_vnd` write an amount on a receipt (biên lai), in words and in
  figures.
* :func:`verify_callback` authenticates an online payment gateway's callback (HMAC-SHA256 with a
  per-merchant secret, freshness window against replays); :func:`parse_settlement_csv` and
  :func:`match_settlement` reconcile the gateway's settlement file with what we recorded.
* :func:`cash_closing` closes a desk's cash for a day; :func:`refund_due` says what is owed back.

Nothing here does I/O: no database, no files, no clock (``now`` is a parameter). Amounts are whole
numbers of đồng (``int``), never floats.
"""
from __future__ import annotations

import csv
import hashlib
import hmac
import io
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping

from motcua.contracts.refusals import Invalid
from motcua.contracts.codes import CodeError, parse_dossier_code

__all__ = [
    "CURRENCY",
    "MAX_AMOUNT",
    "MAX_PAGES",
    "MAX_COPIES",
    "FUTURE_TOLERANCE_SECONDS",
    "REJECTION_REASONS",
    "REFUND_REASONS",
    "SETTLEMENT_HEADER",
    "FeeError",
    "CallbackRejected",
    "parse_amount",
    "parse_currency",
    "ChargeLine",
    "compute_charges",
    "totals",
    "vnd_in_words",
    "format_vnd",
    "canonical",
    "sign",
    "Callback",
    "verify_callback",
    "SettlementLine",
    "parse_settlement_csv",
    "Recorded",
    "match_settlement",
    "cash_closing",
    "refund_due",
]

CURRENCY = "VND"
MAX_AMOUNT = 999_999_999_999_999  # the largest amount vnd_in_words reads (under a million tỷ)
MAX_PAGES = 10_000
MAX_COPIES = 10_000
FUTURE_TOLERANCE_SECONDS = 300  # a callback timestamp further ahead than this is refused as a replay
REJECTION_REASONS = ("unsigned", "unknown_merchant", "bad_signature", "malformed", "stale", "currency")
REFUND_REASONS = ("refused", "withdrawn")
SETTLEMENT_HEADER = ("transaction_id", "order", "amount", "currency", "paid_at")

_DIGITS = re.compile(r"^[0-9]+$")  # ASCII digits only: \d would take any script's digits
_CALLBACK_AMOUNT = re.compile(r"^[1-9][0-9]{0,14}$")  # whole đồng, no sign, no leading zero
_TRANSACTION_ID_MAX = 100


# --------------------------------------------------------------------------------------------
# Errors and input
# --------------------------------------------------------------------------------------------


# The fee rules' refusals: ``field`` names the input, ``reason`` says why (status 400).
FeeError = Invalid


class CallbackRejected(FeeError):
    """A payment callback refused. ``reason`` is one of :data:`REJECTION_REASONS` (a stable code the
    service can count and log); ``field`` names the parameter at fault; ``detail`` explains."""

    def __init__(self, reason: str, field: str, detail: str = ""):
        if reason not in REJECTION_REASONS:
            raise ValueError(f"unknown rejection reason {reason!r}")
        super().__init__(field, reason)
        self.detail = detail or reason


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{text} (a {type(value).__name__})"


def _whole(value: object, field: str, *, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FeeError(field, f"must be a whole number, got {_describe(value)}")
    if value < minimum:
        raise FeeError(field, f"must be at least {minimum}, got {value}")
    if value > maximum:
        raise FeeError(field, f"must be at most {maximum}, got {value}")
    return value


def parse_amount(value: object, field: str = "amount") -> int:
    """A positive whole number of đồng given as an ``int`` (not a bool, a float or a string),
    at most :data:`MAX_AMOUNT`; else :class:`FeeError` naming ``field``."""
    return _whole(value, field, minimum=1, maximum=MAX_AMOUNT)


def parse_currency(value: object, field: str = "currency") -> str:
    """``"VND"`` in any case; anything else (other currencies, spaces, non-strings) is refused."""
    if not isinstance(value, str) or value.upper() != CURRENCY:
        raise FeeError(field, f"only {CURRENCY} is accepted, got {_describe(value)}")
    return CURRENCY


# --------------------------------------------------------------------------------------------
# Charges
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChargeLine:
    """What one fee item costs for this request: ``type`` is ``phi`` or ``le_phi``; ``detail``
    is the Vietnamese working shown on the receipt."""

    item_id: str
    type: str
    name: str
    amount: int
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "type": self.type,
            "name": self.name,
            "amount": self.amount,
            "detail": self.detail,
        }


_FEE_TYPES = ("phi", "le_phi")
_FEE_KINDS = ("flat", "per_page", "per_copy", "exemption")
_LISTED_PAGES = 10  # up to this many pages the detail lists every page; beyond, it groups by tier


def _fee_text(item: Mapping, path: str, key: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value.strip():
        raise FeeError(f"{path}.{key}", f"must be a non-empty text, got {_describe(value)}")
    return value


def _fee_vnd(item: Mapping, path: str, key: str) -> int:
    return _whole(item.get(key), f"{path}.{key}", minimum=0, maximum=MAX_AMOUNT)


def _tiers(item: Mapping, path: str) -> list[tuple[int, int]]:
    raw = item.get("tiers")
    if not isinstance(raw, (list, tuple)) or not raw:
        raise FeeError(f"{path}.tiers", f"must be a non-empty list, got {_describe(raw)}")
    tiers: list[tuple[int, int]] = []
    for j, tier in enumerate(raw):
        where = f"{path}.tiers[{j}]"
        if not isinstance(tier, Mapping):
            raise FeeError(where, f"must be a mapping with from_page and amount, got {_describe(tier)}")
        from_page = _whole(tier.get("from_page"), f"{where}.from_page", minimum=1, maximum=MAX_PAGES + 1)
        amount = _fee_vnd(tier, where, "amount")
        tiers.append((from_page, amount))
    tiers.sort()
    if tiers[0][0] != 1:
        raise FeeError(f"{path}.tiers", f"the first tier must start at page 1, got {tiers[0][0]}")
    for (a, _), (b, _) in zip(tiers, tiers[1:]):
        if a == b:
            raise FeeError(f"{path}.tiers", f"two tiers start at page {a}")
    return tiers


def _segments(tiers: list[tuple[int, int]], pages: int) -> list[tuple[int, int]]:
    """(number of pages, price per page) for pages 1..pages, one run per tier in force."""
    runs = []
    for j, (start, amount) in enumerate(tiers):
        if start > pages:
            break
        end = tiers[j + 1][0] - 1 if j + 1 < len(tiers) else pages
        runs.append((min(end, pages) - start + 1, amount))
    return runs


def _flat(item: Mapping, path: str, pages: int, copies: int) -> tuple[int, str]:
    """One amount per dossier, whatever the pages and copies."""
    amount = _fee_vnd(item, path, "amount")
    return amount, f"Mức thu: {_figures(amount)}"


def _per_copy(item: Mapping, path: str, pages: int, copies: int) -> tuple[int, str]:
    """The amount for each copy issued."""
    unit = _fee_vnd(item, path, "amount")
    return unit * copies, f"{copies} bản x {_figures(unit)}"


def _per_page(item: Mapping, path: str, pages: int, copies: int) -> tuple[int, str]:
    """Each page at the tier in force for it (e.g. a lower price from page 3), a copy at most
    ``cap_per_copy``, times the copies."""
    tiers = _tiers(item, path)
    cap = item.get("cap_per_copy")
    if cap is not None:
        cap = _whole(cap, f"{path}.cap_per_copy", minimum=1, maximum=MAX_AMOUNT)
    runs = _segments(tiers, pages)
    raw_per_copy = sum(count * amount for count, amount in runs)
    per_copy = raw_per_copy if cap is None else min(raw_per_copy, cap)
    if pages <= _LISTED_PAGES:
        working = " + ".join(_figures(amount) for count, amount in runs for _ in range(count))
    else:
        working = " + ".join(f"{count} x {_figures(amount)}" for count, amount in runs)
    detail = f"{pages} trang x {copies} bản: {working}"
    if cap is not None and raw_per_copy > cap:
        detail += f" = {_figures(raw_per_copy)}, tối đa {_figures(cap)} mỗi bản"
    return per_copy * copies, detail


# One function per kind of fee item: (amount, detail shown on the receipt).
_PRICES = {"flat": _flat, "per_copy": _per_copy, "per_page": _per_page}


def compute_charges(
    fees: list[dict],
    *,
    pages: int = 1,
    copies: int = 1,
    conditions: frozenset[str] = frozenset(),
) -> list[ChargeLine]:
    """One :class:`ChargeLine` per fee item that is not an exemption, in the items' order.

    * ``flat``: the amount, whatever the pages and copies.
    * ``per_copy``: amount x copies.
    * ``per_page``: each page costs the tier in force for it (the tier with the greatest
      ``from_page`` not after the page); a copy costs the sum over its pages, at most
      ``cap_per_copy``; the line is that times ``copies``. Certified copy (2.000815): 2.000 đồng a
      page, 1.000 from page 3, at most 200.000 a copy, so 3 pages cost 5.000 and 198 pages or more
      cost 200.000 a copy.
    * ``exemption``: no line of its own. When its ``when`` is in ``conditions``, the item it
      ``waives`` costs 0 and its detail is ``"Miễn: <description>"`` (the first applicable
      exemption in the list gives the description).

    ``pages`` and ``copies`` are whole numbers from 1 to 10 000 (:class:`FeeError` on ``pages`` or
    ``copies`` otherwise). A fee item of an unexpected shape raises :class:`FeeError` naming it
    (``fees[i].field``); the catalogue validates items before they get here.
    """
    pages = _whole(pages, "pages", minimum=1, maximum=MAX_PAGES)
    copies = _whole(copies, "copies", minimum=1, maximum=MAX_COPIES)
    if isinstance(conditions, str) or not isinstance(conditions, Iterable):
        raise FeeError("conditions", f"must be a set of condition names, got {_describe(conditions)}")
    held = frozenset(conditions)
    if any(not isinstance(c, str) for c in held):
        raise FeeError("conditions", "every condition is a name (a text)")
    if not isinstance(fees, (list, tuple)):
        raise FeeError("fees", f"must be a list of fee items, got {_describe(fees)}")

    items: list[tuple[str, Mapping]] = []
    for i, item in enumerate(fees):
        path = f"fees[{i}]"
        if not isinstance(item, Mapping):
            raise FeeError(path, f"must be a mapping, got {_describe(item)}")
        kind = item.get("kind")
        if kind not in _FEE_KINDS:
            raise FeeError(f"{path}.kind", f"must be one of {', '.join(_FEE_KINDS)}, got {_describe(kind)}")
        if item.get("type") not in _FEE_TYPES:
            raise FeeError(f"{path}.type", f"must be phi or le_phi, got {_describe(item.get('type'))}")
        _fee_text(item, path, "id")
        items.append((path, item))

    waived = _waivers(items, held)
    lines: list[ChargeLine] = []
    for path, item in items:
        kind = item["kind"]
        if kind == "exemption":
            continue
        item_id, name = item["id"], _fee_text(item, path, "name")
        amount, detail = _PRICES[kind](item, path, pages, copies)
        if item_id in waived:
            amount, detail = 0, f"Miễn: {waived[item_id]}"
        lines.append(ChargeLine(item_id, item["type"], name, amount, detail))
    return lines


def _waivers(items: list[tuple[str, Mapping]], held: frozenset[str]) -> dict[str, str]:
    """Item id -> description of the first exemption that applies to it: an exemption waives its
    ``waives`` target, and only it, when its ``when`` is held."""
    chargeable = {item["id"] for _, item in items if item["kind"] != "exemption"}
    waived: dict[str, str] = {}
    for path, item in items:
        if item["kind"] != "exemption":
            continue
        target = _fee_text(item, path, "waives")
        when = _fee_text(item, path, "when")
        description = _fee_text(item, path, "description")
        if target not in chargeable:
            raise FeeError(f"{path}.waives", f"no fee item (other than an exemption) has the id {target!r}")
        if when in held:
            waived.setdefault(target, description)
    return waived


def totals(lines: Iterable[ChargeLine | Mapping]) -> dict[str, int]:
    """``{"phi", "le_phi", "total"}``: fees and charges kept apart. Takes :class:`ChargeLine` or
    their :meth:`ChargeLine.as_dict`."""
    out = {"phi": 0, "le_phi": 0}
    for i, line in enumerate(lines):
        kind, amount = (line.get("type"), line.get("amount")) if isinstance(line, Mapping) else (
            line.type, line.amount)
        if kind not in out:
            raise FeeError(f"lines[{i}].type", f"must be phi or le_phi, got {_describe(kind)}")
        out[kind] += _whole(amount, f"lines[{i}].amount", minimum=0, maximum=MAX_AMOUNT)
    out["total"] = out["phi"] + out["le_phi"]
    return out


# --------------------------------------------------------------------------------------------
# Amounts in words and in figures
# --------------------------------------------------------------------------------------------

_UNITS = ("không", "một", "hai", "ba", "bốn", "năm", "sáu", "bảy", "tám", "chín")


def _triple(n: int, full: bool) -> list[str]:
    """Words for 0 < n < 1000. ``full`` reads the hundreds even when zero (an inner group:
    "không trăm", "linh")."""
    hundreds, rest = divmod(n, 100)
    tens, units = divmod(rest, 10)
    words: list[str] = []
    if full or hundreds:
        words += [_UNITS[hundreds], "trăm"]
    if tens == 0:
        if units:
            if words:
                words.append("linh")
            words.append(_UNITS[units])
    elif tens == 1:
        words.append("mười")
        if units == 5:
            words.append("lăm")
        elif units:
            words.append(_UNITS[units])
    else:
        words += [_UNITS[tens], "mươi"]
        if units == 1:
            words.append("mốt")
        elif units == 4:
            words.append("tư")
        elif units == 5:
            words.append("lăm")
        elif units:
            words.append(_UNITS[units])
    return words


def _below_billion(n: int, leading: bool) -> list[str]:
    """Words for 0 < n < 10**9; ``leading`` when nothing is read before it."""
    words: list[str] = []
    for scale, group in (("triệu", n // 1_000_000), ("nghìn", n // 1000 % 1000), ("", n % 1000)):
        if group == 0:
            continue
        words += _triple(group, full=not (leading and not words))
        if scale:
            words.append(scale)
    return words


def vnd_in_words(amount: int) -> str:
    """An amount of đồng in Vietnamese words, first letter capitalised, as on a receipt:
    ``105000`` -> "Một trăm linh năm nghìn đồng"; ``1005000`` -> "Một triệu không trăm linh năm
    nghìn đồng". Groups of three digits read "mười"/"mươi", "mốt", "tư", "lăm" and "linh" by the
    usual rules; an all-zero group is not read; amounts of a thousand tỷ and more read the tỷ as a
    number ("Một nghìn tỷ đồng"). From 0 to :data:`MAX_AMOUNT`; negative -> :class:`FeeError`."""
    amount = _whole(amount, "amount", minimum=0, maximum=MAX_AMOUNT)
    if amount == 0:
        return "Không đồng"
    billions, rest = divmod(amount, 1_000_000_000)
    words: list[str] = []
    if billions:
        words += _below_billion(billions, leading=True) + ["tỷ"]
    if rest:
        words += _below_billion(rest, leading=not words)
    text = " ".join(words + ["đồng"])
    return text[0].upper() + text[1:]


def _figures(amount: int) -> str:
    return f"{amount:,}".replace(",", ".")


def format_vnd(amount: int) -> str:
    """``200000`` -> ``"200.000 đồng"`` (dots between thousands); negatives keep their sign
    (a cash difference)."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise FeeError("amount", f"must be a whole number, got {_describe(amount)}")
    return f"{_figures(amount)} đồng"


# --------------------------------------------------------------------------------------------
# Payment gateway callbacks
# --------------------------------------------------------------------------------------------


def canonical(params: Mapping[str, Any]) -> str:
    """``k1=v1&k2=v2``: every parameter but ``signature``, keys sorted, values as ``str``."""
    return "&".join(f"{key}={params[key]}" for key in sorted(params) if key != "signature")


def sign(params: Mapping[str, Any], secret: str) -> str:
    """HMAC-SHA256 of :func:`canonical` (UTF-8) with the merchant's secret, as lower-case hex."""
    if not isinstance(secret, str) or not secret:
        raise FeeError("secret", "a merchant secret is a non-empty text")
    return hmac.new(secret.encode("utf-8"), canonical(params).encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Callback:
    """An authenticated payment notice: ``code`` is the dossier code (the gateway's ``order``),
    ``paid_at`` the gateway's timestamp."""

    merchant: str
    transaction_id: str
    code: str
    amount: int
    currency: str
    paid_at: datetime


def _param_text(params: Mapping, key: str) -> str:
    value = params.get(key)
    if value is None:
        raise CallbackRejected("malformed", key, f"{key} is missing")
    if not isinstance(value, str) or not value.strip():
        raise CallbackRejected("malformed", key, f"{key} must be a non-empty text, got {_describe(value)}")
    return value


def _aware(value: object, field: str) -> datetime:
    if not isinstance(value, str):
        raise FeeError(field, f"must be an ISO 8601 date and time with its zone, got {_describe(value)}")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise FeeError(field, f"is not an ISO 8601 date and time: {value!r}") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise FeeError(field, f"has no time zone: {value!r}")
    return moment


def verify_callback(
    params: Mapping[str, Any],
    secrets: Mapping[str, str],
    now: datetime,
    max_age_seconds: int = 900,
) -> Callback:
    """Authenticate a gateway callback, then read it; :class:`CallbackRejected` otherwise.

    In order: no ``signature`` -> ``unsigned``; no ``merchant`` -> ``malformed``; a merchant without
    a secret -> ``unknown_merchant``; a signature that is not :func:`sign` of the parameters
    (compared in constant time) -> ``bad_signature``. Only then the content is read, so nothing
    about it is told to an unauthenticated sender: ``transaction_id`` (at most 100 characters),
    ``order`` (a dossier code), ``amount`` (a decimal string of whole đồng, no sign, no point),
    ``currency`` and ``timestamp`` (ISO 8601 with its zone) missing or ill-formed -> ``malformed``
    naming the field; a currency other than VND -> ``currency``; a timestamp older than
    ``max_age_seconds`` or more than 300 s ahead of ``now`` -> ``stale`` (a replay). A key or value
    holding ``&`` or ``=`` is ``malformed``: it would make :func:`canonical` ambiguous.

    ``now`` must be timezone-aware (a naive one is a programming error: TypeError).
    """
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise TypeError("now must be a timezone-aware datetime")
    if not isinstance(params, Mapping):
        raise CallbackRejected("malformed", "params", f"must be a mapping, got {_describe(params)}")
    signature = params.get("signature")
    if signature is None or signature == "":
        raise CallbackRejected("unsigned", "signature", "the callback carries no signature")
    merchant = _param_text(params, "merchant")
    secret = secrets.get(merchant)
    if not secret:
        raise CallbackRejected("unknown_merchant", "merchant", f"no secret for merchant {merchant!r}")
    for key, value in params.items():
        if key != "signature" and any(c in f"{key}{value}" for c in "&="):
            raise CallbackRejected("malformed", str(key), "keys and values may not contain & or =")
    if not isinstance(signature, str):
        raise CallbackRejected("bad_signature", "signature", "the signature is not a text")
    expected = sign(params, secret)
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8")):
        raise CallbackRejected("bad_signature", "signature", "the signature does not match the parameters")

    transaction_id = _param_text(params, "transaction_id").strip()
    if len(transaction_id) > _TRANSACTION_ID_MAX or any(c.isspace() for c in transaction_id):
        raise CallbackRejected("malformed", "transaction_id",
                               f"at most {_TRANSACTION_ID_MAX} characters, no spaces")
    order = _param_text(params, "order").strip()
    try:
        code = str(parse_dossier_code(order))
    except CodeError as exc:
        raise CallbackRejected("malformed", "order", str(exc)) from None
    raw_amount = _param_text(params, "amount")
    if not _CALLBACK_AMOUNT.match(raw_amount):
        raise CallbackRejected("malformed", "amount",
                               f"must be a positive whole number of đồng in digits, got {raw_amount!r}")
    amount = int(raw_amount)
    raw_currency = _param_text(params, "currency")
    try:
        currency = parse_currency(raw_currency)
    except FeeError:
        raise CallbackRejected("currency", "currency", f"only {CURRENCY} is accepted, got {raw_currency!r}") from None
    raw_timestamp = _param_text(params, "timestamp")
    try:
        paid_at = _aware(raw_timestamp, "timestamp")
    except FeeError as exc:
        raise CallbackRejected("malformed", "timestamp", exc.reason) from None
    if now - paid_at > timedelta(seconds=max_age_seconds):
        raise CallbackRejected("stale", "timestamp", f"older than {max_age_seconds} s: {raw_timestamp}")
    if paid_at - now > timedelta(seconds=FUTURE_TOLERANCE_SECONDS):
        raise CallbackRejected("stale", "timestamp",
                               f"more than {FUTURE_TOLERANCE_SECONDS} s in the future: {raw_timestamp}")
    return Callback(merchant, transaction_id, code, amount, currency, paid_at)


# --------------------------------------------------------------------------------------------
# Settlement file
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SettlementLine:
    """One line of the gateway's settlement file; ``line`` is its line number (the header is 1)."""

    line: int
    transaction_id: str
    code: str
    amount: int
    currency: str
    paid_at: datetime


def parse_settlement_csv(text: str) -> list[SettlementLine]:
    """Read the settlement file: header exactly ``transaction_id,order,amount,currency,paid_at``,
    then one transaction a line. The first error raises :class:`FeeError` on ``"line N"`` (the header
    is line 1): wrong column count, empty transaction_id or order, an amount that is not a positive
    whole number of đồng in digits, a currency other than VND, a paid_at that is not ISO 8601 with its
    zone, a transaction_id seen on an earlier line. Spaces around a value are ignored; blank lines
    are skipped; a leading byte-order mark is ignored. An empty file or one with only the header is
    a :class:`FeeError` on ``"file"``."""
    if not isinstance(text, str):
        raise FeeError("file", f"must be text, got {_describe(text)}")
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise FeeError("file", "the file is empty")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    lines: list[SettlementLine] = []
    seen: dict[str, int] = {}
    header_read = False
    try:
        for row in reader:
            number = reader.line_num
            if not header_read:
                if tuple(row) != SETTLEMENT_HEADER:
                    raise FeeError(f"line {number}", f"the header must be exactly {','.join(SETTLEMENT_HEADER)}, "
                                                     f"got {','.join(row)!r}")
                header_read = True
                continue
            if not any(cell.strip() for cell in row):
                continue
            lines.append(_settlement_row(number, row, seen))
    except csv.Error as exc:
        raise FeeError(f"line {reader.line_num}", f"not valid CSV: {exc}") from None
    if not lines:
        raise FeeError("file", "no transaction after the header")
    return lines


def _settlement_row(number: int, row: list[str], seen: dict[str, int]) -> SettlementLine:
    where = f"line {number}"
    if len(row) != len(SETTLEMENT_HEADER):
        raise FeeError(where, f"expected {len(SETTLEMENT_HEADER)} columns, got {len(row)}")
    transaction_id, order, raw_amount, raw_currency, raw_paid_at = (cell.strip() for cell in row)
    if not transaction_id:
        raise FeeError(where, "empty transaction_id")
    if not order:
        raise FeeError(where, "empty order")
    if raw_amount.startswith("-") and _DIGITS.match(raw_amount[1:]):
        raise FeeError(where, f"negative amount {raw_amount}")
    if not _DIGITS.match(raw_amount):
        raise FeeError(where, f"amount must be a whole number of đồng, got {raw_amount!r}")
    amount = int(raw_amount)
    if not 1 <= amount <= MAX_AMOUNT:
        raise FeeError(where, f"amount must be between 1 and {MAX_AMOUNT}, got {amount}")
    if raw_currency.upper() != CURRENCY:
        raise FeeError(where, f"currency must be {CURRENCY}, got {raw_currency!r}")
    try:
        paid_at = _aware(raw_paid_at, "paid_at")
    except FeeError as exc:
        raise FeeError(where, f"bad date: paid_at {exc.reason}") from None
    if transaction_id in seen:
        raise FeeError(where, f"duplicate transaction_id {transaction_id!r} (first on line {seen[transaction_id]})")
    seen[transaction_id] = number
    return SettlementLine(number, transaction_id, order, amount, CURRENCY, paid_at)


@dataclass(frozen=True)
class Recorded:
    """A payment we recorded (from a verified callback or at the desk)."""

    transaction_id: str
    code: str
    amount: int


def match_settlement(lines: list[SettlementLine], recorded: list[Recorded]) -> dict[str, Any]:
    """Reconcile the settlement file with our records, by transaction id.

    ``matched``: in both with the same order and amount (file order); ``missing``: recorded by us,
    absent from the file (our order); ``extra``: in the file, not recorded by us (file order);
    ``mismatched``: in both but differing, one entry per differing field (``order`` then
    ``amount``) with the file's and our value; ``balanced``: nothing missing, extra or mismatched.
    Two records with the same transaction id are a :class:`FeeError` on ``recorded``."""
    ours: dict[str, Recorded] = {}
    for record in recorded:
        if record.transaction_id in ours:
            raise FeeError("recorded", f"transaction {record.transaction_id!r} is recorded twice")
        ours[record.transaction_id] = record
    in_file = {line.transaction_id for line in lines}
    matched: list[str] = []
    extra: list[str] = []
    mismatched: list[dict[str, Any]] = []
    for line in lines:
        record = ours.get(line.transaction_id)
        if record is None:
            extra.append(line.transaction_id)
            continue
        differences = [
            {"transaction_id": line.transaction_id, "line": line.line, "field": field, "file": theirs,
             "recorded": mine}
            for field, theirs, mine in (("order", line.code, record.code), ("amount", line.amount, record.amount))
            if theirs != mine
        ]
        if differences:
            mismatched += differences
        else:
            matched.append(line.transaction_id)
    missing = [record.transaction_id for record in recorded if record.transaction_id not in in_file]
    return {
        "matched": matched,
        "missing": missing,
        "extra": extra,
        "mismatched": mismatched,
        "balanced": not (missing or extra or mismatched),
    }


# --------------------------------------------------------------------------------------------
# Cash and refunds
# --------------------------------------------------------------------------------------------


def cash_closing(expected: int, declared: int) -> dict[str, Any]:
    """A desk's cash for a day: what the receipts say (``expected``) against what the officer
    counted (``declared``); both whole đồng, zero or more. A negative difference is a shortfall."""
    expected = _whole(expected, "expected", minimum=0, maximum=MAX_AMOUNT)
    declared = _whole(declared, "declared", minimum=0, maximum=MAX_AMOUNT)
    difference = declared - expected
    return {"expected": expected, "declared": declared, "difference": difference, "balanced": difference == 0}


def refund_due(paid: int, refunded: int, *, reason: str, processing_started: bool) -> int:
    """What is owed back to the applicant, in đồng.

    * ``refused``: the dossier was refused, so no service was rendered: everything paid and not yet
      refunded.
    * ``withdrawn``: the applicant withdrew. Before processing started, the same as ``refused``;
      once it had started the service was rendered in part and the fee is kept: 0.

    ``paid`` and ``refunded`` are whole đồng, zero or more, with ``refunded <= paid``; any other
    reason is a :class:`FeeError` on ``reason``.
    """
    paid = _whole(paid, "paid", minimum=0, maximum=MAX_AMOUNT)
    refunded = _whole(refunded, "refunded", minimum=0, maximum=MAX_AMOUNT)
    if refunded > paid:
        raise FeeError("refunded", f"{refunded} refunded is more than the {paid} paid")
    if not isinstance(processing_started, bool):
        raise FeeError("processing_started", f"must be true or false, got {_describe(processing_started)}")
    if reason == "refused":
        return paid - refunded
    if reason == "withdrawn":
        return 0 if processing_started else paid - refunded
    raise FeeError("reason", f"must be one of {', '.join(REFUND_REASONS)}, got {_describe(reason)}")
