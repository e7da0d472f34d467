"""Vietnamese text helpers."""
from __future__ import annotations

import unicodedata


def unaccent(text: str) -> str:
    """Vietnamese without diacritics (tiếng Việt không dấu): "Đăng ký khai sinh" -> "Dang ky khai sinh"."""
    text = text.replace("đ", "d").replace("Đ", "D")
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if unicodedata.category(c) != "Mn"))


def fold(text: str) -> str:
    """The search key of a text: unaccented, lower case, single spaces."""
    return " ".join(unaccent(text).lower().split())
