"""The official forms of routing (services.routing.forms): Mẫu 04, the apology and new date, and
Mẫu 05, the process-control slip. Vietnamese text kept intact in the PDF (extracted with pypdf),
validation errors naming the field, escaping, pagination, deterministic output. No database, no
broker."""
from __future__ import annotations

import ast
import copy
import io
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pypdf
import pytest

from services.routing import forms

VN = timezone(timedelta(hours=7))
CODE = "000.00.20.H29-260302-0007"
PROCEDURE = {"code": "1.013831",
             "name": "Đăng ký biến động quyền sử dụng đất, quyền sở hữu tài sản gắn liền với đất"}
TAX = "Chi cục Thuế quận Gò Vấp"
LAND = "Chi nhánh Văn phòng Đăng ký đất đai quận Gò Vấp"
DESK = "Bộ phận tiếp nhận và trả kết quả"

APOLOGY = {
    "unit": {"code": "000.42.20.H29", "name": TAX, "short_name": "Chi cục Thuế",
             "parent_name": "Ủy ban nhân dân quận Gò Vấp", "address": None},
    "code": CODE, "addressee": "Nguyễn Thị Lan", "received_at": "2026-03-02T09:00:00+07:00",
    "procedure": PROCEDURE, "original_due_date": "2026-03-16", "new_date": "2026-03-20",
    "reason": "Cần xác minh thêm nghĩa vụ tài chính về thuế sử dụng đất phi nông nghiệp.",
    "official": "Phạm Văn Cường", "issued_at": "2026-03-17T10:00:00+07:00",
}
CONTROL = {
    "unit": {"code": "000.00.20.H29", "name": "Ủy ban nhân dân quận Gò Vấp", "short_name": "Quận Gò Vấp",
             "parent_name": None, "address": None},
    "code": CODE, "applicant": "Nguyễn Thị Lan", "procedure": PROCEDURE,
    "received_at": "2026-03-02T09:00:00+07:00", "due_date": "2026-03-16",
    "rows": [
        {"from": DESK, "to": LAND, "at": "2026-03-02T09:05:00+07:00", "giver": "Trần Văn Bình",
         "receiver": "Lê Văn Đức", "result": "early", "notes": ""},
        {"from": LAND, "to": TAX, "at": "2026-03-06T14:30:00+07:00", "giver": "Lê Văn Đức",
         "receiver": "Hoàng Thị Mai", "result": "late", "notes": "Chuyển thông tin xác định nghĩa vụ tài chính"},
        {"from": TAX, "to": LAND, "at": "2026-03-18T08:00:00+07:00", "giver": "Hoàng Thị Mai",
         "receiver": None, "result": None, "notes": "Đã gửi Phiếu xin lỗi (Mẫu 04)"},
    ],
}
SAMPLES = {"mau-04": APOLOGY, "mau-05": CONTROL}


def sample(form: str) -> dict:
    return copy.deepcopy(SAMPLES[form])


def flat(text: str) -> str:
    """Extracted text with every run of whitespace (line breaks of wrapped cells) as one space."""
    return " ".join(text.split())


def pages_of(data: bytes) -> list[str]:
    return [page.extract_text() for page in pypdf.PdfReader(io.BytesIO(data)).pages]


@pytest.fixture(scope="module")
def pdfs() -> dict[str, bytes]:
    return {form: forms.render_pdf(form, sample(form)) for form in forms.FORMS}


@pytest.fixture(scope="module")
def texts(pdfs) -> dict[str, str]:
    return {form: flat("\n".join(pages_of(data))) for form, data in pdfs.items()}


# --- titles and the module ---------------------------------------------------------------------


def test_the_two_forms_and_their_titles():
    assert forms.FORMS == ("mau-04", "mau-05")
    assert forms.form_title("mau-04") == "Mẫu 04 – Phiếu xin lỗi và hẹn lại ngày trả kết quả"
    assert forms.form_title("mau-05") == "Mẫu 05 – Phiếu kiểm soát quá trình giải quyết hồ sơ"
    for call in (forms.form_title, lambda f: forms.render_html(f, {}), lambda f: forms.render_pdf(f, {})):
        with pytest.raises(forms.FormError, match="unknown form 'mau-01'"):
            call("mau-01")  # the desk's form is not routing's


def test_the_errors_are_the_shared_ones():
    from motcua.runtime import documents
    assert forms.FormError is documents.FormError and issubclass(forms.FormError, ValueError)
    assert forms.FormFontError is documents.FormFontError


def test_routing_forms_import_no_other_service():
    tree = ast.parse(Path(forms.__file__).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not [name for name in imported if name.startswith("services.") and not name.startswith("services.routing")]
    assert "motcua.runtime.documents" in imported


# --- Mẫu 04: the apology -------------------------------------------------------------------------


def test_apology_pdf_keeps_the_vietnamese_text(texts):
    text = texts["mau-04"]
    for expected in [
        "UBND QUẬN GÒ VẤP", "CHI CỤC THUẾ QUẬN GÒ VẤP",
        "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Độc lập - Tự do - Hạnh phúc",
        "Gò Vấp, ngày 17 tháng 03 năm 2026",
        "PHIẾU XIN LỖI VÀ HẸN LẠI NGÀY TRẢ KẾT QUẢ",
        "Kính gửi: Nguyễn Thị Lan",
        "Ngày 02/03/2026, Chi cục Thuế quận Gò Vấp tiếp nhận giải quyết hồ sơ của Ông/Bà",
        f"{PROCEDURE['name']} (mã thủ tục 1.013831)", f"mã hồ sơ: {CODE}",
        "hẹn trả kết quả ngày 16/03/2026",
        "chưa trả kết quả giải quyết hồ sơ cho Ông/Bà đúng thời hạn",
        "Lý do: Cần xác minh thêm nghĩa vụ tài chính về thuế sử dụng đất phi nông nghiệp.",
        "Chi cục Thuế quận Gò Vấp xin lỗi Ông/Bà vì sự chậm trễ này và hẹn lại ngày trả kết quả là "
        "ngày 20/03/2026",
        "THỦ TRƯỞNG CƠ QUAN", "Phạm Văn Cường",
    ]:
        assert expected in text, expected
    # the new date once, after the original one
    assert text.count("20/03/2026") == 1 and text.index("16/03/2026") < text.index("20/03/2026")


def test_apology_html_says_the_same(texts):
    html = forms.render_html("mau-04", sample("mau-04"))
    plain = flat(re.sub(r"<[^>]+>", "", html))
    for expected in ["PHIẾU XIN LỖI VÀ HẸN LẠI NGÀY TRẢ KẾT QUẢ", "Kính gửi: Nguyễn Thị Lan",
                     "xin lỗi Ông/Bà vì sự chậm trễ này và hẹn lại ngày trả kết quả là ngày 20/03/2026",
                     "hẹn trả kết quả ngày 16/03/2026", f"mã hồ sơ: {CODE}", "Gò Vấp, ngày 17 tháng 03 năm 2026",
                     "UBND QUẬN GÒ VẤP", "CHI CỤC THUẾ QUẬN GÒ VẤP", "Phạm Văn Cường"]:
        assert expected in plain, expected
    assert "<strong>ngày 20/03/2026</strong>" in html
    assert f"<title>{forms.form_title('mau-04')} – {CODE}</title>" in html


def test_apology_optional_number_signer_and_place():
    data = sample("mau-04")
    data.update(number="15/CCT-TTHT", signer_title="KT. CHI CỤC TRƯỞNG", place="Thành phố Hồ Chí Minh")
    data["unit"]["parent_name"] = None
    text = flat("\n".join(pages_of(forms.render_pdf("mau-04", data))))
    assert "Số: 15/CCT-TTHT" in text and "KT. CHI CỤC TRƯỞNG" in text and "THỦ TRƯỞNG" not in text
    assert "Thành phố Hồ Chí Minh, ngày 17 tháng 03 năm 2026" in text
    assert "UBND" not in text


def test_apology_dates_are_on_the_vietnamese_clock():
    data = sample("mau-04")
    data["issued_at"] = "2026-03-17T17:30:00+00:00"   # 00:30 on the 18th in Gò Vấp
    data["received_at"] = "2026-03-01T18:00:00Z"      # 01:00 on the 2nd
    text = flat("\n".join(pages_of(forms.render_pdf("mau-04", data))))
    assert "Gò Vấp, ngày 18 tháng 03 năm 2026" in text
    assert "Ngày 02/03/2026, Chi cục Thuế" in text
    created = pypdf.PdfReader(io.BytesIO(forms.render_pdf("mau-04", data))).metadata.creation_date
    assert created == datetime(2026, 3, 18, 0, 30, tzinfo=VN)


def test_a_one_page_letter_whatever_the_reason_length():
    data = sample("mau-04")
    data["reason"] = "Dòng một của lý do.\nDòng hai: chờ văn bản trả lời của cơ quan phối hợp."
    reader = pypdf.PdfReader(io.BytesIO(forms.render_pdf("mau-04", data)))
    assert len(reader.pages) == 1
    text = flat(reader.pages[0].extract_text())
    assert "Lý do: Dòng một của lý do. Dòng hai: chờ văn bản trả lời của cơ quan phối hợp." in text
    assert text.index("Dòng hai") < text.index("Phạm Văn Cường")


# --- Mẫu 05: the process-control slip -----------------------------------------------------------


def test_control_slip_pdf_keeps_the_vietnamese_text(texts):
    text = texts["mau-05"]
    for expected in [
        "UBND QUẬN GÒ VẤP", "BỘ PHẬN TIẾP NHẬN VÀ TRẢ KẾT QUẢ", "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM",
        "PHIẾU KIỂM SOÁT QUÁ TRÌNH GIẢI QUYẾT HỒ SƠ",
        f"Mã hồ sơ: {CODE}", "Tổ chức, cá nhân nộp hồ sơ: Nguyễn Thị Lan",
        f"Thủ tục hành chính: {PROCEDURE['name']} (mã thủ tục 1.013831)",
        "Thời gian nhận hồ sơ: 09 giờ 00 phút, ngày 02/03/2026",
        "Thời gian hẹn trả kết quả: ngày 16/03/2026",
        "TÊN CƠ QUAN", "THỜI GIAN GIAO, NHẬN HỒ SƠ", "KẾT QUẢ GIẢI QUYẾT HỒ SƠ", "GHI CHÚ",
        "09 giờ 05 phút, ngày 02/03/2026", "14 giờ 30 phút, ngày 06/03/2026", "08 giờ 00 phút, ngày 18/03/2026",
        "Chuyển thông tin xác định nghĩa vụ tài chính", "Đã gửi Phiếu xin lỗi (Mẫu 04)",
    ]:
        assert expected in text, expected
    # every row's agencies, giver and receiver, in order
    expected_rows = [f"1. Giao: {row['from']} 2. Nhận: {row['to']}" for row in CONTROL["rows"]]
    positions = [text.index(row) for row in expected_rows]
    assert positions == sorted(positions)
    for row in CONTROL["rows"]:
        assert f"Người giao: {row['giver']} Người nhận: {row['receiver'] or ''}".strip() in text


def test_control_slip_results_are_labelled(texts):
    text = texts["mau-05"]
    # The heading names the three results once; then one early and one late row, one not yet known.
    heading = "(Trước hạn/ Đúng hạn/ Quá hạn)"
    assert heading in text
    rest = text.replace(heading, "")
    assert rest.count("Trước hạn") == 1 and rest.count("Quá hạn") == 1 and rest.count("Đúng hạn") == 0
    assert rest.index("Lê Văn Đức Trước hạn") < rest.index("Hoàng Thị Mai Quá hạn")
    data = sample("mau-05")
    data["rows"][1]["result"] = "on_time"
    rest = flat("\n".join(pages_of(forms.render_pdf("mau-05", data)))).replace(heading, "")
    assert rest.count("Quá hạn") == 0 and "Hoàng Thị Mai Đúng hạn" in rest


def test_control_slip_html(texts):
    html = forms.render_html("mau-05", sample("mau-05"))
    assert re.search(r"thead\s*\{\s*display:\s*table-header-group", html)
    assert html.count("<thead>") == 1
    body = re.search(r'<table class="grid control">.*?<tbody>(.*?)</tbody>', html, re.S).group(1)
    assert body.count("<tr>") == 3  # one per hand-over
    cells = re.findall(r'<td class="c result( [a-z_]+)?">([^<]*)</td>', html)
    assert cells == [(" early", "Trước hạn"), (" late", "Quá hạn"), ("", "")]
    for row in CONTROL["rows"]:
        assert f"1. Giao: {row['from']}" in html and f"2. Nhận: {row['to']}" in html
        assert f"Người giao: {row['giver']}" in html
    assert "Người nhận: Lê Văn Đức" in html and f"Mã hồ sơ: <span class=\"value\">{CODE}</span>" in html


def test_control_slip_paginates_with_the_heading_repeated():
    data = sample("mau-05")
    agencies = [DESK, LAND, TAX, "Phòng Tài nguyên và Môi trường quận Gò Vấp", "Ủy ban nhân dân Phường 5"]
    data["rows"] = [{"from": agencies[i % 5], "to": agencies[(i + 1) % 5],
                     "at": f"2026-03-{2 + i // 4:02d}T{9 + i % 4:02d}:15:00+07:00", "giver": f"Cán bộ giao {i}",
                     "receiver": f"Cán bộ nhận {i}", "result": ("early", "on_time", "late")[i % 3],
                     "notes": f"Lần giao {i}"} for i in range(40)]
    pages = pages_of(forms.render_pdf("mau-05", data))
    assert len(pages) >= 3
    assert [page.count("TÊN CƠ QUAN") for page in pages] == [1] * len(pages)
    text = flat("\n".join(pages))
    positions = [text.index(f"Người giao: Cán bộ giao {i} ") for i in range(40)]
    assert positions == sorted(positions)
    for i in range(40):  # a row is never split across pages
        holders = [n for n, page in enumerate(pages) if f"Cán bộ giao {i}\n" in page]
        assert len(holders) == 1 and f"Cán bộ nhận {i}\n" in pages[holders[0]], i
    assert text.count("Quá hạn") == len(pages) + 13  # every heading, and rows 2, 5, ..., 38


def test_an_empty_control_slip_renders():
    data = sample("mau-05")
    data["rows"] = []
    text = flat(pypdf.PdfReader(io.BytesIO(forms.render_pdf("mau-05", data))).pages[0].extract_text())
    assert "TÊN CƠ QUAN" in text and "(Chưa có lần giao, nhận hồ sơ nào.)" in text
    assert "(Chưa có lần giao, nhận hồ sơ nào.)" in forms.render_html("mau-05", data)


# --- both: page, metadata, determinism ----------------------------------------------------------


@pytest.mark.parametrize("form", forms.FORMS)
def test_pdf_page_size_and_metadata(pdfs, form):
    reader = pypdf.PdfReader(io.BytesIO(pdfs[form]))
    assert len(reader.pages) == 1
    page = reader.pages[0]
    assert (float(page.mediabox.width), float(page.mediabox.height)) == pytest.approx((595.28, 841.89), abs=0.5)
    assert reader.metadata.title == f"{forms.form_title(form)} – {CODE}"


@pytest.mark.parametrize("form, created", [
    ("mau-04", datetime(2026, 3, 17, 10, 0, tzinfo=VN)),   # issued_at
    ("mau-05", datetime(2026, 3, 18, 8, 0, tzinfo=VN)),    # the last hand-over
])
def test_pdf_output_is_deterministic(pdfs, form, created):
    assert pdfs[form] == forms.render_pdf(form, sample(form))
    assert pypdf.PdfReader(io.BytesIO(pdfs[form])).metadata.creation_date == created


def test_different_data_gives_a_different_pdf(pdfs):
    data = sample("mau-04")
    data["new_date"] = "2026-03-21"
    other = forms.render_pdf("mau-04", data)
    assert other != pdfs["mau-04"] and "ngày 21/03/2026" in flat(pages_of(other)[0])


@pytest.mark.parametrize("form", forms.FORMS)
def test_html_is_a_printable_a4_page(form):
    html = forms.render_html(form, sample(form))
    assert html.startswith("<!doctype html>") and '<html lang="vi">' in html
    assert re.search(r"@page\s*\{\s*size: A4;", html) and "@media print" in html
    assert "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM" in html and "UBND QUẬN GÒ VẤP" in html


# --- text: escaping, NFC ---------------------------------------------------------------------------


def test_html_escapes_everything_from_the_data():
    apology = sample("mau-04")
    apology["addressee"] = "<script>alert('x')</script>"
    apology["reason"] = 'Thiếu "A" & <b>B</b>'
    apology["unit"]["name"] = "<i>Chi cục</i>"
    html = forms.render_html("mau-04", apology)
    assert "<script>" not in html and "<b>B</b>" not in html and "<i>" not in html
    assert "Kính gửi: &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "Thiếu &#34;A&#34; &amp; &lt;b&gt;B&lt;/b&gt;" in html

    control = sample("mau-05")
    control["rows"][0]["to"] = "<img src=x onerror=alert(1)>"
    control["rows"][1]["notes"] = "</td><script>x</script>"
    control["applicant"] = "A & <u>B</u>"
    html = forms.render_html("mau-05", control)
    assert "<img" not in html and "<script>" not in html and "<u>" not in html
    assert "2. Nhận: &lt;img src=x onerror=alert(1)&gt;" in html


def test_pdf_prints_markup_as_plain_text():
    data = sample("mau-05")
    data["rows"][0]["notes"] = "<b>gấp</b>"
    assert "<b>gấp</b>" in flat(pages_of(forms.render_pdf("mau-05", data))[0])


def test_decomposed_unicode_is_normalised():
    apology = sample("mau-04")
    apology["addressee"] = "Nguye\u0302\u0303n Thi\u0323 Lan"   # NFD
    assert "Kính gửi: Nguyễn Thị Lan" in flat(pages_of(forms.render_pdf("mau-04", apology))[0])
    assert "Kính gửi: Nguyễn Thị Lan" in forms.render_html("mau-04", apology)
    control = sample("mau-05")
    control["rows"][0]["to"] = "Chi nha\u0301nh Va\u0306n pho\u0300ng"
    assert "2. Nhận: Chi nhánh Văn phòng" in forms.render_html("mau-05", control)


# --- validation ----------------------------------------------------------------------------------


def _without(data: dict, path: str) -> dict:
    *parents, last = path.split(".")
    target = data
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    del target[last]
    return data


@pytest.mark.parametrize("form, path, shown", [
    ("mau-04", "addressee", "addressee"),
    ("mau-04", "new_date", "new_date"),
    ("mau-04", "original_due_date", "original_due_date"),
    ("mau-04", "reason", "reason"),
    ("mau-04", "official", "official"),
    ("mau-04", "issued_at", "issued_at"),
    ("mau-04", "unit.name", "unit.name"),
    ("mau-04", "procedure.code", "procedure.code"),
    ("mau-05", "code", "code"),
    ("mau-05", "applicant", "applicant"),
    ("mau-05", "due_date", "due_date"),
    ("mau-05", "rows", "rows"),
    ("mau-05", "rows.1.to", "rows[1].to"),
    ("mau-05", "rows.0.from", "rows[0].from"),
    ("mau-05", "rows.2.at", "rows[2].at"),
    ("mau-05", "rows.0.giver", "rows[0].giver"),
])
def test_a_missing_field_is_named(form, path, shown):
    for render in (forms.render_html, forms.render_pdf):
        with pytest.raises(forms.FormError) as error:
            render(form, _without(sample(form), path))
        assert str(error.value) == f"{form}: {shown} is required"


def test_optional_fields_may_be_missing():
    data = sample("mau-05")
    for row in data["rows"]:
        del row["receiver"], row["result"], row["notes"]
    assert "Người nhận:" in flat(pages_of(forms.render_pdf("mau-05", data))[0])


@pytest.mark.parametrize("form, change, message", [
    ("mau-04", lambda d: d.update(new_date="2026-03-16"),
     r"^mau-04: new_date must be after original_due_date \(2026-03-16\)$"),
    ("mau-04", lambda d: d.update(new_date="20/03/2026"), r"^mau-04: new_date must be an ISO date"),
    ("mau-04", lambda d: d.update(issued_at="17/03/2026 10:00"), r"^mau-04: issued_at must be an ISO date-time"),
    ("mau-04", lambda d: d.update(addressee=["Lan"]), r"^mau-04: addressee must be a string, not list$"),
    ("mau-04", lambda d: d.update(unit="Chi cục Thuế"), r"^mau-04: unit must be an object"),
    ("mau-05", lambda d: d["rows"][1].update(result="overdue"),
     r"^mau-05: rows\[1\]\.result must be one of early, on_time, late, got 'overdue'$"),
    ("mau-05", lambda d: d["rows"][0].update(at="2026-03-02T08:59:00+07:00"),
     r"^mau-05: rows\[0\]\.at must not be before received_at"),
    ("mau-05", lambda d: d.update(due_date="2026-03-01"), r"^mau-05: due_date must not be before received_at"),
    ("mau-05", lambda d: d.update(rows={"from": DESK}), r"^mau-05: rows must be a list, not dict$"),
    ("mau-05", lambda d: d["rows"].append("Lê Văn Đức"), r"^mau-05: rows\[3\] must be an object, not str$"),
])
def test_an_ill_typed_field_is_named(form, change, message):
    data = sample(form)
    change(data)
    for render in (forms.render_html, forms.render_pdf):
        with pytest.raises(forms.FormError, match=message):
            render(form, data)


# --- fonts -------------------------------------------------------------------------------------


def test_a_missing_font_says_which_file_and_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setenv("MOTCUA_FONT_DIR", str(tmp_path))
    with pytest.raises(forms.FormFontError) as error:
        forms.render_pdf("mau-05", sample("mau-05"))
    assert str(tmp_path / "DejaVuSerif.ttf") in str(error.value) and "fonts-dejavu-core" in str(error.value)
    assert "<html" in forms.render_html("mau-05", sample("mau-05"))  # HTML needs no font file
