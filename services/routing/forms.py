"""The official forms of inter-agency routing (Circular 01/2018/TT-VPCP) as printable HTML and
as PDF, in the style of the desk's forms (:mod:`motcua.runtime.documents` holds what they share; the
templates are in ``templates/forms/`` beside this module).

Forms:

- ``mau-04`` Phiếu xin lỗi và hẹn lại ngày trả kết quả (apology and new date), issued by the
  agency that caused the delay, to the applicant;
- ``mau-05`` Phiếu kiểm soát quá trình giải quyết hồ sơ (process-control slip): one row per
  hand-over of the dossier between agencies, with the time, the giver and the receiver and the
  result (early / on time / late).

Data of ``mau-04``::

    {"unit": {"code", "name", "short_name", "parent_name" (or None), "address"},   # the agency at fault
     "number": None,                                   # optional: "Số: ..." under the unit
     "code": "000.00.20.H29-260302-0007", "addressee": "Nguyễn Thị Lan",
     "received_at": "2026-03-02T09:00:00+07:00", "procedure": {"code", "name"},
     "original_due_date": "2026-03-16", "new_date": "2026-03-20",       # new_date after the original
     "reason": "...", "official": "Phạm Văn Cường", "issued_at": "2026-03-17T10:00:00+07:00",
     "signer_title": None,                             # optional, default THỦ TRƯỞNG CƠ QUAN
     "place": None}                                    # optional, default Gò Vấp

Data of ``mau-05``::

    {"unit": {...the receiving desk's unit...}, "code": "...", "applicant": "Nguyễn Thị Lan",
     "procedure": {"code", "name"}, "received_at": "2026-03-02T09:00:00+07:00", "due_date": "2026-03-16",
     "rows": [{"from": "Bộ phận tiếp nhận và trả kết quả", "to": "Chi nhánh Văn phòng Đăng ký đất đai",
               "at": "2026-03-02T09:05:00+07:00", "giver": "Trần Văn Bình",
               "receiver": "Lê Văn Đức" or None, "result": "early" | "on_time" | "late" | None,
               "notes": "..." or ""}]}

``rows`` may be empty (the slip printed at reception); no hand-over is before ``received_at``.
Date-times are shown on the Vietnamese clock. Missing or ill-typed fields raise FormError naming
the form and the field (``mau-05: rows[1].to is required``).
"""
from __future__ import annotations

from pathlib import Path

from motcua.contracts.vocabulary import RESULT_VI
from motcua.runtime.documents import (Column, Fields, FormError, FormFontError, FormSet, Grid, Sheet, at_time, dmy,
                              document_context, letterhead, on_day, place_date, procedure)

__all__ = ["FORMS", "FormError", "FormFontError", "form_title", "render_html", "render_pdf"]

_TITLES = {
    "mau-04": ("Mẫu 04", "Phiếu xin lỗi và hẹn lại ngày trả kết quả"),
    "mau-05": ("Mẫu 05", "Phiếu kiểm soát quá trình giải quyết hồ sơ"),
}
FORMS = tuple(_TITLES)

#: The signature block of the apology unless the data has ``signer_title``.
DEFAULT_SIGNER = "THỦ TRƯỞNG CƠ QUAN"

_TEMPLATE_DIR = Path(__file__).resolve().parent / "templates" / "forms"


def form_title(form: str) -> str:
    """The human title of a form: ``Mẫu 04 – Phiếu xin lỗi và hẹn lại ngày trả kết quả``."""
    return _FORMSET.title(form)


def render_html(form: str, data: dict) -> str:
    """The form as a printable A4 HTML page (every value from ``data`` escaped)."""
    return _FORMSET.render_html(form, data)


def render_pdf(form: str, data: dict) -> bytes:
    """The form as an A4 portrait PDF, drawn with fpdf2."""
    return _FORMSET.render_pdf(form, data)


# --- the prepared context -----------------------------------------------------------------


def _prepare_04(form: str, fields: Fields) -> dict:
    code = fields.text("code")
    received = fields.moment("received_at")
    original, new = fields.day("original_due_date"), fields.day("new_date")
    if new <= original:
        raise fields.error("new_date", f"must be after original_due_date ({original.isoformat()})")
    issued = fields.moment("issued_at")
    unit = fields.obj("unit")
    agency = unit.text("name")
    proc = procedure(fields)
    context = document_context(form, _TITLES[form], fields, code, created=issued)
    # The letter's paragraphs as (style, text) runs: the template and the PDF print the same runs.
    paragraphs = [
        [("", f"Ngày {dmy(received)}, {agency} tiếp nhận giải quyết hồ sơ của Ông/Bà đề nghị giải quyết "
              "thủ tục hành chính: "), ("B", proc["line"]), ("", "; mã hồ sơ: "), ("B", code),
         ("", "; hẹn trả kết quả "), ("B", on_day(original)), ("", ".")],
        [("", f"Tuy nhiên đến nay, {agency} chưa trả kết quả giải quyết hồ sơ cho Ông/Bà đúng thời hạn "
              "ghi trên Giấy tiếp nhận hồ sơ và hẹn trả kết quả (hồ sơ giải quyết quá hạn).")],
        [("", "Lý do: "), ("B", fields.text("reason"))],
        [("", f"{agency} xin lỗi Ông/Bà vì sự chậm trễ này và hẹn lại ngày trả kết quả là "),
         ("B", on_day(new)), ("", ".")],
        [("", "Mong nhận được sự thông cảm của Ông/Bà./.")],
    ]
    context.update(
        header=letterhead(unit, number=fields.text("number", required=False)),
        place_date=place_date(context["place"], issued.date()),
        code=code,
        addressee=fields.text("addressee"),
        agency=agency,
        procedure=proc,
        received_at=at_time(received),
        original_due_date=on_day(original),
        new_date=on_day(new),
        paragraphs=paragraphs,
        signature=(fields.text("signer_title", required=False) or DEFAULT_SIGNER, fields.text("official"),
                   "(Ký, ghi rõ họ tên và đóng dấu)"),
    )
    return context


def _prepare_05(form: str, fields: Fields) -> dict:
    code = fields.text("code")
    received = fields.moment("received_at")
    due = fields.day("due_date")
    if due < received.date():
        raise fields.error("due_date", f"must not be before received_at ({received.date().isoformat()})")
    rows = []
    for row in fields.items("rows"):
        at = row.moment("at")
        if at < received:
            raise row.error("at", f"must not be before received_at ({received.isoformat()})")
        result = row.choice("result", RESULT_VI, required=False)  # the hand-over's class and its printed label
        rows.append({
            "from": row.text("from"),
            "to": row.text("to"),
            "at": at_time(at),
            "moment": at,
            "giver": row.text("giver"),
            "receiver": row.text("receiver", required=False) or "",
            "result_key": result or "",
            "result": RESULT_VI[result] if result else "",
            "notes": row.text("notes", required=False) or "",
        })
    proc = procedure(fields)
    # The slip changes with every hand-over: it is dated by its last entry.
    created = max([received] + [row["moment"] for row in rows])
    context = document_context(form, _TITLES[form], fields, code, created=created)
    context.update(
        header=letterhead(fields.obj("unit"), desk=True),
        place_date=None,
        code=code,
        applicant=fields.text("applicant"),
        procedure=proc,
        received_at=at_time(received),
        due_date=on_day(due),
        rows=rows,
    )
    return context


# --- PDF -------------------------------------------------------------------------------------


def _draw_04(context: dict) -> bytes:
    pdf = Sheet(context)
    pdf.letterhead(context["header"], context["place_date"])
    pdf.heading(context["heading"])
    pdf.font("", 12)
    pdf.multi_cell(0, 6, f"Kính gửi: {context['addressee']}", align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    for runs in context["paragraphs"]:
        pdf.para(*runs, h=6)
        pdf.ln(1)
    pdf.signatures([context["signature"]])
    return pdf.finish()


#: The control slip's columns (widths in mm of the 170 mm portrait body).
_CONTROL_COLUMNS = (
    Column("TÊN CƠ QUAN", 52),
    Column("THỜI GIAN GIAO, NHẬN HỒ SƠ", 58),   # "09 giờ 05 phút, ngày 02/03/2026" on one line
    Column("KẾT QUẢ GIẢI QUYẾT HỒ SƠ (Trước hạn/ Đúng hạn/ Quá hạn)", 30, "CENTER"),
    Column("GHI CHÚ", 30),
)


def _draw_05(context: dict) -> bytes:
    pdf = Sheet(context)
    pdf.letterhead(context["header"], context["place_date"])
    pdf.heading(context["heading"])
    pdf.field("Mã hồ sơ", context["code"])
    pdf.field("Tổ chức, cá nhân nộp hồ sơ", context["applicant"])
    pdf.field("Thủ tục hành chính", context["procedure"]["line"])
    pdf.field("Thời gian nhận hồ sơ", context["received_at"])
    pdf.field("Thời gian hẹn trả kết quả", context["due_date"])
    pdf.ln(3)
    grid = Grid(pdf, _CONTROL_COLUMNS, size=9.5, line=4.3, pad=1.2, heading_size=8.5)
    grid.heading()
    for row in context["rows"]:
        grid.row([
            f"1. Giao: {row['from']}\n2. Nhận: {row['to']}",
            f"{row['at']}\nNgười giao: {row['giver']}\nNgười nhận: {row['receiver']}",
            row["result"],
            row["notes"],
        ])
    if not context["rows"]:
        pdf.ln(2)
        pdf.para(("I", "(Chưa có lần giao, nhận hồ sơ nào.)"))
    return pdf.finish()


_FORMSET = FormSet(
    titles=_TITLES,
    templates=_TEMPLATE_DIR,
    prepare={"mau-04": _prepare_04, "mau-05": _prepare_05},
    draw={"mau-04": _draw_04, "mau-05": _draw_05},
)
