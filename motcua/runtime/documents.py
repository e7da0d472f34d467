"""The building blocks of the official one-stop documents (Circular 01/2018/TT-VPCP forms) that
every service prints: validation of the data, Vietnamese text and dates, the letterhead, the
shared Jinja2 templates and the PDF sheet.

A service keeps only what is specific to its forms: for each form a *preparer* (data -> context,
validated, every text NFC, every date formatted the Vietnamese way) and a *drawer* (context ->
PDF bytes), plus its HTML templates. It wires them with :class:`FormSet`::

    FORMSET = FormSet(
        titles={"mau-04": ("Mẫu 04", "Phiếu xin lỗi và hẹn lại ngày trả kết quả")},
        templates=Path(__file__).parent / "templates" / "forms",
        prepare={"mau-04": _prepare_04}, draw={"mau-04": _draw_04},
    )

Templates: the service's folder is searched first, then ``motcua/runtime/templates/documents``, which is
also reachable under the ``documents/`` prefix (``{% extends "documents/base.html" %}`` even when
the service has a ``base.html`` of its own). The shared base draws the letterhead and the heading
and offers the blocks ``style`` (extra CSS) and ``body``; ``documents/macros.html`` has
``letterhead``, ``runs`` (a paragraph of styled runs, as :meth:`Sheet.para` draws them),
``field`` and ``signatures``.

PDF: :class:`Sheet` (A4 with the Vietnamese administrative margins, DejaVu Serif from
``MOTCUA_FONT_DIR``, letterhead, wrapped paragraphs, signature blocks, tables) and :class:`Grid`
(a fast ruled table whose heading is repeated on every page and whose rows are never split).
The creation date of a PDF comes from the data, so equal data gives byte-identical files.

No database, no network; the only I/O is reading the templates and the font files.
"""
from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from fpdf import FPDF, FontFace
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PrefixLoader, StrictUndefined

__all__ = [
    "VIETNAM", "MOTTO", "DESK", "DEFAULT_PLACE", "DEFAULT_FONT_DIR", "FONT_FAMILY", "TEMPLATE_DIR", "BODY_PT", "LINE",
    "FormError", "FormFontError", "Fields", "FormSet",
    "clean", "in_vietnam", "dmy", "on_day", "clock", "at_time", "short_date_time", "place_date",
    "caps", "unit_caps", "letterhead", "procedure", "document_context",
    "environment", "font_files", "Sheet", "Column", "Grid",
]

#: Viet Nam has one time zone, UTC+7, and no daylight saving time.
VIETNAM = timezone(timedelta(hours=7))

#: The national motto at the top right of every administrative document.
MOTTO = ("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Độc lập - Tự do - Hạnh phúc")
#: The one-stop desk of a unit.
DESK = "Bộ phận tiếp nhận và trả kết quả"
#: The place name of the "<place>, ngày ... tháng ... năm ..." line unless the data has ``place``.
DEFAULT_PLACE = "Gò Vấp"

DEFAULT_FONT_DIR = "/usr/share/fonts/truetype/dejavu"
FONT_FAMILY = "DejaVuSerif"
_FONT_FILES = {"": "DejaVuSerif.ttf", "B": "DejaVuSerif-Bold.ttf"}
# Italic is only in fonts-dejavu-extra: used when present, otherwise the regular face stands in.
_OPTIONAL_FONT_FILES = {"I": "DejaVuSerif-Italic.ttf"}

#: The shared templates (``base.html``, ``macros.html``).
TEMPLATE_DIR = Path(__file__).resolve().parent / "templates" / "documents"

BODY_PT = 11
LINE = 5.4  # mm, body line height


class FormError(ValueError):
    """The data of a form misses a field or has one of the wrong type; the message names the
    form and the field, e.g. ``mau-01: applicant.name is required``."""


class FormFontError(RuntimeError):
    """The TrueType font needed for the PDF (Vietnamese diacritics) is not installed."""


# --- text and time -------------------------------------------------------------------------


def clean(text: str) -> str:
    """NFC (the PDF font has no shaping for combining marks), no control characters except
    line breaks (tabs become spaces), no leading or trailing blanks."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " "))
    text = "".join(c for c in text if c == "\n" or not unicodedata.category(c).startswith("C"))
    return "\n".join(line.rstrip() for line in text.strip().split("\n"))


def in_vietnam(moment: datetime) -> datetime:
    """A date-time on the Vietnamese clock (a naive one is taken to be Vietnamese already)."""
    return moment.replace(tzinfo=VIETNAM) if moment.tzinfo is None else moment.astimezone(VIETNAM)


def dmy(day: date) -> str:
    """``05/03/2026``."""
    return f"{day.day:02d}/{day.month:02d}/{day.year:04d}"


def on_day(day: date) -> str:
    """``ngày 25/02/2026``."""
    return f"ngày {dmy(day)}"


def clock(moment: datetime) -> str:
    """``10 giờ 00 phút``."""
    return f"{moment.hour:02d} giờ {moment.minute:02d} phút"


def at_time(moment: datetime) -> str:
    """``10 giờ 00 phút, ngày 13/02/2026``."""
    return f"{clock(moment)}, {on_day(moment)}"


def short_date_time(value: date | datetime | None) -> str:
    """A table cell: ``13/02/2026`` or ``13/02/2026 10 giờ 00`` (empty for None)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return f"{dmy(value)} {value.hour:02d} giờ {value.minute:02d}"
    return dmy(value)


def place_date(place: str, day: date) -> str:
    """``Gò Vấp, ngày 13 tháng 02 năm 2026``."""
    return f"{place}, ngày {day.day:02d} tháng {day.month:02d} năm {day.year}"


_PEOPLES_COMMITTEE = re.compile(r"^\s*(?:ủy|uỷ)\s+ban\s+nhân\s+dân\s+", re.IGNORECASE)


def caps(name: str) -> str:
    """A unit name as printed in the letterhead: ``Ủy ban nhân dân quận Gò Vấp`` -> ``UBND QUẬN GÒ VẤP``."""
    match = _PEOPLES_COMMITTEE.match(name)
    return ("UBND " + name[match.end():] if match else name).upper()


# --- validation ------------------------------------------------------------------------------


class Fields:
    """Typed access to one mapping of a form's data, raising FormError with the form and the
    dotted field path (``mau-01: documents[1].count is required``). A blank string is missing."""

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
        return clean(value)

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
        """A date; a date-time gives its day on the Vietnamese clock."""
        value = self._raw(key, required)
        if value is None:
            return None
        if isinstance(value, datetime):
            return in_vietnam(value).date()
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                pass
            try:  # a date-time where a date is expected: its day on the Vietnamese clock
                return in_vietnam(datetime.fromisoformat(value.strip())).date()
            except ValueError:
                pass
        raise self.error(key, f"must be an ISO date (YYYY-MM-DD), got {value!r}")

    def moment(self, key: str, required: bool = True) -> datetime | None:
        """A date-time on the Vietnamese clock."""
        value = self._raw(key, required)
        if value is None:
            return None
        if isinstance(value, datetime):
            return in_vietnam(value)
        if isinstance(value, str):
            try:
                return in_vietnam(datetime.fromisoformat(value.strip()))
            except ValueError:
                pass
        raise self.error(key, f"must be an ISO date-time (YYYY-MM-DDTHH:MM:SS+07:00), got {value!r}")

    def day_or_moment(self, key: str, required: bool = False) -> date | datetime | None:
        """A date, or a date-time when the value has a time part."""
        value = self._raw(key, required)
        if value is None:
            return None
        if isinstance(value, str) and "T" not in value and " " not in value.strip():
            return self.day(key, required)
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        return self.moment(key, required)

    def choice(self, key: str, choices: Mapping[str, Any], required: bool = True) -> str | None:
        value = self._raw(key, required)
        if value is None:
            return None
        if not isinstance(value, str) or value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def obj(self, key: str, required: bool = True) -> Fields | None:
        value = self._raw(key, required)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.error(key, f"must be an object, not {type(value).__name__}")
        return Fields(self.form, value, self.path(key))

    def items(self, key: str, required: bool = True, non_empty: bool = False) -> list[Fields]:
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
            result.append(Fields(self.form, item, path))
        return result


# --- pieces of the context that every form has ------------------------------------------------


def unit_caps(unit: Fields) -> str:
    """The unit's line of the letterhead: ``UBND PHƯỜNG 5`` (the short name, when the unit is a
    people's committee, so the parent is not repeated), ``CHI CỤC THUẾ QUẬN GÒ VẤP`` otherwise."""
    name = unit.text("name")
    short = unit.text("short_name", required=False)
    if short and _PEOPLES_COMMITTEE.match(name):
        if _PEOPLES_COMMITTEE.match(short) or short.upper().startswith("UBND "):
            return caps(short)
        return "UBND " + short.upper()
    return caps(name)


def letterhead(unit: Fields, desk: bool = False, number: str | None = None) -> dict:
    """The letterhead of the issuing unit (``unit`` with ``name``, optional ``short_name`` and
    ``parent_name``): the parent in capitals (regular), the unit (bold), the desk when the desk
    issues the document; the document number ("Số: ...") under it; the national motto."""
    parent = unit.text("parent_name", required=False)
    own = unit_caps(unit)
    lines = []
    if parent and caps(parent) != own:  # the district has no parent line of its own
        lines.append({"text": caps(parent), "bold": False})
    lines.append({"text": own, "bold": True})
    if desk:
        lines.append({"text": DESK.upper(), "bold": True})
    return {"lines": lines, "number": f"Số: {number}" if number else None, "motto": MOTTO}


def procedure(fields: Fields, key: str = "procedure") -> dict:
    """``{"code", "name", "line"}`` of the procedure; ``line`` is ``<name> (mã thủ tục <code>)``."""
    entry = fields.obj(key)
    code, name = entry.text("code"), entry.text("name")
    return {"code": code, "name": name, "line": f"{name} (mã thủ tục {code})"}


def document_context(form: str, title: tuple[str, str], fields: Fields, title_suffix: str, *,
                     created: datetime, author: str | None = None, landscape: bool = False) -> dict:
    """The keys the shared templates and :class:`Sheet` read: ``form``, ``form_number``,
    ``heading`` (the name in capitals), ``doc_title``, ``subject``, ``author`` (the unit's name
    unless given), ``place`` (``data["place"]`` or Gò Vấp), ``landscape`` and ``created`` (the PDF's
    creation date: from the data, so the output is deterministic). The preparer adds ``header``
    (:func:`letterhead`) and ``place_date`` (or None)."""
    number, name = title
    return {
        "form": form,
        "form_number": number,
        "heading": name.upper(),
        "doc_title": f"{number} – {name} – {title_suffix}",
        "subject": f"{number} – {name}",
        "author": author or fields.obj("unit").text("name"),
        "place": fields.text("place", required=False) or DEFAULT_PLACE,
        "landscape": landscape,
        "created": created,
    }


# --- a service's set of forms ---------------------------------------------------------------


class FormSet:
    """The official forms of one service: ``titles`` (form -> (number, name)), the service's
    templates folder, and per form a preparer ``(form, Fields) -> context`` and a drawer
    ``context -> PDF bytes``. HTML and PDF are built from the same prepared context."""

    def __init__(self, titles: Mapping[str, tuple[str, str]], templates: str | Path,
                 prepare: Mapping[str, Callable[[str, Fields], dict]],
                 draw: Mapping[str, Callable[[dict], bytes]]) -> None:
        if not (set(titles) == set(prepare) == set(draw)):
            raise ValueError("every form needs a title, a preparer and a drawer")
        self.titles = dict(titles)
        self.templates = Path(templates)
        self.prepare_form = dict(prepare)
        self.draw = dict(draw)

    @property
    def forms(self) -> tuple[str, ...]:
        return tuple(self.titles)

    def check(self, form: str) -> str:
        if form not in self.titles:
            raise FormError(f"unknown form {form!r}: expected one of {', '.join(self.titles)}")
        return form

    def title(self, form: str) -> str:
        """``Mẫu 01 – Giấy tiếp nhận hồ sơ và hẹn trả kết quả``."""
        number, name = self.titles[self.check(form)]
        return f"{number} – {name}"

    def prepare(self, form: str, data: dict) -> dict:
        return self.prepare_form[self.check(form)](form, Fields(form, data))

    def render_html(self, form: str, data: dict) -> str:
        context = self.prepare(form, data)
        return environment(self.templates).get_template(f"{form}.html").render(**context)

    def render_pdf(self, form: str, data: dict) -> bytes:
        context = self.prepare(form, data)
        return self.draw[form](context)


# --- HTML ------------------------------------------------------------------------------------


def environment(directory: str | Path) -> Environment:
    """The Jinja2 environment of a service's form templates: ``directory`` first, then the
    shared ``motcua/runtime/templates/documents`` (also under the ``documents/`` prefix). Autoescaped,
    undefined names are errors. One environment per directory, cached."""
    return _environment(str(Path(directory).resolve()))


@lru_cache(maxsize=16)
def _environment(directory: str) -> Environment:
    shared = FileSystemLoader(str(TEMPLATE_DIR))
    return Environment(
        loader=ChoiceLoader([FileSystemLoader(directory), PrefixLoader({"documents": shared}), shared]),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


# --- PDF -------------------------------------------------------------------------------------


def font_files() -> dict[str, Path]:
    """The DejaVu Serif faces by fpdf2 style ("", "B", "I") from ``MOTCUA_FONT_DIR`` (default
    Debian's ``fonts-dejavu-core`` directory); FormFontError names the missing file."""
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


class Sheet(FPDF):
    """An A4 sheet with the DejaVu Serif faces loaded, the Vietnamese administrative margins, a
    page number in the footer and the metadata of the document. ``context`` is a prepared
    context (:func:`document_context`): ``landscape``, ``doc_title``, ``author``, ``subject``,
    ``created``."""

    def __init__(self, context: Mapping[str, Any]) -> None:
        self.landscape = bool(context["landscape"])
        super().__init__(orientation="L" if self.landscape else "P", unit="mm", format="A4")
        for style, path in font_files().items():
            self.add_font(FONT_FAMILY, style, str(path))
        if self.landscape:
            self.set_margins(12, 12, 12)
            self.set_auto_page_break(True, margin=14)
        else:  # Decree 30/2020: left 30-35 mm, right 15-20 mm, top and bottom 20-25 mm
            self.set_margins(25, 15, 15)
            self.set_auto_page_break(True, margin=18)
        self.set_title(context["doc_title"])
        self.set_author(context["author"])
        self.set_subject(context["subject"])
        self.set_creator("Một Cửa – quận Gò Vấp")
        self.set_producer("Một Cửa (fpdf2)")
        self.set_lang("vi-VN")
        self.set_creation_date(context["created"])  # from the data: equal data, equal bytes
        self.set_display_mode("fullpage")
        self.add_page()
        self.font(size=BODY_PT)

    def footer(self) -> None:
        self.set_y(-12)
        self.font(size=8)
        self.set_text_color(90)
        self.cell(0, 4, f"Trang {self.page_no()}/{{nb}}", align="R")
        self.set_text_color(0)

    def font(self, style: str = "", size: float | None = None) -> None:
        self.set_font(FONT_FAMILY, style, size if size is not None else self.font_size_pt)

    def multi_cell(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("align", "L")  # fpdf2 justifies by default
        return super().multi_cell(*args, **kwargs)

    # building blocks

    def letterhead(self, header: Mapping[str, Any], place_date: str | None = None) -> None:
        """The unit at the top left, the national motto at the top right (both underlined), then
        the number (left) and the place and date (right, italic)."""
        top = self.get_y()
        left_w = 82 if not self.landscape else self.epw * 0.40
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
        if place_date:
            self.set_xy(right_x, y)
            self.font("I", 10.5)
            self.multi_cell(right_w, 5.2, place_date, align="C", new_x="LMARGIN", new_y="NEXT")
        if header["number"] or place_date:
            y += 5.2
        self.c_margin = c_margin
        self.set_xy(self.l_margin, y + 4)
        self.font("", BODY_PT)

    def _rule(self, centre_x: float, y: float, width: float) -> None:
        self.set_line_width(0.3)
        self.line(centre_x - width / 2, y, centre_x + width / 2, y)

    def heading(self, text: str, *sublines: str) -> None:
        """The title in bold capitals, centred, and centred lines under it."""
        self.font("B", 13)
        self.multi_cell(0, 6.5, text, align="C", new_x="LMARGIN", new_y="NEXT")
        self.font("", BODY_PT)
        for line in sublines:
            self.multi_cell(0, LINE, line, align="C", new_x="LMARGIN", new_y="NEXT")
        self.ln(2)

    def para(self, *runs: tuple[str, str], indent: float = 0, h: float = LINE, size: float = BODY_PT) -> None:
        """A paragraph of (style, text) runs flowing across lines (fpdf2 ``write``): labels
        regular, values bold, struck-through dates with style ``S``."""
        margin = self.l_margin
        self.set_left_margin(margin + indent)
        self.set_x(margin + indent)
        breakable = False  # whether the line may break before the next run (after a blank)
        for style, text in runs:
            self.font(style, size)
            # fpdf2 cuts a run's first word by characters when it does not fit the rest of the
            # line: move it to the next line instead when the previous run ended with a blank.
            first = text.split(maxsplit=1)[0] if text.strip() and not text[0].isspace() else ""
            if (first and breakable and self.get_x() > self.l_margin + 0.01
                    and self.get_x() + self.get_string_width(first) > self.w - self.r_margin - self.c_margin):
                self.ln(h)
            self.write(h, text)
            breakable = text[-1:].isspace()
        self.ln(h)
        self.set_left_margin(margin)
        self.font("", BODY_PT)

    def field(self, label: str, value: str | None, indent: float = 0) -> None:
        """``<label>: <value in bold>``."""
        self.para(("", f"{label}: "), ("B", value or ""), indent=indent)

    def keep(self, height: float) -> None:
        """Start a new page unless ``height`` mm still fit on this one."""
        if self.get_y() + height > self.page_break_trigger:
            self.add_page()

    def table_rows(self, headings: Sequence[str], rows: Iterable[Sequence[str]], col_widths: Sequence[float],
                   text_align: Sequence[str], indent: float = 0, size: float = 10) -> None:
        """A small ruled table with fpdf2's ``table()`` (cells wrap, the heading row repeated
        after a page break), ``indent`` mm from the left margin."""
        self.font("", size)
        with self.table(
            width=self.epw - indent, align="RIGHT", col_widths=tuple(col_widths), line_height=4.6,
            text_align=tuple(text_align), padding=(1, 1.5),
            headings_style=FontFace(emphasis="BOLD", fill_color=235), repeat_headings=1,
        ) as table:
            heading = table.row()
            for text in headings:
                heading.cell(text, align="CENTER")
            for row in rows:
                table.row(tuple(row))
        self.ln(1.5)
        self.font("", BODY_PT)

    def signatures(self, blocks: Sequence[tuple[str, str | None] | tuple[str, str | None, str]],
                   date_line: str | None = None) -> None:
        """Signature blocks side by side (a single one on the right half): title in capitals,
        the note (default "(Ký và ghi rõ họ tên)"), room to sign, then the name. A block is
        ``(title, name)`` or ``(title, name, note)``."""
        self.keep(48 if date_line else 42)
        self.ln(3)
        column = self.epw / 2
        top = self.get_y()
        bottom = top
        for index, block in enumerate(blocks):
            title, name = block[0], block[1]
            note = block[2] if len(block) > 2 else "(Ký và ghi rõ họ tên)"
            x = self.l_margin + column * (index + (2 - len(blocks)))
            self.set_xy(x, top)
            if date_line and index == len(blocks) - 1:
                self.font("I", 11)
                self.multi_cell(column, 5.5, date_line, align="C", new_x="LEFT", new_y="NEXT")
            self.font("B", 11)
            self.multi_cell(column, 5.5, title, align="C", new_x="LEFT", new_y="NEXT")
            self.font("I", 10)
            self.multi_cell(column, 5, note, align="C", new_x="LEFT", new_y="NEXT")
            self.set_y(self.get_y() + 18)
            self.set_x(x)
            if name:
                self.font("B", 11)
                self.multi_cell(column, 5.5, name, align="C", new_x="LEFT", new_y="NEXT")
            bottom = max(bottom, self.get_y())
        self.set_xy(self.l_margin, bottom)
        self.font("", BODY_PT)

    def finish(self) -> bytes:
        return bytes(self.output())


@dataclass(frozen=True)
class Column:
    """A column of a :class:`Grid`: heading, width in mm, alignment (LEFT, CENTER, RIGHT)."""

    title: str
    width: float
    align: str = "LEFT"


class Grid:
    """A ruled table drawn cell by cell (fpdf2's ``table()`` line-breaks every cell twice and is
    about ten times slower: a month of a busy desk is thousands of lines). Rows are never split;
    the heading is drawn again at the top of every page.

    ``groups``: ``(first column index, number of columns, title)`` of headings spanning several
    columns (drawn above those columns' own headings); ``numbered``: a row (1), (2), ... under the
    heading, as the official books have. ``size`` (pt), ``line`` (mm per line) and ``pad`` (mm
    inside a cell) are those of the rows; ``heading_size`` that of the headings (default ``size``)."""

    FILL_HEADING = 235
    FILL_NUMBERS = 248

    def __init__(self, pdf: Sheet, columns: Sequence[Column], *, groups: Sequence[tuple[int, int, str]] = (),
                 numbered: bool = False, size: float = 7.5, line: float = 3.3, pad: float = 0.8,
                 heading_size: float | None = None) -> None:
        self.pdf = pdf
        self.columns = tuple(columns)
        self.widths = [column.width for column in self.columns]
        self.aligns = [column.align for column in self.columns]
        self.groups = tuple(groups)
        self.numbered = numbered
        self.size, self.line, self.pad = size, line, pad
        self.heading_size = heading_size or size
        self.grouped = {index for first, count, _ in self.groups for index in range(first, first + count)}

    def wrap(self, text: str, width: float) -> list[str]:
        """Greedy word wrap into ``width`` mm with the current font (a word longer than the cell
        is cut); ``\\n`` starts a new line."""
        pdf, width = self.pdf, width - 2 * self.pad
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

    def _height(self, lines: int) -> float:
        return lines * self.line + 2 * self.pad

    def box(self, x: float, y: float, width: float, height: float, lines: list[str], align: str,
            fill: int | None = None) -> None:
        """One cell: the frame (filled in grey when ``fill``) and its lines, centred vertically."""
        pdf = self.pdf
        if fill is not None:
            pdf.set_fill_color(fill)
        pdf.rect(x, y, width, height, style="DF" if fill is not None else "D")
        top = y + (height - len(lines) * self.line) / 2
        for index, line in enumerate(lines):
            if not line:
                continue
            line_w = pdf.get_string_width(line)
            if align == "CENTER":
                left = x + (width - line_w) / 2
            elif align == "RIGHT":
                left = x + width - self.pad - line_w
            else:
                left = x + self.pad
            pdf.text(left, top + index * self.line + self.line / 2 + 0.3 * pdf.font_size, line)

    def heading(self) -> None:
        """The heading rows: the group titles over their columns, every column's title, then
        the column numbers when ``numbered``."""
        pdf, widths = self.pdf, self.widths
        pdf.font("B", self.heading_size)
        pdf.set_line_width(0.2)
        titles = [self.wrap(column.title, width) for column, width in zip(self.columns, widths)]
        group_titles = [self.wrap(title, sum(widths[first:first + count])) for first, count, title in self.groups]
        sub_height = max((self._height(len(titles[i])) for i in self.grouped), default=0)
        full = max([self._height(len(t)) for i, t in enumerate(titles) if i not in self.grouped]
                   + [self._height(len(g)) + sub_height for g in group_titles])
        x0, y = pdf.l_margin, pdf.get_y()
        lefts = [x0 + sum(widths[:index]) for index in range(len(widths))]
        group_at = {first: (count, lines) for (first, count, _), lines in zip(self.groups, group_titles)}
        for index, width in enumerate(widths):
            if index in group_at:
                count, lines = group_at[index]
                self.box(lefts[index], y, sum(widths[index:index + count]), full - sub_height, lines, "CENTER",
                         fill=self.FILL_HEADING)
            if index in self.grouped:
                self.box(lefts[index], y + full - sub_height, width, sub_height, titles[index], "CENTER",
                         fill=self.FILL_HEADING)
            else:
                self.box(lefts[index], y, width, full, titles[index], "CENTER", fill=self.FILL_HEADING)
        y += full
        if self.numbered:
            pdf.font("I", min(self.size, 7))
            for index, width in enumerate(widths):
                self.box(lefts[index], y, width, self.line + 1, [f"({index + 1})"], "CENTER", fill=self.FILL_NUMBERS)
            y += self.line + 1
        pdf.set_xy(pdf.l_margin, y)
        pdf.font("", self.size)

    def row(self, cells: Sequence[str]) -> None:
        """One row (the cells' texts, wrapped); on a new page when it does not fit, after the
        heading drawn again."""
        pdf = self.pdf
        pdf.font("", self.size)
        wrapped = [self.wrap(text, width) for text, width in zip(cells, self.widths)]
        height = self._height(max(len(lines) for lines in wrapped))
        if pdf.get_y() + height > pdf.page_break_trigger:
            pdf.add_page()
            self.heading()
        x, y = pdf.l_margin, pdf.get_y()
        for lines, width, align in zip(wrapped, self.widths, self.aligns):
            self.box(x, y, width, height, lines, align)
            x += width
        pdf.set_xy(pdf.l_margin, y + height)
