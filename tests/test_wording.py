"""Vietnamese wording from numbers and cells: one way of writing them in every message."""

import pytest

from pipeline import wording


@pytest.mark.parametrize(("x", "text"), [(2379, "2.379"), (785.87, "785,87"), (828.0, "828"),
                                         (1_000_000, "1.000.000"), (0.5, "0,5"), (-3, "-3")])
def test_number(x, text):
    assert wording.number(x) == text


@pytest.mark.parametrize(("lo", "hi", "text"), [(0, 100, "từ 0 đến 100"), (0, None, "từ 0 trở lên"),
                                                (None, 5, "không quá 5"), (1.5, 8, "từ 1,5 đến 8"),
                                                (None, None, "")])
def test_range_text(lo, hi, text):
    assert wording.range_text(lo, hi) == text


@pytest.mark.parametrize(("kind", "lo", "hi", "text"), [
    ("integer", 0, None, "Số nguyên, từ 0 trở lên"), ("integer", 0, 1, "Số nguyên từ 0 đến 1"),
    ("decimal", None, None, "Số thập phân"), ("percent", 0, 100, "Tỷ lệ phần trăm, từ 0 đến 100"),
    ("choice", None, None, "Chọn trong danh sách"), ("date", None, None, "Ngày/tháng/năm"),
])
def test_kind_text(kind, lo, hi, text):
    assert wording.kind_text(kind, lo, hi) == text


@pytest.mark.parametrize(("refs", "text"), [([], ""), (["B9"], "B9"), (["B9", "B10"], "B9 và B10"),
                                            (["B9", "", "B10", "B11"], "B9, B10 và B11")])
def test_cells(refs, text):
    assert wording.cells(refs) == text
