"""The consolidated district workbook: what the district officer reads, prints and forwards to the province.

`write_district_workbook` writes five sheets with xlsxwriter: "Tổng hợp" (the district's report in the
template's own layout), "Theo đơn vị" (key figures per unit, with two bar charts), "Lỗi và cảnh báo"
(every finding, linked to the cell of the ward's feedback workbook), "Tình hình nộp báo cáo" (who sent
what, when) and "Dữ liệu" (the tidy values table). Text that came from wards is only ever written with
write_string, so "=HYPERLINK(...)" stays text. Every sheet writes its rows top to bottom, which lets a
large workbook use xlsxwriter's constant_memory mode.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import math
import numbers
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import pandas as pd
import xlsxwriter
from xlsxwriter.utility import xl_col_to_name

from pipeline import xlsx_patch
from pipeline.atomic import atomic_path
from pipeline.consolidate import STATUS_ERRORS, STATUS_MISSING, STATUS_OK, STATUS_UNREADABLE
from pipeline.findings import SEVERITY_ORDER, show
from pipeline.guard import OUTPUT_PROPERTY
from pipeline.worksheet import Worksheet

SHEETS = ("Tổng hợp", "Theo đơn vị", "Lỗi và cảnh báo", "Tình hình nộp báo cáo", "Dữ liệu")
SEVERITY_VN = {"error": "Lỗi", "warning": "Cảnh báo"}
NO_FINDINGS = "Không có lỗi hay cảnh báo nào."
# The figures shown per unit: (field id, header); ids missing from the definition are skipped.
BY_UNIT = (("households", "Số hộ"), ("population", "Số dân"), ("total.classes", "Số lớp"),
           ("total.participants", "Số lượt người tham gia"), ("total.female", "Nữ"),
           ("learners", "Số lượt người học"))
DATA_HEADERS = {"period": "Kỳ", "district": "Đơn vị hành chính cấp huyện", "unit_code": "Mã đơn vị",
                "unit_name": "Tên đơn vị", "sheet": "Trang", "field": "Mục", "value": "Giá trị",
                "raw": "Giá trị gốc", "file": "Tệp", "cell": "Ô"}
_DATA_WIDTHS = {"period": 9, "district": 22, "unit_code": 10, "unit_name": 24, "sheet": 18, "field": 24,
                "value": 14, "raw": 14, "file": 28, "cell": 6}
_WB_OPTIONS = {"strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False,
               "remove_timezone": True}
# Up to this many tidy rows (every district: about 60 a unit) "Dữ liệu" is built a column at a time and
# spliced in (xlsx_patch): about 1 µs a cell against 15 µs through xlsxwriter's cell calls. Above it (a
# units list that is one huge district) the workbook is written cell by cell in constant_memory mode:
# at 650,000 rows the default mode adds about 0.7 GB to the process, constant_memory about 40 MB.
CONSTANT_MEMORY_ROWS = 200_000
_SST = "xl/sharedStrings.xml"
_MAX_ROWS = 1_048_576  # Excel's row limit: a larger "Dữ liệu" continues on "Dữ liệu (2)"
_MAX_LINKS = 65_530  # Excel's hyperlink limit per worksheet; later feedback references are plain text
_SUMMARY_WIDTHS = (6, 44, 15, 17, 34)  # TT, label, value, unit, note: also the activity table's columns
_BASE = {"font_name": "Times New Roman", "font_size": 11, "valign": "vcenter"}
_BOX = {"border": 1, "text_wrap": True}
_FORMATS = {
    "title": {"bold": True, "font_size": 14, "align": "center", "text_wrap": True},
    "italic": {"italic": True, "align": "center"}, "left": {}, "indent": {"indent": 1},
    "bold": {"bold": True, "font_size": 12}, "note": {"italic": True, "font_size": 10},
    "section": {"bold": True, "font_size": 12, "text_wrap": True},
    "head": _BOX | {"bold": True, "align": "center", "bg_color": "#DDEBF7"},
    "text": _BOX, "text_b": _BOX | {"bold": True}, "code": {"border": 1, "align": "center"},
    "link": _BOX | {"font_color": "blue", "underline": 1},
    "when": {"border": 1, "num_format": "dd/mm/yyyy hh:mm", "align": "center"},
    "error": {"border": 1, "bold": True, "font_color": "#9C0006", "bg_color": "#FFC7CE"},
    "warning": {"border": 1, "bold": True, "font_color": "#9C5700", "bg_color": "#FFEB9C"},
    "sign": {"bold": True, "align": "center"}, "sign_note": {"italic": True, "align": "center"},
} | {f"{k}{b}": {"border": 1, "num_format": nf} | ({"bold": True} if b else {})
     for k, nf in (("int", "#,##0"), ("dec", "#,##0.00"), ("pct", "0.0")) for b in ("", "_b")}
_STATUS_COLOURS = {STATUS_OK: ("#006100", "#C6EFCE"), STATUS_ERRORS: ("#9C0006", "#FFC7CE"),
                   STATUS_UNREADABLE: ("#9C0006", "#FFC7CE"), STATUS_MISSING: ("#3F3F3F", "#D9D9D9")}


def _blank(v: object) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and not math.isfinite(v))


def _number(v: object) -> float | None:
    """`v` as a float when it is a real number (not bool, not NaN), else None."""
    if v.__class__ is float:  # the usual case first: an exact class test is cheap, an ABC check is not
        return v if math.isfinite(v) else None
    if v.__class__ is str or v is None:
        return None
    return float(v) if isinstance(v, numbers.Real) and not isinstance(v, bool) and not _blank(v) else None


def _height(cells: list[tuple[object, float]], size: float = 11) -> float:
    """Row height in points for texts wrapped in columns of the given widths (characters).

    Set explicitly because LibreOffice keeps an xlsx row's height as written: wrapped text would overlap.
    Width units are the default font's (Calibri 11: 7 px); measured on Vietnamese text, Times New Roman 12
    fits 1.08 characters per unit. 0.95 leaves room for word breaks. (A LibreOffice without Calibri or
    Carlito falls back to a wider font, so its columns are wider and these rows look roomy there.)
    """
    texts = tuple((t if t.__class__ is str else None if _blank(t) else str(t), w) for t, w in cells)
    return _lines_height(texts, size)


@functools.lru_cache(maxsize=4096)  # the same labels and notes come back in every district
def _lines_height(cells: tuple[tuple[str | None, float], ...], size: float) -> float:
    per_line = 0.95 * 12 / size
    lines = max((sum(math.ceil(max(len(p), 1) / (w * per_line)) for p in t.split("\n"))
                 for t, w in cells if t), default=1)
    return lines * size * 1.35 + 4


def _fit(texts, lo: float, hi: float) -> float:
    """A column width (characters) that fits the longest of `texts`, within [lo, hi]."""
    return max(lo, min(hi, max((len(str(t)) for t in texts if not _blank(t)), default=0) + 2))


class _Book:
    """The workbook being written: formats (created once), page set-up and the count of cut strings."""

    def __init__(self, wb: xlsxwriter.Workbook, header: str, splice: bool = False) -> None:
        self.wb, self.header, self.cut = wb, header, 0
        # long plain tables are spliced into the closed workbook (xlsx_patch) unless it streams rows out
        # (constant_memory); each function maps (package, shared strings) to the members it rewrites
        self.splice, self.splices = splice, []
        self.f = {k: wb.add_format(_BASE | v) for k, v in _FORMATS.items()}
        self.big = {k: wb.add_format(_BASE | v | {"font_size": 12}) for k, v in _FORMATS.items()}  # Tổng hợp
        self.status = {k: wb.add_format({"font_color": c, "bg_color": b})
                       for k, (c, b) in _STATUS_COLOURS.items()}

    def sheet(self, name: str) -> Worksheet:
        return self.wb.add_worksheet(name, worksheet_class=Worksheet)

    def text(self, ws, r: int, c: int, s: object, fmt=None) -> None:
        """Write `s` as a string (never a formula or link); blank when missing; count strings Excel cuts."""
        if not s if s.__class__ is str else _blank(s):
            ws.write_blank(r, c, None, fmt)
        elif ws.write_string(r, c, s if s.__class__ is str else str(s), fmt) == -2:
            if len(str(s)) <= 32_767:  # constant_memory drops a cell of a row already written out
                raise RuntimeError(f"district workbook: row {r + 1} of {ws.name!r} written out of order")
            self.cut += 1

    def number(self, ws, r: int, c: int, v: object, fmt=None) -> None:
        x = _number(v)
        ws.write_blank(r, c, None, fmt) if x is None else ws.write_number(r, c, x, fmt)

    def cells(self, ws, r: int, cells, first: int = 0) -> None:
        """Write (value, format) pairs from column `first`: numbers and datetimes (as Excel's serial number)
        as numbers, others as text, missing ones as formatted blanks (`_cell_value`)."""
        for c, (v, fmt) in enumerate(cells, first):
            x = _cell_value(v)
            if x.__class__ is str:
                self.text(ws, r, c, x, fmt)
            elif x is None:
                ws.write_blank(r, c, None, fmt)
            else:
                ws.write_number(r, c, x, fmt)

    def head(self, ws, r: int, heads, widths, height: float = 32) -> None:
        """Column widths and a header row at `r`."""
        for c, w in enumerate(widths):
            ws.set_column(c, c, w)
        ws.set_row(r, height)
        self.cells(ws, r, [(h, self.f["head"]) for h in heads])

    def merge(self, ws, r: int, c1: int, c2: int, text: str, fmt, *, rows: int = 1) -> None:
        """Merge `rows` rows from (r, c1) to column c2 and write the top row (text, formatted blanks).

        The merge is registered without writing and the caller fills the lower rows when it reaches
        them: constant_memory needs every row written in order, which merge_range's padding breaks.
        """
        ws.merge_range(r, c1, r + rows - 1, c2, "", None)
        self.text(ws, r, c1, text, fmt)
        for c in range(c1 + 1, c2 + 1):
            ws.write_blank(r, c, None, fmt)

    def page(self, ws, *, landscape: bool = False, repeat: int | None = None) -> None:
        """A4, one page wide, the district and period on top, "Trang x/y" at the foot."""
        ws.set_paper(9)
        ws.set_landscape() if landscape else ws.set_portrait()
        ws.fit_to_pages(1, 0)
        ws.set_margins(left=0.5, right=0.4, top=0.7, bottom=0.7)
        ws.set_header(self.header)
        ws.set_footer("&C&9Trang &P/&N")
        if repeat is not None:
            ws.repeat_rows(repeat)

    def status_colours(self, ws, first: int, last: int, col: int) -> None:
        """Colour a status column (Đạt green, Có lỗi red, Chưa nộp grey); conditional, so it follows edits."""
        for status, fmt in self.status.items():
            ws.conditional_format(first, col, last, col, {"type": "cell", "criteria": "==",
                                                          "value": f'"{status}"', "format": fmt})


def write_district_workbook(path: Path, definition, *, district: Mapping, period: str, run_date: str,
                            units: pd.DataFrame, figures: pd.DataFrame, district_values: pd.DataFrame,
                            choices: pd.DataFrame, findings: pd.DataFrame, values: pd.DataFrame,
                            feedback_links: Mapping[str, str]) -> int:
    """Write the consolidated workbook of one district to `path` (atomically).

    `district` holds district_code, district_name, province_name; `units` one row per unit of the list
    (unit_code, unit_name, full_name, status, file, received, errors, warnings, superseded, counted);
    `figures` the counted units' numbers (index unit_code, a column per field id); `district_values`
    (field, value, units) and `choices` (field, choice, count) the consolidated figures; `findings` the
    findings with `label`; `values` the tidy table; `feedback_links` unit_code → path of the ward's
    feedback workbook relative to `path`'s folder. Returns how many strings were cut at 32,767 characters.
    """
    label = definition.period_label(period)
    esc = str.maketrans({"&": "&&"})  # a lone & starts a header control code
    # the space after &9 keeps a name starting with a digit from reading as a font size
    header = f"&L&9 {str(district['district_name']).translate(esc)} – {label.translate(esc)}&R&9 &A"
    large = len(values) > CONSTANT_MEMORY_ROWS
    options = _WB_OPTIONS | ({"constant_memory": True} if large else {"in_memory": True})
    with atomic_path(Path(path)) as tmp:
        packed = None if large else io.BytesIO()
        wb = xlsxwriter.Workbook(str(tmp) if large else packed, options)
        wb.set_properties({"title": f"{definition.title} – {district['district_name']}", "subject": label,
                           "author": "Phòng GD&ĐT"})
        wb.set_custom_property(OUTPUT_PROPERTY, "district")  # never read back as a submission
        book = _Book(wb, header, splice=not large)
        activities = _summary(book, definition, district, label, run_date, units, district_values, choices)
        _by_unit(book, definition, units, figures, activities)
        _findings(book, definition, findings, feedback_links)
        _submissions(book, units)
        _data(book, values)
        wb.close()
        if packed is not None:
            package = xlsx_patch.Package.read(packed.getvalue())
            # the spliced texts join the shared strings xlsxwriter wrote for the rest (there always are some)
            strings = xlsx_patch.SharedStrings(package.text(_SST)) if package.has(_SST) else None
            out = {}
            for splice in book.splices:
                out.update(splice(package, strings))
            if strings is not None and book.splices:
                out[_SST] = strings.xml()
            package.write(tmp, out)
    return book.cut


def _kind(field, bold: bool = False) -> str:
    """The format key of a field's number: int, dec or pct (a mean of counts has decimals)."""
    kind = {"integer": "int", "percent": "pct"}.get(field.type, "dec")
    kind = "dec" if kind == "int" and field.method == "weighted_mean" else kind
    return kind + ("_b" if bold else "")


def _summary(book: _Book, d, district, label, run_date, units, district_values, choices) -> dict | None:
    """Sheet "Tổng hợp": heading, each section of the definition with the district's figures, signatures.

    Returns where the activities' participants are (for the chart on "Theo đơn vị"), or None."""
    ws, f, s = book.sheet(SHEETS[0]), book.f, book.big
    last = max(4, *(1 + len(sh.columns) for sh in d.sheets))
    for col, width in enumerate(_SUMMARY_WIDTHS):
        ws.set_column(col, col, width)
    dv = {r.field: (r.value, r.units) for r in district_values.itertuples(index=False)}
    counts: dict[str, dict[str, int]] = {}
    for r in choices.itertuples(index=False):
        counts.setdefault(r.field, {})[str(r.choice)] = int(r.count)
    received = int((units["status"] != STATUS_MISSING).sum())
    counted = int(units["counted"].fillna(False).astype(bool).sum())
    ws.set_row(0, 42)
    book.merge(ws, 0, 0, last, f"{d.title} – {district['district_name']}", f["title"])
    book.merge(ws, 1, 0, last, f"Kỳ báo cáo: {label} – {district.get('province_name', '')}", f["italic"])
    book.text(ws, 2, 0, f"Ngày tổng hợp: {run_date}", s["left"])
    book.text(ws, 3, 0, f"Số đơn vị đã báo cáo: {received}/{len(units)}; số đơn vị được tổng hợp số liệu: "
                        f"{counted}", s["left"])
    ws.freeze_panes(2, 0)
    r, activities = 5, None
    for sheet in d.sheets:
        if sheet.kind == "table":
            r, activities = _summary_table(book, ws, d, sheet, dv, counted, r, last)
            continue
        shown = [d.fields[i] for i in sheet.fields if d.fields[i].method in ("sum", "weighted_mean", "count")]
        if not shown:
            continue
        book.merge(ws, r, 0, last, sheet.title, f["section"])
        book.cells(ws, r + 1, [(h, s["head"]) for h in ("TT", "Nội dung", "Số liệu", "Đơn vị tính",
                                                         "Cách tổng hợp")])
        r += 2
        for n, fld in enumerate(shown, 1):
            text = ""
            if fld.method == "count":
                got = counts.get(fld.id, {})
                listed = [*fld.choices, *sorted(set(got) - set(fld.choices))]  # unknown choices last
                text = "; ".join(f"{ch}: {got.get(ch, 0)}" for ch in listed)
                note = f"Số đơn vị theo mức đánh giá; {sum(got.values())} đơn vị có số liệu"
            else:
                value, n_units = dv.get(fld.id, (None, 0))
                how = ("Tổng cộng" if fld.method == "sum"
                       else f"Bình quân gia quyền theo {d.fields[fld.weight].label}")
                note = f"{how}; {n_units} đơn vị có số liệu"
            w = _SUMMARY_WIDTHS
            ws.set_row(r, _height([(fld.label, w[1]), (note, w[4]), (text, w[2] + w[3])], size=12))
            book.cells(ws, r, [(f"{n}", s["code"]), (fld.label, s["text"])])
            if fld.method == "count":
                book.merge(ws, r, 2, 3, text, s["text"])
            else:
                book.number(ws, r, 2, value, s[_kind(fld)])
                book.text(ws, r, 3, fld.unit or ("%" if fld.type == "percent" else ""), s["code"])
            book.text(ws, r, 4, note, s["text"])
            r += 1
        r += 1
    for i, (left, right) in enumerate((("NGƯỜI TỔNG HỢP", "TRƯỞNG PHÒNG"),
                                       ("(Ký, ghi rõ họ tên)", "(Ký, ghi rõ họ tên, đóng dấu)"))):
        book.merge(ws, r + i, 0, 1, left, s["sign_note" if i else "sign"])
        book.merge(ws, r + i, 3, last, right, s["sign_note" if i else "sign"])
    ws.set_row(r + 2, 70)  # room to sign
    ws.write_blank(r + 2, 0, None, s["sign_note"])  # a cell, else constant_memory drops the row's height
    ws.print_area(0, 0, r + 2, last)
    book.page(ws)
    return activities


def _summary_table(book: _Book, ws, d, sheet, dv, counted: int, r: int, last: int) -> tuple[int, dict | None]:
    """The activity table in its own layout (TT, label, grouped value columns, total row) from row `r`.

    Returns the next free row and where the activities' participants are (None without that column)."""
    f, s = book.f, book.big
    book.merge(ws, r, 0, last, sheet.title, f["section"])
    heads = [("", sheet.number_label, ""), ("", sheet.table_label, ""), *sheet.columns]  # (id, label, group)
    ws.set_row(r + 1, 22)
    ws.set_row(r + 2, 36)
    c = 0
    while c < len(heads):  # a group spans its columns; a column without group spans both header rows
        group, span = heads[c][2], 1
        while group and c + span < len(heads) and heads[c + span][2] == group:
            span += 1
        book.merge(ws, r + 1, c, c + span - 1, group or heads[c][1], s["head"], rows=1 if group else 2)
        c += span
    for c, (_, head, group) in enumerate(heads):
        book.text(ws, r + 2, c, head if group else "", s["head"])
    r, first, n = r + 3, r + 3, 0
    ids = [cid for cid, _, _ in sheet.columns]
    for row_id, row_label in sheet.rows:
        total = bool(d.fields[f"{row_id}.{ids[0]}"].total_of)
        n += not total
        ws.set_row(r, _height([(row_label, _SUMMARY_WIDTHS[1])], size=12))
        book.cells(ws, r, [("" if total else f"{n}", s["code"]),
                           (row_label, s["text_b" if total else "text"])])
        for i, cid in enumerate(ids):
            fld = d.fields[f"{row_id}.{cid}"]
            book.number(ws, r, 2 + i, dv.get(fld.id, (None, 0))[0], s[_kind(fld, bold=total)])
        r += 1
    book.merge(ws, r, 0, last, f"Số liệu cộng từ {counted} đơn vị; dòng «Tổng số» được tính lại từ các dòng "
                               "thành phần.", f["note"])
    parts_first = not any(d.fields[f"{rid}.{ids[0]}"].total_of for rid, _ in sheet.rows[:n])
    anchor = None
    if "participants" in ids and n and parts_first:
        anchor = {"first": first, "last": first + n - 1, "value_col": 2 + ids.index("participants")}
    return r + 2, anchor


def _by_unit(book: _Book, d, units: pd.DataFrame, figures: pd.DataFrame, activities: dict | None) -> None:
    """Sheet "Theo đơn vị": a row per unit of the list, a total row of SUM formulas (with cached sums) and
    two bar charts to the right: participants by unit and by activity."""
    ws, f, n = book.sheet(SHEETS[1]), book.f, len(units)
    cols = [(fid, h) for fid, h in BY_UNIT if fid in d.fields]
    names = units["full_name"] if "full_name" in units else units["unit_name"]
    heads = ["Mã đơn vị", "Tên đơn vị", "Trạng thái", *(h for _, h in cols), "Lỗi", "Cảnh báo"]
    book.head(ws, 0, heads, [10, _fit(names, 16, 32), 12, *(max(9, min(14, len(h) * 0.7)) for _, h in cols),
                             7, 9])
    fig = figures.reindex(units["unit_code"].tolist())
    extra = [(fig[fid].tolist() if fid in fig else [None] * n, _kind(d.fields[fid])) for fid, _ in cols]
    extra += [(units["errors"].tolist(), "int"), (units["warnings"].tolist(), "int")]
    for i, (code, name, status) in enumerate(zip(units["unit_code"], names, units["status"], strict=True)):
        book.cells(ws, i + 1, [(code, f["code"]), (name, f["text"]), (status, f["code"]),
                               *((vals[i], f[kind]) for vals, kind in extra)])
    book.cells(ws, n + 1, [("", f["text_b"]), ("Tổng cộng", f["text_b"]), ("", f["text_b"])])
    for c, (vals, kind) in enumerate(extra, 3):
        cached = sum(x for x in map(_number, vals) if x is not None)  # shown by readers that don't calculate
        col = xl_col_to_name(c)
        ws.write_formula(n + 1, c, f"=SUM({col}2:{col}{n + 1})" if n else "=0", f[kind + "_b"], cached)
    book.status_colours(ws, 1, max(n, 1), 2)
    ws.freeze_panes(1, 2)
    ws.autofilter(0, 0, max(n, 1), len(heads) - 1)
    book.page(ws, landscape=True, repeat=0)  # no print area: the charts print beside the table
    height, y = max(300, 24 * n + 120), 0
    if n and "total.participants" in dict(cols):
        pc = 3 + [fid for fid, _ in cols].index("total.participants")
        series = {"categories": [SHEETS[1], 1, 1, n, 1], "values": [SHEETS[1], 1, pc, n, pc]}
        ws.insert_chart(0, len(heads) + 1, _bar(book, series, "#4472C4", "Số lượt người tham gia theo đơn vị",
                                                "Đơn vị", height))
        y = height + 20
    if activities:
        a = activities
        series = {"categories": [SHEETS[0], a["first"], 1, a["last"], 1],
                  "values": [SHEETS[0], a["first"], a["value_col"], a["last"], a["value_col"]]}
        chart = _bar(book, series, "#ED7D31", "Số lượt người tham gia theo hoạt động giáo dục",
                     "Hoạt động giáo dục", 30 * (a["last"] - a["first"]) + 150)
        ws.insert_chart(0, len(heads) + 1, chart, {"y_offset": y})


def _bar(book: _Book, series: dict, colour: str, title: str, category: str, height: int):
    """A horizontal bar chart of participants: Vietnamese title and axis names, categories read top down."""
    font = {"name": "Times New Roman"}
    chart = book.wb.add_chart({"type": "bar"})
    chart.add_series(series | {"name": "Số lượt người tham gia", "fill": {"color": colour}, "gap": 60})
    chart.set_title({"name": title, "name_font": font | {"size": 12, "bold": True}})
    chart.set_x_axis({"name": "Số lượt người", "num_format": "#,##0", "name_font": font | {"size": 10},
                      "num_font": font | {"size": 9}})
    # reversed so the first unit is on top; crossing at the last category keeps the values at the bottom
    chart.set_y_axis({"name": category, "reverse": True, "crossing": "max", "name_font": font | {"size": 10},
                      "num_font": font | {"size": 9}})
    chart.set_legend({"none": True})
    chart.set_size({"width": 560, "height": height})
    return chart


def _link(definition, row: Mapping, links: Mapping[str, str]) -> tuple[str, str] | None:
    """(url, text) of the feedback cell of a finding, or None when its unit has no feedback workbook.

    The feedback workbook is rendered from the template, so a known field links to its template cell,
    which differs from the "Ô" column when the ward had moved rows."""
    rel = links.get(str(row.get("unit_code") or ""))
    if not rel:
        return None
    rel = rel.replace("\\", "/")
    fld = definition.fields.get(row.get("field") or "")
    sheet, cell = (definition.sheet(fld.sheet).name, fld.cell) if fld else (row.get("sheet"), row.get("cell"))
    name = PurePosixPath(rel).name
    if _blank(cell) or not cell or sheet not in {s.name for s in definition.sheets}:
        return f"external:{rel}", name  # no such cell in the feedback workbook: open the file
    quoted = str(sheet).replace("'", "''")
    return f"external:{rel}#'{quoted}'!{cell}", f"{name}, ô {cell}"


def _findings(book: _Book, definition, findings: pd.DataFrame, links: Mapping[str, str]) -> None:
    """Sheet "Lỗi và cảnh báo": a row per finding, errors first, the severity coloured, a link to the cell
    of the ward's feedback workbook; filter, frozen header, landscape."""
    ws, f = book.sheet(SHEETS[2]), book.f
    book.page(ws, landscape=True, repeat=0)
    if findings.empty:
        ws.set_column(0, 0, 40)
        book.text(ws, 0, 0, NO_FINDINGS, f["bold"])
        return
    heads = ("Mức độ", "Đơn vị", "Tệp", "Trang", "Ô", "Mục", "Giá trị đã ghi", "Nội dung", "Giá trị đúng",
             "Phản hồi")
    widths = (10, 18, 18, 14, 6, 26, 12, 50, 12, 20)
    book.head(ws, 0, heads, widths)
    order = findings["severity"].map(SEVERITY_ORDER).fillna(9)
    n_links = 0
    for i, row in enumerate(findings.assign(_o=order).sort_values("_o", kind="stable").to_dict("records"), 1):
        unit = next((v for v in (row.get("unit_name"), row.get("unit_code")) if not _blank(v) and v), "")
        cells = [unit, row.get("file"), row.get("sheet"), row.get("cell"), row.get("label"),
                 show(row.get("value")), row.get("message"), show(row.get("expected"))]
        link = _link(definition, row, links)
        ws.set_row(i, _height([*zip(cells, widths[1:], strict=False), (link[1] if link else "", widths[-1])]))
        sev = row.get("severity")
        book.text(ws, i, 0, SEVERITY_VN.get(sev, sev), f["error" if sev == "error" else "warning"])
        for c, v in enumerate(cells, 1):  # all text: a value is shown as the ward wrote it
            book.text(ws, i, c, v, f["code"] if c == 4 else f["text"])
        if link and n_links < _MAX_LINKS and ws.write_url(i, 9, link[0], f["link"], string=link[1]) == 0:
            n_links += 1
        else:
            book.text(ws, i, 9, link[1] if link else "", f["text"])
    ws.freeze_panes(1, 0)
    ws.autofilter(0, 0, len(findings), len(heads) - 1)
    ws.ignore_errors({"number_stored_as_text": f"A2:J{len(findings) + 1}"})  # values are shown as written


def _received(v: object) -> dt.datetime | None:
    """An ISO date-time text as a naive datetime (the clock time as written), or None."""
    try:
        return None if _blank(v) or not v else dt.datetime.fromisoformat(str(v)).replace(tzinfo=None)
    except ValueError:
        return None


def _submissions(book: _Book, units: pd.DataFrame) -> None:
    """Sheet "Tình hình nộp báo cáo": the counts on top, then each unit's submission and status (coloured).

    The unit rows are spliced in (`_rows_spliced`) unless the workbook streams its rows out."""
    ws, f, n = book.sheet(SHEETS[3]), book.f, len(units)
    sent = units["status"] != STATUS_MISSING
    with_errors = int((units["status"] == STATUS_ERRORS).sum())
    book.text(ws, 0, 0, f"Đã nộp {int(sent.sum())}/{n} đơn vị; {with_errors} đơn vị có lỗi", f["bold"])
    heads = ("Mã đơn vị", "Tên đơn vị", "Đã nộp", "Tệp", "Thời điểm nhận", "Số lỗi", "Số cảnh báo",
             "Trạng thái", "Tệp bị thay thế")
    names = units["full_name"] if "full_name" in units else units["unit_name"]
    get = {c: units[c].tolist() if c in units else [None] * n
           for c in ("file", "received", "errors", "warnings", "superseded")}
    when = [_received(v) for v in get["received"]]
    widths = (10, _fit(names, 16, 32), 10, _fit(get["file"], 12, 36), 16, 8, 10, 14,
              _fit(get["superseded"], 14, 40))
    book.head(ws, 2, heads, widths)
    columns = [(units["unit_code"].tolist(), f["code"]), (names.tolist(), f["text"]),
               (["Đã nộp" if ok else "Chưa nộp" for ok in sent], f["code"]), (get["file"], f["text"]),
               ([w or r for w, r in zip(when, get["received"], strict=True)], f["when"]),
               (get["errors"], f["int"]), (get["warnings"], f["int"]), (units["status"].tolist(), f["code"]),
               (get["superseded"], f["text"])]
    for i in range(n):
        ws.set_row(i + 3, _height([(get["file"][i], widths[3]), (get["superseded"][i], widths[8])]))
    if book.splice and n:
        _rows_spliced(book, ws, 3, columns)
    else:
        for i in range(n):
            book.cells(ws, i + 3, [(values[i], fmt) for values, fmt in columns])
    book.status_colours(ws, 3, max(n + 2, 3), 7)
    ws.freeze_panes(3, 0)
    ws.autofilter(2, 0, max(n + 2, 3), len(heads) - 1)
    book.page(ws, landscape=True, repeat=2)


def _excel_serial(v: dt.datetime) -> float:
    """A naive datetime as Excel's serial number (1900 system, with its 29/2/1900), as xlsxwriter makes it."""
    delta = v - dt.datetime(1899, 12, 31)
    x = delta.days + (delta.seconds + delta.microseconds / 1e6) / 86400
    return x + 1 if x > 59 else x


def _cell_value(v: object) -> str | float | None:
    """What a cell holds, as `_Book.cells` writes it and `xlsx_patch.table_rows` splices it: text, a
    number (a datetime as its serial number), or None for a (formatted) blank."""
    if v.__class__ is str:
        return v or None
    if isinstance(v, dt.datetime):
        return _excel_serial(v.replace(tzinfo=None))
    x = _number(v)
    return x if x is not None else None if _blank(v) else str(v)


def _rows_spliced(book: _Book, ws, first: int, columns: list[tuple[list, object]]) -> None:
    """Rows `first`.. (0-based) of `ws` as whole columns (values, format), spliced into the closed
    workbook: xlsxwriter writes the rows' heights and, in the last row, a formatted blank per column
    whose style the spliced cells take; a few µs a row instead of 20 µs a cell."""
    n = len(columns[0][0])
    last = first + n - 1
    for c, (_, fmt) in enumerate(columns):
        ws.write_blank(last, c, None, fmt)
    cells = [_cut(book, [_cell_value(v) for v in values]) for values, _ in columns]
    member = f"xl/worksheets/sheet{book.wb.worksheets().index(ws) + 1}.xml"

    def splice(package: xlsx_patch.Package, strings) -> dict[str, str]:
        xml = package.text(member)
        styles = xlsx_patch.row_styles(xml, last + 1)
        start, end, tags = xlsx_patch.row_span(xml, first + 1, last + 1)
        spec = [(xl_col_to_name(c), styles.get(xl_col_to_name(c), ""), col) for c, col in enumerate(cells)]
        rows = xlsx_patch.table_rows(first + 1, spec, strings, row_tags=tags, styled_blanks=True)
        return {member: xml[:start] + rows + xml[end:]}

    book.splices.append(splice)


def _cut(book: _Book, values: list) -> list:
    """Texts cut at Excel's limit, counted in `book.cut` (rare: the column is only copied then)."""
    if len(max((v for v in values if v.__class__ is str), key=len, default="")) <= xlsx_patch.MAX_TEXT:
        return values
    most = xlsx_patch.MAX_TEXT
    cut = [v[:most] if v.__class__ is str and len(v) > most else v for v in values]
    book.cut += sum(a is not b for a, b in zip(cut, values, strict=True))
    return cut


def _data(book: _Book, values: pd.DataFrame) -> None:
    """Sheet "Dữ liệu": the tidy table, a row per value; continues on "Dữ liệu (2)" past Excel's row limit.

    With `book.splice`, xlsxwriter writes the sheet with one placeholder row and the rows are built
    from whole columns and spliced in (`_data_spliced`). Else the cells are written through xlsxwriter
    by a tight loop over plain lists."""
    cols = [c for c in DATA_HEADERS if c in values.columns]
    n, texts, nums, vcol = len(values), [], [None] * len(values), 0
    for c, name in enumerate(cols):
        raw = values[name].tolist()
        if name == "value":  # numbers stay numbers; text values (choices, dates, notes) stay text
            vcol, nums = c, [v if v.__class__ is float and v == v else _number(v) for v in raw]
            raw = [None if x is not None else v for v, x in zip(raw, nums, strict=True)]
        texts.append((c, [v if v.__class__ is str else None if _blank(v) else str(v) for v in raw]))
    if book.splice and 0 < n < _MAX_ROWS:
        return _data_spliced(book, cols, n, texts, nums, vcol)
    for part, start in enumerate(range(0, max(n, 1), _MAX_ROWS - 1)):
        ws = _data_sheet(book, cols, part)
        end = min(n, start + _MAX_ROWS - 1)
        write_string, write_number, cut = ws.write_string, ws.write_number, 0
        for i in range(start, end):  # the hot loop; rows only grow, so -2 can only mean a cut string
            r = i - start + 1
            for c, lst in texts:
                if (v := lst[i]) and write_string(r, c, v) == -2:
                    cut += 1
            if (x := nums[i]) is not None:
                write_number(r, vcol, x)
        book.cut += cut
        _data_finish(book, ws, cols, end - start)


def _data_sheet(book: _Book, cols: list[str], part: int):
    ws = book.sheet(SHEETS[4] if part == 0 else f"{SHEETS[4]} ({part + 1})")
    book.head(ws, 0, [DATA_HEADERS[c] for c in cols], [_DATA_WIDTHS[c] for c in cols])
    for c, name in enumerate(cols):  # column formats, not cell formats: no lookups in the loop
        ws.set_column(c, c, _DATA_WIDTHS[name], book.f["indent" if name == "raw" else "left"])
    return ws


def _data_finish(book: _Book, ws, cols: list[str], rows: int) -> None:
    ws.freeze_panes(1, 0)
    ws.autofilter(0, 0, max(rows, 1), len(cols) - 1)
    book.page(ws, landscape=True, repeat=0)


def _data_spliced(book: _Book, cols: list[str], n: int, texts: list, nums: list, vcol: int) -> None:
    """"Dữ liệu" as xlsxwriter's sheet (header, widths, filter, print set-up) around a placeholder last
    row whose cells carry the column formats; the rows themselves come from `xlsx_patch.table_rows`."""
    ws = _data_sheet(book, cols, 0)
    for c in range(len(cols)):
        ws.write_number(n, c, 0)  # row n + 1: sets the sheet's extent and shows each column's format
    _data_finish(book, ws, cols, n)
    columns: list = [None] * len(cols)
    for c, lst in texts:
        columns[c] = _cut(book, lst)
    columns[vcol] = [x if x is not None else t for x, t in zip(nums, columns[vcol], strict=True)]
    member = f"xl/worksheets/sheet{book.wb.worksheets().index(ws) + 1}.xml"

    def splice(package: xlsx_patch.Package, strings) -> dict[str, str]:
        xml = package.text(member)
        styles = xlsx_patch.row_styles(xml, n + 1)
        letters = [xl_col_to_name(c) for c in range(len(cols))]
        spec = [(a, styles.get(a, ""), col) for a, col in zip(letters, columns, strict=True)]
        return {member: xlsx_patch.replace_row(xml, n + 1, xlsx_patch.table_rows(2, spec, strings))}

    book.splices.append(splice)
