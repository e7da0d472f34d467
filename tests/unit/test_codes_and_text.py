from datetime import date

import pytest

from motcua.contracts.codes import CodeError, format_dossier_code, parse_dossier_code
from motcua.contracts.text import fold, unaccent


def test_dossier_code_shape_and_round_trip():
    code = format_dossier_code("000.07.20.H29", date(2026, 2, 13), 42)
    assert code == "000.07.20.H29-260213-0042"
    parsed = parse_dossier_code(code)
    assert (parsed.unit, parsed.day, parsed.seq) == ("000.07.20.H29", date(2026, 2, 13), 42)


@pytest.mark.parametrize("unit, seq", [("Phường 7", 1), ("000.07.20.H29", 0), ("000.07.20.H29", 10000)])
def test_bad_parts_are_refused(unit, seq):
    with pytest.raises(CodeError):
        format_dossier_code(unit, date(2026, 2, 13), seq)


@pytest.mark.parametrize("code", ["", "000.07.20.H29-261313-0001", "000.07.20.H29-260213-0000",
                                  "000.07.20.H29-260213-1", "x-260213-0001"])
def test_bad_codes_are_refused(code):
    with pytest.raises(CodeError):
        parse_dossier_code(code)


def test_vietnamese_without_diacritics():
    assert unaccent("Đăng ký khai sinh, Ủy ban nhân dân phường") == "Dang ky khai sinh, Uy ban nhan dan phuong"
    assert fold("  Chứng   THỰC bản sao ") == "chung thuc ban sao"
