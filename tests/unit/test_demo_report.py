"""The demo's report: figures from the services' answers, II.06a as text, the same files twice."""
from apps.demo import report

VIEWS = [
    {"unit": "000.05.20.H29", "state": "processed", "received_at": "2026-11-23T08:00:00+07:00",
     "resolved_at": "2026-11-23T10:30:00+07:00", "overdue_at": None, "overdue_agency": None, "apology": None},
    {"unit": "000.05.20.H29", "state": "processed", "received_at": "2026-11-23T09:00:00+07:00",
     "resolved_at": "2026-11-25T09:00:00+07:00", "overdue_at": "2026-11-25T00:00:00+07:00",
     "overdue_agency": "000.05.20.H29", "apology": {"agency": "000.05.20.H29"}},
    {"unit": "000.00.20.H29", "state": "running", "received_at": "2026-11-23T09:00:00+07:00",
     "resolved_at": None, "overdue_at": "2026-11-26T00:00:00+07:00", "overdue_agency": "000.42.20.H29",
     "apology": None},
    {"unit": "000.00.20.H29", "state": "stopped", "received_at": "2026-11-23T09:00:00+07:00",
     "resolved_at": "2026-11-23T15:00:00+07:00", "overdue_at": None, "overdue_agency": None, "apology": None},
]


def line(**values):
    base = {key: 0 for key, _ in report.II06A_COLUMNS}
    base.update(values)
    base["received"] = base["online"] + base["in_person_or_post"] + base["carried_over"]
    base["resolved"] = base["early"] + base["on_time"] + base["late"]
    base["pending"] = base["within_deadline"] + base["overdue"]
    base["on_time_rate"] = (base["early"] + base["on_time"]) / base["resolved"] if base["resolved"] else None
    base["overdue_rate"] = (base["late"] + base["overdue"]) / base["received"] if base["received"] else None
    base["online_rate"] = base["online"] / base["received"] if base["received"] else None
    base["label"], base["balanced"] = "Cộng", True
    return base


II06A = {"from": "2026-11-23", "to": "2026-11-27", "units": [
    {"unit": "000.00.20.H29", "fields": [], "total": line(online=2, in_person_or_post=3, early=1, on_time=1,
                                                            within_deadline=2, overdue=1)},
    {"unit": "000.05.20.H29", "fields": [], "total": line(in_person_or_post=4, early=2, late=1, within_deadline=1)},
], "total": line(online=2, in_person_or_post=7, early=3, on_time=1, late=1, within_deadline=3, overdue=1)}


def test_processing_hours_count_processed_dossiers_per_unit():
    assert report.processing_hours(VIEWS) == {"000.05.20.H29": [2.5, 48.0]}


def test_overdue_is_counted_against_the_agency_at_fault_with_its_apologies():
    assert report.overdue_by_agency(VIEWS) == {"000.05.20.H29": {"overdue": 1, "apologies": 1},
                                               "000.42.20.H29": {"overdue": 1, "apologies": 0}}


def test_fees_by_unit_sum_charges_and_keep_every_method():
    rows = [{"unit": "000.05.20.H29", "charged": {"phi": 5000, "le_phi": 10000}, "collected": {"cash": 15000},
             "refunded": 0, "outstanding": 0}]
    assert report.fees_by_unit(rows) == {"000.05.20.H29": {"cash": 15000, "transfer": 0, "online": 0,
                                                           "charged": 15000, "refunded": 0, "outstanding": 0}}


def test_the_balance_check_names_a_unit_that_does_not_balance():
    assert report.balanced(II06A) == []
    broken = {**II06A, "units": [{**II06A["units"][0], "total": {**II06A["units"][0]["total"], "pending": 0}}]}
    assert report.balanced(broken) == ["000.00.20.H29"]


def test_the_ii06a_table_has_a_line_per_unit_and_the_total():
    text = report.ii06a_table(II06A, {"000.00.20.H29": "Quận Gò Vấp", "000.05.20.H29": "Phường 5"})
    lines = text.splitlines()
    assert lines[0] == "Mẫu II.06a — 2026-11-23 … 2026-11-27"
    district = next(l for l in lines if l.startswith("Quận Gò Vấp"))
    assert district.split()[3:14] == ["5", "2", "3", "0", "2", "1", "1", "0", "3", "2", "1"]
    assert district.endswith("đúng")
    assert next(l for l in lines if l.startswith("Tổng cộng")).split()[2] == "9"


def test_the_report_folder_is_written_the_same_twice(tmp_path):
    data = {"from": "2026-11-23", "to": "2026-11-27", "seed": 1, "scale": 1.0, "days": 5,
            "units": ["000.00.20.H29", "000.05.20.H29"], "days_off": [{"date": "2026-11-24", "name": "Lễ"}],
            "plan": {"arrivals": 10}, "activity": {"guidance_slips": 1, "submitted_online": 2, "desk_refusals": 0,
                                                   "received": 9, "supplements": 1, "obligations": 0,
                                                   "agency_refusals": 0, "withdrawals": 0, "overdue_detected": 2,
                                                   "apologies": 1, "returned": 4,
                                                   "payments": {"cash": 3, "transfer": 1, "online": 1}},
            "ii06a": II06A, "processing_hours": report.processing_hours(VIEWS),
            "on_time_rate": {}, "overdue_by_agency": report.overdue_by_agency(VIEWS),
            "fees": {"000.05.20.H29": {"cash": 15000, "transfer": 0, "online": 5000, "charged": 20000,
                                       "refunded": 0, "outstanding": 0}}}
    names = {"000.00.20.H29": "Quận Gò Vấp", "000.05.20.H29": "Phường 5"}
    first = report.write(tmp_path / "a", data, names)
    second = report.write(tmp_path / "b", data, names)
    assert [p.name for p in first] == [p.name for p in second]
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes(), a.name
        assert a.stat().st_size > 0
    page = (tmp_path / "a" / "index.html").read_text(encoding="utf-8")
    assert "Mẫu II.06a" in page and "Phường 5" in page and "processing-times.png" in page
    assert (tmp_path / "a" / "processing-times.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
