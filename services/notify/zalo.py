"""Zalo ZNS template messages: which pre-approved template each citizen message uses, as data.

A ZNS message is not free text: the Official Account's template is approved on Zalo's side,
with an id and named parameters, and a send names the template and gives the parameters'
values (``template_id`` and ``template_data``). ``data/zalo-templates.yml`` says, for each
message kind notify sends to citizens, which template and where each parameter's value comes
from in the message's data (the variables of :func:`services.notify.templates.sample_context`)::

    received:
      template_id: "300001"
      params:
        customer_name: {from: name, type: name}
        dossier_code: {from: code, type: code}

Pure, except :func:`load`, which reads a file (again when it changes). The mapping is checked
when loaded (the service refuses to start with a bad one): an unknown or missing message kind,
a parameter without ``from`` or ``type``, a ``from`` the message does not provide, an unknown
type or a sample value of the wrong type is a :class:`ZaloTemplateInvalid` naming the field.

The parameter types and their lengths follow ZNS's parameter types as a third-party SDK lists
them (customer name 30, code 30, label 30, address 200, product/brand 200, quantity/amount 20)
**[verify]** against the OA's approved templates; a value longer than its type allows is cut with
"…" (ZNS refuses template data it finds invalid, error -112). A date is sent as ``dd/mm/yyyy``
**[verify]**; an amount as its digits grouped with dots, without "đồng" (the template says it)
**[verify]**.
"""
from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from services.notify import templates

__all__ = ["PARAM_TYPES", "ZaloTemplate", "ZaloTemplateInvalid", "validate", "load", "template_data",
           "message_text", "zns_phone", "DATA_FILE"]

DATA_FILE = Path(__file__).resolve().parent / "data" / "zalo-templates.yml"

#: type -> (what value it takes, longest value in characters) [verify] the lengths.
PARAM_TYPES: dict[str, tuple[str, int]] = {
    "name": ("text", 30),            # Tên khách hàng
    "code": ("text", 30),            # Mã số
    "label": ("text", 30),           # Nhãn tùy chỉnh
    "status": ("text", 30),          # Trạng thái giao dịch
    "address": ("text", 200),        # Địa chỉ
    "product": ("text", 200),        # Tên sản phẩm / Thương hiệu: a procedure's or a unit's name
    "amount": ("amount", 20),        # Số lượng / Số tiền
    "date": ("date", 20),            # a date, sent as dd/mm/yyyy
}
#: The kinds a citizen can be told of (Zalo is a citizen's channel; officials have e-mail and webhooks).
CITIZEN_KEYS = tuple(key for key, audience in templates.KEYS.items() if audience == "citizen")


class ZaloTemplateInvalid(templates.TemplateInvalid):
    """A mapping that cannot be used; ``field`` is its path, e.g. ``received.params.dossier_code.from``
    (a :class:`~services.notify.templates.TemplateInvalid`: a message that cannot be built is
    refused as one whose template failed to render)."""


@dataclass(frozen=True)
class Param:
    source: str                      # a variable of the message's data
    type: str                        # one of PARAM_TYPES


@dataclass(frozen=True)
class ZaloTemplate:
    key: str
    template_id: str
    params: dict                     # ZNS parameter name -> Param


# --- building a message's template data --------------------------------------------------------

def _value(param: Param, value: Any, field: str) -> str:
    kind, longest = PARAM_TYPES[param.type]
    if kind == "date":
        try:
            text = templates.ngay(value)
        except ValueError as exc:
            raise ZaloTemplateInvalid(field, f"a {param.type} parameter takes a date: {exc}") from None
    elif kind == "amount":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ZaloTemplateInvalid(field, f"an amount parameter takes a whole number, not {type(value).__name__}")
        text = f"{value:,}".replace(",", ".")
    else:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ZaloTemplateInvalid(field, f"a {param.type} parameter takes text, not {type(value).__name__}")
        text = " ".join(str(value).split())
    if not text:
        return "-"                                 # no receipt number yet, say: ZNS wants every parameter [verify]
    return text if len(text) <= longest else text[:longest - 1] + "…"


def template_data(template: ZaloTemplate, context: Mapping[str, Any]) -> dict[str, str]:
    """ZNS's ``template_data``: each parameter's value from the message's data, as text."""
    data = {}
    for name, param in template.params.items():
        field = f"{template.key}.params.{name}"
        if param.source not in context:
            raise ZaloTemplateInvalid(f"{field}.from", f"the message has no {param.source!r}")
        data[name] = _value(param, context[param.source], field)
    return data


def message_text(template: ZaloTemplate, context: Mapping[str, Any]) -> str:
    """What notify stores as the message's text: the request's template id and data, as JSON."""
    return json.dumps({"template_id": template.template_id, "template_data": template_data(template, context)},
                      ensure_ascii=False, sort_keys=True)


def zns_phone(phone: str) -> str | None:
    """A Vietnamese number as ZNS takes it, ``84`` and the subscriber number (``0912…`` ->
    ``84912…``); None when it is not one."""
    digits = "".join(c for c in phone if c.isdigit())
    if phone.strip().startswith("+"):
        pass                                       # +84…: the digits already start with 84
    elif digits.startswith("0"):
        digits = "84" + digits[1:]
    if not (digits.startswith("84") and len(digits) == 11):
        return None
    return digits


# --- checking a mapping ------------------------------------------------------------------------

def _param(key: str, name: Any, entry: Any, known: Mapping[str, Any]) -> Param:
    field = f"{key}.params.{name}"
    if not isinstance(name, str) or not name.strip():
        raise ZaloTemplateInvalid(f"{key}.params", f"a parameter's name is text, not {name!r}")
    if not isinstance(entry, Mapping):
        raise ZaloTemplateInvalid(field, "a parameter is {from: <variable>, type: <type>}")
    unknown = sorted(set(entry) - {"from", "type"})
    if unknown:
        raise ZaloTemplateInvalid(f"{field}.{unknown[0]}", "is not a parameter setting (from, type)")
    for setting in ("from", "type"):
        if not isinstance(entry.get(setting), str) or not entry[setting].strip():
            raise ZaloTemplateInvalid(f"{field}.{setting}", "is required, as text")
    if entry["type"] not in PARAM_TYPES:
        raise ZaloTemplateInvalid(f"{field}.type", f"unknown type {entry['type']!r}; one of {', '.join(PARAM_TYPES)}")
    if entry["from"] not in known:
        raise ZaloTemplateInvalid(f"{field}.from", f"the {key} message does not provide {entry['from']!r}; "
                                                   f"it provides {', '.join(sorted(known))}")
    param = Param(entry["from"], entry["type"])
    _value(param, known[entry["from"]], field)     # the sample's value has the type's shape
    return param


def validate(data: Any) -> dict[str, ZaloTemplate]:
    """Every citizen message kind -> its :class:`ZaloTemplate`; -> :class:`ZaloTemplateInvalid`."""
    if not isinstance(data, Mapping):
        raise ZaloTemplateInvalid("(file)", "a mapping of message kinds to ZNS templates")
    for key in data:
        if key not in templates.KEYS:
            raise ZaloTemplateInvalid(str(key), f"unknown message kind; one of {', '.join(CITIZEN_KEYS)}")
        if key not in CITIZEN_KEYS:
            raise ZaloTemplateInvalid(str(key), "is a message to officials: Zalo is a citizen's channel")
    missing = [key for key in CITIZEN_KEYS if key not in data]
    if missing:
        raise ZaloTemplateInvalid(missing[0], "is missing: a citizen who chose Zalo is told of every citizen "
                                              "message (legally required notices included)")
    found = {}
    for key in CITIZEN_KEYS:
        entry = data[key]
        if not isinstance(entry, Mapping):
            raise ZaloTemplateInvalid(key, "a template is {template_id: <id>, params: {...}}")
        unknown = sorted(set(entry) - {"template_id", "params"})
        if unknown:
            raise ZaloTemplateInvalid(f"{key}.{unknown[0]}", "is not a template setting (template_id, params)")
        template_id = entry.get("template_id")
        if not isinstance(template_id, str) or not template_id.strip():
            raise ZaloTemplateInvalid(f"{key}.template_id", "is required, as text (quote a numeric id)")
        params = entry.get("params")
        if not isinstance(params, Mapping) or not params:
            raise ZaloTemplateInvalid(f"{key}.params", "is required: the template's parameters, at least one")
        known = templates.sample_context(key)
        template = ZaloTemplate(key, template_id.strip(),
                                {name: _param(key, name, params[name], known) for name in params})
        template_data(template, known)
        found[key] = template
    return found


def load(path: str | Path | None = None) -> dict[str, ZaloTemplate]:
    """The mapping in ``path`` (default ``data/zalo-templates.yml``), checked; read again when
    the file changes. A bad file is a :class:`ZaloTemplateInvalid` naming the file and the field."""
    source = Path(path) if path else DATA_FILE
    return _load(str(source), source.stat().st_mtime)


@functools.lru_cache(maxsize=4)
def _load(source: str, mtime: float) -> dict[str, ZaloTemplate]:
    try:
        data = yaml.safe_load(Path(source).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ZaloTemplateInvalid("(file)", f"{source} is not YAML: {exc}") from None
    try:
        return validate(data)
    except ZaloTemplateInvalid as exc:
        raise ZaloTemplateInvalid(exc.field, f"{exc.reason} (in {source})") from None
