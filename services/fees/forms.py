"""The receipt of fees and charges (biên lai thu phí, lệ phí) as printable HTML and as PDF, in
the style of the desk's forms (:mod:`motcua.runtime.documents` holds what they share; the template is
in ``templates/forms/`` beside this module).

Forms:

- ``bien-lai`` Biên lai thu phí, lệ phí: what was collected for a dossier, line by line (phí and
  lệ phí apart), the total in figures and in words, how it was paid, who paid and who collected.
  A refund (``kind`` ``refund``) prints as "BIÊN LAI HOÀN TRẢ PHÍ, LỆ PHÍ" and names the
  receipt(s) it refunds. A cancelled receipt is printed too, marked ĐÃ HỦY with the date, the
  reason and who cancelled it: a receipt keeps its number and is never deleted.

Data of ``bien-lai`` (as ``services.fees.account.Account.receipt_form`` builds it)::

    {"unit": {"code", "name", "short_name", "parent_name" (or None), "address" (or None)},  # the collecting unit
     "label": "0000123/2026",                          # the receipt's number / year: "Số: 0000123/2026"
     "kind": "payment" | "refund",
     "code": "000.05.20.H29-260302-0001",              # the dossier
     "payer": "Nguyễn Thị Lan",
     "procedure": {"code", "name"},
     "lines": [{"name": "Phí chứng thực bản sao từ bản chính", "type": "phi" | "le_phi" | "refund",
                "amount": 5000}],                      # at least one; they add up to amount
     "amount": 5000, "amount_in_words": "Năm nghìn đồng",
     "method": "cash" | "transfer" | "online",
     "official": "Trần Văn Bình" or None,              # the collector (None when paid online)
     "issued_at": "2026-03-02T09:05:00+07:00",
     "for_receipt": "0000120/2026" or None,            # a refund: the receipt(s) refunded (required)
     "cancelled": None or {"at": "2026-03-02T11:00:00+07:00", "reason": "Thu nhầm", "by": "Trần Văn Bình"},
     "place": None}                                    # optional, default Gò Vấp

Amounts are whole đồng, printed ``5.000``. The lines must add up to ``amount`` (FormError on
``lines`` otherwise) and ``amount_in_words`` must read ``amount`` as
:func:`services.fees.domain.vnd_in_words` does (case aside); a ``refund`` line only on a refund
receipt; ``for_receipt`` only, and always, on a refund. Every page's footer names the receipt,
with the ĐÃ HỦY mark when cancelled. Date-times are shown on the Vietnamese clock. Missing or ill-typed fields
raise FormError naming the form and the field (``bien-lai: lines[0].amount is required``).
"""
from __future__ import annotations

from pathlib import Path

from motcua.runtime.documents import (LINE, Column, Fields, FormError, FormFontError, FormSet, Grid, Sheet, at_time,
                              document_context, letterhead, place_date, procedure)
from services.fees.domain import MAX_AMOUNT, vnd_in_words

__all__ = ["FORMS", "FormError", "FormFontError", "form_title", "render_html", "render_pdf"]

# A receipt is not one of the numbered forms of Circular 01/2018: it has a name and no "Mẫu" number.
_TITLES = {
    "bien-lai": "Biên lai thu phí, lệ phí",
}
FORMS = tuple(_TITLES)

#: The kinds of receipt and their printed names.
KINDS = {"payment": "Biên lai thu phí, lệ phí", "refund": "Biên lai hoàn trả phí, lệ phí"}

#: The type of a line (``type``) and its printed label.
LINE_TYPES = {"phi": "Phí", "le_phi": "Lệ phí", "refund": "Hoàn trả"}

#: How the money was paid (``method``) and its printed label.
METHODS = {"cash": "Tiền mặt", "transfer": "Chuyển khoản", "online": "Thanh toán trực tuyến"}

#: The collector's signature note of a payment made online with no official.
ONLINE_NOTE = "(Thu qua thanh toán trực tuyến)"

#: The mark of a cancelled receipt.
CANCELLED_MARK = "ĐÃ HỦY"

_TEMPLATE_DIR = Path(__file__).resolve().parent / "templates" / "forms"


def form_title(form: str) -> str:
    """The human title of a form: ``Biên lai thu phí, lệ phí``."""
    return _TITLES[_FORMSET.check(form)]


def render_html(form: str, data: dict) -> str:
    """The form as a printable A4 HTML page (every value from ``data`` escaped)."""
    return _FORMSET.render_html(form, data)


def render_pdf(form: str, data: dict) -> bytes:
    """The form as an A4 portrait PDF, drawn with fpdf2."""
    return _FORMSET.render_pdf(form, data)


def figures(amount: int) -> str:
    """``1250000`` -> ``1.250.000`` (dots between thousands, as on a Vietnamese receipt)."""
    return f"{amount:,}".replace(",", ".")


# --- the prepared context -----------------------------------------------------------------


def _prepare_receipt(form: str, fields: Fields) -> dict:
    label = fields.text("label")
    kind = fields.choice("kind", KINDS)
    refund = kind == "refund"
    code = fields.text("code")
    payer = fields.text("payer")
    proc = procedure(fields)
    lines = []
    for line in fields.items("lines", non_empty=True):
        name = line.text("name")
        type_ = line.choice("type", LINE_TYPES)
        if type_ == "refund" and not refund:
            raise line.error("type", "refund is only on a refund receipt")
        amount = line.integer("amount", minimum=0)
        lines.append({"name": name, "type_key": type_, "type": LINE_TYPES[type_], "amount": figures(amount),
                      "value": amount})
    amount = fields.integer("amount")
    if amount > MAX_AMOUNT:
        raise fields.error("amount", f"must be at most {figures(MAX_AMOUNT)}, got {figures(amount)}")
    total = sum(line["value"] for line in lines)
    if total != amount:
        raise fields.error("lines", f"add up to {figures(total)} đồng, not the amount of {figures(amount)} đồng")
    words = fields.text("amount_in_words")
    if words.casefold() != vnd_in_words(amount).casefold():  # the figures and the words must agree
        raise fields.error("amount_in_words", f"must read the amount ({vnd_in_words(amount)!r}), got {words!r}")
    method = fields.choice("method", METHODS)
    official = fields.text("official", required=False)
    issued = fields.moment("issued_at")
    for_receipt = fields.text("for_receipt", required=False)
    if refund and not for_receipt:
        raise fields.error("for_receipt", "is required on a refund receipt")
    if for_receipt and not refund:
        raise fields.error("for_receipt", "is only on a refund receipt")
    cancelled = None
    entry = fields.obj("cancelled", required=False)
    if entry is not None:
        at = entry.moment("at")
        if at < issued:
            raise entry.error("at", f"must not be before issued_at ({issued.isoformat()})")
        cancelled = {"mark": CANCELLED_MARK, "at": at_time(at), "reason": entry.text("reason"),
                     "by": entry.text("by")}

    unit = fields.obj("unit")
    name = KINDS[kind]
    context = document_context(form, ("", name), fields, label, created=issued)
    # No "Mẫu" number: the metadata names the receipt by its number and its dossier.
    context["doc_title"] = f"{name} – Số {label} – {code}" + (f" ({CANCELLED_MARK})" if cancelled else "")
    context["subject"] = name
    subtotals = {key: sum(line["value"] for line in lines if line["type_key"] == key) for key in ("phi", "le_phi")}
    context.update(
        header=letterhead(unit),
        place_date=place_date(context["place"], issued.date()),
        number=f"Số: {label}",
        label=label,
        kind=kind,
        unit_label="Đơn vị hoàn trả" if refund else "Đơn vị thu",
        unit_name=unit.text("name"),
        unit_address=unit.text("address", required=False),
        code=code,
        payer_label="Họ và tên người nhận tiền" if refund else "Họ và tên người nộp tiền",
        payer=payer,
        procedure=proc,
        for_receipt=for_receipt,
        lines=lines,
        content_heading="Nội dung hoàn trả" if refund else "Nội dung thu",
        total=f"Tổng cộng: {figures(amount)} đồng",
        # phí and lệ phí go to different budget accounts: both shown when the receipt has both
        breakdown=(f"Trong đó: phí {figures(subtotals['phi'])} đồng, lệ phí {figures(subtotals['le_phi'])} đồng"
                   if all(subtotals.values()) else None),
        amount_in_words=words,
        method_label="Hình thức hoàn trả" if refund else "Hình thức thanh toán",
        method=METHODS[method],
        time_label="Thời điểm hoàn trả" if refund else "Thời điểm thu",
        issued_at=at_time(issued),
        official=official,
        cancelled=cancelled,
        signatures=[("NGƯỜI NHẬN TIỀN" if refund else "NGƯỜI NỘP TIỀN", payer),
                    ("NGƯỜI CHI TIỀN" if refund else "NGƯỜI THU TIỀN", official)
                    + ((ONLINE_NOTE,) if method == "online" and not official else ())],
    )
    return context


# --- PDF -------------------------------------------------------------------------------------


def _columns(content_heading: str) -> tuple[Column, ...]:
    """The lines' columns (widths in mm of the 170 mm portrait body)."""
    return (
        Column("STT", 12, "CENTER"),
        Column(content_heading, 98),
        Column("Loại", 26, "CENTER"),
        Column("Số tiền (đồng)", 34, "RIGHT"),
    )


_RED = (190, 20, 20)


def _cancelled_box(pdf: Sheet, cancelled: dict) -> None:
    """The ĐÃ HỦY mark: a red frame across the body with the mark, when, who and why."""
    lines = [f"Hủy lúc {cancelled['at']}; người hủy: {cancelled['by']}",
             f"Lý do hủy: {cancelled['reason']}"]
    pdf.font("", 10.5)
    width = pdf.epw - 30
    text_lines = sum(len(pdf.multi_cell(width - 6, 5, line, dry_run=True, output="LINES")) for line in lines)
    height = 11 + text_lines * 5 + 3
    pdf.keep(height + 2)
    x, y = pdf.l_margin + 15, pdf.get_y() + 1
    pdf.set_draw_color(*_RED)
    pdf.set_text_color(*_RED)
    pdf.set_line_width(0.8)
    pdf.rect(x, y, width, height)
    pdf.set_line_width(0.2)
    pdf.rect(x + 1.2, y + 1.2, width - 2.4, height - 2.4)
    pdf.set_xy(x, y + 2)
    pdf.font("B", 18)
    pdf.cell(width, 9, cancelled["mark"], align="C", new_x="LEFT", new_y="NEXT")
    pdf.font("", 10.5)
    for line in lines:
        pdf.set_x(x + 3)
        pdf.multi_cell(width - 6, 5, line, align="C", new_x="LEFT", new_y="NEXT")
    pdf.set_text_color(0)
    pdf.set_draw_color(0)
    pdf.set_xy(pdf.l_margin, y + height + 3)
    pdf.font("", 11)


class _ReceiptSheet(Sheet):
    """The shared sheet whose footer names the receipt on every page ("Biên lai số
    0000123/2026"), with the ĐÃ HỦY mark in red when it is cancelled."""

    def __init__(self, context: dict) -> None:
        self.receipt = f"Biên lai số {context['label']}"
        self.mark = context["cancelled"]["mark"] if context["cancelled"] else None
        super().__init__(context)

    def footer(self) -> None:
        super().footer()
        self.font("", 8)
        baseline = self.h - 12 + 2 + 0.3 * self.font_size  # on the page number's line
        self.set_text_color(90)
        self.text(self.l_margin, baseline, self.receipt)
        if self.mark:
            x = self.l_margin + self.get_string_width(self.receipt + " ")
            self.set_text_color(*_RED)
            self.font("B", 8)
            self.text(x, baseline, f"– {self.mark}")
        self.set_text_color(0)


def _draw_receipt(context: dict) -> bytes:
    pdf = _ReceiptSheet(context)
    pdf.letterhead(context["header"], context["place_date"])
    pdf.heading(context["heading"], context["number"])
    if context["cancelled"]:
        _cancelled_box(pdf, context["cancelled"])
    pdf.field(context["unit_label"], context["unit_name"])
    if context["unit_address"]:
        pdf.field("Địa chỉ", context["unit_address"])
    pdf.field(context["payer_label"], context["payer"])
    pdf.field("Mã hồ sơ", context["code"])
    pdf.field("Thủ tục hành chính", context["procedure"]["line"])
    if context["for_receipt"]:
        pdf.para(("", "Hoàn trả cho biên lai số "), ("B", context["for_receipt"]))
    pdf.ln(2)
    grid = Grid(pdf, _columns(context["content_heading"]), size=10.5, line=4.8, pad=1.3, heading_size=10.5)
    grid.heading()
    for index, line in enumerate(context["lines"], start=1):
        grid.row([str(index), line["name"], line["type"], line["amount"]])
    pdf.ln(2.5)
    pdf.keep(4 * LINE)
    pdf.para(("B", context["total"]))
    if context["breakdown"]:
        pdf.para(("", context["breakdown"]))
    pdf.para(("", "Bằng chữ: "), ("I", context["amount_in_words"]))
    pdf.field(context["method_label"], context["method"])
    pdf.field(context["time_label"], context["issued_at"])
    pdf.signatures(context["signatures"])
    return pdf.finish()


_FORMSET = FormSet(
    titles={form: ("", title) for form, title in _TITLES.items()},
    templates=_TEMPLATE_DIR,
    prepare={"bien-lai": _prepare_receipt},
    draw={"bien-lai": _draw_receipt},
)
