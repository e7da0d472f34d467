"""The documents a dossier presents, or a supplement asks for, as every service reads them from
input: one shape (name, form, count), so that what routing accepts from an agency is what the desk
can put on its supplement request (Mẫu 02)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from motcua.contracts.refusals import Invalid
from motcua.contracts.vocabulary import DOCUMENT_FORMS


@dataclass(frozen=True)
class Presented:
    name: str
    form: str
    count: int


def text_field(data: Mapping, key: str, field: str, *, required: bool = True, max_length: int = 500) -> str | None:
    value = data.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise Invalid(field, "is required")
        return None
    if not isinstance(value, str):
        raise Invalid(field, f"must be text, got {type(value).__name__}")
    value = " ".join(value.split())
    if len(value) > max_length:
        raise Invalid(field, f"is longer than {max_length} characters")
    return value


def mapping_field(data: Any, field: str) -> Mapping:
    if not isinstance(data, Mapping):
        raise Invalid(field, "must be an object")
    return data


def count_field(value: Any, field: str, *, minimum: int = 1, maximum: int = 1000) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise Invalid(field, f"must be a whole number, got {value!r}")
    if not minimum <= value <= maximum:
        raise Invalid(field, f"must be from {minimum} to {maximum}, got {value}")
    return value


def parse_documents(data: Any, field: str = "documents") -> list[Presented]:
    if not isinstance(data, list):
        raise Invalid(field, "must be a list of documents")
    documents = []
    for index, item in enumerate(data):
        where = f"{field}[{index}]"
        item = mapping_field(item, where)
        form = item.get("form")
        if form not in DOCUMENT_FORMS:
            raise Invalid(f"{where}.form", f"must be one of {', '.join(DOCUMENT_FORMS)}, got {form!r}")
        documents.append(Presented(name=text_field(item, "name", f"{where}.name"), form=form,
                                   count=count_field(item.get("count", 1), f"{where}.count")))
    return documents
