"""The messages of the notification service, in Vietnamese: one template per (key, channel).

Pure, except :func:`defaults`, which reads ``data/templates.yml`` once. A template is Jinja2
text rendered in a sandbox (:class:`jinja2.sandbox.ImmutableSandboxedEnvironment`, a
``SandboxedEnvironment`` that also refuses to modify lists and dicts of the context) with
``StrictUndefined`` and no autoescape: the messages are plain text, never HTML.

Channels:

* ``email``: a subject and a body, with Vietnamese diacritics;
* ``sms``: a body only, sent without diacritics (:func:`motcua.contracts.text.unaccent`), whitespace
  collapsed, typographic punctuation replaced by ASCII; the text must fit
  :data:`SMS_MAX_CHARS` (two concatenated GSM 7-bit messages) with the worst-case sample;
* ``webhook``: a short text (and an optional subject) put in a JSON payload for Zalo or a
  unit's own system.

Filters available to templates: ``ngay`` (an ISO date or date-time -> ``13/02/2026``, on the
Vietnamese clock), ``ngay_gio`` (an ISO date-time -> ``09:30 ngày 13/02/2026``), ``vnd`` (an
``int`` of đồng -> ``5.000 đồng``) and ``hinh_thuc`` (a document form ``original`` |
``certified_copy`` | ``copy`` -> ``bản chính`` | ``bản sao có chứng thực`` | ``bản sao``).
"""
from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined, meta
from jinja2 import Template as JinjaTemplate
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from motcua.runtime.logs import mask_text
from motcua.contracts.text import unaccent

__all__ = [
    "KEYS", "CHANNELS", "REQUIRED", "SMS_MAX_CHARS", "FORMS",
    "Template", "Rendered", "TemplateInvalid",
    "defaults", "sample_context", "render", "validate", "sms_text", "sms_length",
    "ngay", "ngay_gio", "vnd", "hinh_thuc",
]

#: Every message the service sends, and who receives it.
KEYS: dict[str, str] = {
    "received": "citizen",
    "supplement_requested": "citizen",
    "refused": "citizen",
    "apology": "citizen",
    "result_ready": "citizen",
    "returned": "citizen",
    "payment_received": "citizen",
    "refunded": "citizen",
    "at_risk": "official",
    "step_overdue": "official",
    "apology_missing": "official",
    "daily_digest": "official",
}
CHANNELS = ("email", "sms", "webhook")
#: Legally required notices (Mẫu 02 supplement request, Mẫu 03 refusal, Mẫu 04 apology):
#: a citizen cannot opt out of them.
REQUIRED = frozenset({"apology", "supplement_requested", "refused"})
#: Two concatenated 7-bit SMS (153 x 2); the unaccented text must fit.
SMS_MAX_CHARS = 306
#: The forms of a document and how a citizen reads them.
FORMS = {"original": "bản chính", "certified_copy": "bản sao có chứng thực", "copy": "bản sao"}

#: Viet Nam has one time zone, UTC+7, and no daylight saving time.
VIETNAM = timezone(timedelta(hours=7))
DATA_FILE = Path(__file__).resolve().parent / "data" / "templates.yml"

# A template is a short text: bounds against mistakes and abuse by whoever edits them.
MAX_SOURCE_CHARS = 5_000
MAX_OUTPUT_CHARS = 20_000
MAX_RANGE = 1_000

# GSM 03.38: the basic character set (one septet) and its extension table (two septets).
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = frozenset("^{}\\[~]|€\f")
# Typographic punctuation that would force a UCS-2 SMS (70 characters a part) -> ASCII.
_SMS_ASCII = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201c": '"', "\u201d": '"', "\u201e": '"',
    "\u2013": "-", "\u2014": "-", "\u2212": "-", "\u2022": "-", "\u00b7": "-",
    "\u2026": "...", "\u00a0": " ", "\u00ab": '"', "\u00bb": '"',
})


@dataclass(frozen=True)
class Template:
    key: str
    channel: str
    subject: str | None
    body: str


@dataclass(frozen=True)
class Rendered:
    subject: str | None
    text: str  # an SMS text is already unaccented


class TemplateInvalid(ValueError):
    """A template that cannot be used: ``field`` is ``subject``, ``body``, ``key`` or ``channel``."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


# --- filters -----------------------------------------------------------------------------------


def _moment(value: Any) -> date | datetime:
    """A date or a date-time (aware ones moved to the Vietnamese clock) from an ISO text."""
    if isinstance(value, datetime):
        moment: date | datetime = value
    elif isinstance(value, date):
        return value
    elif isinstance(value, str):
        text = value.strip()
        try:
            moment = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"not an ISO date: {value!r}") from None
    else:
        raise ValueError(f"not a date: {type(value).__name__}")
    if isinstance(moment, datetime) and moment.tzinfo is not None:
        moment = moment.astimezone(VIETNAM)
    return moment


def ngay(value: Any) -> str:
    """``2026-02-13`` (or a date-time) -> ``13/02/2026``."""
    moment = _moment(value)
    return f"{moment.day:02d}/{moment.month:02d}/{moment.year:04d}"


def ngay_gio(value: Any) -> str:
    """``2026-02-13T02:30:00+00:00`` -> ``09:30 ngày 13/02/2026`` (a bare date: the date only)."""
    moment = _moment(value)
    if not isinstance(moment, datetime):
        return ngay(moment)
    return f"{moment.hour:02d}:{moment.minute:02d} ngày {ngay(moment)}"


def vnd(amount: Any) -> str:
    """``5000`` -> ``5.000 đồng`` (whole đồng: an ``int``)."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ValueError(f"an amount is a whole number of đồng, not {type(amount).__name__}")
    return f"{amount:,}".replace(",", ".") + " đồng"


def hinh_thuc(form: Any) -> str:
    """``certified_copy`` -> ``bản sao có chứng thực``."""
    try:
        return FORMS[form]
    except (KeyError, TypeError):
        raise ValueError(f"unknown document form {form!r}; one of {', '.join(FORMS)}") from None


def _bounded_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise SecurityError(f"a range is limited to {MAX_RANGE} items")
    return numbers


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox, plus no ``**`` and no multiplication of texts or lists into huge ones."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            raise SecurityError("the power operator is not allowed")
        if isinstance(left, (str, list, tuple)) or isinstance(right, (str, list, tuple)):
            count = right if isinstance(left, (str, list, tuple)) else left
            if isinstance(count, int) and count > 100:
                raise SecurityError("repeating a text or a list more than 100 times is not allowed")
        return super().call_binop(context, operator, left, right)


def _environment() -> _Environment:
    env = _Environment(
        undefined=StrictUndefined, autoescape=False, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=False, finalize=lambda value: "" if value is None else value,
    )
    env.filters.update(ngay=ngay, ngay_gio=ngay_gio, vnd=vnd, hinh_thuc=hinh_thuc)
    env.globals["range"] = _bounded_range
    return env


_ENV = _environment()


@functools.lru_cache(maxsize=512)
def _compile(source: str) -> JinjaTemplate:
    return _ENV.from_string(source)


def _syntax_error(field: str, exc: TemplateSyntaxError) -> TemplateInvalid:
    return TemplateInvalid(field, f"syntax error on line {exc.lineno}: {exc.message}")


def _render_source(field: str, source: str, context: Mapping[str, Any]) -> str:
    if not isinstance(source, str):
        raise TemplateInvalid(field, "a template is a text")
    try:
        compiled = _compile(source)
    except TemplateSyntaxError as exc:
        raise _syntax_error(field, exc) from None
    try:
        parts, size = [], 0
        for part in compiled.generate(context):
            size += len(part)
            if size > MAX_OUTPUT_CHARS:
                raise TemplateInvalid(field, f"the text is longer than {MAX_OUTPUT_CHARS} characters")
            parts.append(part)
    except TemplateInvalid:
        raise
    except SecurityError as exc:
        raise TemplateInvalid(field, f"not allowed: {mask_text(str(exc))}") from None
    except UndefinedError as exc:
        raise TemplateInvalid(field, f"undefined: {mask_text(str(exc))}") from None
    except Exception as exc:  # noqa: BLE001 - a filter or an operation on the data failed
        raise TemplateInvalid(field, f"{type(exc).__name__}: {mask_text(str(exc))}") from None
    return "".join(parts)


def _tidy(text: str) -> str:
    """No trailing blanks on a line, at most one empty line in a row, none at the ends."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def sms_text(text: str) -> str:
    """What an SMS sends: unaccented, ASCII punctuation, whitespace collapsed."""
    return _one_line(unaccent(text).translate(_SMS_ASCII))


def sms_length(text: str) -> int:
    """Length in GSM 7-bit septets (the extension table ``^{}\\[~]|€`` counts twice); a
    character outside the GSM alphabet -> ``ValueError`` (it would force a UCS-2 SMS)."""
    length = 0
    for char in text:
        if char in _GSM_BASIC:
            length += 1
        elif char in _GSM_EXTENDED:
            length += 2
        else:
            raise ValueError(f"{char!r} (U+{ord(char):04X}) is not in the GSM 7-bit alphabet")
    return length


def render(template: Template, context: Mapping[str, Any]) -> Rendered:
    """The subject and text of a message; any error -> :class:`TemplateInvalid`."""
    if not isinstance(context, Mapping):
        raise TemplateInvalid("body", "the context is not a mapping")
    subject = None
    if template.subject is not None and template.channel != "sms":
        subject = _one_line(_render_source("subject", template.subject, context))
    text = _render_source("body", template.body, context)
    text = sms_text(text) if template.channel == "sms" else _tidy(text)
    return Rendered(subject, text)


# --- validation --------------------------------------------------------------------------------


def _check_source(field: str, source: str, known: set[str]) -> None:
    if len(source) > MAX_SOURCE_CHARS:
        raise TemplateInvalid(field, f"the template has {len(source)} characters, the limit is {MAX_SOURCE_CHARS}")
    try:
        # Names in branches the sample does not take are caught here, not only at rendering;
        # the analysis compiles the template (unknown filters and tests are errors there).
        undeclared = meta.find_undeclared_variables(_ENV.parse(source))
    except TemplateSyntaxError as exc:   # TemplateAssertionError included
        raise _syntax_error(field, exc) from None
    unknown = sorted(undeclared - known - set(_ENV.globals))
    if unknown:
        raise TemplateInvalid(field, f"unknown variable {', '.join(unknown)}; known: {', '.join(sorted(known))}")


def validate(key: str, channel: str, subject: str | None, body: str) -> Template:
    """A template checked against :func:`sample_context`; -> :class:`TemplateInvalid`."""
    if key not in KEYS:
        raise TemplateInvalid("key", f"unknown message {key!r}; one of {', '.join(KEYS)}")
    if channel not in CHANNELS:
        raise TemplateInvalid("channel", f"unknown channel {channel!r}; one of {', '.join(CHANNELS)}")
    if not isinstance(body, str) or not body.strip():
        raise TemplateInvalid("body", "the body is an empty text")
    if subject is not None and not isinstance(subject, str):
        raise TemplateInvalid("subject", "the subject is a text")
    if subject is not None and not subject.strip():
        subject = None
    if channel == "email" and subject is None:
        raise TemplateInvalid("subject", "an e-mail needs a subject")
    if channel == "sms" and subject is not None:
        raise TemplateInvalid("subject", "an SMS has no subject")
    context = sample_context(key)
    known = set(context)
    if subject is not None:
        _check_source("subject", subject, known)
    _check_source("body", body, known)
    template = Template(key, channel, subject, body)
    rendered = render(template, context)
    if subject is not None and not rendered.subject:
        raise TemplateInvalid("subject", "the subject renders empty")
    if not rendered.text:
        raise TemplateInvalid("body", "the text renders empty")
    if channel == "sms":
        try:
            length = sms_length(rendered.text)
        except ValueError as exc:
            raise TemplateInvalid("body", f"an SMS is GSM 7-bit text: {exc}") from None
        if length > SMS_MAX_CHARS:
            raise TemplateInvalid(
                "body", f"the SMS with the longest sample data has {length} characters, the limit is {SMS_MAX_CHARS}")
    return template


# --- defaults ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _defaults() -> dict[tuple[str, str], Template]:
    data = yaml.safe_load(DATA_FILE.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{DATA_FILE}: a mapping of message keys")
    extra = sorted(set(data) - set(KEYS))
    missing = [key for key in KEYS if key not in data]
    if extra or missing:
        raise ValueError(f"{DATA_FILE}: unknown keys {extra}, missing keys {missing}")
    found: dict[tuple[str, str], Template] = {}
    for key in KEYS:
        entry = data[key]
        if not isinstance(entry, dict) or set(entry) != set(CHANNELS):
            raise ValueError(f"{DATA_FILE}: {key} needs exactly the channels {', '.join(CHANNELS)}")
        for channel in CHANNELS:
            fields = entry[channel]
            if not isinstance(fields, dict) or not set(fields) <= {"subject", "body"}:
                raise ValueError(f"{DATA_FILE}: {key}.{channel} has a subject and a body")
            try:
                found[(key, channel)] = validate(key, channel, fields.get("subject"), fields.get("body"))
            except TemplateInvalid as exc:
                raise ValueError(f"{DATA_FILE}: {key}.{channel}.{exc}") from None
    return found


def defaults() -> dict[tuple[str, str], Template]:
    """The packaged templates: every key x channel, each validated."""
    return dict(_defaults())


# --- sample contexts ---------------------------------------------------------------------------

_CODE = "000.07.20.H29-260213-0042"
_NAME = "Tôn Nữ Hoàng Thị Phương Nguyệt Quỳnh Anh"
# 200 characters: the longest procedure names of the national catalogue are about this long.
_PROCEDURE = ("Đăng ký biến động quyền sử dụng đất, quyền sở hữu nhà ở và tài sản khác gắn liền với đất khi "
              "chuyển đổi, chuyển nhượng, cho thuê, cho thuê lại, thừa kế, tặng cho, góp vốn bằng quyền sử "
              "dụng đất, nhà ở")
_UNIT = "Bộ phận Một cửa Ủy ban nhân dân Phường Hạnh Thông"
_AGENCY = "Phòng Tài nguyên và Môi trường quận Gò Vấp"
_CODES = [f"000.07.20.H29-2602{day:02d}-{seq:04d}" for day, seq in
          [(3, 12), (4, 7), (5, 31), (6, 2), (9, 118), (10, 54), (11, 9), (12, 77)]]
# A digest lists at most 50 codes per list (DIGEST_MAX_CODES) and counts the rest: a busy desk's day.
_DIGEST_CODES = [f"000.00.20.H29-26{month:02d}{day:02d}-{seq:04d}" for month, day, seq in
                 [(1 + n % 2, 5 + n % 20, 1000 + 37 * n) for n in range(100)]]


def sample_context(key: str) -> dict:
    """A realistic context for ``key``, long where it matters (names, procedure, reasons)."""
    samples: dict[str, dict] = {
        "received": {
            "code": _CODE, "name": _NAME, "procedure": _PROCEDURE, "unit_name": _UNIT,
            "appointment_date": "2026-03-06",
            "status_url": ("https://dichvucong.govap.hochiminhcity.gov.vn/tra-cuu"
                           f"?code={_CODE}&secret=K7QM3XPA"),
            "secret": "K7QM3XPA",
        },
        "supplement_requested": {
            "code": _CODE, "name": _NAME, "procedure": _PROCEDURE, "unit_name": _UNIT,
            "documents": [
                {"name": "Hợp đồng chuyển nhượng quyền sử dụng đất đã công chứng", "form": "original", "count": 1},
                {"name": "Căn cước công dân của bên nhận chuyển nhượng", "form": "certified_copy", "count": 2},
            ],
            "reason": "Hợp đồng chuyển nhượng trong hồ sơ chưa được công chứng theo quy định",
        },
        "refused": {
            "code": _CODE, "name": _NAME, "procedure": _PROCEDURE,
            "reason": ("Thửa đất đang có tranh chấp, đã được Tòa án nhân dân quận Gò Vấp thụ lý giải quyết "
                       "nên chưa đủ điều kiện đăng ký biến động theo Điều 45 Luật Đất đai"),
        },
        "apology": {
            "code": _CODE, "name": _NAME, "procedure": _PROCEDURE, "agency_name": _AGENCY,
            "reason": "Phải lấy thêm ý kiến của Chi cục Thuế khu vực về nghĩa vụ tài chính của thửa đất",
            "original_due_date": "2026-03-06", "new_date": "2026-03-13",
        },
        "result_ready": {"code": _CODE, "name": _NAME, "procedure": _PROCEDURE, "unit_name": _UNIT},
        "returned": {"code": _CODE, "name": _NAME, "returned_at": "2026-03-06T02:30:00+00:00"},
        "payment_received": {"code": _CODE, "name": _NAME, "amount": 1_250_000, "receipt_number": "BL-2026-000123"},
        "refunded": {
            "code": _CODE, "name": _NAME, "amount": 1_250_000, "receipt_number": "BL-2026-000123",
            "reason": "Hồ sơ bị từ chối giải quyết nên lệ phí đã nộp được hoàn trả theo quy định",
        },
        "at_risk": {"code": _CODE, "agency_name": _AGENCY, "due_date": "2026-03-06"},
        "step_overdue": {"code": _CODE, "agency_name": _AGENCY, "due_date": "2026-03-06"},
        "apology_missing": {"code": _CODE, "agency_name": _AGENCY, "overdue_since": "2026-03-06T10:00:00+00:00"},
        "daily_digest": {
            "unit_name": _UNIT, "day": "2026-03-06", "received": 1_210,
            "due_today": _DIGEST_CODES[:50], "overdue": _DIGEST_CODES[50:],
            "due_today_count": 1_136, "overdue_count": 3_617, "due_today_more": 1_086, "overdue_more": 3_567,
            "list_url": "https://motcua.govap.hochiminhcity.gov.vn/api/v1/due",
        },
    }
    if key not in samples:
        raise TemplateInvalid("key", f"unknown message {key!r}; one of {', '.join(KEYS)}")
    return samples[key]
