"""The shared building blocks of the official documents (motcua.runtime.documents): Vietnamese text and
dates at their edges, the field validation, the letterhead, the template loader a service
registers, the fonts, and the PDF sheet and grid. No database, no broker."""
from __future__ import annotations

import io
from datetime import date, datetime, timedelta, timezone

import pypdf
import pytest

from motcua.runtime import documents
from motcua.runtime.documents import Column, Fields, FormError, FormFontError, FormSet, Grid, Sheet

UTC = timezone.utc
VN = timezone(timedelta(hours=7))


def flat(text: str) -> str:
    return " ".join(text.split())


def pdf_text(data: bytes) -> list[str]:
    return [page.extract_text() for page in pypdf.PdfReader(io.BytesIO(data)).pages]


# --- text ------------------------------------------------------------------------------------


def test_clean_normalises_to_nfc():
    decomposed = "Nguye\u0302\u0303n Thi\u0323 Lan"
    assert decomposed != "Nguyễn Thị Lan"
    assert documents.clean(decomposed) == "Nguyễn Thị Lan"
    assert documents.clean("Ho\u0300a") == "Hòa"


def test_clean_drops_control_characters_and_keeps_line_breaks():
    assert documents.clean("  Lý do:\tthiếu\x00 giấy tờ\r\nDòng hai  \rDòng ba\u200b \n") == \
        "Lý do: thiếu giấy tờ\nDòng hai\nDòng ba"


def test_fields_text_is_cleaned():
    assert Fields("mau-x", {"name": "  Tra\u0302\u0300n Va\u0306n Bi\u0300nh \n"}).text("name") == "Trần Văn Bình"


# --- dates on the Vietnamese clock -----------------------------------------------------------


def test_a_utc_instant_late_in_the_evening_is_the_next_day_in_vietnam():
    fields = Fields("mau-x", {"at": "2026-03-16T17:00:00+00:00", "just_before": "2026-03-16T16:59:59Z"})
    assert fields.day("at") == date(2026, 3, 17)
    assert fields.day("just_before") == date(2026, 3, 16)
    moment = fields.moment("at")
    assert moment.utcoffset() == timedelta(hours=7)
    assert documents.at_time(moment) == "00 giờ 00 phút, ngày 17/03/2026"
    assert documents.place_date("Gò Vấp", moment.date()) == "Gò Vấp, ngày 17 tháng 03 năm 2026"
    assert documents.at_time(fields.moment("just_before")) == "23 giờ 59 phút, ngày 16/03/2026"


def test_datetime_objects_are_converted_and_naive_ones_taken_as_vietnamese():
    fields = Fields("mau-x", {"aware": datetime(2026, 12, 31, 18, 30, tzinfo=UTC),
                              "naive": datetime(2026, 12, 31, 18, 30)})
    assert fields.day("aware") == date(2027, 1, 1)
    assert documents.at_time(fields.moment("aware")) == "01 giờ 30 phút, ngày 01/01/2027"
    assert fields.day("naive") == date(2026, 12, 31)
    assert fields.moment("naive") == datetime(2026, 12, 31, 18, 30, tzinfo=VN)
    assert documents.in_vietnam(datetime(2026, 1, 1, 0, 0, tzinfo=UTC)).hour == 7


def test_vietnamese_date_formats_are_zero_padded():
    day = date(2026, 3, 5)
    moment = datetime(2026, 3, 5, 8, 7, tzinfo=VN)
    assert documents.dmy(day) == "05/03/2026"
    assert documents.dmy(date(999, 1, 2)) == "02/01/0999"
    assert documents.on_day(day) == "ngày 05/03/2026"
    assert documents.clock(moment) == "08 giờ 07 phút"
    assert documents.at_time(moment) == "08 giờ 07 phút, ngày 05/03/2026"
    assert documents.place_date("Gò Vấp", day) == "Gò Vấp, ngày 05 tháng 03 năm 2026"
    assert documents.short_date_time(moment) == "05/03/2026 08 giờ 07"
    assert documents.short_date_time(day) == "05/03/2026"
    assert documents.short_date_time(None) == ""


def test_day_or_moment_keeps_the_time_only_when_given():
    fields = Fields("mau-x", {"d": "2026-03-05", "m": "2026-03-05T01:00:00+00:00"})
    assert fields.day_or_moment("d") == date(2026, 3, 5)
    assert fields.day_or_moment("m") == datetime(2026, 3, 5, 8, 0, tzinfo=VN)
    assert fields.day_or_moment("absent") is None


# --- validation ------------------------------------------------------------------------------


def test_a_missing_or_blank_field_is_named_with_its_path():
    fields = Fields("mau-04", {"unit": {"name": "  "}, "rows": [{"to": "A"}, {"from": "B"}]})
    with pytest.raises(FormError, match=r"^mau-04: unit\.name is required$"):
        fields.obj("unit").text("name")
    with pytest.raises(FormError, match=r"^mau-04: rows\[1\]\.to is required$"):
        [row.text("to") for row in fields.items("rows")]
    with pytest.raises(FormError, match=r"^mau-04: addressee is required$"):
        fields.text("addressee")
    assert fields.text("addressee", required=False) is None


@pytest.mark.parametrize("data, read, message", [
    ({"x": 3}, lambda f: f.text("x"), r"^f: x must be a string, not int$"),
    ({"x": True}, lambda f: f.integer("x"), r"^f: x must be an integer, not bool$"),
    ({"x": 0}, lambda f: f.integer("x"), r"^f: x must be at least 1, got 0$"),
    ({"x": "16/03/2026"}, lambda f: f.day("x"), r"^f: x must be an ISO date \(YYYY-MM-DD\)"),
    ({"x": "2026-03-16 lúc 9 giờ"}, lambda f: f.moment("x"), r"^f: x must be an ISO date-time"),
    ({"x": "overdue"}, lambda f: f.choice("x", {"early": 1, "late": 2}), r"^f: x must be one of early, late"),
    ({"x": "A"}, lambda f: f.obj("x"), r"^f: x must be an object, not str$"),
    ({"x": "A"}, lambda f: f.items("x"), r"^f: x must be a list, not str$"),
    ({"x": []}, lambda f: f.items("x", non_empty=True), r"^f: x must list at least one entry$"),
    ({"x": ["A"]}, lambda f: f.items("x"), r"^f: x\[0\] must be an object, not str$"),
])
def test_an_ill_typed_field_is_named(data, read, message):
    with pytest.raises(FormError, match=message):
        read(Fields("f", data))


def test_an_optional_choice_may_be_absent():
    assert Fields("f", {"x": None}).choice("x", {"early": 1}, required=False) is None
    with pytest.raises(FormError, match="is required"):
        Fields("f", {"x": None}).choice("x", {"early": 1})


def test_the_data_must_be_an_object_and_form_errors_are_value_errors():
    with pytest.raises(FormError, match=r"^mau-05: data must be an object, not list$"):
        Fields("mau-05", [])
    assert issubclass(FormError, ValueError)


# --- the letterhead --------------------------------------------------------------------------


def _letterhead(unit: dict, **kwargs) -> dict:
    return documents.letterhead(Fields("f", {"unit": unit}).obj("unit"), **kwargs)


def test_letterhead_of_a_ward_desk():
    header = _letterhead({"name": "Ủy ban nhân dân Phường 5, quận Gò Vấp", "short_name": "Phường 5",
                          "parent_name": "Ủy ban nhân dân quận Gò Vấp"}, desk=True, number="01/PYCBS")
    assert header["lines"] == [{"text": "UBND QUẬN GÒ VẤP", "bold": False},
                               {"text": "UBND PHƯỜNG 5", "bold": True},
                               {"text": "BỘ PHẬN TIẾP NHẬN VÀ TRẢ KẾT QUẢ", "bold": True}]
    assert header["number"] == "Số: 01/PYCBS"
    assert header["motto"] == ("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Độc lập - Tự do - Hạnh phúc")


def test_letterhead_of_an_agency_and_of_the_district():
    agency = _letterhead({"name": "Chi cục Thuế quận Gò Vấp", "short_name": "Chi cục Thuế",
                          "parent_name": "Uỷ ban nhân dân quận Gò Vấp"})  # the old spelling "Uỷ"
    assert [line["text"] for line in agency["lines"]] == ["UBND QUẬN GÒ VẤP", "CHI CỤC THUẾ QUẬN GÒ VẤP"]
    assert agency["number"] is None
    district = _letterhead({"name": "Ủy ban nhân dân quận Gò Vấp", "short_name": "Quận Gò Vấp",
                            "parent_name": "Ủy ban nhân dân quận Gò Vấp"})
    assert [line["text"] for line in district["lines"]] == ["UBND QUẬN GÒ VẤP"]  # not twice
    alone = _letterhead({"name": "Chi cục Thuế quận Gò Vấp", "parent_name": None})
    assert alone["lines"] == [{"text": "CHI CỤC THUẾ QUẬN GÒ VẤP", "bold": True}]


def test_caps_of_unit_names():
    assert documents.caps("Ủy ban nhân dân Thành phố Hồ Chí Minh") == "UBND THÀNH PHỐ HỒ CHÍ MINH"
    assert documents.caps("Phòng Tư pháp") == "PHÒNG TƯ PHÁP"


def test_document_context_defaults():
    fields = Fields("mau-04", {"unit": {"name": "Chi cục Thuế quận Gò Vấp"}})
    created = datetime(2026, 3, 17, 10, tzinfo=VN)
    context = documents.document_context("mau-04", ("Mẫu 04", "Phiếu xin lỗi"), fields, "X-1", created=created)
    assert context == {"form": "mau-04", "form_number": "Mẫu 04", "heading": "PHIẾU XIN LỖI",
                       "doc_title": "Mẫu 04 – Phiếu xin lỗi – X-1", "subject": "Mẫu 04 – Phiếu xin lỗi",
                       "author": "Chi cục Thuế quận Gò Vấp", "place": "Gò Vấp", "landscape": False,
                       "created": created}
    fields.data["place"] = "Thành phố Hồ Chí Minh"
    assert documents.document_context("mau-04", ("Mẫu 04", "P"), fields, "X", created=created,
                                      landscape=True)["place"] == "Thành phố Hồ Chí Minh"


# --- templates: a service's folder first, then the shared one -----------------------------------


@pytest.fixture
def service_templates(tmp_path):
    folder = tmp_path / "forms"
    folder.mkdir()
    (folder / "mau-x.html").write_text(
        '{% extends "documents/base.html" %}{% block body %}'
        '{% import "documents/macros.html" as doc %}<p class="who">{{ who }}</p>'
        '{{ doc.field("Lý do", reason) }}<p class="runs">{{ doc.runs(runs) }}</p>'
        '{{ doc.signatures([("NGƯỜI KÝ", who, "(Ký tên)")]) }}{% endblock %}', encoding="utf-8")
    (folder / "mau-y.html").write_text('{% extends "base.html" %}', encoding="utf-8")
    return folder


def _context(**extra) -> dict:
    header = _letterhead({"name": "Chi cục Thuế quận Gò Vấp", "parent_name": "Ủy ban nhân dân quận Gò Vấp"})
    context = {"form": "mau-x", "doc_title": "Mẫu X – Thử", "landscape": False, "header": header,
               "place_date": "Gò Vấp, ngày 17 tháng 03 năm 2026", "heading": "PHIẾU THỬ"}
    context.update(extra)
    return context


def test_a_service_template_extends_the_shared_base(service_templates):
    html = documents.environment(service_templates).get_template("mau-x.html").render(
        **_context(who="<b>Lan</b>", reason="a & b", runs=[("", "Ngày "), ("B", "<20/03/2026>"), ("S", "cũ")]))
    assert html.startswith("<!doctype html>") and '<html lang="vi">' in html
    assert "<title>Mẫu X – Thử</title>" in html
    assert "UBND QUẬN GÒ VẤP" in html and "CHI CỤC THUẾ QUẬN GÒ VẤP" in html
    assert "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM" in html and "Gò Vấp, ngày 17 tháng 03 năm 2026" in html
    assert "<h1>PHIẾU THỬ</h1>" in html and "size: A4;" in html
    assert '<p class="who">&lt;b&gt;Lan&lt;/b&gt;</p>' in html  # autoescaped
    assert 'Lý do: <span class="value">a &amp; b</span>' in html
    assert '<p class="runs">Ngày <strong>&lt;20/03/2026&gt;</strong><del>cũ</del></p>' in html
    assert "(Ký tên)" in html and "NGƯỜI KÝ" in html
    assert "table.grid thead { display: table-header-group; }" in html


def test_the_shared_templates_are_found_without_the_prefix(service_templates):
    html = documents.environment(service_templates).get_template("mau-y.html").render(**_context())
    assert "<h1>PHIẾU THỬ</h1>" in html and "CHI CỤC THUẾ QUẬN GÒ VẤP" in html


def test_the_service_folder_comes_first(tmp_path):
    folder = tmp_path / "own"
    folder.mkdir()
    (folder / "mau-y.html").write_text('{% extends "base.html" %}', encoding="utf-8")
    (folder / "base.html").write_text(  # the service's own base, itself on the shared one
        '{% extends "documents/base.html" %}{% block style %}.own { color: red; }{% endblock %}', encoding="utf-8")
    html = documents.environment(folder).get_template("mau-y.html").render(**_context())
    assert ".own { color: red; }" in html and "<h1>PHIẾU THỬ</h1>" in html
    assert documents.environment(folder) is documents.environment(str(folder))  # one per folder


def test_an_undefined_name_in_a_template_is_an_error(service_templates):
    from jinja2 import UndefinedError
    with pytest.raises(UndefinedError):
        documents.environment(service_templates).get_template("mau-x.html").render(**_context())


def test_formset_dispatches_and_names_unknown_forms(service_templates):
    def prepare(form, fields):
        return _context(form=form, who=fields.text("who"), reason="r", runs=[], subject="Mẫu X – Thử",
                        author="A", created=datetime(2026, 3, 17, tzinfo=VN))

    def draw(context):
        return f"PDF of {context['who']}".encode()

    formset = FormSet({"mau-x": ("Mẫu X", "Phiếu thử")}, service_templates, {"mau-x": prepare}, {"mau-x": draw})
    assert formset.forms == ("mau-x",)
    assert formset.title("mau-x") == "Mẫu X – Phiếu thử"
    assert formset.render_pdf("mau-x", {"who": "Lan"}) == b"PDF of Lan"
    assert '<p class="who">Lan</p>' in formset.render_html("mau-x", {"who": "Lan"})
    with pytest.raises(FormError, match=r"^mau-x: who is required$"):
        formset.render_pdf("mau-x", {})
    for call in (formset.title, lambda f: formset.render_html(f, {}), lambda f: formset.render_pdf(f, {})):
        with pytest.raises(FormError, match=r"unknown form 'mau-z': expected one of mau-x"):
            call("mau-z")
    with pytest.raises(ValueError, match="title, a preparer and a drawer"):
        FormSet({"mau-x": ("Mẫu X", "P")}, service_templates, {"mau-x": prepare}, {})


# --- fonts -----------------------------------------------------------------------------------


def test_a_missing_font_names_the_file_and_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setenv("MOTCUA_FONT_DIR", str(tmp_path))
    with pytest.raises(FormFontError) as error:
        documents.font_files()
    assert str(tmp_path / "DejaVuSerif.ttf") in str(error.value)
    assert "fonts-dejavu-core" in str(error.value) and "MOTCUA_FONT_DIR" in str(error.value)
    with pytest.raises(FormFontError):
        Sheet(_sheet_context())


def test_the_italic_face_is_optional(monkeypatch, tmp_path):
    fonts = documents.font_files()
    for style in ("", "B"):
        (tmp_path / fonts[style].name).symlink_to(fonts[style])
    monkeypatch.setenv("MOTCUA_FONT_DIR", str(tmp_path))
    files = documents.font_files()
    assert files["I"] == tmp_path / "DejaVuSerif.ttf"
    assert files["B"] == tmp_path / "DejaVuSerif-Bold.ttf"


# --- the PDF sheet -----------------------------------------------------------------------------


def _sheet_context(**extra) -> dict:
    context = {"landscape": False, "doc_title": "Mẫu X – Phiếu thử – 000.00.20.H29-260302-0007",
               "author": "Chi cục Thuế quận Gò Vấp", "subject": "Mẫu X – Phiếu thử",
               "created": datetime(2026, 3, 17, 10, 0, tzinfo=VN)}
    context.update(extra)
    return context


def _letter(context: dict, code: str = "000.00.20.H29-260302-0007") -> bytes:
    pdf = Sheet(context)
    header = _letterhead({"name": "Chi cục Thuế quận Gò Vấp", "parent_name": "Ủy ban nhân dân quận Gò Vấp"},
                         number="12/CCT")
    pdf.letterhead(header, "Gò Vấp, ngày 17 tháng 03 năm 2026")
    pdf.heading("PHIẾU THỬ", "Dòng phụ")
    pdf.field("Người nhận", "Nguyễn Thị Lan")
    # The filler ends near the right margin, so the code cannot stay on the first line.
    filler = "Ông/Bà vui lòng liên hệ Bộ phận tiếp nhận và trả kết quả với mã hồ sơ:"
    pdf.para(("", filler + " "), ("B", code), ("", "."))
    pdf.signatures([("NGƯỜI GIAO", "Trần Văn Bình"), ("NGƯỜI NHẬN", None, "(Ký, ghi rõ họ tên và đóng dấu)")])
    return pdf.finish()


def test_sheet_draws_letterhead_fields_and_signatures():
    data = _letter(_sheet_context())
    reader = pypdf.PdfReader(io.BytesIO(data))
    assert len(reader.pages) == 1
    width, height = float(reader.pages[0].mediabox.width), float(reader.pages[0].mediabox.height)
    assert (width, height) == pytest.approx((595.28, 841.89), abs=0.5)
    text = flat(reader.pages[0].extract_text())
    for expected in ["UBND QUẬN GÒ VẤP", "CHI CỤC THUẾ QUẬN GÒ VẤP", "Số: 12/CCT",
                     "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Độc lập - Tự do - Hạnh phúc",
                     "Gò Vấp, ngày 17 tháng 03 năm 2026", "PHIẾU THỬ", "Dòng phụ", "Người nhận: Nguyễn Thị Lan",
                     "NGƯỜI GIAO", "(Ký và ghi rõ họ tên)", "Trần Văn Bình", "NGƯỜI NHẬN",
                     "(Ký, ghi rõ họ tên và đóng dấu)", "Trang 1/1"]:
        assert expected in text, expected
    assert reader.metadata.title == "Mẫu X – Phiếu thử – 000.00.20.H29-260302-0007"
    assert reader.metadata.subject == "Mẫu X – Phiếu thử"
    assert reader.metadata.author == "Chi cục Thuế quận Gò Vấp"


def test_a_value_that_does_not_fit_the_line_moves_whole_to_the_next_one():
    code = "000.00.20.H29-260302-0007"
    lines = pdf_text(_letter(_sheet_context(), code))[0].split("\n")
    assert any(line.startswith(code) for line in lines), [line for line in lines if "000" in line]
    assert any(line.rstrip().endswith("mã hồ sơ:") for line in lines)


def test_sheet_output_is_deterministic_and_dated_by_the_data():
    first = _letter(_sheet_context())
    assert first == _letter(_sheet_context())
    assert pypdf.PdfReader(io.BytesIO(first)).metadata.creation_date == datetime(2026, 3, 17, 10, tzinfo=VN)
    other = _letter(_sheet_context(created=datetime(2026, 3, 18, 10, 0, tzinfo=VN)))
    assert other != first
    assert pypdf.PdfReader(io.BytesIO(other)).metadata.creation_date == datetime(2026, 3, 18, 10, tzinfo=VN)


def test_sheet_landscape():
    page = pypdf.PdfReader(io.BytesIO(_letter(_sheet_context(landscape=True)))).pages[0]
    assert (float(page.mediabox.width), float(page.mediabox.height)) == pytest.approx((841.89, 595.28), abs=0.5)


def test_table_rows_repeat_the_heading_on_every_page():
    pdf = Sheet(_sheet_context())
    pdf.table_rows(("STT", "Tên giấy tờ"), ((str(i), f"Giấy tờ thứ {i}") for i in range(1, 121)),
                   col_widths=(20, 150), text_align=("CENTER", "LEFT"))
    pages = pdf_text(pdf.finish())
    assert len(pages) >= 3
    assert all(page.count("Tên giấy tờ") == 1 for page in pages)
    text = flat(" ".join(pages))
    assert all(f"Giấy tờ thứ {i}" in text for i in range(1, 121))


# --- the grid ----------------------------------------------------------------------------------


COLUMNS = (Column("STT", 12, "CENTER"), Column("TÊN CƠ QUAN", 70), Column("Ngày", 30, "CENTER"),
           Column("Giờ", 28, "CENTER"), Column("GHI CHÚ", 30))


def _grid_pdf(rows: int, **options) -> tuple[bytes, Grid]:
    pdf = Sheet(_sheet_context())
    grid = Grid(pdf, COLUMNS, **options)
    grid.heading()
    for i in range(1, rows + 1):
        grid.row([str(i), f"Cơ quan số {i}\nPhòng {i}", f"{i:02d}/03/2026", "08 giờ 00", "x " * (i % 9)])
    return pdf.finish(), grid


def test_grid_repeats_its_heading_and_never_splits_a_row():
    data, _ = _grid_pdf(90, groups=((2, 2, "Thời gian giao nhận"),), numbered=True, size=9, line=4)
    pages = pdf_text(data)
    assert len(pages) >= 3
    for page in pages:
        assert page.count("TÊN CƠ QUAN") == 1
        assert page.count("Thời gian giao nhận") == 1
        assert "(1)" in page and "(5)" in page
    for i in range(1, 91):  # both lines of a row's cell on the same page
        holders = [n for n, page in enumerate(pages) if f"Cơ quan số {i}\n" in page or f"Cơ quan số {i} " in page]
        assert len(holders) == 1, i
        assert f"Phòng {i}" in pages[holders[0]], i
    text = flat(" ".join(pages))
    positions = [text.index(f"Cơ quan số {i} ") for i in range(1, 91)]
    assert positions == sorted(positions)


def test_grid_wraps_long_words_and_text_to_the_cell():
    pdf = Sheet(_sheet_context())
    grid = Grid(pdf, COLUMNS)
    pdf.font("", grid.size)
    lines = grid.wrap("Chi nhánh Văn phòng Đăng ký đất đai quận Gò Vấp", 30)
    assert len(lines) > 1 and " ".join(lines) == "Chi nhánh Văn phòng Đăng ký đất đai quận Gò Vấp"
    assert all(pdf.get_string_width(line) <= 30 - 2 * grid.pad for line in lines)
    cut = grid.wrap("000.00.20.H29-260302-0007", 12)
    assert "".join(cut) == "000.00.20.H29-260302-0007" and len(cut) > 1
    assert grid.wrap("a\nb", 30) == ["a", "b"]
