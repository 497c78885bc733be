"""The rendered workbooks: layout from the definition, locking, validation, totals, marks, feedback."""

from __future__ import annotations

import datetime as dt
import io
import re

import openpyxl
import pandas as pd
import pytest
from openpyxl.cell.cell import MergedCell
from openpyxl.utils.cell import range_boundaries
from openpyxl.utils.datetime import to_excel
from python_calamine import CalamineWorkbook

from pipeline.cli.commands import main
from pipeline.definition import META_KEYS, META_SHEET, DefinitionError
from pipeline.writers.feedback import feedback_sheet
from pipeline.writers.template import (
    DATE_RANGE,
    FEEDBACK_SHEET,
    GUIDE_SHEET,
    INPUT_FILL,
    MARK_FILL,
    Mark,
    is_input,
    render_workbook,
    write_templates,
)

PERIOD = "2020-H1"
HOSTILE = {"reporter": '=HYPERLINK("http://x")', "phone": "=cmd|' /C calc'!A0",
           "mobilization_note": "http://example.com", "households": "2.379", "population": "gần 8.000"}
MARKS = {"total.participants": Mark("error", "Ô D16 ghi tổng số là «8,28», cộng các ô được 828."),
         "health.female": Mark("warning", "Ô E9 còn để trống trong khi có 350 lượt người tham gia."),
         "area_ha": Mark("warning", "Đề nghị kiểm tra lại diện tích.")}


def _argb(colour: str) -> str:
    return "FF" + colour.lstrip("#").upper()


@pytest.fixture(scope="module")
def unit(units):
    return units[units["unit_code"] == "07093"].iloc[0]


@pytest.fixture(scope="module")
def books(tmp_path_factory, definition, unit):
    """Paths of the unit template, the blank template and a feedback copy of Đức Chính's report."""
    out = tmp_path_factory.mktemp("books")
    paths = {"unit": out / "unit.xlsx", "blank": out / "blank.xlsx", "feedback": out / "feedback.xlsx"}
    render_workbook(definition, paths["unit"], period=PERIOD, unit=unit)
    render_workbook(definition, paths["blank"], period=PERIOD)
    values = {**HOSTILE, "health.classes": 2, "health.participants": 350, "arts_sports.participants": 186,
              "total.participants": 8.28, "board_directors": 1, "board_deputies": 2, "board_total": 3,
              "report_date": dt.date(2020, 6, 15), "mobilization_unions": "Tốt", "area_ha": 628.0}
    findings = pd.DataFrame([
        {"file": "f.xlsx", "unit_code": "07093", "unit_name": "Đức Chính", "sheet": "Kết quả hoạt động",
         "cell": "D16", "field": "total.participants", "value": 8.28, "rule": "total-mismatch",
         "severity": "error", "message": MARKS["total.participants"].comment, "expected": 828},
        {"file": "f.xlsx", "unit_code": "07093", "unit_name": "Đức Chính", "sheet": "", "cell": None,
         "field": "", "value": None, "rule": "file-macros", "severity": "warning",
         "message": "Tệp có chứa macro.", "expected": None},
        {"file": "f.xlsx", "unit_code": "07093", "unit_name": "Đức Chính", "sheet": "Kết quả hoạt động",
         "cell": "E12", "field": "health.female", "value": None, "rule": "female-blank",  # ward moved rows
         "severity": "warning", "message": MARKS["health.female"].comment, "expected": 350},
    ])
    render_workbook(definition, paths["feedback"], period=PERIOD, unit=unit, values=values, marks=MARKS,
                    front=lambda r: feedback_sheet(r, findings), output_kind="feedback")
    return paths


@pytest.fixture(scope="module")
def unit_wb(books):
    return openpyxl.load_workbook(books["unit"])


@pytest.fixture(scope="module")
def blank_wb(books):
    return openpyxl.load_workbook(books["blank"])


@pytest.fixture(scope="module")
def feedback_wb(books):
    return openpyxl.load_workbook(books["feedback"])


def _inputs(definition, blank: bool) -> dict[tuple[str, str], object]:
    return {(definition.sheet(f.sheet).name, f.cell): f
            for f in definition.fields.values() if is_input(f, blank=blank)}


def _validation(ws, cell: str):
    hits = [dv for dv in ws.data_validations.dataValidation if cell in dv.sqref]
    assert len(hits) == 1, (ws.title, cell, hits)
    return hits[0]


def _expected_validation(f) -> tuple | None:
    if f.type == "integer":
        return ("whole", "greaterThanOrEqual", "0", None) if f.max is None else (
            "whole", "between", "0", str(int(f.max)))
    if f.type == "decimal":
        return ("decimal", "greaterThanOrEqual", "0", None)
    if f.type == "percent":
        return ("decimal", "between", "0", "100")
    if f.type == "choice":
        return ("list", "between", '"Tốt,Khá,Trung bình,Chưa triển khai"', None)
    if f.type == "date":
        return ("date", "between", str(int(to_excel(DATE_RANGE[0]))), str(int(to_excel(DATE_RANGE[1]))))
    return None


def test_sheets_in_order_with_hidden_metadata(unit_wb, definition):
    assert unit_wb.sheetnames == [GUIDE_SHEET, *(s.name for s in definition.sheets), META_SHEET]
    assert unit_wb[META_SHEET].sheet_state == "hidden"
    assert all(ws.sheet_state == "visible" for ws in unit_wb.worksheets[:-1])
    assert unit_wb.active.title == GUIDE_SHEET


def test_unit_template_carries_code_name_period_locked(unit_wb, definition):
    ws = unit_wb["Thông tin chung"]
    for role, value in (("unit_code", "07093"), ("unit_name", "Phường Đức Chính"), ("period", PERIOD)):
        cell = ws[definition.role(role).cell]
        assert (cell.value, cell.data_type, cell.protection.locked) == (value, "s", True), role
    meta = {row[0].value: row[1].value for row in unit_wb[META_SHEET].iter_rows(max_col=2)}
    assert meta == {"template_id": definition.id, "template_version": str(definition.version),
                    "unit_code": "07093", "period": PERIOD}
    assert tuple(meta) == META_KEYS
    assert ws["A2"].value == "Đơn vị: Phường Đức Chính – Kỳ báo cáo: 6 tháng đầu năm 2020"


@pytest.mark.parametrize("which", ["unit", "blank"])
def test_every_input_is_unlocked_styled_and_validated(which, unit_wb, blank_wb, definition):
    wb = unit_wb if which == "unit" else blank_wb
    formats = {"integer": "#,##0", "decimal": "#,##0.00", "percent": "0.0", "date": "dd/mm/yyyy", "text": "@"}
    for (sheet, cell), f in _inputs(definition, blank=which == "blank").items():
        c = wb[sheet][cell]
        assert c.protection.locked is False, (sheet, cell)
        assert c.fill.fgColor.rgb == _argb(INPUT_FILL), (sheet, cell)
        assert c.border.left.style == "thin", (sheet, cell)
        if f.type in formats:
            assert c.number_format == formats[f.type], (sheet, cell)
        expected = _expected_validation(f)
        if expected is None:
            assert not [dv for dv in wb[sheet].data_validations.dataValidation if cell in dv.sqref]
            continue
        dv = _validation(wb[sheet], cell)
        assert (dv.type, dv.operator or "between", dv.formula1, dv.formula2) == expected, (sheet, cell)
        assert dv.errorStyle in (None, "stop") and dv.showErrorMessage and dv.showInputMessage
        assert dv.promptTitle and dv.prompt and dv.errorTitle and dv.error


@pytest.mark.parametrize("which", ["unit", "blank"])
def test_every_other_cell_is_locked(which, unit_wb, blank_wb, definition):
    wb = unit_wb if which == "unit" else blank_wb
    inputs = _inputs(definition, blank=which == "blank")
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for c in row:
                if not isinstance(c, MergedCell) and (ws.title, c.coordinate) not in inputs:
                    assert c.protection.locked is not False, (ws.title, c.coordinate)


def _refs(formula: str) -> set[str]:
    cells = set()
    for ref in re.findall(r"\$?[A-Z]{1,3}\$?\d+(?::\$?[A-Z]{1,3}\$?\d+)?", formula.replace("SUM", "")):
        lo_c, lo_r, hi_c, hi_r = range_boundaries(ref.replace("$", ""))
        cells |= {f"{openpyxl.utils.get_column_letter(c)}{r}"
                  for c in range(lo_c, hi_c + 1) for r in range(lo_r, hi_r + 1)}
    return cells


def test_totals_are_formulas_over_exactly_their_parts(unit_wb, definition):
    totals = [f for f in definition.fields.values() if f.total_of]
    for f in totals:
        c = unit_wb[definition.sheet(f.sheet).name][f.cell]
        assert c.data_type == "f" and c.protection.locked is True, f.id
        assert _refs(c.value) == {definition.fields[p].cell for p in f.total_of}, (f.id, c.value)
    assert unit_wb["Thông tin chung"]["B16"].value == "=B14+B15"
    assert unit_wb["Kết quả hoạt động"]["D16"].value == "=SUM(D6:D15)"


def test_fresh_total_reads_empty_and_given_total_is_cached(books):
    fresh = CalamineWorkbook.from_path(str(books["unit"])).get_sheet_by_name("Kết quả hoạt động")
    assert fresh.to_python(skip_empty_area=False)[15][3] == ""  # no stale 0 for a reader that does not recalc
    fed = CalamineWorkbook.from_path(str(books["feedback"]))
    assert fed.get_sheet_by_name("Kết quả hoạt động").to_python(skip_empty_area=False)[15][3] == 8.28
    assert fed.get_sheet_by_name("Thông tin chung").to_python(skip_empty_area=False)[15][1] == 3


def test_protection_and_print_setup_on_every_visible_sheet(unit_wb):
    for ws in unit_wb.worksheets:
        assert ws.protection.sheet is True and not ws.protection.password, ws.title
        if ws.sheet_state != "visible":
            continue
        assert ws.protection.formatColumns is False and ws.protection.formatRows is False, ws.title
        assert ws.page_setup.paperSize == 9 and ws.sheet_properties.pageSetUpPr.fitToPage, ws.title
        # fitToWidth is omitted when it is the default, 1
        assert ws.page_setup.fitToWidth in (None, 1) and ws.page_setup.fitToHeight == 0, ws.title
    assert unit_wb["Kết quả hoạt động"].print_title_rows == "$4:$5"


def test_form_layout_labels_hints_and_hidden_ids(unit_wb, definition):
    ws = unit_wb["Thông tin chung"]
    assert [ws[f"{c}4"].value for c in "ABCD"] == ["Nội dung", "Số liệu", "Đơn vị tính", "Hướng dẫn"]
    assert ws["A1"].value == definition.sheet("general").title and ws["A1"].font.b
    for fid in definition.sheet("general").fields:
        f = definition.fields[fid]
        assert (ws[f"A{f.row}"].value, ws[f"F{f.row}"].value) == (f.label, f.id)
    assert ws.column_dimensions["F"].hidden
    hints = {ws[f"F{r}"].value: ws[f"D{r}"].value for r in range(5, ws.max_row + 1)}
    assert hints["board_total"] == "Tự động tính: Giám đốc + Phó giám đốc"
    assert hints["board_deputies"] == "Số nguyên từ 0 đến 5"
    assert hints["quarters"] == "Số nguyên, từ 0 trở lên"
    assert hints["area_ha"] == "Số thập phân, từ 0 trở lên"
    assert hints["report_date"].startswith("Ngày/tháng/năm")
    assert unit_wb["Hiệu quả"]["D5"].value == "Tỷ lệ phần trăm, từ 0 đến 100"
    assert unit_wb["Huy động xã hội"]["D5"].value == "Chọn trong danh sách"


def test_table_layout(unit_wb, definition):
    ws = unit_wb["Kết quả hoạt động"]
    merged = {str(r) for r in ws.merged_cells.ranges}
    assert {"A4:A5", "B4:B5", "C4:C5", "D4:E4"} <= merged
    assert [ws[c].value for c in ("A4", "B4", "C4", "D4", "D5", "E5")] == [
        "TT", "Tên hoạt động giáo dục", "Số lớp (chuyên đề)", "Số lượt người tham gia", "Tổng số", "Nữ"]
    rows = definition.sheet("activities").rows
    assert [ws[f"B{6 + i}"].value for i in range(len(rows))] == [label for _, label in rows]
    assert [ws[f"H{6 + i}"].value for i in range(len(rows))] == [rid for rid, _ in rows]
    assert [ws[f"A{6 + i}"].value for i in range(10)] == list(range(1, 11))
    assert ws["B16"].font.b and ws.column_dimensions["H"].hidden


def test_signature_block_on_last_signature_sheet(unit_wb, definition):
    texts = {c.value for row in unit_wb["Phương hướng"].iter_rows() for c in row if isinstance(c.value, str)}
    assert {"Người lập báo cáo", "…, ngày … tháng … năm …", *definition.signature} <= texts


def test_blank_template_same_layout_with_unit_as_input(unit_wb, blank_wb, definition):
    for name in (s.name for s in definition.sheets):
        a, b = unit_wb[name], blank_wb[name]
        for col in "ACFH":  # labels, units and row ids; row 2 names the unit, so it differs
            assert [c.value for c in a[col][2:]] == [c.value for c in b[col][2:]], (name, col)
        assert sorted(map(str, a.merged_cells.ranges)) == sorted(map(str, b.merged_cells.ranges)), name
    ws = blank_wb["Thông tin chung"]
    for role in ("unit_code", "unit_name"):
        assert ws[definition.role(role).cell].value is None
    assert ws[definition.role("period").cell].value == PERIOD
    assert ws["A2"].value.startswith("Đơn vị: ………")
    meta = {row[0].value: row[1].value for row in blank_wb[META_SHEET].iter_rows(max_col=2)}
    assert not meta["unit_code"] and meta["period"] == PERIOD


def test_marks_colour_and_comment_exactly_the_marked_cells(feedback_wb, definition):
    marked = {(definition.sheet(definition.fields[fid].sheet).name, definition.fields[fid].cell): m
              for fid, m in MARKS.items()}
    fills = {_argb(c) for c in MARK_FILL.values()}
    for ws in (feedback_wb[s.name] for s in definition.sheets):  # "Góp ý", legend: fills too
        for row in ws.iter_rows():
            for c in row:
                mark = marked.get((ws.title, c.coordinate))
                if mark is None:
                    assert c.comment is None and c.fill.fgColor.rgb not in fills, (ws.title, c.coordinate)
                    continue
                assert c.fill.fgColor.rgb == _argb(MARK_FILL[mark.severity])
                assert c.comment.author == definition.office.short and mark.comment in c.comment.text
    assert feedback_wb["Thông tin chung"]["B8"].protection.locked is False  # a marked input stays editable


def test_ward_strings_stay_text(feedback_wb, definition):
    for fid, value in HOSTILE.items():
        f = definition.fields[fid]
        c = feedback_wb[definition.sheet(f.sheet).name][f.cell]
        assert (c.value, c.data_type) == (value, "s"), fid
        assert c.hyperlink is None
    ws = feedback_wb["Thông tin chung"]
    assert ws["B14"].value == 1 and ws["B23"].value == dt.datetime(2020, 6, 15)
    assert ws["B23"].number_format == "dd/mm/yyyy"


def test_feedback_sheet_first_active_with_links(feedback_wb):
    assert feedback_wb.sheetnames[0] == FEEDBACK_SHEET and feedback_wb.active.title == FEEDBACK_SHEET
    ws = feedback_wb[FEEDBACK_SHEET]
    assert [c.value for c in ws[4]] == ["Mức độ", "Trang", "Ô", "Nội dung", "Giá trị đã ghi", "Giá trị đúng",
                                        "Có thể là"]
    assert "Xin cảm ơn" in ws["A2"].value
    assert [ws[f"A{r}"].value for r in (5, 6)] == ["Lỗi", "Cảnh báo"]
    assert ws["C5"].value == "D16" and ws["C5"].hyperlink.location == "'Kết quả hoạt động'!D16"
    assert ws["C6"].hyperlink is None
    # a finding is linked to its field's cell in this workbook, not to where the ward's file had it
    assert ws["C7"].value == "E9" and ws["C7"].hyperlink.location == "'Kết quả hoạt động'!E9"
    assert all(c.data_type == "s" for c in ws[5])
    assert ws["F5"].value == "828"


def test_render_to_file_object_and_bad_period(definition):
    buf = io.BytesIO()
    render_workbook(definition, buf, period=PERIOD)
    assert buf.getvalue()[:2] == b"PK"
    with pytest.raises(DefinitionError):
        render_workbook(definition, io.BytesIO(), period="2020-Q3")


def test_write_templates_names_and_identity(tmp_path, definition, units):
    paths = write_templates(definition, units, PERIOD, tmp_path)
    assert len(paths) == 22 == len(units) + 1
    assert paths[0] == tmp_path / PERIOD / f"mau-bao-cao-{PERIOD}.xlsx"
    assert [p.name for p in paths[1:]] == [f"{s}.xlsx" for s in units["slug"]]
    assert (tmp_path / PERIOD / "07093-duc-chinh.xlsx") in paths
    assert sorted(p.name for p in (tmp_path / PERIOD).iterdir()) == sorted(p.name for p in paths)
    for path, code in zip(paths[1:], units["unit_code"], strict=True):
        meta = CalamineWorkbook.from_path(str(path)).get_sheet_by_name(META_SHEET).to_python()
        assert dict((row[0], row[1]) for row in meta)["unit_code"] == code


def test_cli_templates(tmp_path, capsys):
    assert main(["templates", "--period", PERIOD, "--out", str(tmp_path)]) == 0
    assert len(list((tmp_path / PERIOD).glob("*.xlsx"))) == 22
    assert "22" in capsys.readouterr().out


@pytest.fixture(scope="module")
def converted(books, soffice_convert, tmp_path_factory):
    """The unit template after a round trip through LibreOffice, as .xlsx and as .xls."""
    out = tmp_path_factory.mktemp("soffice")
    return {fmt: soffice_convert(books["unit"], fmt, out) for fmt in ("xlsx", "xls")}


@pytest.mark.soffice
@pytest.mark.parametrize("fmt", ["xlsx", "xls"])
def test_libreoffice_round_trip_keeps_layout(fmt, converted, books, definition):
    before, after = (CalamineWorkbook.from_path(str(p)) for p in (books["unit"], converted[fmt]))
    assert after.sheet_names == before.sheet_names
    general = after.get_sheet_by_name("Thông tin chung").to_python(skip_empty_area=False)
    for fid in definition.sheet("general").fields:
        f = definition.fields[fid]
        assert general[f.row - 1][0] == f.label, fid
    table = after.get_sheet_by_name("Kết quả hoạt động").to_python(skip_empty_area=False)
    assert [table[5 + i][1] for i in range(11)] == [label for _, label in definition.sheet("activities").rows]
    assert general[definition.role("unit_name").row - 1][1] == "Phường Đức Chính"
    meta = dict((r[0], r[1]) for r in after.get_sheet_by_name(META_SHEET).to_python())
    assert meta["unit_code"] == "07093"


def test_sections_are_in_the_official_order(definition, unit_wb):
    """I Đặc điểm, II Kết quả hoạt động, III Huy động xã hội, IV Hiệu quả, V Phương hướng (as the seed)."""
    names = ["Thông tin chung", "Kết quả hoạt động", "Huy động xã hội", "Hiệu quả", "Phương hướng"]
    assert [s.name for s in definition.sheets] == names
    assert [n for n in unit_wb.sheetnames if n in names] == names
    assert [s.title.split(".")[0] for s in definition.sheets] == ["I", "II", "III", "IV", "V"]
