"""Properties of the fee rules and of the Account aggregate, with hypothesis.

The fee formula (``domain.compute_charges``): monotone in pages, capped per copy, linear in copies,
phí + lệ phí = total, an exemption waives only its target. The account (through the handlers and the
in-memory unit of work): refunds never exceed what was paid, and receipt numbers are gapless per desk
and year for any sequence of payments, refused payments, cancellations and refunds, a cancelled
receipt keeping its number."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import example, given, settings
from hypothesis import strategies as st

from motcua.contracts.actors import Actor
from motcua.contracts.events import Envelope
from motcua.contracts.refusals import Refusal
from services.fees import domain
from services.fees.handlers import CancelReceipt, Pay, handle
from tests.fakes.fees_uow import FakeUnitOfWork

DESK = "000.05.20.H29"
OFFICIAL = Actor("Trần Văn Bình", DESK)
NOW = datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc)

amounts = st.integers(min_value=0, max_value=500_000)
pages = st.integers(min_value=1, max_value=domain.MAX_PAGES)
copies = st.integers(min_value=1, max_value=domain.MAX_COPIES)


@st.composite
def per_page_items(draw, cap=st.none() | st.integers(min_value=1, max_value=2_000_000)):
    starts = draw(st.lists(st.integers(min_value=2, max_value=300), max_size=4, unique=True))
    tiers = [{"from_page": start, "amount": draw(amounts)} for start in [1, *sorted(starts)]]
    item = {"id": "trang", "type": draw(st.sampled_from(["phi", "le_phi"])), "name": "Theo trang",
            "kind": "per_page", "tiers": tiers}
    limit = draw(cap)
    if limit is not None:
        item["cap_per_copy"] = limit
    return item


@st.composite
def fee_lists(draw):
    """A procedure's items: some priced, and exemptions each waiving one of them on a condition."""
    priced = []
    for i in range(draw(st.integers(min_value=1, max_value=5))):
        kind = draw(st.sampled_from(["flat", "per_copy", "per_page"]))
        item = draw(per_page_items()) if kind == "per_page" else {
            "kind": kind, "type": draw(st.sampled_from(["phi", "le_phi"])), "name": kind, "amount": draw(amounts)}
        priced.append({**item, "id": f"item-{i}", "name": f"Khoản {i}"})
    exemptions = [{"id": f"mien-{j}", "kind": "exemption", "type": target["type"], "waives": target["id"],
                   "when": draw(st.sampled_from(["poor_household", "child_under_6"])), "description": f"Miễn {j}"}
                  for j, target in enumerate(draw(st.lists(st.sampled_from(priced), max_size=3)))]
    return priced + exemptions


def total(fees, **kwargs) -> int:
    return domain.totals(domain.compute_charges(fees, **kwargs))["total"]


# --- the fee formula ---------------------------------------------------------------------------

@given(per_page_items(), pages, pages, copies)
def test_more_pages_never_cost_less(item, a, b, n):
    low, high = sorted((a, b))
    assert total([item], pages=low, copies=n) <= total([item], pages=high, copies=n)


@given(per_page_items(cap=st.integers(min_value=1, max_value=2_000_000)), pages, copies)
def test_a_copy_costs_at_most_its_cap(item, p, n):
    assert total([item], pages=p, copies=n) <= item["cap_per_copy"] * n


@given(per_page_items(cap=st.none()), st.integers(min_value=1, max_value=300))
def test_without_a_cap_a_copy_costs_each_page_at_its_tier(item, p):
    tiers = sorted((t["from_page"], t["amount"]) for t in item["tiers"])
    # the tier in force for a page: the one with the greatest from_page not after it
    expected = sum([amount for start, amount in tiers if start <= page][-1] for page in range(1, p + 1))
    assert total([item], pages=p, copies=1) == expected


@given(fee_lists(), pages, copies, st.frozensets(st.sampled_from(["poor_household", "child_under_6"])))
def test_the_charge_is_linear_in_copies_except_flat_items(fees, p, n, held):
    one = domain.compute_charges(fees, pages=p, copies=1, conditions=held)
    many = domain.compute_charges(fees, pages=p, copies=n, conditions=held)
    kinds = {item["id"]: item["kind"] for item in fees}
    for a, b in zip(one, many):
        assert b.amount == (a.amount if kinds[a.item_id] == "flat" else a.amount * n)


@given(fee_lists(), pages, copies, st.frozensets(st.sampled_from(["poor_household", "child_under_6"])))
def test_phi_and_le_phi_add_up_to_the_total(fees, p, n, held):
    lines = domain.compute_charges(fees, pages=p, copies=n, conditions=held)
    sums = domain.totals(lines)
    assert sums["phi"] + sums["le_phi"] == sums["total"] == sum(line.amount for line in lines)
    assert sums["phi"] == sum(line.amount for line in lines if line.type == "phi")


@given(fee_lists(), pages, copies, st.sampled_from(["poor_household", "child_under_6"]))
def test_an_exemption_waives_only_its_target(fees, p, n, condition):
    without = {line.item_id: line.amount for line in domain.compute_charges(fees, pages=p, copies=n)}
    held = domain.compute_charges(fees, pages=p, copies=n, conditions=frozenset({condition}))
    targets = {item["waives"] for item in fees if item["kind"] == "exemption" and item["when"] == condition}
    for line in held:
        if line.item_id in targets:
            assert line.amount == 0 and line.detail.startswith("Miễn: ")
        else:
            assert line.amount == without[line.item_id]


# --- the account -------------------------------------------------------------------------------

PROCEDURE = {"name": "Chứng thực bản sao", "fees": [
    {"id": "chung-thuc", "type": "phi", "name": "Phí chứng thực", "kind": "per_page",
     "tiers": [{"from_page": 1, "amount": 2000}, {"from_page": 3, "amount": 1000}], "cap_per_copy": 200000}]}
CODES = [f"{DESK}-260302-000{i}" for i in (1, 2, 3)]


def receive(uow, code, pages):
    handle(Envelope(type="dossier.received", unit=DESK, payload={
        "code": code, "procedure_code": "2.000815", "procedure_version": 3,
        "received_at": "2026-03-02T09:00:00+07:00", "applicant": {"name": "Nguyễn Thị An"},
        "quantities": {"pages": pages, "copies": 1}}), uow)


steps = st.one_of(
    st.tuples(st.just("cash"), st.sampled_from(CODES), st.integers(min_value=1, max_value=12000)),
    st.tuples(st.just("transfer"), st.sampled_from(CODES), st.integers(min_value=1, max_value=12000),
              st.sampled_from(["VCB-1", "VCB-2", "VCB-3"])),
    st.tuples(st.just("cancel"), st.integers(min_value=1, max_value=6)),
    st.tuples(st.just("start"), st.sampled_from(CODES)),
    st.tuples(st.sampled_from(["dossier.refused", "dossier.withdrawn"]), st.sampled_from(CODES)),
)


def play(uow, step) -> None:
    """One step, in a transaction as the service runs it; a refusal is a normal outcome (overpayment,
    a closed dossier, a cancelled receipt, a reference of another dossier) and rolls back."""
    uow.now += timedelta(minutes=1)
    kind = step[0]
    if kind == "cash":
        message = Pay(OFFICIAL, step[1], {"method": "cash", "amount": step[2]})
    elif kind == "transfer":
        message = Pay(OFFICIAL, step[1], {"method": "transfer", "amount": step[2], "reference": step[3]})
    elif kind == "cancel":
        message = CancelReceipt(OFFICIAL, 2026, step[1], {"reason": "nhầm"})
    elif kind == "start":
        message = Envelope(type="dossier.step_started", unit=DESK, payload={"code": step[1]})
    else:
        message = Envelope(type=kind, unit=DESK, payload={"code": step[1]})
    try:
        uow.run(handle, message)
    except Refusal:
        pass


@settings(max_examples=300, deadline=None)
# paid, refunded, then its receipt cancelled: more refunded than paid unless the cancellation is refused
@example([3, 1, 1], [("cash", CODES[0], 5000), ("dossier.refused", CODES[0]), ("cancel", 1)])
@given(st.lists(st.integers(min_value=1, max_value=12), min_size=3, max_size=3), st.lists(steps, max_size=30))
def test_receipt_numbers_are_gapless_and_refunds_never_exceed_what_was_paid(page_counts, script):
    uow = FakeUnitOfWork(now=NOW, procedures={("2.000815", 3): PROCEDURE})
    for code, count in zip(CODES, page_counts):
        receive(uow, code, count)
    numbers_seen: dict[int, str] = {}          # number -> the code it was first issued for
    for step in script:
        play(uow, step)
        receipts = [r for a in uow.accounts.stored.values() for r in a.receipts]
        numbers = sorted(r.number for r in receipts)
        assert numbers == list(range(1, len(numbers) + 1))          # gapless, each number once
        for r in receipts:                                           # a number never moves, even cancelled
            assert numbers_seen.setdefault(r.number, r.code) == r.code
        for account in uow.accounts.stored.values():
            assert 0 <= account.refunded <= account.paid <= account.charged
            assert account.outstanding >= 0
    issued = [e.payload["receipt_number"] for e in uow.outbox if e.type in ("fees.paid", "fees.refunded")]
    assert issued == [f"{n:07d}/2026" for n in range(1, len(issued) + 1)]
    assert uow.counters.get((DESK, 2026), 0) == len(issued)
