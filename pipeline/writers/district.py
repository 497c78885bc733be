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
import io
import math
import numbers
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import pandas as pd
import xlsxwriter
from xlsxwriter.utility import xl_col_to_name

from pipeline.atomic import atomic_path
from pipeline.consolidate import RECEIVED, STATUS_ERRORS, STATUS_MISSING, STATUS_OK, STATUS_WRONG_PERIOD
from pipeline.findings import SEVERITY_ORDER, SEVERITY_VN, show
from pipeline.intake.guard import OUTPUT_PROPERTY
from pipeline.periods import ON_TIME
from pipeline.text import place_name
from pipeline.writers import xlsx_patch
from pipeline.writers.cache import WriterCache
from pipeline.writers.outputs import VALUES_HEADERS, unit_of_measure
from pipeline.writers.worksheet import Worksheet
from pipeline.writers.xlsx import WORKBOOK_OPTIONS, is_blank, page_setup, records, row_height

SHEETS = ("Tổng hợp", "Theo đơn vị", "Lỗi và cảnh báo", "Tình hình nộp báo cáo", "Bảng số liệu", "Dữ liệu")
WIDE_SHEET, DATA_SHEET = SHEETS[4], SHEETS[5]
NO_FINDINGS = "Không có lỗi hay cảnh báo nào."
DATA_HEADERS = {k: v for k, v in VALUES_HEADERS.items() if k not in ("district", "label", "unit")}
_DATA_WIDTHS = {"period": 9, "unit_code": 10, "unit_name": 24, "sheet": 18, "field": 24, "value": 14,
                "raw": 14, "counted": 10, "reason": 24, "file": 28, "cell": 6}
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
    "day": {"border": 1, "num_format": "dd/mm/yyyy", "align": "center"},
    "error": {"border": 1, "bold": True, "font_color": "#9C0006", "bg_color": "#FFC7CE"},
    "warning": {"border": 1, "bold": True, "font_color": "#9C5700", "bg_color": "#FFEB9C"},
    "sign": {"bold": True, "align": "center"}, "sign_note": {"italic": True, "align": "center"},
    "centre": {"align": "center"}, "centre_b": {"bold": True, "align": "center"},
    "centre_big": {"bold": True, "align": "center", "font_size": 13},
    "date": {"italic": True, "align": "center"}, "rule": {"align": "center", "font_size": 8},
    "doc_title": {"bold": True, "align": "center", "font_size": 14},
    "subject": {"bold": True, "align": "center", "text_wrap": True},
    "banner": {"bold": True, "align": "center", "font_color": "#C00000", "font_size": 14, "text_wrap": True},
    "to_head": {"bold": True, "italic": True}, "to": {"font_size": 11},
    "note_wrap": {"italic": True, "font_size": 10, "text_wrap": True, "valign": "top"},
} | {f"{k}{b}": {"border": 1, "num_format": nf} | ({"bold": True} if b else {})
     for k, nf in (("int", "#,##0"), ("dec", "#,##0.00"), ("pct", "0.0")) for b in ("", "_b")}
MARK_FILLS = {"out": "#FCE4D6", "warn": "#FFF2CC"}  # figures leaving out units; including values to check
_STATUS_COLOURS = {STATUS_OK: ("#006100", "#C6EFCE"), STATUS_ERRORS: ("#9C0006", "#FFC7CE"),
                   STATUS_WRONG_PERIOD: ("#9C5700", "#FFEB9C"), STATUS_MISSING: ("#3F3F3F", "#D9D9D9")}


_blank = is_blank


def _number(v: object) -> float | None:
    """`v` as a float when it is a real number (not bool, not NaN), else None."""
    if v.__class__ is float:  # the usual case first: an exact class test is cheap, an ABC check is not
        return v if math.isfinite(v) else None
    if v.__class__ is str or v is None:
        return None
    return float(v) if isinstance(v, numbers.Real) and not isinstance(v, bool) and not _blank(v) else None


def _fit(texts, lo: float, hi: float) -> float:
    """A column width (characters) that fits the longest of `texts`, within [lo, hi]."""
    return max(lo, min(hi, max((len(str(t)) for t in texts if not _blank(t)), default=0) + 2))


class _Book:
    """The workbook being written: formats (created once), page set-up and the count of cut strings."""

    def __init__(self, wb: xlsxwriter.Workbook, header: str, splice: bool = False,
                 cache: WriterCache | None = None) -> None:
        self.wb, self.header, self.cut = wb, header, 0
        self.cache = cache if cache is not None else WriterCache()
        # long plain tables are spliced into the closed workbook (xlsx_patch) unless it streams rows out
        # (constant_memory); each function maps (package, shared strings) to the members it rewrites
        self.splice, self.splices = splice, []
        self.f = {k: wb.add_format(_BASE | v) for k, v in _FORMATS.items()}
        self.big = {k: wb.add_format(_BASE | v | {"font_size": 12}) for k, v in _FORMATS.items()}  # Tổng hợp
        self.status = {k: wb.add_format({"font_color": c, "bg_color": b})
                       for k, (c, b) in _STATUS_COLOURS.items()}
        self.marked: dict[tuple[str, str, bool], object] = {}

    def mark(self, key: str, fill: str, big: bool = False):
        """The format `key` (of `_FORMATS`) with a mark's fill (MARK_FILLS), made once."""
        if (key, fill, big) not in self.marked:
            props = _BASE | _FORMATS[key] | {"bg_color": MARK_FILLS[fill]}
            props |= {"font_size": 12} if big else {}
            self.marked[key, fill, big] = self.wb.add_format(props)
        return self.marked[key, fill, big]

    def sheet(self, name: str) -> Worksheet:
        ws = self.wb.add_worksheet(name, worksheet_class=Worksheet)
        ws.formulas = self.cache.formulas
        return ws

    def height(self, cells: list[tuple[object, float]], size: float = 11) -> float:
        """`xlsx.row_height` of the texts, measured once per run."""
        return row_height(cells, size, cache=self.cache)

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
        page_setup(ws, landscape=landscape, header=self.header, repeat=repeat)

    def status_colours(self, ws, first: int, last: int, col: int) -> None:
        """Colour a status column (Đạt green, Có lỗi red, Chưa nộp grey); conditional, so it follows edits."""
        for status, fmt in self.status.items():
            ws.conditional_format(first, col, last, col, {"type": "cell", "criteria": "==",
                                                          "value": f'"{status}"', "format": fmt})


def write_district_workbook(path: Path, definition, *, district: Mapping, period: str, run_date: dt.date,
                            units: pd.DataFrame, figures: pd.DataFrame, left_out: pd.DataFrame,
                            district_values: pd.DataFrame, choices: pd.DataFrame, findings: pd.DataFrame,
                            values: pd.DataFrame, wide: tuple[pd.DataFrame, Mapping[str, str]],
                            feedback_links: Mapping[str, str], sample: bool = False,
                            run_label: str = "", cache: WriterCache | None = None) -> int:
    """Write the consolidated workbook of one district to `path` (atomically).

    `district` holds district_code, district_name, province_name; `units` one row per unit of the list
    (unit_code, unit_name, full_name, status, file, received, errors, warnings, superseded, counted,
    other_files); `figures` the chosen units' numbers and `left_out` which of them the district figures
    leave out (index unit_code, a column per field id); `district_values` (field, value, units,
    expected, left_out, warned) and `choices` (field, choice, count) the consolidated figures;
    `findings` the findings with `label`; `values` the tidy table; `wide` the pivot table and its
    headers; `feedback_links` unit_code → path of the ward's feedback workbook relative to `path`'s
    folder; `sample` says the figures come from sample files; `run_label` names the run in the history
    store; `cache` the run's WriterCache (None: a fresh one). From the history store, optionally:
    `units` deadline, received, lateness, changes, changed_from;
    `district_values` previous, previous_label, change (the earlier period's figure beside each).
    Returns how many strings were cut at 32,767 characters.
    """
    label = definition.period_label(period)
    esc = str.maketrans({"&": "&&"})  # a lone & starts a header control code
    # the space after &9 keeps a name starting with a digit from reading as a font size
    header = f"&L&9 {str(district['district_name']).translate(esc)} – {label.translate(esc)}&R&9 &A"
    large = len(values) > CONSTANT_MEMORY_ROWS
    options = WORKBOOK_OPTIONS | ({"constant_memory": True, "in_memory": False} if large else {})
    with atomic_path(Path(path)) as tmp:
        packed = None if large else io.BytesIO()
        wb = xlsxwriter.Workbook(str(tmp) if large else packed, options)
        wb.set_properties({"title": f"{definition.title} – {district['district_name']}", "subject": label,
                           "author": definition.office.short})
        wb.set_custom_property(OUTPUT_PROPERTY, "district")  # never read back as a submission
        book = _Book(wb, header, splice=not large, cache=cache)
        rows = _summary(book, definition, district, period, run_date, units, district_values, choices, sample,
                        run_label)
        _by_unit(book, definition, units, figures, left_out, district_values, rows)
        _findings(book, definition, findings, feedback_links)
        _submissions(book, units)
        _wide(book, *wide, {fid: _kind(definition.fields[fid]) for fid in wide[0].columns
                            if fid in definition.fields and definition.fields[fid].numeric})
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


class _Figure:
    """A district figure as "Tổng hợp" shows it: value, how many units (n of N), its mark and note."""

    def __init__(self, row: Mapping) -> None:
        self.value, self.n, self.of = row["value"], int(row["units"]), int(row["expected"])
        self.left_out, self.warned = str(row["left_out"] or ""), str(row["warned"] or "")

    @property
    def fill(self) -> str | None:
        return "out" if self.left_out else "warn" if self.warned else None

    def note(self) -> str:
        lines = [f"Số liệu từ {self.n}/{self.of} đơn vị."]
        if self.left_out:
            lines.append(f"Không gồm: {self.left_out}.")
        if self.warned:
            lines.append(f"Gồm số liệu cần kiểm tra lại của: {self.warned}.")
        return "\n".join(lines)


def _put_figure(book: _Book, ws, r: int, c: int, fig: _Figure | None, key: str, author: str) -> None:
    """Write a district figure at (r, c): the number, the mark's fill, and a note when it is marked."""
    if fig is None:
        book.number(ws, r, c, None, book.big[key])
        return
    fmt = book.mark(key, fig.fill, big=True) if fig.fill else book.big[key]
    book.number(ws, r, c, fig.value, fmt)
    if fig.fill:
        note = fig.note()
        ws.write_comment(r, c, note, {"author": author, "x_scale": 2.5,
                                      "y_scale": max(1.0, (len(note) // 50 + 2) * 16 / 74)})


def heading_names(d, district: Mapping) -> dict[str, str]:
    """The names the heading of the district's report uses, from the definition and the units list."""
    name = str(district.get("district_name") or "")
    names = {"district": name, "place": place_name(name)}
    return {"superior": d.office.superior.format(**names).upper(), "place": names["place"],
            "recipients": [x.format(**names) for x in d.office.recipients]}


def _summary(book: _Book, d, district, period, run_date, units, district_values, choices, sample,
             run_label: str = "") -> dict:
    """Sheet "Tổng hợp": the district's report as an administrative document (Nghị định 30/2020/NĐ-CP):
    heading, title, each section of the definition with the district's figures (marked where they leave
    out units or include values to check), a footnote on the marks, "Nơi nhận" and the signature.

    Returns where each table's rows are, (sheet id, column id) → (first row, last row, column), for the
    charts on "Theo đơn vị"."""
    ws = book.sheet(SHEETS[0])
    prev, prev_label = _earlier(district_values)
    last = max(4 + 2 * bool(prev), *(1 + len(sh.columns) for sh in d.sheets))
    for col, width in enumerate(_SUMMARY_WIDTHS + (_EARLIER_WIDTHS if prev else ())):
        ws.set_column(col, col, width)
    dv = {r["field"]: _Figure(r) for r in records(district_values)}
    counts: dict[str, dict[str, int]] = {}
    for field, choice, count in zip(choices["field"], choices["choice"], choices["count"], strict=True):
        counts.setdefault(field, {})[str(choice)] = int(count)
    names = heading_names(d, district)
    r = _summary_heading(book, ws, d, names, period, run_date, units, sample, run_label, last)
    anchors: dict = {}
    for sheet in d.sheets:
        if sheet.kind == "table":
            r = _summary_table(book, ws, d, sheet, dv, r, last, anchors)
            if prev:
                r = _table_earlier(book, ws, d, sheet, prev, prev_label, r, last)
        else:
            r = _summary_form(book, ws, d, sheet, dv, counts, len(units), (prev, prev_label), r, last)
    _summary_closing(book, ws, d, names, r, last)
    return anchors


_SPLIT = 1  # "Tổng hợp"'s heading: the left block is columns A-B, the right one C to the last


def _summary_heading(book: _Book, ws, d, names: dict, period, run_date, units, sample, run_label: str,
                     last: int) -> int:
    """The heading of "Tổng hợp" (office and motto, number and date, title, subject, the counts).
    Returns the first row of the sections."""
    s, split = book.big, _SPLIT
    book.merge(ws, 0, 0, split, names["superior"], s["centre"])
    book.merge(ws, 0, split + 1, last, "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", s["centre_b"])
    book.merge(ws, 1, 0, split, d.office.name.upper(), s["centre_b"])
    book.merge(ws, 1, split + 1, last, "Độc lập - Tự do - Hạnh phúc", s["centre_big"])
    book.merge(ws, 2, 0, split, "—————", s["rule"])
    book.merge(ws, 2, split + 1, last, "————————————", s["rule"])
    book.merge(ws, 3, 0, split, f"Số: …/{d.office.symbol}" if d.office.symbol else "", s["centre"])
    when = f"{names['place']}, ngày {run_date.day} tháng {run_date.month} năm {run_date.year}"
    book.merge(ws, 3, split + 1, last, when, s["date"])
    r = 5
    if sample:
        ws.set_row(r, 36)
        book.merge(ws, r, 0, last, "DỮ LIỆU MẪU – KHÔNG DÙNG ĐỂ BÁO CÁO (tổng hợp từ các tệp mẫu của "
                   "chương trình)", s["banner"])
        r += 1
    book.merge(ws, r, 0, last, "BÁO CÁO", s["doc_title"])
    subject = f"{d.office.subject or d.title} {d.period_label(period)}".strip()
    ws.set_row(r + 1, book.height([(subject, sum(_SUMMARY_WIDTHS))], size=12))
    book.merge(ws, r + 1, 0, last, subject, s["subject"])
    received = int(units["status"].isin(RECEIVED).sum())
    counted = int(units["counted"].fillna(False).astype(bool).sum())
    line = (f"Số đơn vị đã báo cáo: {received}/{len(units)}{_on_time(units)}; số đơn vị có số liệu được "
            f"tổng hợp: {counted}/{len(units)}. Ngày tổng hợp: {run_date.strftime('%d/%m/%Y')}"
            + (f" ({run_label})." if run_label else "."))
    book.merge(ws, r + 2, 0, last, line, s["date"])
    return r + 4


def _summary_form(book: _Book, ws, d, sheet, dv: dict, counts: dict, n_units: int,
                  earlier: tuple[dict, str], r: int, last: int) -> int:
    """A form sheet's consolidated fields on "Tổng hợp" from row `r`: a row per field with the figure
    (or the count per choice), its unit, how it was consolidated and, when `earlier` holds the earlier
    period's figures, those and the change. Returns the next free row."""
    f, s = book.f, book.big
    prev, prev_label = earlier
    shown = [d.fields[i] for i in sheet.fields if d.fields[i].method in ("sum", "weighted_mean", "count")]
    if not shown:
        return r
    book.merge(ws, r, 0, last, sheet.title, f["section"])
    book.cells(ws, r + 1, [(h, s["head"]) for h in ("TT", "Nội dung", "Số liệu", "Đơn vị tính",
                                                     "Cách tổng hợp")])
    if prev:
        book.cells(ws, r + 1, [(h, s["head"]) for h in (prev_label.capitalize(), "Tăng, giảm")], first=5)
    r += 2
    for n, fld in enumerate(shown, 1):
        text = ""
        if fld.method == "count":
            got = counts.get(fld.id, {})
            text = "; ".join(f"{ch}: {got.get(ch, 0)}" for ch in fld.choices)
            note = f"Số đơn vị theo mức đánh giá; {sum(got.values())}/{n_units} đơn vị có đánh giá"
        else:
            fig = dv.get(fld.id)
            how = ("Tổng cộng" if fld.method == "sum"
                   else f"Bình quân gia quyền theo {d.fields[fld.weight].label.lower()}")
            note = f"{how}; {fig.n}/{fig.of} đơn vị" if fig else how
        w = _SUMMARY_WIDTHS
        ws.set_row(r, book.height([(fld.label, w[1]), (note, w[4]), (text, w[2] + w[3])], size=12))
        book.cells(ws, r, [(f"{n}", s["code"]), (fld.label, s["text"])])
        if fld.method == "count":
            book.merge(ws, r, 2, 3, text, s["text"])
        else:
            _put_figure(book, ws, r, 2, dv.get(fld.id), _kind(fld), d.office.short)
            book.text(ws, r, 3, unit_of_measure(fld), s["code"])
        book.text(ws, r, 4, note, s["text"])
        if prev:
            before, change = prev.get(fld.id, (None, ""))
            book.number(ws, r, 5, before, s[_kind(fld)])
            book.text(ws, r, 6, change, s["code"])
        r += 1
    return r + 1


def _summary_closing(book: _Book, ws, d, names: dict, r: int, last: int) -> None:
    """The end of "Tổng hợp" from row `r`: the footnote on the marks, "Nơi nhận" beside the signature,
    the print area and page set-up."""
    f, s = book.f, book.big
    footnote = ("Ghi chú: ô tô màu cam là số liệu chưa gồm đủ các đơn vị (đơn vị chưa nộp hoặc nộp sai "
                "kỳ báo cáo, hoặc số liệu có lỗi đã được loại ra); ô tô màu vàng là số liệu có gồm số liệu "
                "đơn vị cần kiểm tra lại; ghi chú trong từng ô nêu rõ các đơn vị. Cách tổng hợp: các tổng "
                "số được tính lại từ số liệu thành phần; số liệu có lỗi của một đơn vị không được cộng, "
                "cùng với các số liệu của đơn vị đó được đối chiếu trực tiếp với nó; số liệu chỉ có cảnh "
                "báo vẫn được cộng.")
    ws.set_row(r, book.height([(footnote, sum(_SUMMARY_WIDTHS))], size=10))
    book.merge(ws, r, 0, last, footnote, f["note_wrap"])
    r += 2
    recipients = names["recipients"]
    signer = list(d.office.signature)
    height = max(len(recipients) + 1, len(signer) + 5)
    left = [("Nơi nhận:", s["to_head"])] + [
        (f"- {line}{'.' if i == len(recipients) else ';'}", f["to"]) for i, line in enumerate(recipients, 1)]
    for i in range(height):  # row by row: a streamed (constant_memory) sheet keeps only rows in order
        if i < len(left):
            book.text(ws, r + i, 0, *left[i])
        if i < len(signer):
            book.merge(ws, r + i, _SPLIT + 1, last, signer[i], s["sign"])
        else:  # room to sign and stamp, and for the signer's name
            ws.set_row(r + i, 20)
            ws.write_blank(r + i, _SPLIT + 1, None, s["sign"])  # a cell, or constant_memory drops the height
    ws.print_area(0, 0, r + height, last)
    book.page(ws)


_EARLIER_WIDTHS = (15, 17)  # the earlier period's figure and the change, beside a form section's figures


def _earlier(district_values: pd.DataFrame) -> tuple[dict[str, tuple[float, str]], str]:
    """field → (earlier figure, "tăng 114,79 %") and the earlier period's label ("kỳ trước, 6 tháng cuối
    năm 2019"), when the history store gave any; ({}, "") otherwise."""
    if "previous" not in district_values or district_values["previous"].isna().all():
        return {}, ""
    label = next((x for x in district_values["previous_label"] if x), "")
    rows = zip(district_values["field"], district_values["previous"], district_values["change"], strict=True)
    return {field: (before, change) for field, before, change in rows if before == before}, label


def _on_time(units: pd.DataFrame) -> str:
    """" (đúng hạn: 15)" when the run had a deadline."""
    if "lateness" not in units or "deadline" not in units or units["deadline"].isna().all():
        return ""
    return f" (đúng hạn: {int((units['lateness'] == ON_TIME).sum())})"


def _table_earlier(book: _Book, ws, d, sheet, prev: dict, prev_label: str, r: int, last: int) -> int:
    """Under the activity table, the same rows and columns compared with the earlier period: each cell
    "tăng 136,57 % (350)" (the change, then the earlier figure). Returns the next free row."""
    f, s = book.f, book.big
    ids = [cid for cid, _, _ in sheet.columns]
    book.merge(ws, r, 0, last, f"So sánh với {prev_label}: tăng, giảm (số liệu kỳ đó)", f["section"])
    heads = [sheet.number_label, sheet.table_label,
             *(f"{g}: {lbl}" if g else lbl for _, lbl, g in sheet.columns)]
    ws.set_row(r + 1, 36)
    book.cells(ws, r + 1, [(h, s["head"]) for h in heads])
    r, n = r + 2, 0
    for row_id, row_label in sheet.rows:
        total = bool(d.fields[f"{row_id}.{ids[0]}"].total_of)
        n += not total
        cells = []
        for cid in ids:
            before, change = prev.get(f"{row_id}.{cid}", (None, ""))
            cells.append((f"{change} ({show(before)})" if change else "", s["code"]))
        ws.set_row(r, book.height([(row_label, _SUMMARY_WIDTHS[1])], size=12))
        book.cells(ws, r, [("" if total else f"{n}", s["code"]),
                           (row_label, s["text_b" if total else "text"]), *cells])
        r += 1
    return r + 1


def _summary_table(book: _Book, ws, d, sheet, dv: dict, r: int, last: int, anchors: dict) -> int:
    """The activity table in its own layout (TT, label, grouped value columns, total row) from row `r`;
    records in `anchors` where its rows are. Returns the next free row."""
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
        ws.set_row(r, book.height([(row_label, _SUMMARY_WIDTHS[1])], size=12))
        book.cells(ws, r, [("" if total else f"{n}", s["code"]),
                           (row_label, s["text_b" if total else "text"])])
        for i, cid in enumerate(ids):
            fld = d.fields[f"{row_id}.{cid}"]
            _put_figure(book, ws, r, 2 + i, dv.get(fld.id), _kind(fld, bold=total), d.office.short)
        r += 1
    totals = "; ".join(f"«{label}»" for rid, label in sheet.rows if d.fields[f"{rid}.{ids[0]}"].total_of)
    book.merge(ws, r, 0, last, f"Dòng {totals} được tính lại từ các dòng thành phần.", f["note"])
    parts_first = not any(d.fields[f"{rid}.{ids[0]}"].total_of for rid, _ in sheet.rows[:n])
    if n and parts_first:
        for i, cid in enumerate(ids):
            anchors[(sheet.id, cid)] = (first, first + n - 1, 2 + i)
    return r + 2


def _by_unit(book: _Book, d, units: pd.DataFrame, figures: pd.DataFrame, left_out: pd.DataFrame,
             district_values: pd.DataFrame, anchors: dict) -> None:
    """Sheet "Theo đơn vị": a row per unit of the list with the definition's figures per unit (those left
    out of the district figures marked), a total row of the district figures, and the definition's bar
    charts to the right."""
    ws, f, n = book.sheet(SHEETS[1]), book.f, len(units)
    cols = [(fid, h) for fid, h in d.district.by_unit if fid in d.fields]
    names = units["full_name"] if "full_name" in units else units["unit_name"]
    heads = ["Mã đơn vị", "Tên đơn vị", "Trạng thái", *(h for _, h in cols), "Lỗi", "Cảnh báo"]
    book.head(ws, 0, heads, [10, _fit(names, 16, 32), 14, *(max(9, min(14, len(h) * 0.7)) for _, h in cols),
                             7, 9])
    codes = units["unit_code"].tolist()
    fig = figures.reindex(codes)
    out = left_out.reindex(codes).fillna(False).astype(bool) if len(left_out.columns) else None
    extra = []
    for fid, _ in cols:
        kind = _kind(d.fields[fid])
        vals = fig[fid].tolist() if fid in fig else [None] * n
        marks = out[fid].tolist() if out is not None and fid in out else [False] * n
        extra.append([(v, book.mark(kind, "out") if m else f[kind])
                      for v, m in zip(vals, marks, strict=True)])
    extra += [[(v, f["int"]) for v in units[c].tolist()] for c in ("errors", "warnings")]
    for i, (code, name, status) in enumerate(zip(codes, names, units["status"], strict=True)):
        book.cells(ws, i + 1, [(code, f["code"]), (name, f["text"]), (status, f["code"]),
                               *(col[i] for col in extra)])
    dv = district_values.set_index("field")["value"] if len(district_values) else pd.Series(dtype=float)
    book.cells(ws, n + 1, [("", f["text_b"]), ("Tổng hợp (số liệu được tính)", f["text_b"]),
                           ("", f["text_b"])])
    for c, (fid, _) in enumerate(cols, 3):
        book.number(ws, n + 1, c, dv.get(fid), f[_kind(d.fields[fid], bold=True)])
    for c in (len(cols) + 3, len(cols) + 4):
        col = xl_col_to_name(c)
        cached = sum(x for x in map(_number, (units["errors"] if c == len(cols) + 3 else units["warnings"]))
                     if x is not None)
        ws.write_formula(n + 1, c, f"=SUM({col}2:{col}{n + 1})" if n else "=0", f["int_b"], cached)
    ws.set_row(n + 2, 30)
    book.merge(ws, n + 2, 0, len(heads) - 1, "Ô tô màu cam: số liệu không được tổng hợp (ô có lỗi hoặc "
               "được đối chiếu với ô có lỗi). Dòng «Tổng hợp» là số liệu của trang «Tổng hợp».",
               f["note_wrap"])
    book.status_colours(ws, 1, max(n, 1), 2)
    ws.freeze_panes(1, 2)
    ws.autofilter(0, 0, max(n, 1), len(heads) - 1)
    book.page(ws, landscape=True, repeat=0)  # no print area: the charts print beside the table
    y = 0
    for chart in d.district.charts:
        if chart.by == "unit" and n and chart.field in dict(cols):
            pc = 3 + [fid for fid, _ in cols].index(chart.field)
            series = {"categories": [SHEETS[1], 1, 1, n, 1], "values": [SHEETS[1], 1, pc, n, pc]}
            height = max(300, 24 * n + 120)
        elif chart.by == "row" and (chart.sheet, chart.column) in anchors:
            first, last_row, vc = anchors[(chart.sheet, chart.column)]
            series = {"categories": [SHEETS[0], first, 1, last_row, 1],
                      "values": [SHEETS[0], first, vc, last_row, vc]}
            height = 30 * (last_row - first) + 150
        else:
            continue
        colour = ("#4472C4", "#ED7D31", "#70AD47", "#7030A0")[len(book.wb.charts) % 4]
        ws.insert_chart(0, len(heads) + 1, _bar(book, series, colour, chart.title, chart.axis, height),
                        {"y_offset": y})
        y += height + 20


def _bar(book: _Book, series: dict, colour: str, title: str, axis: str, height: int):
    """A horizontal bar chart: the definition's Vietnamese title and axis name, categories read top down."""
    font = {"name": "Times New Roman"}
    chart = book.wb.add_chart({"type": "bar"})
    chart.add_series(series | {"name": axis or title, "fill": {"color": colour}, "gap": 60})
    chart.set_title({"name": title, "name_font": font | {"size": 12, "bold": True}})
    chart.set_x_axis({"name": axis, "num_format": "#,##0", "name_font": font | {"size": 10},
                      "num_font": font | {"size": 9}})
    # reversed so the first category is on top; crossing at the last category keeps the values at the bottom
    chart.set_y_axis({"reverse": True, "crossing": "max", "num_font": font | {"size": 9}})
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
             "Có thể là", "Phản hồi")
    widths = (10, 18, 18, 14, 6, 26, 12, 50, 11, 11, 20)
    book.head(ws, 0, heads, widths)
    order = findings["severity"].map(SEVERITY_ORDER).fillna(9)
    n_links = 0
    for i, row in enumerate(records(findings.assign(_o=order).sort_values("_o", kind="stable")), 1):
        unit = next((v for v in (row.get("unit_name"), row.get("unit_code")) if not _blank(v) and v), "")
        cells = [unit, row.get("file"), row.get("sheet"), row.get("cell"), row.get("label"),
                 show(row.get("value")), row.get("message"), show(row.get("expected")),
                 show(row.get("suggestion"))]
        link = _link(definition, row, links)
        ws.set_row(i, book.height([*zip(cells, widths[1:], strict=False),
                                   (link[1] if link else "", widths[-1])]))
        sev = row.get("severity")
        book.text(ws, i, 0, SEVERITY_VN.get(sev, sev), f["error" if sev == "error" else "warning"])
        for c, v in enumerate(cells, 1):  # all text: a value is shown as the ward wrote it
            book.text(ws, i, c, v, f["code"] if c == 4 else f["text"])
        if link and n_links < _MAX_LINKS and ws.write_url(i, 10, link[0], f["link"], string=link[1]) == 0:
            n_links += 1
        else:
            book.text(ws, i, 10, link[1] if link else "", f["text"])
    ws.freeze_panes(1, 0)
    ws.autofilter(0, 0, len(findings), len(heads) - 1)
    ws.ignore_errors({"number_stored_as_text": f"A2:K{len(findings) + 1}"})  # values are shown as written


def _wide(book: _Book, table: pd.DataFrame, headers: Mapping[str, str], formats: Mapping[str, str]) -> None:
    """Sheet "Bảng số liệu": the pivot table, a row per unit, a column per field (Vietnamese header with
    the unit of measure), the figures counted in the district figures as numbers, choices as text.
    `formats` maps a field column to its number format key (int, dec, pct). Rows are spliced in unless
    the workbook streams its rows out (`_table`)."""
    ws, f, n = book.sheet(WIDE_SHEET), book.f, len(table)
    cols = list(table.columns)
    widths = [10 if c == "unit_code" else 24 if c in ("unit_name", "district_name", "province_name")
              else 13 for c in cols]
    book.head(ws, 0, [headers.get(c, c) for c in cols], widths,
              height=book.height([(headers.get(c, c), w) for c, w in zip(cols, widths, strict=True)]))
    data = table.to_numpy(dtype=object).T.tolist() if n else [[] for _ in cols]  # one conversion in all
    columns = [(values, f["code"] if c == "unit_code" else f[formats[c]] if c in formats else f["text"])
               for c, values in zip(cols, data, strict=True)]
    for i in range(n):  # two lines of a unit's name
        ws.set_row(i + 1, 17)
    _table(book, ws, 1, [(_cell_values(values), fmt) for values, fmt in columns])
    ws.freeze_panes(1, 2)
    ws.autofilter(0, 0, max(n, 1), len(cols) - 1)
    book.page(ws, landscape=True, repeat=0)


def _received(v: object) -> dt.datetime | None:
    """An ISO date-time text as a naive datetime (the clock time as written), or None."""
    try:
        return None if _blank(v) or not v else dt.datetime.fromisoformat(str(v)).replace(tzinfo=None)
    except ValueError:
        return None


def _submissions(book: _Book, units: pd.DataFrame) -> None:
    """Sheet "Tình hình nộp báo cáo": the counts on top, then each unit's submission and status (coloured),
    its deadline, when it was received and whether on time, the files it superseded and the cells that
    changed since the older one, the files of other periods it sent.

    The unit rows are written by `_table`."""
    ws, f, n = book.sheet(SHEETS[3]), book.f, len(units)
    sent = units["status"].isin(RECEIVED)
    wrong = units["status"] == STATUS_WRONG_PERIOD
    with_errors = int((units["status"] == STATUS_ERRORS).sum())
    get = {c: units[c].tolist() if c in units else [None] * n
           for c in ("file", "received", "errors", "warnings", "superseded", "other_files", "deadline",
                     "lateness", "changes", "changed_from")}
    due = next((d for d in get["deadline"] if not _blank(d) and d), None)
    top = f"Đã nộp {int(sent.sum())}/{n} đơn vị; {with_errors} đơn vị có lỗi"
    if due:
        top += f"; {sum(w == ON_TIME for w in get['lateness'])} đơn vị nộp đúng hạn (hạn nộp {due:%d/%m/%Y})"
    if wrong.any():
        top += f"; {int(wrong.sum())} đơn vị chỉ gửi báo cáo của kỳ khác"
    book.text(ws, 0, 0, top, f["bold"])
    heads = ("Mã đơn vị", "Tên đơn vị", "Đã nộp", "Tệp", "Hạn nộp", "Ngày nhận", "Đúng hạn", "Số lỗi",
             "Số cảnh báo", "Trạng thái", "Tệp bị thay thế", "Các ô thay đổi so với tệp trước",
             "Tệp của kỳ khác")
    names = units["full_name"] if "full_name" in units else units["unit_name"]
    other = [o if not w else "" for o, w in zip(get["other_files"], wrong, strict=True)]
    when = [_received(v) for v in get["received"]]
    days = [dt.datetime.combine(d, dt.time()) if isinstance(d, dt.date) else None for d in get["deadline"]]
    changed = [f"So với {src}: {c}" if c else "" for c, src in zip(get["changes"], get["changed_from"],
                                                                    strict=True)]
    widths = (10, _fit(names, 16, 32), 10, _fit(get["file"], 12, 36), 11, 16, 13, 8, 10, 15,
              _fit(get["superseded"], 14, 40), 50 if any(changed) else 14, _fit(other, 14, 40))
    book.head(ws, 2, heads, widths)
    columns = [(units["unit_code"].tolist(), f["code"]), (names.tolist(), f["text"]),
               (["Đã nộp" if ok else "Sai kỳ" if w else "Chưa nộp"
                 for ok, w in zip(sent, wrong, strict=True)], f["code"]), (get["file"], f["text"]),
               (days, f["day"]), ([w or r for w, r in zip(when, get["received"], strict=True)], f["when"]),
               (get["lateness"], f["code"]), (get["errors"], f["int"]), (get["warnings"], f["int"]),
               (units["status"].tolist(), f["code"]), (get["superseded"], f["text"]), (changed, f["text"]),
               (other, f["text"])]
    for i in range(n):
        ws.set_row(i + 3, book.height([(get["file"][i], widths[3]), (get["superseded"][i], widths[10]),
                                   (changed[i], widths[11]), (other[i], widths[12])]))
    _table(book, ws, 3, [(_cell_values(values), fmt) for values, fmt in columns])
    book.status_colours(ws, 3, max(n + 2, 3), 9)
    for word in ("Muộn", "Quá hạn"):
        ws.conditional_format(3, 6, max(n + 2, 3), 6, {"type": "text", "criteria": "begins with",
                                                       "value": word, "format": book.status[STATUS_ERRORS]})
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


def _cell_values(values: list) -> list:
    """`_cell_value` of each of `values`; a finite float (most cells) is its own value."""
    return [v if v.__class__ is float and v - v == 0.0 else _cell_value(v) for v in values]


def _table(book: _Book, ws, first: int, columns: list[tuple[list, object]]) -> None:
    """Write rows `first`.. (0-based) of `ws` from whole columns (cells, format): cells as `_cell_value`
    gives them (text, number, None for a blank), a format or None for the column's own (set_column).

    The one place the way is chosen: spliced into the closed workbook (`_table_spliced`, a few µs a
    row) unless the workbook streams its rows out (constant_memory), then cell by cell through
    xlsxwriter in one tight loop (about 15 µs a cell). Both give the same cells and formats."""
    n = len(columns[0][0]) if columns else 0
    if not n:
        return
    if book.splice:
        _table_spliced(book, ws, first, columns)
        return
    write_string, write_number, write_blank, cut = ws.write_string, ws.write_number, ws.write_blank, 0
    for i in range(n):  # the hot loop of a huge district; rows only grow
        r = first + i
        for c, (cells, fmt) in enumerate(columns):
            v = cells[i]
            if v.__class__ is str and v:
                cut += write_string(r, c, v, fmt) == -2  # rows only grow: -2 is a text cut at Excel's limit
            elif v is None or v == "":
                if fmt is not None:
                    write_blank(r, c, None, fmt)
            else:
                write_number(r, c, v, fmt)
    book.cut += cut


def _table_spliced(book: _Book, ws, first: int, columns: list[tuple[list, object]]) -> None:
    """`_table`'s rows spliced in: xlsxwriter writes the rows' heights and, in the last row, a cell per
    column whose style the spliced cells take (a formatted blank, or a 0 in a column without a format
    of its own); the rows are built from whole columns (`xlsx_patch.table_rows`) once it is closed."""
    n = len(columns[0][0])
    last = first + n - 1
    for c, (_, fmt) in enumerate(columns):
        ws.write_blank(last, c, None, fmt) if fmt is not None else ws.write_number(last, c, 0)
    cells = [_cut(book, values) for values, _ in columns]
    blanks = [fmt is not None for _, fmt in columns]  # a column's own format leaves blank cells out
    member = f"xl/worksheets/sheet{book.wb.worksheets().index(ws) + 1}.xml"

    def splice(package: xlsx_patch.Package, strings) -> dict[str, str]:
        xml = package.text(member)
        styles = xlsx_patch.row_styles(xml, last + 1)
        start, end, tags = xlsx_patch.row_span(xml, first + 1, last + 1)
        spec = [(xl_col_to_name(c), styles.get(xl_col_to_name(c), ""), col) for c, col in enumerate(cells)]
        rows = xlsx_patch.table_rows(first + 1, spec, strings, row_tags=tags, styled_blanks=blanks)
        return {member: xml[:start] + rows + xml[end:]}

    book.splices.append(splice)


def _cut(book: _Book, values: list) -> list:
    """Texts cut at Excel's limit, counted in `book.cut` (rare: the column is only copied then)."""
    if max(map(len, [v for v in values if v.__class__ is str]), default=0) <= xlsx_patch.MAX_TEXT:
        return values
    most = xlsx_patch.MAX_TEXT
    cut = [v[:most] if v.__class__ is str and len(v) > most else v for v in values]
    book.cut += sum(a is not b for a, b in zip(cut, values, strict=True))
    return cut


def _data(book: _Book, values: pd.DataFrame) -> None:
    """Sheet "Dữ liệu": the tidy table, a row per value, written by `_table` with the columns' own
    formats; continues on "Dữ liệu (2)" past Excel's row limit (only a streamed workbook gets there)."""
    cols = [c for c in DATA_HEADERS if c in values.columns]
    n, columns = len(values), []
    for name in cols:
        raw = values[name].tolist()
        if name == "value":  # numbers stay numbers; text values (choices, dates, notes) stay text
            nums = [v if v.__class__ is float and v == v else _number(v) for v in raw]
            columns.append([x if x is not None else v if v.__class__ is str else None if _blank(v) else str(v)
                            for v, x in zip(raw, nums, strict=True)])
        else:
            columns.append([v if v.__class__ is str else None if _blank(v) else str(v) for v in raw])
    for part, start in enumerate(range(0, max(n, 1), _MAX_ROWS - 1)):
        ws = _data_sheet(book, cols, part)
        end = min(n, start + _MAX_ROWS - 1)
        whole = start == 0 and end == n
        _table(book, ws, 1, [(col if whole else col[start:end], None) for col in columns])
        _data_finish(book, ws, cols, end - start)


def _data_sheet(book: _Book, cols: list[str], part: int):
    ws = book.sheet(DATA_SHEET if part == 0 else f"{DATA_SHEET} ({part + 1})")
    book.head(ws, 0, [DATA_HEADERS[c] for c in cols], [_DATA_WIDTHS[c] for c in cols])
    for c, name in enumerate(cols):  # column formats, not cell formats: no lookups in the loop
        ws.set_column(c, c, _DATA_WIDTHS[name], book.f["indent" if name == "raw" else "left"])
    return ws


def _data_finish(book: _Book, ws, cols: list[str], rows: int) -> None:
    ws.freeze_panes(1, 0)
    ws.autofilter(0, 0, max(rows, 1), len(cols) - 1)
    book.page(ws, landscape=True, repeat=0)
