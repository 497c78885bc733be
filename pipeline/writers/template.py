"""Render the report workbook from the definition: blank template, per-unit templates, feedback copies.

Every address comes from the Definition (Field.row/col and `layout`), so the reader finds each value
where this module put it. The same renderer writes a ward's submission back with its values, coloured
cells and comments (`marks`) and a first sheet "Góp ý" listing the findings. Values from wards are
written with typed write_* calls only, never `write()`, so a string is always text, never a formula
or a link. Formats are created once per workbook (cached), which keeps a render in the milliseconds.
"""

from __future__ import annotations

import datetime as dt
import itertools
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pandas as pd
import xlsxwriter
from xlsxwriter.utility import xl_cell_to_rowcol

from pipeline.atomic import atomic_path
from pipeline.definition import IDENTITY_ROLES, META_KEYS, META_SHEET, Definition, Field, Sheet, check_period
from pipeline.findings import SEVERITY_VN
from pipeline.intake.guard import OUTPUT_PROPERTY
from pipeline.wording import kind_text
from pipeline.writers.cache import WriterCache
from pipeline.writers.worksheet import Worksheet
from pipeline.writers.xlsx import (
    WORKBOOK_OPTIONS,
    is_blank,
    is_number,
    page_setup,
    quote_sheet,
    records,
    row_height,
)

GUIDE_SHEET, FEEDBACK_SHEET = "Hướng dẫn", "Góp ý"
INPUT_FILL, LOCKED_FILL, HEADER_FILL = "#FFF2CC", "#F2F2F2", "#DDEBF7"
MARK_FILL = {"error": "#FF8080", "warning": "#FFC000"}
# Vietnamese Excel shows "#,##0" as 2.379: the code is locale-neutral, the separators are the reader's.
NUM_FORMATS = {"integer": "#,##0", "decimal": "#,##0.00", "percent": "0.0", "date": "dd/mm/yyyy",
               "text": "@", "choice": "@"}
DATE_RANGE = (dt.date(2000, 1, 1), dt.date(2100, 12, 31))
_FONT = {"font_name": "Times New Roman", "font_size": 12, "valign": "vcenter"}
_PROTECT = {"format_columns": True, "format_rows": True, "select_locked_cells": True,
            "select_unlocked_cells": True}
_PORTRAIT_CHARS = 100  # wider sheets (in column-width units) print landscape


@dataclass(frozen=True, slots=True)
class Mark:
    """One cell's finding in a feedback workbook: "error" (red) or "warning" (amber) and its message."""

    severity: str  # "error" | "warning"
    comment: str  # Vietnamese message for the cell comment


@dataclass(frozen=True, slots=True)
class TypedOver:
    """What a ward typed over a total's formula, to show in its feedback copy as typed (in an unlocked,
    marked cell) rather than the formula: the ward sees what it wrote and why that is wrong, and the
    total computes again once the ward retypes the figure or the formula."""

    raw: object


def is_input(field: Field, *, blank: bool) -> bool:
    """True when the ward types `field`: not a total, not pre-filled (blank template: unit code/name too)."""
    if field.total_of:
        return False
    return field.role not in IDENTITY_ROLES or (blank and field.role in ("unit_code", "unit_name"))


def _col(letter: str) -> int:
    """Column letter → 0-based index."""
    return xl_cell_to_rowcol(f"{letter}1")[1]


def hint(field: Field, definition: Definition) -> str:
    """The "Hướng dẫn" text of a form field: what it accepts, or how a total is computed."""
    if field.total_of:
        parts = [definition.fields[p].label.rsplit(": ", 1)[-1] for p in field.total_of]
        return "Tự động tính: " + (" + ".join(parts) if len(parts) <= 4 else "tổng các ô thành phần")
    return kind_text(field.type, field.min, field.max) + (" (bắt buộc)" if field.required else "")


_TITLES = {"integer": "Số nguyên", "decimal": "Số thập phân", "percent": "Tỷ lệ phần trăm"}
_EXAMPLES = {"integer": "Gõ số liền, ví dụ 2379; không ghi chữ kèm theo số.",
             "decimal": "Ví dụ 785,87 (máy đặt tiếng Việt) hoặc 785.87 (máy đặt tiếng Anh).",
             "percent": "Không gõ dấu %, ví dụ 92,5 cho 92,5%."}


def validation(ftype: str, lo: float | None, hi: float | None, choices: tuple[str, ...] = ()) -> dict | None:
    """xlsxwriter data_validation options for an input of this type and bounds; None for free text."""
    if ftype in _TITLES:
        bounds = ({"criteria": "between", "minimum": lo, "maximum": hi} if lo is not None and hi is not None
                  else {"criteria": ">=", "value": lo} if lo is not None
                  else {"criteria": "<=", "value": hi} if hi is not None
                  else {"criteria": "between", "minimum": -1e15, "maximum": 1e15})
        what, example = kind_text(ftype, lo, hi), _EXAMPLES[ftype]
        return {"validate": "integer" if ftype == "integer" else "decimal", **bounds,
                "input_title": _TITLES[ftype], "input_message": f"{what}. {example}",
                "error_title": "Số liệu chưa đúng", "error_type": "stop",
                "error_message": f"Ô này chỉ nhận {what.lower()}. {example}"}
    if ftype == "choice":
        listed = ", ".join(choices)
        return {"validate": "list", "source": list(choices), "input_title": "Chọn trong danh sách",
                "input_message": f"Bấm mũi tên bên phải ô để chọn: {listed}.",
                "error_title": "Không có trong danh sách", "error_type": "stop",
                "error_message": f"Chỉ chọn một trong: {listed}."}
    if ftype == "date":
        return {"validate": "date", "criteria": "between", "minimum": DATE_RANGE[0], "maximum": DATE_RANGE[1],
                "input_title": "Ngày/tháng/năm", "input_message": "Ghi ngày/tháng/năm, ví dụ 15/06/2020.",
                "error_title": "Ngày chưa đúng", "error_type": "stop",
                "error_message": "Ô này chỉ nhận ngày hợp lệ, ví dụ 15/06/2020. Nếu máy không nhận, "
                                 "gõ theo dạng năm-tháng-ngày: 2020-06-15."}
    return None


class _Styles:
    """Formats created on first use and reused: xlsxwriter formats belong to one workbook."""

    def __init__(self, wb: xlsxwriter.Workbook) -> None:
        self.wb, self.cache = wb, {}

    def __call__(self, **props):
        key = tuple(sorted(props.items()))
        if key not in self.cache:
            self.cache[key] = self.wb.add_format(_FONT | props)
        return self.cache[key]


def _write_value(ws, r: int, c: int, v: object, st: _Styles, props: dict) -> None:
    """Write a ward's value with the typed call that keeps its type; text stays text."""
    if is_blank(v):
        ws.write_blank(r, c, None, st(**props))
    elif isinstance(v, bool):
        ws.write_boolean(r, c, v, st(**props))
    elif isinstance(v, numbers.Real):
        ws.write_number(r, c, float(v), st(**props))
    elif isinstance(v, (dt.datetime, dt.date, dt.time)):
        ws.write_datetime(r, c, v, st(**props | {"num_format": NUM_FORMATS["date"]}))
    else:
        ws.write_string(r, c, str(v), st(**props))


def merge_cells(ws, r1: int, c1: int, r2: int, c2: int, text: str, fmt) -> None:
    """`text` over the cells (r1, c1)–(r2, c2), merged unless they are one cell."""
    if (r1, c1) == (r2, c2):
        ws.write_string(r1, c1, text, fmt)
    else:
        ws.merge_range(r1, c1, r2, c2, text, fmt)


def page_sheet(ws, last_row: int, last_col: int, width: float, repeat: tuple[int, int] | None = None) -> None:
    """A4, fit to one page wide, print area without hidden helper columns, sheet protected."""
    page_setup(ws, landscape=width > _PORTRAIT_CHARS, margins=(0.6, 0.5, 0.6, 0.7), center=True,
               print_area=(last_row, last_col), repeat=repeat)
    ws.protect("", _PROTECT)


class Renderer:
    """One workbook being written: the definition, the unit (None = blank), values and marks. The
    template's sheets are its methods; a feedback workbook's "Góp ý" sheet is written with it by
    pipeline.writers.feedback."""

    def __init__(self, definition: Definition, wb: xlsxwriter.Workbook, period: str, unit, values, marks,
                 cache: WriterCache):
        self.d, self.wb, self.period, self.unit, self.cache = definition, wb, period, unit, cache
        self.values, self.marks, self.blank = values or {}, marks or {}, unit is None
        self.st = _Styles(wb)
        self.pending: dict[tuple[int, int], tuple[dict, list[int]]] = {}  # validations of the current sheet
        for fid, mark in self.marks.items():
            if fid not in definition.fields or mark.severity not in MARK_FILL:
                raise ValueError(f"mark for unknown field or severity: {fid!r} {mark.severity!r}")
        self.sign_on = next((s.id for s in reversed(definition.sheets) if s.signature), None)
        where = definition.sheet(definition.role("unit_name").sheet).name
        name = self.unit_name or f"……… (ghi ở trang «{where}»)"
        self.unit_line = f"Đơn vị: {name} – Kỳ báo cáo: {definition.period_label(period)}"

    def sheet(self, name: str) -> Worksheet:
        ws = self.wb.add_worksheet(name, worksheet_class=Worksheet)
        ws.formulas = self.cache.formulas
        return ws

    def height(self, *cells: tuple[str, float], minimum: float = 18) -> float:
        """Row height (points) for texts at 12 points wrapped in columns of the given widths."""
        return row_height(list(cells), size=12, minimum=minimum, cache=self.cache)

    def validation(self, f: Field) -> dict | None:
        """`validation` of field `f`: one options dict per distinct rule in a run, so cells sharing a rule
        share one validation range."""
        key = (f.type, f.min, f.max, f.choices)
        return self.cache.get(self.cache.validations, key, lambda: validation(*key))

    @property
    def unit_name(self) -> str:
        if self.unit is None:
            return ""
        return str(self.unit.get("full_name") or self.unit.get("unit_name") or "")

    def role_value(self, f: Field) -> str:
        """The locked value of a role field: the period, or (unit template) the unit's code or name."""
        if f.role == "period":
            return self.period
        return str(self.unit["unit_code"]) if f.role == "unit_code" else self.unit_name

    def heading(self, ws, title: str, last_col: int) -> None:
        lay = self.d.layout
        merge_cells(ws, lay["title_row"] - 1, 0, lay["title_row"] - 1, last_col, title,
               self.st(bold=True, font_size=13, align="center", text_wrap=True))
        ws.set_row(lay["title_row"] - 1, 36)
        merge_cells(ws, lay["unit_row"] - 1, 0, lay["unit_row"] - 1, last_col, self.unit_line,
               self.st(italic=True, align="center", text_wrap=True))

    def cell(self, ws, f: Field, span_to: int | None = None) -> None:
        """Write field `f` at its address: formula (total), input (unlocked, validated) or locked value."""
        mark = self.marks.get(f.id)
        fill = MARK_FILL[mark.severity] if mark else None
        r, c = f.row - 1, f.col - 1
        base = {"border": 1, "num_format": NUM_FORMATS[f.type]}
        v = self.values.get(f.id)
        if f.total_of and isinstance(v, TypedOver):
            props = base | {"bg_color": fill or INPUT_FILL, "locked": False, "bold": True}
            _write_value(ws, r, c, v.raw, self.st, props)
        elif f.total_of:
            ws.write_formula(r, c, self.d.total_formula(f.id),
                             self.st(**base, bold=True, bg_color=fill or LOCKED_FILL),
                             v if is_number(v) else "")
        elif is_input(f, blank=self.blank):
            props = base | {"bg_color": fill or INPUT_FILL, "locked": False}
            if f.lines > 1:
                props |= {"text_wrap": True, "valign": "top"}
            if span_to is not None:
                ws.merge_range(r, c, r, span_to, "", self.st(**props))
            _write_value(ws, r, c, self.values.get(f.id), self.st, props)
            if (opts := self.validation(f)) is not None:
                self.pending.setdefault((c, id(opts)), (opts, []))[1].append(r)
        else:
            _write_value(ws, r, c, self.role_value(f), self.st, base | {"bg_color": fill or LOCKED_FILL})
        if mark:
            text = f"{SEVERITY_VN[mark.severity]}: {mark.comment}"
            ws.write_comment(r, c, text, {"author": self.d.office.short, "x_scale": 3,
                                          "y_scale": max(1.0, (len(text) // 55 + 2) * 16 / 74)})

    def validate(self, ws) -> None:
        """Write the current sheet's validations, one per run of adjacent cells sharing the same rule.

        Fewer, wider validations keep the XML (and the render time) small.
        """
        for (col, _), (opts, rows) in self.pending.items():
            start = prev = rows[0]
            for r in [*rows[1:], None]:
                if r != prev + 1:
                    ws.data_validation(start, col, prev, col, opts)
                    start = r
                prev = r
        self.pending.clear()

    def form(self, sheet: Sheet) -> None:
        lay = self.d.layout["form"]
        lc, vc, uc, hc, ic = (_col(lay[f"{k}_col"]) for k in ("label", "value", "unit", "hint", "id"))
        ws = self.sheet(sheet.name)
        widths = {lc: 42, vc: 16, uc: 13, hc: 26}
        for col, w in widths.items():
            ws.set_column(col, col, w)
        ws.set_column(ic, ic, None, None, {"hidden": True})
        self.heading(ws, sheet.title, hc)
        hr = lay["header_row"] - 1
        head = self.st(bold=True, align="center", text_wrap=True, border=1, bg_color=HEADER_FILL)
        for col, text in ((lc, "Nội dung"), (vc, "Số liệu"), (uc, "Đơn vị tính"), (hc, "Hướng dẫn")):
            ws.write_string(hr, col, text, head)
        label, centred = self.st(text_wrap=True, border=1), self.st(border=1, align="center", text_wrap=True)
        small = self.st(text_wrap=True, border=1, font_size=10, italic=True)
        last = hr
        for f in (self.d.fields[fid] for fid in sheet.fields):
            r = last = f.row - 1
            ws.write_string(r, lc, f.label, label)
            ws.write_string(r, ic, f.id)  # lets the reader re-find the row if the ward moved it
            if f.lines > 1:  # free text: one wide cell over the value, unit and hint columns
                ws.set_row(r, max(16 * f.lines + 4, self.height((f.label, widths[lc]))))
                self.cell(ws, f, span_to=hc)
                continue
            self.cell(ws, f)
            unit = f.unit or ("%" if f.type == "percent" else "")
            if f.role in IDENTITY_ROLES and not is_input(f, blank=self.blank):
                note = "Đã ghi sẵn"
            elif f.role == "unit_code":
                note = f"Ghi mã đơn vị theo danh sách của {self.d.office.short} (bắt buộc)"
            else:
                note = hint(f, self.d)
            ws.write_string(r, uc, unit, centred)
            ws.write_string(r, hc, note, small)
            ws.set_row(r, self.height((f.label, widths[lc]), (unit, widths[uc]), (note, widths[hc] * 1.2)))
        if sheet.id == self.sign_on:
            last = self.signature(ws, last + 2, lc, vc, hc)
        self.validate(ws)
        roles = " ".join(self.d.fields[fid].cell for fid in sheet.fields
                         if self.d.fields[fid].role in IDENTITY_ROLES)
        if roles:  # "07093" and "2020-H1" are text on purpose: no green "number stored as text" flag
            ws.ignore_errors({"number_stored_as_text": roles})
        ws.freeze_panes(hr + 1, 0)
        page_sheet(ws, last, hc, sum(widths.values()), (hr, hr))

    def table(self, sheet: Sheet) -> None:
        lay = self.d.layout["table"]
        nc, lc, fc, ic = (_col(lay[k]) for k in ("number_col", "label_col", "first_value_col", "id_col"))
        top, bottom = lay["header_row"] - 1, lay["first_row"] - 2
        lastc = fc + len(sheet.columns) - 1
        ws = self.sheet(sheet.name)
        widths = {nc: 5, lc: 48} | {fc + i: 12 for i in range(len(sheet.columns))}
        for col, w in widths.items():
            ws.set_column(col, col, w)
        ws.set_column(ic, ic, None, None, {"hidden": True})
        self.heading(ws, sheet.title, lastc)
        head = self.st(bold=True, align="center", text_wrap=True, border=1, bg_color=HEADER_FILL)
        merge_cells(ws, top, nc, bottom, nc, sheet.number_label, head)
        merge_cells(ws, top, lc, bottom, lc, sheet.table_label, head)
        col = fc
        for group, run in itertools.groupby(sheet.columns, key=lambda c: c[2]):
            labels = [label for _, label, _ in run]
            if group and bottom > top:  # a run of columns sharing a group: one merged header above them
                merge_cells(ws, top, col, bottom - 1, col + len(labels) - 1, group, head)
                for k, label in enumerate(labels):
                    ws.write_string(bottom, col + k, label, head)
            else:
                for k, label in enumerate(labels):
                    merge_cells(ws, top, col + k, bottom, col + k, f"{group}: {label}" if group else label,
                                head)
            col += len(labels)
        for r in range(top, bottom + 1):
            ws.set_row(r, 32)
        n, last = 0, bottom
        for rid, label in sheet.rows:
            cells = [self.d.fields[f"{rid}.{cid}"] for cid, _, _ in sheet.columns]
            r = last = cells[0].row - 1
            total = bool(cells[0].total_of)
            if total:
                ws.write_blank(r, nc, None, self.st(border=1))
            else:
                n += 1
                ws.write_number(r, nc, n, self.st(border=1, align="center"))
            ws.write_string(r, lc, label, self.st(border=1, text_wrap=True, bold=total))
            ws.write_string(r, ic, rid)
            ws.set_row(r, self.height((label, widths[lc])))
            for f in cells:
                self.cell(ws, f)
        if sheet.id == self.sign_on:
            last = self.signature(ws, last + 2, lc, fc, lastc)
        self.validate(ws)
        ws.freeze_panes(bottom + 1, 0)
        page_sheet(ws, last, lastc, sum(widths.values()), (top, bottom))

    def signature(self, ws, row: int, left: int, right: int, right_last: int) -> int:
        """Signature block from `row`: reporter on the left, the definition's signature lines right."""
        bold = self.st(align="center", bold=True)
        italic = self.st(align="center", italic=True, text_wrap=True)
        merge_cells(ws, row, right, row, right_last, "…, ngày … tháng … năm …", italic)
        ws.write_string(row + 1, left, "Người lập báo cáo", bold)
        ws.write_string(row + 2, left, "(Ký, ghi rõ họ tên)", italic)
        for i, line in enumerate(self.d.signature):
            style = italic if line.startswith("(") else bold
            merge_cells(ws, row + 1 + i, right, row + 1 + i, right_last, line, style)
        end = row + max(3, len(self.d.signature) + 1)
        for r in range(end, end + 5):  # room to sign and stamp (inside the print area)
            ws.set_row(r, 20)
        return end + 4

    def guide(self) -> None:
        ws = self.sheet(GUIDE_SHEET)
        ws.set_column(0, 0, 6)
        ws.set_column(1, 1, 90)
        wrap, bold = self.st(text_wrap=True, valign="top"), self.st(bold=True)
        merge_cells(ws, 0, 0, 0, 1, self.d.title,
                    self.st(bold=True, font_size=14, align="center", text_wrap=True))
        ws.set_row(0, 40)
        merge_cells(ws, 1, 0, 1, 1, self.unit_line, self.st(italic=True, align="center"))
        if self.d.recipient:
            merge_cells(ws, 2, 0, 2, 1, f"Nơi nhận báo cáo: {self.d.recipient}", self.st(align="center"))
        ws.write_string(4, 0, "HƯỚNG DẪN ĐIỀN BÁO CÁO", bold)
        r = 5
        for i, line in enumerate(self.d.instructions, 1):
            ws.write_string(r, 0, f"{i}.", self.st(align="right", valign="top"))
            ws.write_string(r, 1, line, wrap)
            ws.set_row(r, self.height((line, 90)))
            r += 1
        ws.write_string(r + 1, 0, "CHÚ THÍCH MÀU", bold)
        legend = ((INPUT_FILL, "Ô để đơn vị ghi số liệu"),
                  (LOCKED_FILL, "Ô đã ghi sẵn hoặc tự động tính (đã khóa)"),
                  (MARK_FILL["error"], f"Lỗi phải sửa (khi {self.d.office.short} gửi lại báo cáo kèm góp ý)"),
                  (MARK_FILL["warning"],
                   f"Cần kiểm tra lại (khi {self.d.office.short} gửi lại báo cáo kèm góp ý)"))
        for j, (colour, text) in enumerate(legend):
            ws.write_blank(r + 2 + j, 0, None, self.st(bg_color=colour, border=1))
            ws.write_string(r + 2 + j, 1, text, wrap)
        r += 3 + len(legend)
        ws.write_string(r, 0, "CÁC TRANG CỦA BÁO CÁO", bold)
        link = self.st(font_color="#0563C1", underline=1)
        for j, s in enumerate(self.d.sheets, 1):
            ws.write_url(r + j, 1, f"internal:{quote_sheet(s.name)}!A1", link, f"{s.name}: {s.title}")
        page_sheet(ws, r + len(self.d.sheets), 1, 96)

    def meta(self, extra: Mapping[str, str] | None = None) -> None:
        ws = self.sheet(META_SHEET)
        unit_code = "" if self.unit is None else str(self.unit["unit_code"])
        meta = {"template_id": self.d.id, "template_version": str(self.d.version), "unit_code": unit_code,
                "period": self.period}
        for r, (key, value) in enumerate([(k, meta[k]) for k in META_KEYS] + list((extra or {}).items())):
            ws.write_string(r, 0, key)
            ws.write_string(r, 1, value)
        ws.hide()
        ws.protect("", _PROTECT)


def render_workbook(definition: Definition, path: Path | str | IO[bytes], *, period: str,
                    unit: Mapping | None = None, values: Mapping[str, object] | None = None,
                    marks: Mapping[str, Mark] | None = None, extra_meta: Mapping[str, str] | None = None,
                    front: Callable[[Renderer], None] | None = None, output_kind: str | None = None,
                    cache: WriterCache | None = None) -> None:
    """Write the report workbook for `period` to `path` (atomically) or to a binary file object.

    `unit` (a units row) pre-fills and locks the unit's code and name; None gives the blank template.
    `values` (field id → value as typed) fills cells, `marks` (field id → Mark) colours and comments
    cells, `front` writes sheets before the template's own (the feedback's "Góp ý": see
    pipeline.writers.feedback) and `output_kind` marks the workbook as one of tonghop's outputs (the guard
    knows it by that mark). `extra_meta` adds keys to the hidden sheet after META_KEYS (the samples
    generator marks its workbooks so). `cache` is the run's WriterCache (None: a fresh one).
    """
    check_period(period)
    cache = cache if cache is not None else WriterCache()

    def _write(target) -> None:
        wb = xlsxwriter.Workbook(target, WORKBOOK_OPTIONS)
        office = definition.office.short
        wb.set_properties({"title": definition.title, "author": office, "company": office})
        if output_kind is not None:  # never read back as a submission until a ward saves it
            wb.set_custom_property(OUTPUT_PROPERTY, output_kind)
        r = Renderer(definition, wb, period, unit, values, marks, cache)
        if front is not None:
            front(r)
        r.guide()
        for sheet in definition.sheets:
            r.table(sheet) if sheet.kind == "table" else r.form(sheet)
        r.meta(extra_meta)
        wb.close()

    if isinstance(path, (str, Path)):
        with atomic_path(Path(path)) as tmp:
            _write(str(tmp))
    else:
        _write(path)


def write_templates(definition: Definition, units: pd.DataFrame, period: str, out_dir: Path) -> list[Path]:
    """Write the blank template and one template per unit under `out_dir/period/`; return the paths.

    Names: `mau-bao-cao-<period>.xlsx` (blank, first) and `<unit slug>.xlsx` (e.g. 07093-duc-chinh.xlsx).
    """
    folder = Path(out_dir) / check_period(period)
    paths = [folder / f"mau-bao-cao-{period}.xlsx"]
    cache = WriterCache()
    render_workbook(definition, paths[0], period=period, cache=cache)
    for unit in records(units):
        paths.append(folder / f"{unit['slug']}.xlsx")
        render_workbook(definition, paths[-1], period=period, unit=unit, cache=cache)
    return paths
