"""The official forms (services.intake.forms): HTML and PDF from the same data, Vietnamese text
kept intact in the PDF (checked by extracting it with pypdf), the QR code of the receipt decoded
back to its module matrix, validation errors naming the field, escaping, the tracking book's
pagination. No database, no broker."""
from __future__ import annotations

import copy
import io
import re
from datetime import datetime, timedelta, timezone

import pypdf
import pytest
import segno

from services.intake import forms

UNIT = {"code": "000.05.20.H29", "name": "Ủy ban nhân dân Phường 5, quận Gò Vấp", "short_name": "Phường 5",
        "parent_name": "Ủy ban nhân dân quận Gò Vấp", "address": "Số 1 Nguyễn Văn Nghi, Phường 5, quận Gò Vấp"}
CODE = "000.05.20.H29-260213-0001"
STATUS_URL = f"http://localhost:8002/tra-cuu?code={CODE}&secret=K7P4-9QX2"
PROCEDURE = "Cấp bản sao từ sổ gốc"

RECEIPT = {
    "unit": UNIT, "code": CODE, "secret": "K7P4-9QX2", "status_url": STATUS_URL,
    "applicant": {"name": "Nguyễn Thị Lan", "address": "12 Lê Đức Thọ, Phường 5, quận Gò Vấp",
                  "phone": "0903123456", "email": "lan@example.vn"},
    "procedure": {"code": "2.000815", "name": PROCEDURE, "version": 1},
    "documents": [
        {"name": "Tờ khai đề nghị cấp bản sao từ sổ gốc", "form": "original", "count": 1},
        {"name": "Căn cước công dân của người yêu cầu", "form": "certified_copy", "count": 1},
        {"name": "Giấy ủy quyền", "form": "copy", "count": 2},
    ],
    "sets": 1, "time_limit": "3 ngày làm việc", "received_at": "2026-02-13T10:00:00+07:00",
    "appointment_date": "2026-02-25",
    "appointment_history": [{"date": "2026-02-20", "replaced_at": "2026-02-18T09:00:00+07:00",
                             "reason": "Bổ sung hồ sơ"}],
    "collect_at": "Bộ phận tiếp nhận và trả kết quả, Ủy ban nhân dân Phường 5",
    "tracking": {"year": 2026, "volume": 1, "line": 42},
    "official": "Trần Văn Bình",
}
SUPPLEMENT = {
    "unit": UNIT, "number": "01/PYCBS", "code": CODE,
    "applicant": {"name": "Nguyễn Thị Lan", "address": "12 Lê Đức Thọ, Phường 5"},
    "procedure": {"code": "2.000815", "name": PROCEDURE}, "requested_by": "Phòng Tư pháp quận Gò Vấp",
    "requested_at": "2026-02-18T09:00:00+07:00",
    "documents": [{"name": "Bản sao giấy khai sinh", "form": "certified_copy", "count": 1}],
    "reason": "Thiếu giấy tờ chứng minh quan hệ nhân thân.",
    "contact": "Bộ phận tiếp nhận và trả kết quả Phường 5, điện thoại 028 3894 1234",
    "official": "Lê Thị Hồng Nhung",
}
REFUSAL = {
    "unit": UNIT, "code": CODE, "applicant": {"name": "Nguyễn Thị Lan", "address": "12 Lê Đức Thọ, Phường 5"},
    "procedure": {"code": "2.000815", "name": PROCEDURE},
    "reason": "Sổ gốc không do Ủy ban nhân dân Phường 5 quản lý.",
    "refused_at": "2026-02-13T10:05:00+07:00", "official": "Trần Văn Bình",
}
PROCEDURES = ["Cấp bản sao từ sổ gốc", "Đăng ký khai sinh", "Đăng ký kết hôn",
              "Chứng thực chữ ký trong các giấy tờ, văn bản (áp dụng cho cả trường hợp chứng thực điểm chỉ)"]


def book_line(i: int) -> dict:
    return {"line": i, "code": f"000.05.20.H29-2602{10 + i // 10:02d}-{i:04d}", "procedure": PROCEDURES[i % 4],
            "sets": 1 + i % 2, "applicant": "Nguyễn Thị Lan" if i % 2 else "Công ty TNHH Thương mại Hoàng Long",
            "lead_agency": "Ủy ban nhân dân Phường 5", "received_at": "2026-02-13T10:00:00+07:00",
            "appointment_date": "2026-02-25",
            "transferred_at": "2026-02-13T15:30:00+07:00" if i % 2 else None,
            "result_date": "2026-02-20" if i % 3 else None,
            "returned_at": "2026-02-21T08:15:00+07:00" if i % 5 == 0 else None,
            "notes": "Hẹn lại 25/02/2026" if i % 7 == 0 else ""}


BOOK = {"unit": UNIT, "year": 2026, "volume": 1, "from": "2026-02-01", "to": "2026-02-28",
        "lines": [book_line(i) for i in range(1, 121)]}
SAMPLES = {"mau-01": RECEIPT, "mau-02": SUPPLEMENT, "mau-03": REFUSAL, "mau-06": BOOK}


def sample(form: str) -> dict:
    return copy.deepcopy(SAMPLES[form])


def flat(text: str) -> str:
    """Extracted text with every run of whitespace (line breaks of wrapped cells) as one space."""
    return " ".join(text.split())


@pytest.fixture(scope="module")
def pdfs() -> dict[str, bytes]:
    return {form: forms.render_pdf(form, sample(form)) for form in forms.FORMS}


@pytest.fixture(scope="module")
def texts(pdfs) -> dict[str, list[str]]:
    return {form: [page.extract_text() for page in pypdf.PdfReader(io.BytesIO(data)).pages]
            for form, data in pdfs.items()}


# --- titles ----------------------------------------------------------------------------------


def test_the_four_forms_and_their_titles():
    assert forms.FORMS == ("mau-01", "mau-02", "mau-03", "mau-06")
    assert forms.form_title("mau-01") == "Mẫu 01 – Giấy tiếp nhận hồ sơ và hẹn trả kết quả"
    assert forms.form_title("mau-02") == "Mẫu 02 – Phiếu yêu cầu bổ sung, hoàn thiện hồ sơ"
    assert forms.form_title("mau-03") == "Mẫu 03 – Phiếu từ chối tiếp nhận giải quyết hồ sơ"
    assert forms.form_title("mau-06") == "Mẫu 06 – Sổ theo dõi hồ sơ"
    with pytest.raises(forms.FormError, match="mau-09"):
        forms.form_title("mau-09")
    with pytest.raises(forms.FormError, match="mau-09"):
        forms.render_html("mau-09", {})


# --- the PDFs: Vietnamese text survives ------------------------------------------------------


def test_receipt_pdf_keeps_the_vietnamese_text(texts):
    text = flat("\n".join(texts["mau-01"]))
    for expected in [
        "UBND QUẬN GÒ VẤP", "UBND PHƯỜNG 5", "BỘ PHẬN TIẾP NHẬN VÀ TRẢ KẾT QUẢ",
        "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Độc lập - Tự do - Hạnh phúc",
        "Gò Vấp, ngày 13 tháng 02 năm 2026",
        "GIẤY TIẾP NHẬN HỒ SƠ VÀ HẸN TRẢ KẾT QUẢ",
        f"Mã hồ sơ: {CODE}", "Tiếp nhận hồ sơ của: Nguyễn Thị Lan", "Số điện thoại: 0903123456",
        "lan@example.vn", f"{PROCEDURE} (mã thủ tục 2.000815)",
        "Tờ khai đề nghị cấp bản sao từ sổ gốc", "Bản chính", "Bản sao có chứng thực", "Giấy ủy quyền",
        "2. Số lượng hồ sơ: 01 bộ", "3 ngày làm việc",
        "4. Thời gian nhận hồ sơ: 10 giờ 00 phút, ngày 13/02/2026",
        "5. Thời gian trả kết quả giải quyết hồ sơ: ngày 25/02/2026",
        "ngày 20/02/2026; lý do: Bổ sung hồ sơ", "Ngày hẹn trả hiện tại: ngày 25/02/2026",
        "Bộ phận tiếp nhận và trả kết quả, Ủy ban nhân dân Phường 5",
        "Vào Sổ theo dõi hồ sơ: Quyển số 01, Số thứ tự 42",
        "Mã tra cứu: K7P4-9QX2", "http://localhost:8002/tra-cuu",
        "NGƯỜI NỘP HỒ SƠ", "NGƯỜI TIẾP NHẬN HỒ SƠ", "Trần Văn Bình",
    ]:
        assert expected in text, expected


def test_supplement_request_pdf(texts):
    text = flat("\n".join(texts["mau-02"]))
    for expected in [
        "PHIẾU YÊU CẦU BỔ SUNG, HOÀN THIỆN HỒ SƠ", "Số: 01/PYCBS", "Gò Vấp, ngày 18 tháng 02 năm 2026",
        f"Mã hồ sơ: {CODE}", "Hồ sơ của: Nguyễn Thị Lan", PROCEDURE,
        "Cơ quan, bộ phận yêu cầu bổ sung: Phòng Tư pháp quận Gò Vấp",
        "Bản sao giấy khai sinh", "Bản sao có chứng thực",
        "Lý do: Thiếu giấy tờ chứng minh quan hệ nhân thân.",
        "Hồ sơ chỉ được yêu cầu bổ sung một lần",
        "Bộ phận tiếp nhận và trả kết quả Phường 5, điện thoại 028 3894 1234",
        "NGƯỜI HƯỚNG DẪN", "Lê Thị Hồng Nhung",
    ]:
        assert expected in text, expected


def test_refusal_pdf(texts):
    text = flat("\n".join(texts["mau-03"]))
    for expected in [
        "PHIẾU TỪ CHỐI TIẾP NHẬN GIẢI QUYẾT HỒ SƠ", "Gò Vấp, ngày 13 tháng 02 năm 2026", CODE,
        "Tiếp nhận hồ sơ của: Nguyễn Thị Lan", PROCEDURE, "10 giờ 05 phút, ngày 13/02/2026",
        "từ chối tiếp nhận, giải quyết hồ sơ này", "Sổ gốc không do Ủy ban nhân dân Phường 5 quản lý.",
        "NGƯỜI TIẾP NHẬN HỒ SƠ", "Trần Văn Bình",
    ]:
        assert expected in text, expected


@pytest.mark.parametrize("form", forms.FORMS)
def test_pdf_page_size_and_metadata(pdfs, form):
    reader = pypdf.PdfReader(io.BytesIO(pdfs[form]))
    width, height = float(reader.pages[0].mediabox.width), float(reader.pages[0].mediabox.height)
    a4 = (595.28, 841.89)
    if form == "mau-06":
        assert (width, height) == pytest.approx((a4[1], a4[0]), abs=0.5)  # landscape
    else:
        assert (width, height) == pytest.approx(a4, abs=0.5)
        assert len(reader.pages) == 1
    assert reader.metadata.title.startswith(forms.form_title(form))
    if form != "mau-06":
        assert CODE in reader.metadata.title


def test_pdf_output_is_deterministic(pdfs):
    first = pdfs["mau-02"]
    assert first == forms.render_pdf("mau-02", sample("mau-02"))
    created = pypdf.PdfReader(io.BytesIO(first)).metadata.creation_date
    assert created == datetime(2026, 2, 18, 9, 0, tzinfo=timezone(timedelta(hours=7)))  # requested_at


# --- the moved appointment: the old date struck through ---------------------------------------


def _text_and_thin_bars(page):
    """(text, x, y, font size) of every text run, and the thin filled rectangles (strike lines)."""
    runs, bars, pending = [], [], []

    def before(op, args, cm, tm):
        if op == b"re":
            pending.append([float(a) for a in args])
        elif op in (b"f", b"F", b"f*"):
            bars.extend(r for r in pending if abs(r[3]) < 2)
            pending.clear()
        elif op in (b"S", b"s", b"B", b"b", b"n"):
            pending.clear()

    def visit(text, cm, tm, font, size):
        if text.strip():
            runs.append((text, tm[4], tm[5], size))

    page.extract_text(visitor_operand_before=before, visitor_text=visit)
    return runs, bars


def _struck(run, bars) -> bool:
    text, x, y, size = run
    return any(bx <= x + 1 and bx + bw >= x + 40 and y < by + bh / 2 < y + size for bx, by, bw, bh in bars)


def test_receipt_pdf_strikes_the_previous_appointment_date_only(pdfs):
    runs, bars = _text_and_thin_bars(pypdf.PdfReader(io.BytesIO(pdfs["mau-01"])).pages[0])
    old = [run for run in runs if "20/02/2026" in run[0]]
    current = [run for run in runs if "25/02/2026" in run[0]]
    assert old and current
    assert all(_struck(run, bars) for run in old)
    assert not any(_struck(run, bars) for run in current)


def test_receipt_html_strikes_the_previous_appointment_date():
    html = forms.render_html("mau-01", sample("mau-01"))
    assert re.search(r"<del[^>]*>ngày 20/02/2026</del>", html)
    assert "ngày 25/02/2026" in html
    assert not re.search(r"<del[^>]*>[^<]*25/02/2026", html)
    assert "Bổ sung hồ sơ" in html and "09 giờ 00 phút, ngày 18/02/2026" in html


def test_receipt_without_a_moved_appointment_has_no_history():
    data = sample("mau-01")
    data["appointment_history"] = []
    html = forms.render_html("mau-01", data)
    assert "<del" not in html and "Ngày hẹn trả hiện tại" not in html


# --- the QR code -------------------------------------------------------------------------------


def _matrix(url: str) -> set[tuple[int, ...]]:
    """The module matrices segno can make for the URL (any error correction level)."""
    return {tuple(tuple(bool(m) for m in row) for row in segno.make_qr(url, error=level).matrix)
            for level in "lmqh"}


def _svg_modules(svg: str) -> tuple[tuple[bool, ...], ...]:
    """The dark modules of a segno SVG path (M/m moves, h runs, y at the middle of the row)."""
    size = int(re.search(r'viewBox="0 0 (\d+) (\d+)"', svg).group(1))
    d = re.search(r'<path[^>]* d="([^"]+)"', svg).group(1)
    grid = [[False] * size for _ in range(size)]
    x = y = 0.0
    for command, numbers in re.findall(r"([MmHh])([^MmHh]*)", d):
        values = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", numbers)]
        if command == "M":
            x, y = values
        elif command == "m":
            x, y = x + values[0], y + values[1]
        else:
            end = values[0] if command == "H" else x + values[0]
            for column in range(int(x), int(end)):
                grid[int(y)][column] = True
            x = end
    return tuple(tuple(row) for row in grid)


def test_receipt_html_has_the_qr_of_the_status_url_and_the_code_under_it():
    html = forms.render_html("mau-01", sample("mau-01"))
    svg = re.search(r"<svg.*?</svg>", html, re.S).group(0)
    assert _svg_modules(svg) in _matrix(STATUS_URL)
    assert _svg_modules(svg) not in _matrix(STATUS_URL.replace("0001", "0002"))
    assert re.search(r"</svg>\s*<figcaption[^>]*>" + re.escape(CODE) + "</figcaption>", html)


def test_receipt_pdf_has_the_qr_image_of_the_status_url(pdfs):
    page = pypdf.PdfReader(io.BytesIO(pdfs["mau-01"])).pages[0]
    assert len(page.images) == 1
    image = page.images[0].image.convert("L")
    dark = image.point(lambda v: 255 if v < 128 else 0)
    left, top, right, bottom = dark.getbbox()  # the finder patterns span the whole symbol
    candidates = _matrix(STATUS_URL)
    size = len(next(iter(candidates)))
    module = (right - left) / size
    decoded = tuple(tuple(image.getpixel((int(left + (c + .5) * module), int(top + (r + .5) * module))) < 128
                          for c in range(size)) for r in range(size))
    assert decoded in candidates


# --- validation ----------------------------------------------------------------------------------


def _without(data: dict, path: str) -> dict:
    *parents, last = path.split(".")
    target = data
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    del target[last]
    return data


@pytest.mark.parametrize("form, path, shown", [
    ("mau-01", "applicant.name", "applicant.name"),
    ("mau-01", "code", "code"),
    ("mau-01", "tracking.volume", "tracking.volume"),
    ("mau-01", "documents.1.count", "documents[1].count"),
    ("mau-01", "status_url", "status_url"),
    ("mau-02", "number", "number"),
    ("mau-02", "reason", "reason"),
    ("mau-03", "reason", "reason"),
    ("mau-03", "official", "official"),
    ("mau-06", "lines.3.code", "lines[3].code"),
    ("mau-06", "from", "from"),
])
def test_a_missing_field_is_named(form, path, shown):
    for render in (forms.render_html, forms.render_pdf):
        with pytest.raises(forms.FormError) as error:
            render(form, _without(sample(form), path))
        assert str(error.value) == f"{form}: {shown} is required"


def test_a_blank_field_is_missing():
    data = sample("mau-01")
    data["applicant"]["name"] = "   "
    with pytest.raises(forms.FormError, match=r"^mau-01: applicant\.name is required$"):
        forms.render_html("mau-01", data)


@pytest.mark.parametrize("form, change, message", [
    ("mau-01", lambda d: d.update(sets="1"), r"^mau-01: sets must be an integer"),
    ("mau-01", lambda d: d.update(sets=0), r"^mau-01: sets must be at least 1"),
    ("mau-01", lambda d: d.update(received_at="13/02/2026"), r"^mau-01: received_at must be an ISO date-time"),
    ("mau-01", lambda d: d.update(appointment_date="25-02-2026"),
     r"^mau-01: appointment_date must be an ISO date"),
    ("mau-01", lambda d: d["documents"][2].update(form="photocopy"),
     r"^mau-01: documents\[2\]\.form must be one of"),
    ("mau-01", lambda d: d.update(applicant="Nguyễn Thị Lan"), r"^mau-01: applicant must be an object"),
    ("mau-01", lambda d: d["appointment_history"][0].update(date=None),
     r"^mau-01: appointment_history\[0\]\.date is required"),
    ("mau-02", lambda d: d.update(documents=[]), r"^mau-02: documents must list at least one entry"),
    ("mau-06", lambda d: d.update(to="2026-01-31"), r"^mau-06: to must not be before from"),
    ("mau-06", lambda d: d["lines"][5].update(sets=True), r"^mau-06: lines\[5\]\.sets must be an integer"),
])
def test_an_ill_typed_field_is_named(form, change, message):
    data = sample(form)
    change(data)
    with pytest.raises(forms.FormError, match=message):
        forms.render_html(form, data)


def test_form_error_is_a_value_error():
    assert issubclass(forms.FormError, ValueError)


# --- HTML ------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", forms.FORMS)
def test_html_is_a_printable_a4_page(form):
    html = forms.render_html(form, sample(form))
    assert html.startswith("<!doctype html>")
    assert '<html lang="vi">' in html
    assert "@media print" in html
    page = re.search(r"@page\s*\{([^}]*)\}", html).group(1)
    if form == "mau-06":
        assert "size: A4 landscape" in page
    else:
        assert re.search(r"size: A4;", page)
    assert f"<title>{forms.form_title(form)}" in html
    assert "UBND QUẬN GÒ VẤP" in html and "UBND PHƯỜNG 5" in html
    assert "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM" in html


def test_receipt_html_fields():
    html = forms.render_html("mau-01", sample("mau-01"))
    for expected in ["GIẤY TIẾP NHẬN HỒ SƠ VÀ HẸN TRẢ KẾT QUẢ", "Nguyễn Thị Lan", PROCEDURE, CODE,
                     "Bản sao có chứng thực", "10 giờ 00 phút, ngày 13/02/2026", "ngày 25/02/2026",
                     "Quyển số 01, Số thứ tự 42", "Mã tra cứu: K7P4-9QX2", "Gò Vấp, ngày 13 tháng 02 năm 2026",
                     "NGƯỜI NỘP HỒ SƠ", "NGƯỜI TIẾP NHẬN HỒ SƠ", "Trần Văn Bình"]:
        assert expected in html, expected
    assert html.count("<tr><td") == 3  # one row per document


def test_html_escapes_everything_from_the_data():
    data = sample("mau-01")
    data["applicant"]["name"] = "<script>alert('x')</script>"
    data["documents"][0]["name"] = 'Tờ khai "A" & <b>B</b>'
    html = forms.render_html("mau-01", data)
    assert "<script>" not in html and "<b>B</b>" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "Tờ khai &#34;A&#34; &amp; &lt;b&gt;B&lt;/b&gt;" in html

    book = sample("mau-06")
    book["lines"][0]["applicant"] = "<img src=x onerror=alert(1)>"
    assert "<img" not in forms.render_html("mau-06", book)

    status = sample("mau-01")
    status["status_url"] = 'http://x/"><script>alert(1)</script>'
    status["code"] = "X-<i>code</i>"  # also the QR's SVG title
    html = forms.render_html("mau-01", status)
    assert "<script>" not in html and "<i>" not in html


def test_pdf_prints_markup_as_plain_text():
    data = sample("mau-03")
    data["applicant"]["name"] = "<script>Nguyễn</script>"
    text = flat(pypdf.PdfReader(io.BytesIO(forms.render_pdf("mau-03", data))).pages[0].extract_text())
    assert "Tiếp nhận hồ sơ của: <script>Nguyễn</script>" in text


# --- the letterhead and dates ------------------------------------------------------------------


def test_the_district_letterhead_does_not_repeat_the_unit():
    data = sample("mau-03")
    data["unit"] = {"code": "000.00.20.H29", "name": "Ủy ban nhân dân quận Gò Vấp", "short_name": "Quận Gò Vấp",
                    "parent_name": "Ủy ban nhân dân quận Gò Vấp", "address": None}
    html = forms.render_html("mau-03", data)
    assert html.count("UBND QUẬN GÒ VẤP") == 1
    data["unit"]["parent_name"] = "Ủy ban nhân dân Thành phố Hồ Chí Minh"
    html = forms.render_html("mau-03", data)
    assert "UBND THÀNH PHỐ HỒ CHÍ MINH" in html and "UBND QUẬN GÒ VẤP" in html


def test_date_times_are_shown_on_the_vietnamese_clock():
    data = sample("mau-01")
    data["received_at"] = "2026-02-13T03:00:00+00:00"  # 10:00 in Ho Chi Minh City
    data["place"] = "Thành phố Hồ Chí Minh"
    html = forms.render_html("mau-01", data)
    assert "10 giờ 00 phút, ngày 13/02/2026" in html
    assert "Thành phố Hồ Chí Minh, ngày 13 tháng 02 năm 2026" in html


def test_decomposed_unicode_is_normalised():
    data = sample("mau-03")
    data["applicant"]["name"] = "Nguye\u0302\u0303n Thi\u0323 Lan"  # NFD
    assert "Nguyễn Thị Lan" in forms.render_html("mau-03", data)


# --- wrapping and pagination -------------------------------------------------------------------


def test_long_document_lists_wrap_and_continue_on_the_next_page():
    data = sample("mau-01")
    data["applicant"]["name"] = "Công ty Trách nhiệm hữu hạn Thương mại Dịch vụ Xây dựng và Đầu tư Phát triển " \
                                "Hạ tầng Kỹ thuật Hoàng Long Gò Vấp Thành phố Hồ Chí Minh"
    data["documents"] = [{"name": f"Giấy tờ số {i}: bản kê khai chi tiết thông tin về tài sản, thu nhập và "
                                  f"các khoản nghĩa vụ tài chính có liên quan của người yêu cầu (mục {i})",
                          "form": "copy", "count": i} for i in range(1, 31)]
    reader = pypdf.PdfReader(io.BytesIO(forms.render_pdf("mau-01", data)))
    assert len(reader.pages) >= 2
    text = flat("\n".join(page.extract_text() for page in reader.pages))
    for i in range(1, 31):
        assert f"Giấy tờ số {i}: bản kê khai" in text
        assert f"(mục {i})" in text
    assert "Hạ tầng Kỹ thuật Hoàng Long" in text
    assert text.rindex("NGƯỜI TIẾP NHẬN HỒ SƠ") > text.index("(mục 30)")


def test_tracking_book_paginates_with_the_heading_repeated(texts):
    pages = texts["mau-06"]
    assert len(pages) >= 3
    assert [page.count("Mã hồ sơ") for page in pages] == [1] * len(pages)
    assert all("Ngày hẹn" in page and "Ký nhận" in page for page in pages)
    text = flat("\n".join(pages))
    for line in BOOK["lines"]:
        assert line["code"] in text, line["code"]
    assert "SỔ THEO DÕI HỒ SƠ" in text and "Năm 2026 – Quyển số 01" in text
    assert "Từ ngày 01/02/2026 đến ngày 28/02/2026" in text
    assert "Cơ quan chủ trì giải quyết" in text and "Trả kết quả" in text
    assert "13/02/2026 10 giờ 00" in text and "21/02/2026 08 giờ 15" in text
    assert "Chứng thực chữ ký trong các giấy tờ" in text
    # The lines are in order across the pages.
    positions = [text.index(line["code"]) for line in BOOK["lines"]]
    assert positions == sorted(positions)


def test_tracking_book_html_repeats_its_heading_when_printed():
    html = forms.render_html("mau-06", sample("mau-06"))
    assert re.search(r"thead\s*\{\s*display:\s*table-header-group", html)
    assert html.count("<thead>") == 1 and html.count("Mã hồ sơ") == 1
    assert all(line["code"] in html for line in BOOK["lines"])
    assert html.count("<td class=\"signature\"></td>") == 120


def test_an_empty_tracking_book_renders():
    data = sample("mau-06")
    data["lines"] = []
    assert "Không có hồ sơ nào trong kỳ." in forms.render_html("mau-06", data)
    text = pypdf.PdfReader(io.BytesIO(forms.render_pdf("mau-06", data))).pages[0].extract_text()
    assert "Không có hồ sơ nào trong kỳ." in flat(text)


# --- fonts -------------------------------------------------------------------------------------


def test_a_missing_font_says_which_file_and_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setenv("MOTCUA_FONT_DIR", str(tmp_path))
    with pytest.raises(forms.FormFontError) as error:
        forms.render_pdf("mau-03", sample("mau-03"))
    message = str(error.value)
    assert str(tmp_path / "DejaVuSerif.ttf") in message
    assert "fonts-dejavu-core" in message and "MOTCUA_FONT_DIR" in message
    assert "<html" in forms.render_html("mau-03", sample("mau-03"))  # HTML needs no font file
