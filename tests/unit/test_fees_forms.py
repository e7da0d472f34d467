"""The receipt of fees and charges (services.fees.forms): the biên lai of a payment, of a refund,
and a cancelled one (still printed, marked ĐÃ HỦY). Vietnamese text kept intact in the PDF
(extracted with pypdf), amounts that agree, validation errors naming the field, escaping,
deterministic output. No database, no broker."""
from __future__ import annotations

import ast
import copy
import io
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pypdf
import pytest

from services.fees import forms

VN = timezone(timedelta(hours=7))
FORM = "bien-lai"
CODE = "000.05.20.H29-260302-0001"
PROCEDURE = {"code": "2.000815", "name": "Chứng thực bản sao từ bản chính giấy tờ, văn bản"}

RECEIPT = {
    "unit": {"code": "000.05.20.H29", "name": "Ủy ban nhân dân Phường 5, quận Gò Vấp", "short_name": "Phường 5",
             "parent_name": "Ủy ban nhân dân quận Gò Vấp", "address": None},
    "label": "0000123/2026", "kind": "payment", "code": CODE, "payer": "Nguyễn Thị Lan", "procedure": PROCEDURE,
    "lines": [{"name": "Phí chứng thực bản sao từ bản chính", "type": "phi", "amount": 5000}],
    "amount": 5000, "amount_in_words": "Năm nghìn đồng", "method": "cash", "official": "Trần Văn Bình",
    "issued_at": "2026-03-02T09:05:00+07:00", "for_receipt": None, "cancelled": None,
}
CANCELLATION = {"at": "2026-03-02T11:00:00+07:00", "reason": "Thu nhầm", "by": "Trần Văn Bình"}


def sample(**changes) -> dict:
    data = copy.deepcopy(RECEIPT)
    data.update(copy.deepcopy(changes))
    return data


def cancelled(**changes) -> dict:
    return sample(**{"cancelled": CANCELLATION, **changes})


def refund(**changes) -> dict:
    return sample(**{"kind": "refund", "label": "0000125/2026", "for_receipt": "0000120/2026", "official": None,
                     "method": "transfer", "issued_at": "2026-03-05T15:20:00+07:00",
                     "lines": [{"name": "Hoàn trả (từ chối)", "type": "refund", "amount": 5000}], **changes})


def flat(text: str) -> str:
    """Extracted text with every run of whitespace (line breaks of wrapped cells) as one space."""
    return " ".join(text.split())


def pages_of(data: bytes) -> list[str]:
    return [page.extract_text() for page in pypdf.PdfReader(io.BytesIO(data)).pages]


def html_text(html: str) -> str:
    return flat(re.sub(r"<[^>]+>", " ", html)).replace(" :", ":")


def odd() -> dict:
    """Paid online (no collector), the optional fields left out, a unit with an address and no
    parent, the time in UTC, decomposed Unicode and markup in the data."""
    data = sample(method="online", issued_at="2026-03-02T17:30:00Z",   # 00:30 on the 3rd in Gò Vấp
                  payer="Nguye\u0302\u0303n Thi\u0323 Lan", amount_in_words="Na\u0306m nghi\u0300n đồng",
                  lines=[{"name": "Phí chứng thực <b>gấp</b>", "type": "phi", "amount": 5000}])
    for key in ("official", "for_receipt", "cancelled"):
        del data[key]
    data["unit"] = {"code": "000.05.20.H29", "name": "Ủy ban nhân dân Phường 5, quận Gò Vấp",
                    "address": "Số 1 Lê Đức Thọ, Phường 5, quận Gò Vấp"}
    return data


LONG_REASON = "Thu trùng: người nộp đã thanh toán trực tuyến cùng ngày, giao dịch đã được đối soát với ngân hàng."


def long_cancelled() -> dict:
    """45 phí lines and a lệ phí one (more than a page), cancelled for a long reason."""
    lines = [{"name": f"Phí chứng thực trang {i}", "type": "phi", "amount": 2000} for i in range(45)]
    lines.append({"name": "Lệ phí cấp giấy chứng nhận", "type": "le_phi", "amount": 1_000_000})
    return cancelled(lines=lines, amount=1_090_000, amount_in_words="Một triệu không trăm chín mươi nghìn đồng",
                     cancelled={**CANCELLATION, "reason": LONG_REASON})


SAMPLES = {"payment": sample, "cancelled": cancelled, "refund": refund, "odd": odd, "long_cancelled": long_cancelled}


# Rendering a PDF takes a fifth of a second (the fonts): each sample is rendered once.
@pytest.fixture(scope="module")
def pdfs() -> dict[str, bytes]:
    return {name: forms.render_pdf(FORM, make()) for name, make in SAMPLES.items()}


@pytest.fixture(scope="module")
def pages(pdfs) -> dict[str, list[str]]:
    return {name: pages_of(data) for name, data in pdfs.items()}


@pytest.fixture(scope="module")
def texts(pages) -> dict[str, str]:
    return {name: flat("\n".join(texts)) for name, texts in pages.items()}


# --- the module --------------------------------------------------------------------------------


def test_one_form_and_its_title():
    assert forms.FORMS == ("bien-lai",)
    assert forms.form_title("bien-lai") == "Biên lai thu phí, lệ phí"
    for call in (forms.form_title, lambda f: forms.render_html(f, sample()), lambda f: forms.render_pdf(f, sample())):
        with pytest.raises(forms.FormError, match="unknown form 'mau-01'"):
            call("mau-01")  # the desk's form is not the fees'


def test_the_errors_are_the_shared_ones():
    from motcua.runtime import documents
    assert forms.FormError is documents.FormError and issubclass(forms.FormError, ValueError)
    assert forms.FormFontError is documents.FormFontError


def test_fees_forms_import_no_other_service():
    tree = ast.parse(Path(forms.__file__).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not [name for name in imported if name.startswith("services.") and not name.startswith("services.fees")]
    assert "motcua.runtime.documents" in imported


# --- a payment ---------------------------------------------------------------------------------


def test_payment_pdf_keeps_the_vietnamese_text(texts):
    text = texts["payment"]
    expected = [
        "UBND QUẬN GÒ VẤP", "UBND PHƯỜNG 5", "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Độc lập - Tự do - Hạnh phúc",
        "Gò Vấp, ngày 02 tháng 03 năm 2026",
        "BIÊN LAI THU PHÍ, LỆ PHÍ", "Số: 0000123/2026",
        "Đơn vị thu: Ủy ban nhân dân Phường 5, quận Gò Vấp",
        "Họ và tên người nộp tiền: Nguyễn Thị Lan",
        f"Mã hồ sơ: {CODE}",
        f"Thủ tục hành chính: {PROCEDURE['name']} (mã thủ tục 2.000815)",
        "STT Nội dung thu Loại Số tiền (đồng)",
        "1 Phí chứng thực bản sao từ bản chính Phí 5.000",
        "Tổng cộng: 5.000 đồng", "Bằng chữ: Năm nghìn đồng",
        "Hình thức thanh toán: Tiền mặt", "Thời điểm thu: 09 giờ 05 phút, ngày 02/03/2026",
        "NGƯỜI NỘP TIỀN", "NGƯỜI THU TIỀN",
    ]
    positions = [text.index(part) for part in expected]  # every part, in the order of the sheet
    assert positions == sorted(positions)
    assert text.index("NGƯỜI THU TIỀN") < text.rindex("Trần Văn Bình")  # the collector signs
    for absent in ("ĐÃ HỦY", "HOÀN TRẢ", "Hoàn trả", "Trong đó", "5000"):
        assert absent not in text, absent


def test_payment_html_says_the_same():
    html = forms.render_html(FORM, sample())
    plain = html_text(html)
    for expected in ["BIÊN LAI THU PHÍ, LỆ PHÍ", "Số: 0000123/2026", "Họ và tên người nộp tiền: Nguyễn Thị Lan",
                     f"Mã hồ sơ: {CODE}", "Tổng cộng: 5.000 đồng", "Bằng chữ: Năm nghìn đồng",
                     "Hình thức thanh toán: Tiền mặt", "NGƯỜI NỘP TIỀN", "NGƯỜI THU TIỀN", "Trần Văn Bình",
                     "UBND PHƯỜNG 5", "Gò Vấp, ngày 02 tháng 03 năm 2026"]:
        assert expected in plain, expected
    assert '<td class="r">5.000</td>' in html and '<td class="c phi">Phí</td>' in html
    assert f"<title>Biên lai thu phí, lệ phí – Số 0000123/2026 – {CODE}</title>" in html
    assert "cancelled" not in html.split("</style>")[1]
    assert html.startswith("<!doctype html>") and re.search(r"@page\s*\{\s*size: A4;", html)


def test_phi_and_le_phi_are_told_apart(texts):
    text = texts["long_cancelled"]
    assert "1 Phí chứng thực trang 0 Phí 2.000" in text
    assert "46 Lệ phí cấp giấy chứng nhận Lệ phí 1.000.000" in text
    assert "Tổng cộng: 1.090.000 đồng" in text
    assert "Trong đó: phí 90.000 đồng, lệ phí 1.000.000 đồng" in text
    assert "Bằng chữ: Một triệu không trăm chín mươi nghìn đồng" in text
    assert "Trong đó" not in texts["payment"]  # a single kind needs no breakdown
    html = html_text(forms.render_html(FORM, long_cancelled()))
    assert "Trong đó: phí 90.000 đồng, lệ phí 1.000.000 đồng" in html and "Lệ phí 1.000.000" in html


@pytest.mark.parametrize("name, shown", [
    ("payment", "Hình thức thanh toán: Tiền mặt"),
    ("refund", "Hình thức hoàn trả: Chuyển khoản"),
    ("odd", "Hình thức thanh toán: Thanh toán trực tuyến"),
])
def test_the_method_is_printed(texts, name, shown):
    text = texts[name]
    assert shown in text
    others = {"Tiền mặt", "Chuyển khoản", "Thanh toán trực tuyến"} - {shown.split(": ")[1]}
    assert not [other for other in others if other in text]
    label, value = shown.split(": ")
    assert f'{label}: <span class="value">{value}</span>' in forms.render_html(FORM, SAMPLES[name]())


def test_paid_online_with_the_optional_fields_left_out(texts):
    text = texts["odd"]
    # no collector: the block says how it was paid, and no name under it
    assert text.endswith("NGƯỜI THU TIỀN (Thu qua thanh toán trực tuyến) Trang 1/1Biên lai số 0000123/2026")
    assert "Trần Văn Bình" not in text and "ĐÃ HỦY" not in text and "Hoàn trả" not in text
    assert "(Thu qua thanh toán trực tuyến)" not in texts["payment"]
    # the unit without a parent: its own name in capitals, and its address
    assert "UBND PHƯỜNG 5, QUẬN GÒ VẤP" in text and "UBND QUẬN GÒ VẤP" not in text
    assert "Địa chỉ: Số 1 Lê Đức Thọ, Phường 5, quận Gò Vấp" in text and "Địa chỉ" not in texts["payment"]
    html = forms.render_html(FORM, odd())
    assert '<div class="note">(Thu qua thanh toán trực tuyến)</div>' in html


def test_dates_are_on_the_vietnamese_clock(pdfs, texts):
    text = texts["odd"]   # issued at 17:30 UTC on the 2nd
    assert "Gò Vấp, ngày 03 tháng 03 năm 2026" in text
    assert "Thời điểm thu: 00 giờ 30 phút, ngày 03/03/2026" in text
    created = pypdf.PdfReader(io.BytesIO(pdfs["odd"])).metadata.creation_date
    assert created == datetime(2026, 3, 3, 0, 30, tzinfo=VN)


# --- a cancelled receipt -------------------------------------------------------------------------


def test_a_cancelled_receipt_is_printed_marked(texts):
    text = texts["cancelled"]
    mark = "ĐÃ HỦY Hủy lúc 11 giờ 00 phút, ngày 02/03/2026; người hủy: Trần Văn Bình Lý do hủy: Thu nhầm"
    assert mark in text
    # right under the number, before anything else of the receipt, which is printed whole
    assert text.index("Số: 0000123/2026") < text.index(mark) < text.index("Họ và tên người nộp tiền")
    for expected in ["BIÊN LAI THU PHÍ, LỆ PHÍ", "Tổng cộng: 5.000 đồng", "Bằng chữ: Năm nghìn đồng",
                     "Hình thức thanh toán: Tiền mặt", "1 Phí chứng thực bản sao từ bản chính Phí 5.000"]:
        assert expected in text, expected
    assert text.endswith("Biên lai số 0000123/2026 – ĐÃ HỦY")  # and in the footer
    assert "ĐÃ HỦY" not in texts["payment"] and "Biên lai số 0000123/2026" in texts["payment"]


def test_the_cancelled_mark_is_red(pdfs):
    def content(data: bytes) -> bytes:
        return b"".join(page.get_contents().get_data() for page in pypdf.PdfReader(io.BytesIO(data)).pages)
    red = re.compile(rb"0\.7451 0\.0784 0\.0784 (rg|RG)")  # (190, 20, 20)
    # the frame, then fpdf2 sets the colour of each text: the mark, its two lines, the footer's mark
    assert [m.group(1) for m in red.finditer(content(pdfs["cancelled"]))] == [b"RG"] + [b"rg"] * 4
    assert not red.search(content(pdfs["payment"]))


def test_the_cancelled_metadata_and_html(pdfs):
    title = pypdf.PdfReader(io.BytesIO(pdfs["cancelled"])).metadata.title
    assert title == f"Biên lai thu phí, lệ phí – Số 0000123/2026 – {CODE} (ĐÃ HỦY)"
    html = forms.render_html(FORM, cancelled())
    box = re.search(r'<div class="cancelled"[^>]*>(.*?)</div>', html, re.S).group(1)
    assert '<span class="mark">ĐÃ HỦY</span>' in box
    assert "Hủy lúc 11 giờ 00 phút, ngày 02/03/2026; người hủy: Trần Văn Bình" in box and "Lý do hủy: Thu nhầm" in box
    assert html.index("Số: 0000123/2026") < html.index('<div class="cancelled"') < html.index("Nguyễn Thị Lan")


def test_a_long_cancelled_receipt_is_marked_on_every_page(pages):
    pages = pages["long_cancelled"]
    assert len(pages) >= 2
    assert [flat(page).count("Biên lai số 0000123/2026 – ĐÃ HỦY") for page in pages] == [1] * len(pages)
    assert [page.count("Nội dung thu") for page in pages] == [1] * len(pages)  # the table's heading again
    text = flat("\n".join(pages))
    assert f"Lý do hủy: {LONG_REASON}" in text
    positions = [text.index(f"{i + 1} Phí chứng thực trang {i} Phí 2.000") for i in range(45)]
    assert positions == sorted(positions)
    assert text.index("Lệ phí cấp giấy chứng nhận") < text.index("Tổng cộng: 1.090.000 đồng")


# --- a refund ----------------------------------------------------------------------------------


def test_a_refund_receipt(texts):
    text = texts["refund"]
    expected = ["BIÊN LAI HOÀN TRẢ PHÍ, LỆ PHÍ", "Số: 0000125/2026", "Đơn vị hoàn trả: Ủy ban nhân dân Phường 5",
                "Họ và tên người nhận tiền: Nguyễn Thị Lan", f"Mã hồ sơ: {CODE}",
                "Hoàn trả cho biên lai số 0000120/2026", "Nội dung hoàn trả",
                "1 Hoàn trả (từ chối) Hoàn trả 5.000", "Tổng cộng: 5.000 đồng", "Bằng chữ: Năm nghìn đồng",
                "Hình thức hoàn trả: Chuyển khoản", "Thời điểm hoàn trả: 15 giờ 20 phút, ngày 05/03/2026",
                "NGƯỜI NHẬN TIỀN", "NGƯỜI CHI TIỀN"]
    positions = [text.index(part) for part in expected]
    assert positions == sorted(positions)
    for absent in ("BIÊN LAI THU PHÍ", "NGƯỜI NỘP TIỀN", "NGƯỜI THU TIỀN", "ĐÃ HỦY", "Trần Văn Bình"):
        assert absent not in text, absent
    html = html_text(forms.render_html(FORM, refund()))
    assert "BIÊN LAI HOÀN TRẢ PHÍ, LỆ PHÍ" in html and "Hoàn trả cho biên lai số 0000120/2026" in html
    assert "BIÊN LAI THU PHÍ" not in html


def test_a_refund_of_several_receipts():
    html = html_text(forms.render_html(FORM, refund(for_receipt="0000120/2026, 0000121/2026")))
    assert "Hoàn trả cho biên lai số 0000120/2026, 0000121/2026" in html


# --- output ----------------------------------------------------------------------------------------


def test_equal_data_gives_equal_bytes(pdfs):
    assert forms.render_pdf(FORM, sample()) == pdfs["payment"]


@pytest.mark.parametrize("name", ["payment", "cancelled", "refund", "odd"])
def test_one_a4_page_dated_by_the_data(pdfs, name):
    reader = pypdf.PdfReader(io.BytesIO(pdfs[name]))
    assert len(reader.pages) == 1
    page = reader.pages[0]
    assert (float(page.mediabox.width), float(page.mediabox.height)) == pytest.approx((595.28, 841.89), abs=0.5)
    assert reader.metadata.creation_date == datetime.fromisoformat(SAMPLES[name]()["issued_at"])


def test_different_data_gives_a_different_pdf(pdfs):
    assert len(set(pdfs.values())) == len(pdfs)


# --- text: escaping, NFC ---------------------------------------------------------------------------


def test_html_escapes_everything_from_the_data():
    data = cancelled(payer="<script>alert('x')</script>", lines=[
        {"name": 'Phí "A" & <b>B</b>', "type": "phi", "amount": 5000}])
    data["cancelled"]["reason"] = "<img src=x onerror=alert(1)>"
    data["unit"]["name"] = "<i>Phường 5</i>"
    html = forms.render_html(FORM, data)
    assert "<script>" not in html and "<b>" not in html and "<img" not in html and "<i>" not in html
    assert ('Họ và tên người nộp tiền: <span class="value">&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;</span>'
            in html)
    assert "Phí &#34;A&#34; &amp; &lt;b&gt;B&lt;/b&gt;" in html
    assert "Lý do hủy: &lt;img src=x onerror=alert(1)&gt;" in html


def test_pdf_prints_markup_as_plain_text(texts):
    assert "1 Phí chứng thực <b>gấp</b> Phí 5.000" in texts["odd"]


def test_decomposed_unicode_is_normalised(texts):
    assert "Họ và tên người nộp tiền: Nguyễn Thị Lan" in texts["odd"]
    assert "Bằng chữ: Năm nghìn đồng" in texts["odd"]
    assert "Nguyễn Thị Lan" in forms.render_html(FORM, odd())


# --- validation ----------------------------------------------------------------------------------


def _without(data: dict, path: str) -> dict:
    *parents, last = path.split(".")
    target = data
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    del target[last]
    return data


@pytest.mark.parametrize("make, path, shown", [
    (sample, "label", "label"),
    (sample, "kind", "kind"),
    (sample, "code", "code"),
    (sample, "payer", "payer"),
    (sample, "procedure", "procedure"),
    (sample, "procedure.name", "procedure.name"),
    (sample, "lines", "lines"),
    (sample, "lines.0.name", "lines[0].name"),
    (sample, "lines.0.type", "lines[0].type"),
    (sample, "lines.0.amount", "lines[0].amount"),
    (long_cancelled, "lines.45.amount", "lines[45].amount"),
    (sample, "amount", "amount"),
    (sample, "amount_in_words", "amount_in_words"),
    (sample, "method", "method"),
    (sample, "issued_at", "issued_at"),
    (sample, "unit", "unit"),
    (sample, "unit.name", "unit.name"),
    (cancelled, "cancelled.at", "cancelled.at"),
    (cancelled, "cancelled.reason", "cancelled.reason"),
    (cancelled, "cancelled.by", "cancelled.by"),
])
def test_a_missing_field_is_named(make, path, shown):
    for render in (forms.render_html, forms.render_pdf):
        with pytest.raises(forms.FormError) as error:
            render(FORM, _without(make(), path))
        assert str(error.value) == f"bien-lai: {shown} is required"


@pytest.mark.parametrize("change, message", [
    # the amounts must agree
    (lambda d: d["lines"][0].update(amount=4000),
     r"^bien-lai: lines add up to 4\.000 đồng, not the amount of 5\.000 đồng$"),
    (lambda d: d["lines"].append({"name": "Phí bản sao thứ hai", "type": "phi", "amount": 2000}),
     r"^bien-lai: lines add up to 7\.000 đồng, not the amount of 5\.000 đồng$"),
    (lambda d: d.update(amount=50000, amount_in_words="Năm mươi nghìn đồng"),
     r"^bien-lai: lines add up to 5\.000 đồng, not the amount of 50\.000 đồng$"),
    (lambda d: d.update(amount_in_words="Năm mươi nghìn đồng"),
     r"^bien-lai: amount_in_words must read the amount \('Năm nghìn đồng'\), got 'Năm mươi nghìn đồng'$"),
    # types and choices
    (lambda d: d.update(kind="paid"), r"^bien-lai: kind must be one of payment, refund, got 'paid'$"),
    (lambda d: d.update(method="card"), r"^bien-lai: method must be one of cash, transfer, online, got 'card'$"),
    (lambda d: d["lines"][0].update(type="fee"), r"^bien-lai: lines\[0\]\.type must be one of phi, le_phi, refund"),
    (lambda d: d["lines"][0].update(type="refund"),
     r"^bien-lai: lines\[0\]\.type refund is only on a refund receipt$"),
    (lambda d: d["lines"][0].update(amount="5000"), r"^bien-lai: lines\[0\]\.amount must be an integer, not str$"),
    (lambda d: d["lines"][0].update(amount=-5000), r"^bien-lai: lines\[0\]\.amount must be at least 0"),
    (lambda d: d.update(amount=5000.0), r"^bien-lai: amount must be an integer, not float$"),
    (lambda d: d.update(lines=[]), r"^bien-lai: lines must list at least one entry$"),
    (lambda d: d.update(lines="Phí chứng thực"), r"^bien-lai: lines must be a list, not str$"),
    (lambda d: d.update(payer=["Lan"]), r"^bien-lai: payer must be a string, not list$"),
    (lambda d: d.update(issued_at="02/03/2026 09:05"), r"^bien-lai: issued_at must be an ISO date-time"),
    (lambda d: d.update(for_receipt="0000120/2026"), r"^bien-lai: for_receipt is only on a refund receipt$"),
    (lambda d: d.update(cancelled={**CANCELLATION, "at": "2026-03-02T09:00:00+07:00"}),
     r"^bien-lai: cancelled\.at must not be before issued_at"),
    (lambda d: d.update(cancelled="Thu nhầm"), r"^bien-lai: cancelled must be an object, not str$"),
])
def test_an_ill_typed_or_inconsistent_field_is_named(change, message):
    data = sample()
    change(data)
    for render in (forms.render_html, forms.render_pdf):
        with pytest.raises(forms.FormError, match=message):
            render(FORM, data)


def test_a_refund_names_the_receipt_it_refunds():
    for render in (forms.render_html, forms.render_pdf):
        with pytest.raises(forms.FormError, match=r"^bien-lai: for_receipt is required on a refund receipt$"):
            render(FORM, refund(for_receipt=None))


# --- fonts -------------------------------------------------------------------------------------


def test_a_missing_font_says_which_file_and_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setenv("MOTCUA_FONT_DIR", str(tmp_path))
    with pytest.raises(forms.FormFontError) as error:
        forms.render_pdf(FORM, sample())
    assert str(tmp_path / "DejaVuSerif.ttf") in str(error.value) and "fonts-dejavu-core" in str(error.value)
    assert "<html" in forms.render_html(FORM, sample())  # HTML needs no font file
