"""Vietnamese wording built from numbers and cells: one home for how every message writes them.

`number(2379)` → "2.379", `number(785.87)` → "785,87"; `range_text(0, 100)` → "từ 0 đến 100";
`kind_text("integer", 0, None)` → "Số nguyên, từ 0 trở lên"; `cells(["B9", "B10"])` → "B9 và B10".
"""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.numbers import format_vn

_KINDS = {"integer": "Số nguyên", "decimal": "Số thập phân"}


def number(x: float) -> str:
    """A figure as a Vietnamese office writes it: 2.379, 785,87, 828."""
    return format_vn(x)


def range_text(lo: float | None, hi: float | None) -> str:
    """A field's bounds: "từ 0 đến 100", "từ 0 trở lên", "không quá 5" ("" without bounds)."""
    if lo is not None and hi is not None:
        return f"từ {number(lo)} đến {number(hi)}"
    if lo is not None:
        return f"từ {number(lo)} trở lên"
    return f"không quá {number(hi)}" if hi is not None else ""


def kind_text(ftype: str, lo: float | None, hi: float | None) -> str:
    """What a field accepts, from its type and bounds: "Số nguyên, từ 0 trở lên", "Tỷ lệ phần trăm, từ 0
    đến 100", "Chọn trong danh sách"."""
    if ftype in _KINDS:
        bounds = range_text(lo, hi)
        if lo is not None and hi is not None:
            return f"{_KINDS[ftype]} {bounds}"
        return f"{_KINDS[ftype]}, {bounds}" if bounds else _KINDS[ftype]
    if ftype == "percent":
        return f"Tỷ lệ phần trăm, {range_text(lo, hi)}"  # the loader defaults percent to 0–100
    return {"choice": "Chọn trong danh sách", "date": "Ngày/tháng/năm", "text": "Ghi chữ"}[ftype]


def cells(refs: Iterable[str]) -> str:
    """"B9", "B9 và B10", "B9, B10 và B11" (blanks left out)."""
    refs = [c for c in refs if c]
    if len(refs) <= 1:
        return refs[0] if refs else ""
    return ", ".join(refs[:-1]) + " và " + refs[-1]
