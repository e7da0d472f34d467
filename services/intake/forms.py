"""The official one-stop forms (Circular 01/2018/TT-VPCP) as printable HTML and as PDF.

Pure rendering: no database, no network. The only I/O is reading the Jinja2 templates
(``templates/forms/`` beside this module) and the DejaVu Serif font files (directory in the
environment variable ``MOTCUA_FONT_DIR``, default ``/usr/share/fonts/truetype/dejavu``, Debian's
``fonts-dejavu-core``).

Forms:

- ``mau-01`` Giấy tiếp nhận hồ sơ và hẹn trả kết quả (receipt and appointment, with a QR code
  of the status-lookup URL);
- ``mau-02`` Phiếu yêu cầu bổ sung, hoàn thiện hồ sơ (supplement request);
- ``mau-03`` Phiếu từ chối tiếp nhận giải quyết hồ sơ (refusal);
- ``mau-06`` Sổ theo dõi hồ sơ (tracking book of a unit over a date range, A4 landscape).

Both outputs are built from the same prepared context (``_prepare``): the data is validated
once, every text normalised to NFC and every date formatted the Vietnamese way there, so the
HTML and the PDF always say the same thing.
"""
from __future__ import annotations

import io
import os
import re
import unicodedata
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

import segno
from fpdf import FPDF, FontFace
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

__all__ = ["FORMS", "FormError", "FormFontError", "form_title", "render_html", "render_pdf"]

FORMS = ("mau-01", "mau-02", "mau-03", "mau-06")

_TITLES = {
    "mau-01": ("Mẫu 01", "Giấy tiếp nhận hồ sơ và hẹn trả kết quả"),
    "mau-02": ("Mẫu 02", "Phiếu yêu cầu bổ sung, hoàn thiện hồ sơ"),
    "mau-03": ("Mẫu 03", "Phiếu từ chối tiếp nhận giải quyết hồ sơ"),
    "mau-06": ("Mẫu 06", "Sổ theo dõi hồ sơ"),
}

#: How a document was handed in (the ``form`` of a document entry) and its printed label.
DOCUMENT_FORMS = {
    "original": "Bản chính",
    "certified_copy": "Bản sao có chứng thực",
    "copy": "Bản sao",
}

DESK = "Bộ phận tiếp nhận và trả kết quả"
MOTTO = ("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Độc lập - Tự do - Hạnh phúc")
#: The place name of the "<place>, ngày ... tháng ... năm ..." line unless the data has ``place``.
DEFAULT_PLACE = "Gò Vấp"

#: Viet Nam has one time zone, UTC+7, and no daylight saving time.
VIETNAM = timezone(timedelta(hours=7))

DEFAULT_FONT_DIR = "/usr/share/fonts/truetype/dejavu"
_FONT_FAMILY = "DejaVuSerif"
_FONT_FILES = {"": "DejaVuSerif.ttf", "B": "DejaVuSerif-Bold.ttf"}
# Italic is only in fonts-dejavu-extra: used when present, otherwise the regular face stands in.
_OPTIONAL_FONT_FILES = {"I": "DejaVuSerif-Italic.ttf"}

_TEMPLATE_DIR = Path(__file__).resolve().parent / "templates" / "forms"


class FormError(ValueError):
    """The data of a form misses a field or has one of the wrong type; the message names the
    form and the field, e.g. ``mau-01: applicant.name is required``."""


class FormFontError(RuntimeError):
    """The TrueType font needed for the PDF (Vietnamese diacritics) is not installed."""


def form_title(form: str) -> str:
    """The human title of a form: ``Mẫu 01 – Giấy tiếp nhận hồ sơ và hẹn trả kết quả``."""
    number, name = _TITLES[_check_form(form)]
    return f"{number} – {name}"


def render_html(form: str, data: dict) -> str:
    """The form as a printable A4 HTML page (every value from ``data`` escaped)."""
    context = _prepare(_check_form(form), data)
    return _environment().get_template(f"{form}.html").render(**context)


def render_pdf(form: str, data: dict) -> bytes:
    """The form as a PDF (A4 portrait, the tracking book A4 landscape), drawn with fpdf2."""
    context = _prepare(_check_form(form), data)
    return _DRAWERS[form](context)


def _check_form(form: str) -> str:
    if form not in _TITLES:
        raise FormError(f"unknown form {form!r}: expected one of {', '.join(FORMS)}")
    return form


# --- validation ------------------------------------------------------------------------------


class _Fields:
    """Typed access to one mapping of the data, raising FormError with the dotted field path."""

    def __init__(self, form: str, data: Any, prefix: str = "") -> None:
        self.form = form
        self.prefix = prefix
        if not isinstance(data, dict):
            raise FormError(f"{form}: {prefix or 'data'} must be an object, not {type(data).__name__}")
        self.data = data

    def path(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def error(self, key: str, problem: str) -> FormError:
        return FormError(f"{self.form}: {self.path(key)} {problem}")

    def _raw(self, key: str, required: bool) -> Any:
        value = self.data.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                raise self.error(key, "is required")
            return None
        return value

    def text(self, key: str, required: bool = True) -> str | None:
        value = self._raw(key, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, not {type(value).__name__}")
        return _clean(value)

    def integer(self, key: str, required: bool = True, minimum: int = 1) -> int | None:
        value = self._raw(key, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, not {type(value).__name__}")
        if value < minimum:
            raise self.error(key, f"must be at least {minimum}, got {value}")
        return value

    def day(self, key: str, required: bool = True) -> date | None:
        value = self._raw(key, required)
        if value is None:
            return None
        if isinstance(value, datetime):
            return _in_vietnam(value).date()
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                pass
            try:  # a date-time where a date is expected: its day on the Vietnamese clock
                return _in_vietnam(datetime.fromisoformat(value.strip())).date()
            except ValueError:
                pass
        raise self.error(key, f"must be an ISO date (YYYY-MM-DD), got {value!r}")

    def moment(self, key: str, required: bool = True) -> datetime | None:
        value = self._raw(key, required)
        if value is None:
            return None
        if isinstance(value, datetime):
            return _in_vietnam(value)
        if isinstance(value, str):
            try:
                return _in_vietnam(datetime.fromisoformat(value.strip()))
            except ValueError:
                pass
        raise self.error(key, f"must be an ISO date-time (YYYY-MM-DDTHH:MM:SS+07:00), got {value!r}")

    def day_or_moment(self, key: str, required: bool = False) -> date | datetime | None:
        """A date, or a date-time when the value has a time part (the tracking book's
        transferred/result/returned columns take either)."""
        value = self._raw(key, required)
        if value is None:
            return None
        if isinstance(value, str) and "T" not in value and " " not in value.strip():
            return self.day(key, required)
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        return self.moment(key, required)

    def choice(self, key: str, choices: dict[str, str]) -> str:
        value = self._raw(key, True)
        if not isinstance(value, str) or value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def obj(self, key: str, required: bool = True) -> _Fields | None:
        value = self._raw(key, required)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.error(key, f"must be an object, not {type(value).__name__}")
        return _Fields(self.form, value, self.path(key))

    def items(self, key: str, required: bool = True, non_empty: bool = False) -> list[_Fields]:
        value = self.data.get(key)
        if value is None:
            if required:
                raise self.error(key, "is required")
            return []
        if not isinstance(value, (list, tuple)):
            raise self.error(key, f"must be a list, not {type(value).__name__}")
        if non_empty and not value:
            raise self.error(key, "must list at least one entry")
        result = []
        for index, item in enumerate(value):
            path = f"{self.path(key)}[{index}]"
            if not isinstance(item, dict):
                raise FormError(f"{self.form}: {path} must be an object, not {type(item).__name__}")
            result.append(_Fields(self.form, item, path))
        return result


def _clean(text: str) -> str:
    """NFC (the PDF font has no shaping for combining marks), no control characters except
    line breaks, no trailing blanks."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " "))
    text = "".join(c for c in text if c == "\n" or not unicodedata.category(c).startswith("C"))
    return "\n".join(line.rstrip() for line in text.strip().split("\n"))


def _in_vietnam(moment: datetime) -> datetime:
    """A date-time on the Vietnamese clock (a naive one is taken to be Vietnamese already)."""
    return moment.replace(tzinfo=VIETNAM) if moment.tzinfo is None else moment.astimezone(VIETNAM)


# --- Vietnamese formatting ----------------------------------------------------------------


def _dmy(day: date) -> str:
    return f"{day.day:02d}/{day.month:02d}/{day.year:04d}"


def _on(day: date) -> str:
    """``ngày 25/02/2026``."""
    return f"ngày {_dmy(day)}"


def _clock(moment: datetime) -> str:
    """``10 giờ 00 phút``."""
    return f"{moment.hour:02d} giờ {moment.minute:02d} phút"


def _at(moment: datetime) -> str:
    """``10 giờ 00 phút, ngày 13/02/2026``."""
    return f"{_clock(moment)}, {_on(moment)}"


def _short(value: date | datetime | None) -> str:
    """A tracking-book cell: ``13/02/2026`` or ``13/02/2026 10 giờ 00``."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return f"{_dmy(value)} {value.hour:02d} giờ {value.minute:02d}"
    return _dmy(value)


def _place_date(place: str, day: date) -> str:
    """``Gò Vấp, ngày 13 tháng 02 năm 2026``."""
    return f"{place}, ngày {day.day:02d} tháng {day.month:02d} năm {day.year}"


_PEOPLES_COMMITTEE = re.compile(r"^\s*(?:ủy|uỷ)\s+ban\s+nhân\s+dân\s+", re.IGNORECASE)


def _caps(name: str) -> str:
    """A unit name as printed in the letterhead: ``Ủy ban nhân dân quận Gò Vấp`` -> ``UBND QUẬN GÒ VẤP``."""
    match = _PEOPLES_COMMITTEE.match(name)
    return ("UBND " + name[match.end():] if match else name).upper()


def _unit_caps(unit: _Fields) -> str:
    """The unit's line of the letterhead: ``UBND PHƯỜNG 5`` (the short name, when the unit is a
    people's committee, so the parent is not repeated)."""
    name = unit.text("name")
    short = unit.text("short_name", required=False)
    if short and _PEOPLES_COMMITTEE.match(name):
        if _PEOPLES_COMMITTEE.match(short) or short.upper().startswith("UBND "):
            return _caps(short)
        return "UBND " + short.upper()
    return _caps(name)


# --- the prepared context -----------------------------------------------------------------


def _header(fields: _Fields, desk: bool, number: str | None = None) -> dict:
    unit = fields.obj("unit")
    parent = unit.text("parent_name", required=False)
    own = _unit_caps(unit)
    lines = []
    if parent and _caps(parent) != own:  # the district has no parent line of its own
        lines.append({"text": _caps(parent), "bold": False})
    lines.append({"text": own, "bold": True})
    if desk:
        lines.append({"text": DESK.upper(), "bold": True})
    return {"lines": lines, "number": f"Số: {number}" if number else None, "motto": MOTTO}


def _applicant(fields: _Fields) -> dict:
    applicant = fields.obj("applicant")
    return {
        "name": applicant.text("name"),
        "address": applicant.text("address"),
        "phone": applicant.text("phone", required=False),
        "email": applicant.text("email", required=False),
    }


def _procedure(fields: _Fields) -> dict:
    procedure = fields.obj("procedure")
    code, name = procedure.text("code"), procedure.text("name")
    return {"code": code, "name": name, "line": f"{name} (mã thủ tục {code})"}


def _documents(fields: _Fields, non_empty: bool) -> list[dict]:
    return [
        {
            "no": index,
            "name": document.text("name"),
            "form": DOCUMENT_FORMS[document.choice("form", DOCUMENT_FORMS)],
            "count": document.integer("count"),
        }
        for index, document in enumerate(fields.items("documents", non_empty=non_empty), start=1)
    ]


def _receiving_unit(fields: _Fields) -> str:
    unit = fields.obj("unit")
    text = f"{DESK}, {unit.text('name')}"
    address = unit.text("address", required=False)
    return f"{text} (địa chỉ: {address})" if address else text


def _base(form: str, fields: _Fields, title_suffix: str) -> dict:
    number, name = _TITLES[form]
    return {
        "form": form,
        "form_number": number,
        "heading": name.upper(),
        "doc_title": f"{number} – {name} – {title_suffix}",
        "author": fields.obj("unit").text("name"),
        "place": fields.text("place", required=False) or DEFAULT_PLACE,
        "landscape": form == "mau-06",
    }


def _prepare(form: str, data: dict) -> dict:
    fields = _Fields(form, data)
    return _PREPARERS[form](form, fields)


def _prepare_01(form: str, fields: _Fields) -> dict:
    code = fields.text("code")
    received = fields.moment("received_at")
    status_url = fields.text("status_url")
    tracking = fields.obj("tracking")
    history = []
    for entry in fields.items("appointment_history", required=False):
        replaced = entry.moment("replaced_at", required=False)
        history.append({
            "date": _on(entry.day("date")),
            "reason": entry.text("reason", required=False),
            "replaced_at": _at(replaced) if replaced else None,
        })
    volume = tracking.integer("volume")
    context = _base(form, fields, code)
    context.update(
        header=_header(fields, desk=True),
        place_date=_place_date(context["place"], received.date()),
        created=received,
        code=code,
        secret=fields.text("secret"),
        status_url=status_url,
        lookup_address=_without_query(status_url),
        receiving_unit=_receiving_unit(fields),
        applicant=_applicant(fields),
        procedure=_procedure(fields),
        documents=_documents(fields, non_empty=False),
        sets=f"{fields.integer('sets'):02d} bộ",
        time_limit=fields.text("time_limit"),
        received_at=_at(received),
        appointment=_on(fields.day("appointment_date")),
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


def _prepare_02(form: str, fields: _Fields) -> dict:
    number = fields.text("number")
    requested = fields.moment("requested_at")
    context = _base(form, fields, f"{number} – {fields.text('code')}")
    context.update(
        header=_header(fields, desk=True, number=number),
        place_date=_place_date(context["place"], requested.date()),
        created=requested,
        code=fields.text("code"),
        applicant=_applicant(fields),
        procedure=_procedure(fields),
        requested_by=fields.text("requested_by"),
        requested_at=_at(requested),
        documents=_documents(fields, non_empty=True),
        reason=fields.text("reason"),
        contact=fields.text("contact"),
        official=fields.text("official"),
    )
    return context


def _prepare_03(form: str, fields: _Fields) -> dict:
    code = fields.text("code", required=False)
    refused = fields.moment("refused_at")
    procedure = _procedure(fields)
    context = _base(form, fields, code or procedure["code"])
    context.update(
        header=_header(fields, desk=True, number=fields.text("number", required=False)),
        place_date=_place_date(context["place"], refused.date()),
        created=refused,
        code=code,
        receiving_unit=_receiving_unit(fields),
        applicant=_applicant(fields),
        procedure=procedure,
        refused_by=fields.text("refused_by", required=False) or DESK,
        refused_at=_at(refused),
        reason=fields.text("reason"),
        official=fields.text("official"),
    )
    return context


def _prepare_06(form: str, fields: _Fields) -> dict:
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
            "received_at": _short(line.moment("received_at")),
            "appointment_date": _short(line.day("appointment_date")),
            "transferred_at": _short(line.day_or_moment("transferred_at")),
            "result_date": _short(line.day_or_moment("result_date")),
            "returned_at": _short(line.day_or_moment("returned_at")),
            "notes": line.text("notes", required=False) or "",
        })
    unit_short = fields.obj("unit").text("short_name", required=False) or fields.obj("unit").text("name")
    context = _base(form, fields, f"{unit_short} – Năm {year} – Quyển số {volume:02d}")
    context.update(
        header=_header(fields, desk=True),
        place_date=None,
        created=datetime.combine(last, time(0), VIETNAM),
        year=year,
        volume=f"{volume:02d}",
        period=f"Từ {_on(first)} đến {_on(last)}",
        lines=lines,
    )
    return context


_PREPARERS: dict[str, Callable[[str, _Fields], dict]] = {
    "mau-01": _prepare_01, "mau-02": _prepare_02, "mau-03": _prepare_03, "mau-06": _prepare_06,
}


def _without_query(url: str) -> str:
    """The lookup page's address without the query (the code and secret are printed apart)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")) or url


def _qr(url: str) -> segno.QRCode:
    """The QR code of the status-lookup URL (a regular QR code, error correction level M)."""
    return segno.make_qr(url, error="m")


# --- HTML ------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _environment() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(str(_TEMPLATE_DIR)),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return environment


# --- PDF -------------------------------------------------------------------------------------

_BODY_PT = 11
_LINE = 5.4  # mm, body line height


def _font_files() -> dict[str, Path]:
    directory = Path(os.environ.get("MOTCUA_FONT_DIR") or DEFAULT_FONT_DIR)
    files = {}
    for style, name in _FONT_FILES.items():
        path = directory / name
        if not path.is_file():
            raise FormFontError(
                f"font file {path} not found: the PDF forms need DejaVu Serif ({', '.join(_FONT_FILES.values())}) "
                f"for the Vietnamese diacritics; install it with `apt-get install fonts-dejavu-core` "
                f"(Debian/Ubuntu) or set MOTCUA_FONT_DIR to a directory holding these files")
        files[style] = path
    for style, name in _OPTIONAL_FONT_FILES.items():
        path = directory / name
        files[style] = path if path.is_file() else files[""]
    return files


class _Sheet(FPDF):
    """An A4 sheet with the DejaVu Serif faces loaded, the Vietnamese administrative margins and
    a page number in the footer."""

    def __init__(self, context: dict) -> None:
        landscape = context["landscape"]
        super().__init__(orientation="L" if landscape else "P", unit="mm", format="A4")
        for style, path in _font_files().items():
            self.add_font(_FONT_FAMILY, style, str(path))
        if landscape:
            self.set_margins(12, 12, 12)
            self.set_auto_page_break(True, margin=14)
        else:  # Decree 30/2020: left 30-35 mm, right 15-20 mm, top and bottom 20-25 mm
            self.set_margins(25, 15, 15)
            self.set_auto_page_break(True, margin=18)
        self.set_title(context["doc_title"])
        self.set_author(context["author"])
        self.set_subject(form_title(context["form"]))
        self.set_creator("Một Cửa – quận Gò Vấp")
        self.set_producer("Một Cửa (fpdf2)")
        self.set_lang("vi-VN")
        self.set_creation_date(context["created"])
        self.set_display_mode("fullpage")
        self.add_page()
        self.font(size=_BODY_PT)

    def footer(self) -> None:
        self.set_y(-12)
        self.font(size=8)
        self.set_text_color(90)
        self.cell(0, 4, f"Trang {self.page_no()}/{{nb}}", align="R")
        self.set_text_color(0)

    def font(self, style: str = "", size: float | None = None) -> None:
        self.set_font(_FONT_FAMILY, style, size if size is not None else self.font_size_pt)

    # building blocks

    def letterhead(self, context: dict) -> None:
        """The unit at the top left, the national motto at the top right, then the number (left)
        and place and date (right, italic)."""
        header = context["header"]
        top = self.get_y()
        left_w = 82 if not context["landscape"] else self.epw * 0.40
        right_w = self.epw - left_w
        right_x = self.l_margin + left_w
        c_margin, self.c_margin = self.c_margin, 0.3  # DejaVu is wide: use the whole columns

        self.set_xy(self.l_margin, top)
        for line in header["lines"]:
            self.font("B" if line["bold"] else "", 10)
            self.multi_cell(left_w, 4.8, line["text"], align="C", new_x="LMARGIN", new_y="NEXT")
        self._rule(self.l_margin + left_w / 2, self.get_y() + 0.8, 28)
        left_bottom = self.get_y() + 2

        self.set_xy(right_x, top)
        self.font("B", 10)
        self.multi_cell(right_w, 4.8, header["motto"][0], align="C", new_x="LEFT", new_y="NEXT")
        self.font("B", 11)
        self.multi_cell(right_w, 5.2, header["motto"][1], align="C", new_x="LEFT", new_y="NEXT")
        self._rule(right_x + right_w / 2, self.get_y() + 0.8, self.get_string_width(header["motto"][1]))
        right_bottom = self.get_y() + 2

        y = max(left_bottom, right_bottom) + 1
        if header["number"]:
            self.set_xy(self.l_margin, y)
            self.font("", 10.5)
            self.multi_cell(left_w, 5.2, header["number"], align="C", new_x="LMARGIN", new_y="NEXT")
        if context["place_date"]:
            self.set_xy(right_x, y)
            self.font("I", 10.5)
            self.multi_cell(right_w, 5.2, context["place_date"], align="C", new_x="LMARGIN", new_y="NEXT")
        if header["number"] or context["place_date"]:
            y += 5.2
        self.c_margin = c_margin
        self.set_xy(self.l_margin, y + 4)
        self.font("", _BODY_PT)

    def _rule(self, centre_x: float, y: float, width: float) -> None:
        self.set_line_width(0.3)
        self.line(centre_x - width / 2, y, centre_x + width / 2, y)

    def heading(self, text: str, *sublines: str) -> None:
        self.font("B", 13)
        self.multi_cell(0, 6.5, text, align="C", new_x="LMARGIN", new_y="NEXT")
        self.font("", _BODY_PT)
        for line in sublines:
            self.multi_cell(0, _LINE, line, align="C", new_x="LMARGIN", new_y="NEXT")
        self.ln(2)

    def para(self, *runs: tuple[str, str], indent: float = 0, h: float = _LINE, size: float = _BODY_PT) -> None:
        """A paragraph of (style, text) runs flowing across lines (fpdf2 ``write``): labels in
        bold, values regular, struck-through dates with style ``S``."""
        margin = self.l_margin
        self.set_left_margin(margin + indent)
        self.set_x(margin + indent)
        for style, text in runs:
            self.font(style, size)
            self.write(h, text)
        self.ln(h)
        self.set_left_margin(margin)
        self.font("", _BODY_PT)

    def field(self, label: str, value: str | None, indent: float = 0) -> None:
        self.para(("", f"{label}: "), ("B", value or ""), indent=indent)

    def documents(self, documents: list[dict], indent: float = 6) -> None:
        """The documents as a table: no., name, form, quantity (long names wrap)."""
        if not documents:
            self.para(("I", "(Không có giấy tờ kèm theo)"), indent=indent)
            return
        self.font("", 10)
        width = self.epw - indent
        with self.table(
            width=width, align="RIGHT", col_widths=(12, 92, 44, 18), line_height=4.6,
            text_align=("CENTER", "LEFT", "CENTER", "CENTER"), padding=(1, 1.5),
            headings_style=FontFace(emphasis="BOLD", fill_color=235), repeat_headings=1,
        ) as table:
            heading = table.row()
            for text in ("STT", "Tên giấy tờ", "Hình thức", "Số lượng"):
                heading.cell(text, align="CENTER")
            for document in documents:
                table.row((str(document["no"]), document["name"], document["form"], str(document["count"])))
        self.ln(1.5)
        self.font("", _BODY_PT)

    def keep(self, height: float) -> None:
        """Start a new page unless ``height`` mm still fit on this one."""
        if self.get_y() + height > self.page_break_trigger:
            self.add_page()

    def signatures(self, blocks: list[tuple[str, str | None]], date_line: str | None = None) -> None:
        """Signature blocks side by side (a single one on the right half): title in capitals,
        "(Ký và ghi rõ họ tên)", room to sign, then the name."""
        self.keep(48 if date_line else 42)
        self.ln(3)
        column = self.epw / 2
        top = self.get_y()
        bottom = top
        for index, (title, name) in enumerate(blocks):
            x = self.l_margin + column * (index + (2 - len(blocks)))
            self.set_xy(x, top)
            if date_line and index == len(blocks) - 1:
                self.font("I", 11)
                self.multi_cell(column, 5.5, date_line, align="C", new_x="LEFT", new_y="NEXT")
            self.font("B", 11)
            self.multi_cell(column, 5.5, title, align="C", new_x="LEFT", new_y="NEXT")
            self.font("I", 10)
            self.multi_cell(column, 5, "(Ký và ghi rõ họ tên)", align="C", new_x="LEFT", new_y="NEXT")
            self.set_y(self.get_y() + 18)
            self.set_x(x)
            if name:
                self.font("B", 11)
                self.multi_cell(column, 5.5, name, align="C", new_x="LEFT", new_y="NEXT")
            bottom = max(bottom, self.get_y())
        self.set_xy(self.l_margin, bottom)
        self.font("", _BODY_PT)

    def multi_cell(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("align", "L")  # fpdf2 justifies by default
        return super().multi_cell(*args, **kwargs)

    def finish(self) -> bytes:
        return bytes(self.output())


def _draw_01(context: dict) -> bytes:
    pdf = _Sheet(context)
    pdf.letterhead(context)
    pdf.heading(context["heading"])
    applicant, procedure = context["applicant"], context["procedure"]
    pdf.para(("", "Mã hồ sơ: "), ("B", context["code"]))
    pdf.para(("", "Đơn vị tiếp nhận: "), ("", context["receiving_unit"]))
    pdf.field("Tiếp nhận hồ sơ của", applicant["name"])
    pdf.field("Địa chỉ", applicant["address"])
    pdf.para(("", "Số điện thoại: "), ("", applicant["phone"] or ""),
             ("", "        Thư điện tử: "), ("", applicant["email"] or ""))
    pdf.field("Nội dung yêu cầu giải quyết", procedure["line"])
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
    pdf.font("", _BODY_PT)

    pdf.signatures([("NGƯỜI NỘP HỒ SƠ", applicant["name"]),
                    ("NGƯỜI TIẾP NHẬN HỒ SƠ", context["official"])])
    return pdf.finish()


def _draw_02(context: dict) -> bytes:
    pdf = _Sheet(context)
    pdf.letterhead(context)
    pdf.heading(context["heading"])
    applicant, procedure = context["applicant"], context["procedure"]
    pdf.field("Mã hồ sơ", context["code"])
    pdf.field("Hồ sơ của", applicant["name"])
    pdf.field("Địa chỉ", applicant["address"])
    if applicant["phone"] or applicant["email"]:
        pdf.para(("", "Số điện thoại: "), ("", applicant["phone"] or ""),
                 ("", "        Thư điện tử: "), ("", applicant["email"] or ""))
    pdf.field("Nội dung yêu cầu giải quyết", procedure["line"])
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
    pdf = _Sheet(context)
    pdf.letterhead(context)
    pdf.heading(context["heading"])
    applicant, procedure = context["applicant"], context["procedure"]
    if context["code"]:
        pdf.field("Mã hồ sơ", context["code"])
    pdf.para(("", "Đơn vị tiếp nhận: "), ("", context["receiving_unit"]))
    pdf.field("Tiếp nhận hồ sơ của", applicant["name"])
    pdf.field("Địa chỉ", applicant["address"])
    if applicant["phone"] or applicant["email"]:
        pdf.para(("", "Số điện thoại: "), ("", applicant["phone"] or ""),
                 ("", "        Thư điện tử: "), ("", applicant["email"] or ""))
    pdf.field("Nội dung yêu cầu giải quyết", procedure["line"])
    pdf.field("Thời gian", context["refused_at"])
    pdf.para(("", f"Sau khi nghiên cứu, đối chiếu với quy định hiện hành, {context['refused_by']} "
                  "từ chối tiếp nhận, giải quyết hồ sơ này với lý do:"))
    pdf.para(("B", context["reason"]), indent=6)
    pdf.para(("", "Xin thông báo cho Ông/Bà được biết và thực hiện./."))
    pdf.signatures([("NGƯỜI TIẾP NHẬN HỒ SƠ", context["official"])])
    return pdf.finish()


#: The tracking book's columns: heading, width (mm of the 273 mm landscape body), alignment.
_BOOK_COLUMNS = (
    ("Số TT", 9, "CENTER"),
    ("Mã hồ sơ", 42, "LEFT"),      # a dossier code at 7.5 pt is 38.6 mm: never wrapped
    ("Tên thủ tục", 38, "LEFT"),
    ("Số lượng hồ sơ (bộ)", 11, "CENTER"),
    ("Tên cá nhân, tổ chức", 27, "LEFT"),
    ("Cơ quan chủ trì giải quyết", 24, "LEFT"),
    ("Ngày nhận hồ sơ", 18, "CENTER"),
    ("Ngày hẹn trả", 18, "CENTER"),
    ("Chuyển hồ sơ đến cơ quan giải quyết", 18, "CENTER"),
    ("Ngày có kết quả", 18, "CENTER"),
    ("Ngày, giờ", 18, "CENTER"),   # under "Trả kết quả"
    ("Ký nhận", 13, "CENTER"),     # under "Trả kết quả"
    ("Ghi chú", 19, "LEFT"),
)


class _Book:
    """The tracking book's grid, drawn cell by cell (fpdf2's ``table()`` line-breaks every cell
    twice and is about ten times slower: a month of a busy desk is thousands of lines). Rows are
    never split; the heading rows are drawn again at the top of every page."""

    SIZE = 7.5   # pt
    LINE = 3.3   # mm per text line
    PAD = 0.8    # mm inside each cell

    def __init__(self, pdf: _Sheet) -> None:
        self.pdf = pdf
        self.widths = [width for _, width, _ in _BOOK_COLUMNS]
        self.aligns = [align for _, _, align in _BOOK_COLUMNS]

    def wrap(self, text: str, width: float) -> list[str]:
        """Greedy word wrap into ``width`` mm (a word longer than the cell is cut)."""
        pdf, width = self.pdf, width - 2 * self.PAD
        lines: list[str] = []
        for paragraph in text.split("\n"):
            line = ""
            for word in paragraph.split():
                candidate = f"{line} {word}" if line else word
                if pdf.get_string_width(candidate) <= width:
                    line = candidate
                    continue
                if line:
                    lines.append(line)
                while len(word) > 1 and pdf.get_string_width(word) > width:
                    cut = len(word) - 1
                    while cut > 1 and pdf.get_string_width(word[:cut]) > width:
                        cut -= 1
                    lines.append(word[:cut])
                    word = word[cut:]
                line = word
            lines.append(line)
        return lines

    def box(self, x: float, y: float, width: float, height: float, lines: list[str], align: str,
            fill: int | None = None) -> None:
        pdf = self.pdf
        if fill is not None:
            pdf.set_fill_color(fill)
        pdf.rect(x, y, width, height, style="DF" if fill is not None else "D")
        top = y + (height - len(lines) * self.LINE) / 2
        for index, line in enumerate(lines):
            if not line:
                continue
            line_w = pdf.get_string_width(line)
            if align == "CENTER":
                left = x + (width - line_w) / 2
            elif align == "RIGHT":
                left = x + width - self.PAD - line_w
            else:
                left = x + self.PAD
            pdf.text(left, top + index * self.LINE + self.LINE / 2 + 0.3 * pdf.font_size, line)

    def heading(self) -> None:
        """Three heading rows: the titles (``Trả kết quả`` over ``Ngày, giờ`` and ``Ký nhận``),
        then the column numbers (1)...(13)."""
        pdf, widths = self.pdf, self.widths
        pdf.font("B", self.SIZE)
        pdf.set_line_width(0.2)
        titles = [self.wrap(title, width) for (title, _, _), width in zip(_BOOK_COLUMNS, widths)]
        sub_height = max(len(titles[10]), len(titles[11])) * self.LINE + 2 * self.PAD
        group = self.wrap("Trả kết quả", widths[10] + widths[11])
        group_height = len(group) * self.LINE + 2 * self.PAD
        full = max(max(len(t) for i, t in enumerate(titles) if i not in (10, 11)) * self.LINE + 2 * self.PAD,
                   group_height + sub_height)
        x, y = pdf.l_margin, pdf.get_y()
        for index, width in enumerate(widths):
            if index == 10:
                self.box(x, y, widths[10] + widths[11], full - sub_height, group, "CENTER", fill=235)
            if index in (10, 11):
                self.box(x, y + full - sub_height, width, sub_height, titles[index], "CENTER", fill=235)
            else:
                self.box(x, y, width, full, titles[index], "CENTER", fill=235)
            x += width
        y += full
        pdf.font("I", 7)
        x = pdf.l_margin
        for index, width in enumerate(widths):
            self.box(x, y, width, self.LINE + 1, [f"({index + 1})"], "CENTER", fill=248)
            x += width
        pdf.set_xy(pdf.l_margin, y + self.LINE + 1)
        pdf.font("", self.SIZE)

    def row(self, cells: list[str]) -> None:
        pdf = self.pdf
        pdf.font("", self.SIZE)
        wrapped = [self.wrap(text, width) for text, width in zip(cells, self.widths)]
        height = max(len(lines) for lines in wrapped) * self.LINE + 2 * self.PAD
        if pdf.get_y() + height > pdf.page_break_trigger:
            pdf.add_page()
            self.heading()
        x, y = pdf.l_margin, pdf.get_y()
        for lines, width, align in zip(wrapped, self.widths, self.aligns):
            self.box(x, y, width, height, lines, align)
            x += width
        pdf.set_xy(pdf.l_margin, y + height)


def _draw_06(context: dict) -> bytes:
    pdf = _Sheet(context)
    pdf.letterhead(context)
    pdf.heading(context["heading"], f"Năm {context['year']} – Quyển số {context['volume']}", context["period"])
    book = _Book(pdf)
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


_DRAWERS: dict[str, Callable[[dict], bytes]] = {
    "mau-01": _draw_01, "mau-02": _draw_02, "mau-03": _draw_03, "mau-06": _draw_06,
}
