"""What every workbook tonghop writes shares: workbook options, blank and number tests, row heights,
page set-up. Writers (template, feedback, district, province) use these, not copies of their own.

Row heights are set explicitly because LibreOffice keeps an xlsx row's height as written: wrapped text
would overlap. `row_height` measures texts in column-width units (Calibri 11, Excel's default: 7 px a
unit); measured on Vietnamese text, Times New Roman 12 fits 1.08 characters per unit, and 0.95 of that
leaves room for word breaks.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import pandas as pd

from pipeline.writers.cache import WriterCache

# Ward text is text: never a formula, a link or a number (xlsxwriter's write() would make it one).
# in_memory: without it xlsxwriter packs through a temporary file per part (half the time of a small book).
WORKBOOK_OPTIONS = {"strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False,
                    "remove_timezone": True, "in_memory": True}
FONT = "Times New Roman"
PAPER_A4 = 9
FOOTER = "&C&9Trang &P/&N"  # "Trang 1/3" centred at the foot of every page


def is_blank(v: object) -> bool:
    """True for a missing value: None, pandas' NA and NaT, a NaN or infinite float."""
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and not math.isfinite(v))


def is_number(v: object) -> bool:
    """True for a real number a cell can hold (not a bool, not blank)."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and not is_blank(v)


def quote_sheet(name: str) -> str:
    """A sheet name as a formula or link names it: 'Kết quả hoạt động'."""
    return "'" + name.replace("'", "''") + "'"


def row_height(cells: list[tuple[object, float]], size: float = 11, minimum: float = 0,
               cache: WriterCache | None = None) -> float:
    """Height in points of a row whose texts wrap in columns of the given widths (characters), at a font
    size of `size` points; at least `minimum`. `cache` keeps the heights measured (the same labels and
    notes come back in every workbook)."""
    texts = tuple((t if t.__class__ is str else None if is_blank(t) else str(t), w) for t, w in cells)
    if cache is None:
        return max(minimum, lines_height(texts, size))
    return max(minimum, cache.get(cache.heights, (texts, size), lambda: lines_height(texts, size)))


def lines_height(cells: tuple[tuple[str | None, float], ...], size: float) -> float:
    per_line = 0.95 * 12 / size
    lines = max((sum(math.ceil(max(len(p), 1) / (w * per_line)) for p in t.split("\n"))
                 for t, w in cells if t), default=1)
    return lines * size * 1.35 + 4


def page_setup(ws, *, landscape: bool, margins: tuple[float, float, float, float] = (0.5, 0.4, 0.7, 0.7),
               header: str = "", center: bool = False, print_area: tuple[int, int] | None = None,
               repeat: tuple[int, int] | int | None = None) -> None:
    """A4, one page wide (as many pages down as needed), "Trang x/y" at the foot; `margins` (left, right,
    top, bottom, inches); `print_area` (last row, last column, 0-based) from A1; `repeat` the rows printed
    on top of every page."""
    ws.set_paper(PAPER_A4)
    ws.set_landscape() if landscape else ws.set_portrait()
    ws.fit_to_pages(1, 0)
    left, right, top, bottom = margins
    ws.set_margins(left=left, right=right, top=top, bottom=bottom)
    if center:
        ws.center_horizontally()
    if header:
        ws.set_header(header)
    ws.set_footer(FOOTER)
    if print_area is not None:
        ws.print_area(0, 0, *print_area)
    if repeat is not None:
        ws.repeat_rows(*repeat) if isinstance(repeat, tuple) else ws.repeat_rows(repeat)


def records(frame: pd.DataFrame) -> list[dict]:
    """The rows of `frame` as dicts, as `frame.to_dict("records")` gives them (numpy scalars as Python
    ones, pandas' NA as None), from one conversion of the whole frame: pandas' own takes each column
    apart, some 6 ms per district workbook for a few dozen rows."""
    names = list(frame.columns)
    rows = frame.to_numpy(dtype=object).tolist()
    return [dict(zip(names, [None if v is pd.NA else v.item() if isinstance(v, np.generic) else v
                             for v in row], strict=True)) for row in rows]
