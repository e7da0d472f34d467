"""The official one-stop forms of the intake desk (Circular 01/2018/TT-VPCP) as printable HTML and
as PDF.

Pure rendering: no database, no network. What every official document shares (validation,
Vietnamese dates, the letterhead, the PDF sheet, the base template, the fonts from
``MOTCUA_FONT_DIR``) is in :mod:`motcua.runtime.documents`; this module keeps what is specific to the
desk's four forms, and their templates are in ``templates/forms/`` beside it.

Forms:

- ``mau-01`` Giấy tiếp nhận hồ sơ và hẹn trả kết quả (receipt and appointment, with a QR code
  of the status-lookup URL);
- ``mau-02`` Phiếu yêu cầu bổ sung, hoàn thiện hồ sơ (supplement request);
- ``mau-03`` Phiếu từ chối tiếp nhận giải quyết hồ sơ (refusal);
- ``mau-06`` Sổ theo dõi hồ sơ (tracking book of a unit over a date range, A4 landscape).

Both outputs are built from the same prepared context (one preparer per form): the data is
validated once, every text normalised to NFC and every date formatted the Vietnamese way there,
so the HTML and the PDF always say the same thing.
"""
from __future__ import annotations

import io
from datetime import datetime, time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import segno
from markupsafe import Markup

from motcua.runtime.documents import (BODY_PT, DESK, VIETNAM, Column, Fields, FormError,
                              FormFontError, FormSet, Grid, Sheet, at_time, document_context, letterhead,
                              on_day, place_date, procedure, short_date_time)

__all__ = ["FORMS", "FormError", "FormFontError", "form_title", "render_html", "render_pdf"]

_TITLES = {
    "mau-01": ("Mẫu 01", "Giấy tiếp nhận hồ sơ và hẹn trả kết quả"),
    "mau-02": ("Mẫu 02", "Phiếu yêu cầu bổ sung, hoàn thiện hồ sơ"),
    "mau-03": ("Mẫu 03", "Phiếu từ chối tiếp nhận giải quyết hồ sơ"),
    "mau-06": ("Mẫu 06", "Sổ theo dõi hồ sơ"),
}
FORMS = tuple(_TITLES)

#: How a document was handed in (the ``form`` of a document entry) and its printed label.
DOCUMENT_FORMS = {
    "original": "Bản chính",
    "certified_copy": "Bản sao có chứng thực",
    "copy": "Bản sao",
}

_TEMPLATE_DIR = Path(__file__).resolve().parent / "templates" / "forms"


def form_title(form: str) -> str:
    """The human title of a form: ``Mẫu 01 – Giấy tiếp nhận hồ sơ và hẹn trả kết quả``."""
    return _FORMSET.title(form)


def render_html(form: str, data: dict) -> str:
    """The form as a printable A4 HTML page (every value from ``data`` escaped)."""
    return _FORMSET.render_html(form, data)


def render_pdf(form: str, data: dict) -> bytes:
    """The form as a PDF (A4 portrait, the tracking book A4 landscape), drawn with fpdf2."""
    return _FORMSET.render_pdf(form, data)


# --- the prepared context -----------------------------------------------------------------


def _applicant(fields: Fields) -> dict:
    applicant = fields.obj("applicant")
    return {
        "name": applicant.text("name"),
        "address": applicant.text("address"),
        "phone": applicant.text("phone", required=False),
        "email": applicant.text("email", required=False),
    }


def _documents(fields: Fields, non_empty: bool) -> list[dict]:
    return [
        {
            "no": index,
            "name": document.text("name"),
            "form": DOCUMENT_FORMS[document.choice("form", DOCUMENT_FORMS)],
            "count": document.integer("count"),
        }
        for index, document in enumerate(fields.items("documents", non_empty=non_empty), start=1)
    ]


def _receiving_unit(fields: Fields) -> str:
    unit = fields.obj("unit")
    text = f"{DESK}, {unit.text('name')}"
    address = unit.text("address", required=False)
    return f"{text} (địa chỉ: {address})" if address else text


def _base(form: str, fields: Fields, title_suffix: str, created: datetime) -> dict:
    return document_context(form, _TITLES[form], fields, title_suffix, created=created,
                            landscape=form == "mau-06")


def _prepare_01(form: str, fields: Fields) -> dict:
    code = fields.text("code")
    received = fields.moment("received_at")
    status_url = fields.text("status_url")
    tracking = fields.obj("tracking")
    history = []
    for entry in fields.items("appointment_history", required=False):
        replaced = entry.moment("replaced_at", required=False)
        history.append({
            "date": on_day(entry.day("date")),
            "reason": entry.text("reason", required=False),
            "replaced_at": at_time(replaced) if replaced else None,
        })
    volume = tracking.integer("volume")
    context = _base(form, fields, code, received)
    context.update(
        header=letterhead(fields.obj("unit"), desk=True),
        place_date=place_date(context["place"], received.date()),
        code=code,
        secret=fields.text("secret"),
        status_url=status_url,
        lookup_address=_without_query(status_url),
        receiving_unit=_receiving_unit(fields),
        applicant=_applicant(fields),
        procedure=procedure(fields),
        documents=_documents(fields, non_empty=False),
        sets=f"{fields.integer('sets'):02d} bộ",
        time_limit=fields.text("time_limit"),
        received_at=at_time(received),
        appointment=on_day(fields.day("appointment_date")),
        history=history,
        collect_at=fields.text("collect_at"),
        tracking={
            "year": tracking.integer("year"),
            "volume": f"{volume:02d}",
            "line": tracking.integer("line"),
            "text": f"Quyển số {volume:02d}, Số thứ tự {tracking.integer('line')}",
        },
        official=fields.text("official"),
        qr=_qr(status_url),
    )
    # Safe markup: segno writes the SVG and escapes the title.
    context["qr_svg"] = Markup(context["qr"].svg_inline(
        scale=1, border=0, omitsize=True, svgclass="qr", lineclass="qr-dark",
        title=f"Mã QR tra cứu hồ sơ {code}"))
    return context


def _prepare_02(form: str, fields: Fields) -> dict:
    number = fields.text("number")
    requested = fields.moment("requested_at")
    context = _base(form, fields, f"{number} – {fields.text('code')}", requested)
    context.update(
        header=letterhead(fields.obj("unit"), desk=True, number=number),
        place_date=place_date(context["place"], requested.date()),
        code=fields.text("code"),
        applicant=_applicant(fields),
        procedure=procedure(fields),
        requested_by=fields.text("requested_by"),
        requested_at=at_time(requested),
        documents=_documents(fields, non_empty=True),
        reason=fields.text("reason"),
        contact=fields.text("contact"),
        official=fields.text("official"),
    )
    return context


def _prepare_03(form: str, fields: Fields) -> dict:
    code = fields.text("code", required=False)
    refused = fields.moment("refused_at")
    proc = procedure(fields)
    context = _base(form, fields, code or proc["code"], refused)
    context.update(
        header=letterhead(fields.obj("unit"), desk=True, number=fields.text("number", required=False)),
        place_date=place_date(context["place"], refused.date()),
        code=code,
        receiving_unit=_receiving_unit(fields),
        applicant=_applicant(fields),
        procedure=proc,
        refused_by=fields.text("refused_by", required=False) or DESK,
        refused_at=at_time(refused),
        reason=fields.text("reason"),
        official=fields.text("official"),
    )
    return context


def _prepare_06(form: str, fields: Fields) -> dict:
    first, last = fields.day("from"), fields.day("to")
    if last < first:
        raise fields.error("to", f"must not be before from ({first.isoformat()})")
    volume = fields.integer("volume")
    year = fields.integer("year")
    lines = []
    for line in fields.items("lines"):
        lines.append({
            "line": line.integer("line"),
            "code": line.text("code"),
            "procedure": line.text("procedure"),
            "sets": line.integer("sets"),
            "applicant": line.text("applicant"),
            "lead_agency": line.text("lead_agency", required=False) or "",
            "received_at": short_date_time(line.moment("received_at")),
            "appointment_date": short_date_time(line.day("appointment_date")),
            "transferred_at": short_date_time(line.day_or_moment("transferred_at")),
            "result_date": short_date_time(line.day_or_moment("result_date")),
            "returned_at": short_date_time(line.day_or_moment("returned_at")),
            "notes": line.text("notes", required=False) or "",
        })
    unit_short = fields.obj("unit").text("short_name", required=False) or fields.obj("unit").text("name")
    context = _base(form, fields, f"{unit_short} – Năm {year} – Quyển số {volume:02d}",
                    datetime.combine(last, time(0), VIETNAM))
    context.update(
        header=letterhead(fields.obj("unit"), desk=True),
        place_date=None,
        year=year,
        volume=f"{volume:02d}",
        period=f"Từ {on_day(first)} đến {on_day(last)}",
        lines=lines,
    )
    return context


def _without_query(url: str) -> str:
    """The lookup page's address without the query (the code and secret are printed apart)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")) or url


def _qr(url: str) -> segno.QRCode:
    """The QR code of the status-lookup URL (a regular QR code, error correction level M)."""
    return segno.make_qr(url, error="m")


# --- PDF -------------------------------------------------------------------------------------


class _Sheet(Sheet):
    """The shared sheet plus the list of documents handed in."""

    def documents(self, documents: list[dict], indent: float = 6) -> None:
        """The documents as a table: no., name, form, quantity (long names wrap)."""
        if not documents:
            self.para(("I", "(Không có giấy tờ kèm theo)"), indent=indent)
            return
        self.table_rows(
            ("STT", "Tên giấy tờ", "Hình thức", "Số lượng"),
            ((str(d["no"]), d["name"], d["form"], str(d["count"])) for d in documents),
            col_widths=(12, 92, 44, 18), text_align=("CENTER", "LEFT", "CENTER", "CENTER"), indent=indent)

    def contact(self, applicant: dict) -> None:
        self.para(("", "Số điện thoại: "), ("", applicant["phone"] or ""),
                  ("", "        Thư điện tử: "), ("", applicant["email"] or ""))


def _start(context: dict) -> _Sheet:
    pdf = _Sheet(context)
    pdf.letterhead(context["header"], context["place_date"])
    return pdf


def _draw_01(context: dict) -> bytes:
    pdf = _start(context)
    pdf.heading(context["heading"])
    applicant, proc = context["applicant"], context["procedure"]
    pdf.para(("", "Mã hồ sơ: "), ("B", context["code"]))
    pdf.para(("", "Đơn vị tiếp nhận: "), ("", context["receiving_unit"]))
    pdf.field("Tiếp nhận hồ sơ của", applicant["name"])
    pdf.field("Địa chỉ", applicant["address"])
    pdf.contact(applicant)
    pdf.field("Nội dung yêu cầu giải quyết", proc["line"])
    pdf.para(("", "1. Thành phần hồ sơ nộp gồm:"))
    pdf.documents(context["documents"])
    pdf.field("2. Số lượng hồ sơ", context["sets"])
    pdf.field("3. Thời gian giải quyết hồ sơ theo quy định", context["time_limit"])
    pdf.field("4. Thời gian nhận hồ sơ", context["received_at"])
    pdf.field("5. Thời gian trả kết quả giải quyết hồ sơ", context["appointment"])
    if context["history"]:
        pdf.para(("I", "Ngày hẹn trả đã được điều chỉnh (ngày hẹn cũ gạch bỏ):"), indent=6)
        for entry in context["history"]:
            runs = [("", "– "), ("S", entry["date"])]
            if entry["reason"]:
                runs.append(("", f"; lý do: {entry['reason']}"))
            if entry["replaced_at"]:
                runs.append(("", f" (điều chỉnh lúc {entry['replaced_at']})"))
            pdf.para(*runs, indent=10)
        pdf.para(("", "– Ngày hẹn trả hiện tại: "), ("B", context["appointment"]), indent=10)
    pdf.field("6. Đăng ký nhận kết quả tại", context["collect_at"])
    pdf.para(("", "Vào Sổ theo dõi hồ sơ: "), ("B", context["tracking"]["text"]))

    # The status lookup: the QR code (with the dossier code printed under it) and how to use it.
    pdf.keep(36)
    pdf.ln(1.5)
    top = pdf.get_y()
    box_w, qr_w = 44, 26
    png = io.BytesIO()
    context["qr"].save(png, kind="png", scale=8, border=0)
    png.seek(0)
    pdf.image(png, x=pdf.l_margin + (box_w - qr_w) / 2, y=top, w=qr_w, h=qr_w)
    pdf.set_xy(pdf.l_margin, top + qr_w + 1)
    pdf.font("", 7)
    pdf.multi_cell(box_w, 3.4, context["code"], align="C", new_x="LMARGIN", new_y="NEXT")
    qr_bottom = pdf.get_y()
    pdf.set_xy(pdf.l_margin + box_w + 2, top)
    text_w = pdf.epw - box_w - 2
    for style, size, text in (
        ("B", 10, "Tra cứu tình trạng giải quyết hồ sơ trực tuyến:"),
        ("", 10, f"Quét mã QR bên cạnh hoặc truy cập {context['lookup_address']}, nhập Mã hồ sơ và Mã tra cứu."),
        ("", 10, f"Mã hồ sơ: {context['code']}"),
        ("B", 10, f"Mã tra cứu: {context['secret']}"),
        ("I", 9.5, "Vui lòng giữ kín Mã tra cứu; xuất trình Giấy này khi nhận kết quả."),
    ):
        pdf.font(style, size)
        pdf.multi_cell(text_w, 4.8, text, align="L", new_x="LEFT", new_y="NEXT")
    pdf.set_xy(pdf.l_margin, max(qr_bottom, pdf.get_y()) + 1)
    pdf.font("", BODY_PT)

    pdf.signatures([("NGƯỜI NỘP HỒ SƠ", applicant["name"]),
                    ("NGƯỜI TIẾP NHẬN HỒ SƠ", context["official"])])
    return pdf.finish()


def _draw_02(context: dict) -> bytes:
    pdf = _start(context)
    pdf.heading(context["heading"])
    applicant, proc = context["applicant"], context["procedure"]
    pdf.field("Mã hồ sơ", context["code"])
    pdf.field("Hồ sơ của", applicant["name"])
    pdf.field("Địa chỉ", applicant["address"])
    if applicant["phone"] or applicant["email"]:
        pdf.contact(applicant)
    pdf.field("Nội dung yêu cầu giải quyết", proc["line"])
    pdf.field("Cơ quan, bộ phận yêu cầu bổ sung", context["requested_by"])
    pdf.para(("", "Yêu cầu bổ sung, hoàn thiện hồ sơ gồm những nội dung sau:"))
    pdf.documents(context["documents"])
    pdf.field("Lý do", context["reason"])
    pdf.para(("B", "Hồ sơ chỉ được yêu cầu bổ sung một lần."),
             ("", " Đề nghị Ông/Bà bổ sung đầy đủ các nội dung trên trong một lần nộp; thời gian chờ "
                  "bổ sung không tính vào thời hạn giải quyết hồ sơ."))
    pdf.para(("", "Trong quá trình hoàn thiện hồ sơ, nếu có vướng mắc, Ông/Bà liên hệ: "),
             ("", context["contact"]), ("", " để được hướng dẫn."))
    pdf.signatures([("NGƯỜI HƯỚNG DẪN", context["official"])])
    return pdf.finish()


def _draw_03(context: dict) -> bytes:
    pdf = _start(context)
    pdf.heading(context["heading"])
    applicant, proc = context["applicant"], context["procedure"]
    if context["code"]:
        pdf.field("Mã hồ sơ", context["code"])
    pdf.para(("", "Đơn vị tiếp nhận: "), ("", context["receiving_unit"]))
    pdf.field("Tiếp nhận hồ sơ của", applicant["name"])
    pdf.field("Địa chỉ", applicant["address"])
    if applicant["phone"] or applicant["email"]:
        pdf.contact(applicant)
    pdf.field("Nội dung yêu cầu giải quyết", proc["line"])
    pdf.field("Thời gian", context["refused_at"])
    pdf.para(("", f"Sau khi nghiên cứu, đối chiếu với quy định hiện hành, {context['refused_by']} "
                  "từ chối tiếp nhận, giải quyết hồ sơ này với lý do:"))
    pdf.para(("B", context["reason"]), indent=6)
    pdf.para(("", "Xin thông báo cho Ông/Bà được biết và thực hiện./."))
    pdf.signatures([("NGƯỜI TIẾP NHẬN HỒ SƠ", context["official"])])
    return pdf.finish()


#: The tracking book's columns (widths in mm of the 273 mm landscape body).
_BOOK_COLUMNS = (
    Column("Số TT", 9, "CENTER"),
    Column("Mã hồ sơ", 42),                  # a dossier code at 7.5 pt is 38.6 mm: never wrapped
    Column("Tên thủ tục", 38),
    Column("Số lượng hồ sơ (bộ)", 11, "CENTER"),
    Column("Tên cá nhân, tổ chức", 27),
    Column("Cơ quan chủ trì giải quyết", 24),
    Column("Ngày nhận hồ sơ", 18, "CENTER"),
    Column("Ngày hẹn trả", 18, "CENTER"),
    Column("Chuyển hồ sơ đến cơ quan giải quyết", 18, "CENTER"),
    Column("Ngày có kết quả", 18, "CENTER"),
    Column("Ngày, giờ", 18, "CENTER"),       # under "Trả kết quả"
    Column("Ký nhận", 13, "CENTER"),         # under "Trả kết quả"
    Column("Ghi chú", 19),
)
_BOOK_GROUPS = ((10, 2, "Trả kết quả"),)


def _draw_06(context: dict) -> bytes:
    pdf = _start(context)
    pdf.heading(context["heading"], f"Năm {context['year']} – Quyển số {context['volume']}", context["period"])
    book = Grid(pdf, _BOOK_COLUMNS, groups=_BOOK_GROUPS, numbered=True)
    book.heading()
    for line in context["lines"]:
        book.row([
            str(line["line"]), line["code"], line["procedure"], str(line["sets"]), line["applicant"],
            line["lead_agency"], line["received_at"], line["appointment_date"], line["transferred_at"],
            line["result_date"], line["returned_at"], "", line["notes"],
        ])
    if not context["lines"]:
        pdf.ln(2)
        pdf.para(("I", "Không có hồ sơ nào trong kỳ."))
    return pdf.finish()


_FORMSET = FormSet(
    titles=_TITLES,
    templates=_TEMPLATE_DIR,
    prepare={"mau-01": _prepare_01, "mau-02": _prepare_02, "mau-03": _prepare_03, "mau-06": _prepare_06},
    draw={"mau-01": _draw_01, "mau-02": _draw_02, "mau-03": _draw_03, "mau-06": _draw_06},
)
