"""The consolidated district workbook, read back with openpyxl (and once through LibreOffice)."""

from __future__ import annotations

import datetime as dt
import zipfile

import numpy as np
import openpyxl
import pandas as pd
import pytest
import python_calamine as pc

from pipeline.writers import district as district_mod
from pipeline.writers.district import DATA_HEADERS, NO_FINDINGS, SHEETS, write_district_workbook
from pipeline.writers.outputs import wide_table

EVIL_VALUE = '=HYPERLINK("http://evil")'
EVIL_NAME = "=cmd|' /C calc'!A0"
DISTRICT = {"district_code": "205", "district_name": "Thị xã Đông Triều", "province_name": "Tỉnh Quảng Ninh"}
LINKS = {"07093": "feedback/07093-duc-chinh.xlsx", "07096": "feedback/07096-cmd.xlsx"}
# Two units counted, one missing. Đức Chính's figures are the seed's (828 participants).
FIGURES = pd.DataFrame(
    {"households": [2379.0, 1500.0], "population": [8000.0, 6000.0], "income_per_capita_mn": [94.34, 50.0],
     "health.classes": [2.0, 1.0], "health.participants": [350.0, 40.0], "economy.participants": [150.0, 0.0],
     "other.participants": [142.0, 10.0], "arts_sports.participants": [186.0, 20.0],
     "total.classes": [17.0, 3.0], "total.participants": [828.0, 70.0], "total.female": [0.0, 30.0],
     "learners": [828.0, 75.0], "literacy_rate": [100.0, 98.5]},
    index=pd.Index(["07093", "07096"], name="unit_code"))


def _district_values(definition) -> pd.DataFrame:
    rows = []
    for fid in FIGURES.columns:
        f = definition.fields[fid]
        col = FIGURES[fid]
        if f.method == "sum":
            value = col.sum()
        else:
            w = FIGURES[f.weight]
            value = (col * w).sum() / w.sum()
        rows.append({"field": fid, "value": value, "units": int(col.notna().sum()), "expected": 3,
                     "left_out": "Xã Thủy An (chưa nộp báo cáo)", "warned": ""})
    out = pd.DataFrame(rows)
    out.loc[out["field"] == "health.participants", "warned"] = "Phường Đức Chính"
    return out


def _findings() -> pd.DataFrame:
    base = {"file": "cmd.xlsx", "unit_code": "07096", "unit_name": EVIL_NAME, "expected": None}
    rows = [
        base | {"sheet": "Kết quả hoạt động", "cell": "D16", "field": "total.participants",
                "value": EVIL_VALUE, "rule": "total-mismatch", "severity": "error", "expected": 70.0,
                "message": "Ô D16 ghi tổng số sai.", "label": "Tổng số – Số lượt người tham gia: Tổng số"},
        base | {"sheet": "Hiệu quả", "cell": "B6", "field": "learners", "value": 75.0,
                "rule": "learners-mismatch", "severity": "error", "expected": 70.0,
                "message": "Ô B6 khác tổng số.", "label": "Số lượt người tham gia học tại TTHTCĐ"},
        {"file": "duc-chinh.xlsx", "unit_code": "07093", "unit_name": "Đức Chính",
         "sheet": "Kết quả hoạt động", "cell": "E9", "field": "health.female", "value": None,
         "rule": "female-blank", "severity": "warning", "message": "Ô E9 còn để trống.", "expected": 350.0,
         "label": "Chuyên đề Giáo dục sức khỏe – Nữ"},
    ]
    return pd.DataFrame(rows)


def _values() -> pd.DataFrame:
    rows = []
    for code, name, file in (("07093", "Đức Chính", "duc-chinh.xlsx"), ("07096", EVIL_NAME, "cmd.xlsx")):
        for fid in ("households", "total.participants"):
            rows.append({"field": fid, "value": FIGURES.at[code, fid], "raw": str(int(FIGURES.at[code, fid])),
                         "unit_code": code, "unit_name": name, "file": file, "cell": "B9"})
        rows.append({"field": "mobilization_unions", "value": "Tốt", "raw": "Tốt", "unit_code": code,
                     "unit_name": name, "file": file, "cell": "B5"})
    rows[-1] |= {"value": EVIL_VALUE, "raw": EVIL_VALUE}
    df = pd.DataFrame(rows).assign(period="2020-H1", district=DISTRICT["district_name"],
                                   sheet="Thông tin chung", counted="Có", reason="")
    df.loc[3, ["counted", "reason"]] = ["Không", "ô này có lỗi"]
    return df[list(DATA_HEADERS)]


def _units() -> pd.DataFrame:
    return pd.DataFrame({
        "unit_code": ["07093", "07096", "07099"], "unit_name": ["Đức Chính", EVIL_NAME, "Thủy An"],
        "full_name": ["Phường Đức Chính", EVIL_NAME, "Xã Thủy An"], "unit_type": ["phường", "phường", "xã"],
        "status": ["Đạt", "Có lỗi", "Chưa nộp"], "file": ["duc-chinh.xlsx", "cmd.xlsx", None],
        "received": ["2020-07-10T08:30:00", "2020-07-11T14:05:00", None], "errors": [0, 2, np.nan],
        "warnings": [1, 0, np.nan], "superseded": ["", "cmd-cu.xlsx", ""], "counted": [True, True, False]})


def _kwargs(definition, **over) -> dict:
    left_out = pd.DataFrame(False, index=FIGURES.index, columns=FIGURES.columns)
    left_out.loc["07096", "learners"] = True
    units = over.get("units", _units())
    kw = {"district": DISTRICT, "period": "2020-H1", "run_date": dt.date(2020, 7, 15), "units": units,
          "figures": FIGURES, "left_out": left_out, "district_values": _district_values(definition),
          "wide": wide_table(definition, units.assign(district_name=DISTRICT["district_name"],
                                                      province_name=DISTRICT["province_name"]),
                             FIGURES, left_out),
          "choices": pd.DataFrame({"field": ["mobilization_unions"] * 2, "choice": ["Tốt", "Khá"],
                                   "count": [1, 1]}),
          "findings": _findings(), "values": _values(), "feedback_links": LINKS}
    return kw | over


@pytest.fixture(scope="module")
def book(definition, tmp_path_factory):
    """(path, truncated count, formulas workbook, cached-values workbook) of the synthetic district."""
    path = tmp_path_factory.mktemp("district") / "2020-H1" / "thi-xa-dong-trieu.xlsx"
    cut = write_district_workbook(path, definition, **_kwargs(definition))
    return path, cut, openpyxl.load_workbook(path), openpyxl.load_workbook(path, data_only=True)


def _find(ws, col: int, text: str) -> int:
    """The first row whose column `col` (1-based) holds `text`."""
    return next(r for r in range(1, ws.max_row + 1) if ws.cell(r, col).value == text)


def test_sheets_in_order_and_nothing_cut(book):
    path, cut, wb, _ = book
    assert wb.sheetnames == list(SHEETS)
    assert cut == 0
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # the temporary file was renamed


def test_summary_is_an_administrative_report_with_the_district_figures(book):
    _, _, wb, _ = book
    ws = wb["Tổng hợp"]
    # Nghị định 30/2020/NĐ-CP: issuing bodies left, national motto right, place and date, title
    assert ws["A1"].value == "UBND THỊ XÃ ĐÔNG TRIỀU"
    assert ws["C1"].value == "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM"
    assert (ws["A2"].value, ws["C2"].value) == ("PHÒNG GIÁO DỤC VÀ ĐÀO TẠO", "Độc lập - Tự do - Hạnh phúc")
    assert ws["A2"].font.b and ws["C2"].font.b and ws["A2"].font.name == "Times New Roman"
    assert (ws["A4"].value, ws["C4"].value) == ("Số: …/BC-PGDĐT", "Đông Triều, ngày 15 tháng 7 năm 2020")
    assert ws["C4"].font.i
    title = _find(ws, 1, "BÁO CÁO")
    assert ws.cell(title + 1, 1).value == ("Kết quả tổ chức, hoạt động Trung tâm học tập cộng đồng các xã, "
                                           "phường 6 tháng đầu năm 2020")
    assert ws.cell(title + 2, 1).value.startswith("Số đơn vị đã báo cáo: 2/3; số đơn vị có số liệu được tổng "
                                                  "hợp: 2/3. Ngày tổng hợp: 15/07/2020.")
    sections = [ws.cell(r, 1).value for r in range(1, ws.max_row + 1)
                if str(ws.cell(r, 1).value or "").startswith(("I.", "II.", "III.", "IV.", "V."))]
    assert [x.split(".")[0] for x in sections] == ["I", "II", "III", "IV", "V"]
    total = _find(ws, 2, "Tổng số")
    assert ws.cell(total, 4).value == FIGURES["total.participants"].sum() == 898
    assert ws.cell(total, 3).value == 20  # classes
    health = _find(ws, 2, "Chuyên đề Giáo dục sức khỏe")
    assert (ws.cell(health, 1).value, ws.cell(health, 4).value) == ("4", 390)
    households = _find(ws, 2, "Số hộ")
    assert ws.cell(households, 3).value == 3879
    assert ws.cell(households, 3).number_format == "#,##0"
    assert ws.cell(households, 5).value == "Tổng cộng; 2/3 đơn vị"
    income = _find(ws, 2, "Thu nhập bình quân")
    assert ws.cell(income, 3).value == pytest.approx((94.34 * 8000 + 50 * 6000) / 14000)
    assert ws.cell(income, 5).value == "Bình quân gia quyền theo số dân; 2/3 đơn vị"
    literacy = _find(ws, 2, "Tỷ lệ người biết chữ")
    assert ws.cell(literacy, 3).number_format == "0.0" and ws.cell(literacy, 4).value == "%"
    unions = _find(ws, 2, "Sự tham gia của các đoàn thể, ban ngành")
    assert ws.cell(unions, 3).value == "Tốt: 1; Khá: 1; Trung bình: 0; Chưa triển khai: 0"
    assert all(ws.cell(r, 2).value != "Ghi chú, đánh giá thêm" for r in range(1, ws.max_row + 1))
    group = _find(ws, 4, "Số lượt người tham gia")
    assert ws.cell(group + 1, 4).value == "Tổng số" and ws.cell(group + 1, 5).value == "Nữ"
    assert f"D{group}:E{group}" in {str(m) for m in ws.merged_cells.ranges}
    assert f"A{group}:A{group + 1}" in {str(m) for m in ws.merged_cells.ranges}
    to = _find(ws, 1, "Nơi nhận:")
    assert ws.cell(to, 1).font.b and ws.cell(to, 1).font.i
    assert [ws.cell(to + i, 1).value for i in (1, 2, 3)] == [
        "- Sở GD&ĐT (b/c);", "- UBND Thị xã Đông Triều (b/c);", "- Lưu: VT."]
    assert ws.cell(to, 3).value == "TRƯỞNG PHÒNG" and ws.cell(to, 3).font.b
    # fit to one page wide: fitToWidth defaults to 1, fitToHeight 0 means "as many pages as needed"
    assert ws.page_setup.paperSize == 9 and ws.sheet_properties.pageSetUpPr.fitToPage
    assert ws.page_setup.fitToHeight == 0
    assert "Trang &P/&N" in ws.oddFooter.center.text


def test_summary_marks_figures_that_leave_out_units_or_include_values_to_check(book):
    """Every figure built from fewer units than the list holds is coloured, with a note naming the units left
    out and why; a figure including a value with a warning says whose; a footnote explains the marks."""
    _, _, wb, _ = book
    ws = wb["Tổng hợp"]
    households = ws.cell(_find(ws, 2, "Số hộ"), 3)
    assert households.fill.fgColor.rgb.endswith(district_mod.MARK_FILLS["out"][1:])
    assert households.comment.text == "Số liệu từ 2/3 đơn vị.\nKhông gồm: Xã Thủy An (chưa nộp báo cáo)."
    health = ws.cell(_find(ws, 2, "Chuyên đề Giáo dục sức khỏe"), 4)
    assert "Gồm số liệu cần kiểm tra lại của: Phường Đức Chính." in health.comment.text
    notes = [ws.cell(r, 1).value for r in range(1, ws.max_row + 1)]
    assert any(str(n).startswith("Ghi chú: ô tô màu cam") for n in notes)


def test_sample_figures_say_so_on_top(definition, tmp_path):
    path = tmp_path / "d.xlsx"
    write_district_workbook(path, definition, **_kwargs(definition), sample=True)
    ws = openpyxl.load_workbook(path)["Tổng hợp"]
    assert ws["A6"].value.startswith("DỮ LIỆU MẪU – KHÔNG DÙNG ĐỂ BÁO CÁO")


def test_by_unit_lists_every_unit_with_totals_and_charts(book):
    path, _, wb, cached = book
    ws = wb["Theo đơn vị"]
    heads = [c.value for c in ws[1]][:11]
    assert heads == ["Mã đơn vị", "Tên đơn vị", "Trạng thái", "Số hộ", "Số dân", "Số lớp",
                     "Số lượt người tham gia", "Nữ", "Số lượt người học", "Lỗi", "Cảnh báo"]
    assert [ws.cell(r, 1).value for r in range(2, 5)] == ["07093", "07096", "07099"]
    assert ws.cell(4, 3).value == "Chưa nộp" and ws.cell(4, 7).value is None
    assert ws.cell(5, 2).value == "Tổng hợp (số liệu được tính)"
    assert ws.cell(5, 7).value == 898  # the district figure of "Tổng hợp"
    assert ws.cell(5, 10).value == "=SUM(J2:J4)" and cached["Theo đơn vị"].cell(5, 10).value == 2  # errors
    learners = ws.cell(3, 9)  # 07096's learners are left out of the district figures: marked
    assert learners.value == 75 and learners.fill.fgColor.rgb.endswith(district_mod.MARK_FILLS["out"][1:])
    assert ws.cell(2, 9).fill.fgColor.rgb in (None, "00000000")
    assert ws.freeze_panes == "C2"
    with zipfile.ZipFile(path) as z:
        charts = [z.read(n).decode() for n in sorted(z.namelist()) if n.startswith("xl/charts/chart")]
    assert len(charts) == 2
    assert "<c:barDir val=\"bar\"/>" in charts[0]
    assert "Số lượt người tham gia theo đơn vị" in charts[0] and "'Theo đơn vị'!$B$2:$B$4" in charts[0]
    assert "theo hoạt động giáo dục" in charts[1] and "'Tổng hợp'!" in charts[1]


def test_findings_sheet_links_into_feedback_workbooks(book):
    _, _, wb, _ = book
    ws = wb["Lỗi và cảnh báo"]
    assert [c.value for c in ws[1]] == ["Mức độ", "Đơn vị", "Tệp", "Trang", "Ô", "Mục", "Giá trị đã ghi",
                                        "Nội dung", "Giá trị đúng", "Có thể là", "Phản hồi"]
    assert ws.auto_filter.ref == "A1:K4"
    assert ws.freeze_panes == "A2"
    assert [ws.cell(r, 1).value for r in range(2, 5)] == ["Lỗi", "Lỗi", "Cảnh báo"]
    assert ws["A2"].fill.fgColor.rgb.endswith("FFC7CE") and ws["A4"].fill.fgColor.rgb.endswith("FFEB9C")
    assert ws["H2"].alignment.wrap_text
    assert (ws["G2"].value, ws["I2"].value) == (EVIL_VALUE, "70")
    link = ws["K2"].hyperlink
    # xlsxwriter writes relative paths Windows-style; Excel and LibreOffice both resolve them
    assert link.target.replace("\\", "/") == "feedback/07096-cmd.xlsx"
    assert link.location == "'Kết quả hoạt động'!D16"
    assert ws["K4"].hyperlink.location == "'Kết quả hoạt động'!E9"
    assert ws.page_setup.orientation == "landscape" and ws.print_title_rows == "$1:$1"


def test_findings_link_to_the_template_cell_when_the_ward_moved_it(definition, tmp_path):
    moved = _findings().iloc[[2]].assign(cell="E12")  # the ward inserted rows above the table
    path = tmp_path / "d.xlsx"
    write_district_workbook(path, definition, **_kwargs(definition, findings=moved))
    ws = openpyxl.load_workbook(path)["Lỗi và cảnh báo"]
    assert ws["E2"].value == "E12"
    assert ws["K2"].hyperlink.location == f"'Kết quả hoạt động'!{definition.fields['health.female'].cell}"


def test_findings_without_a_template_cell_link_to_the_file(definition, tmp_path):
    odd = _findings().iloc[[2]].assign(field=None, sheet="Sheet1", cell="A1")  # a sheet the ward added
    path = tmp_path / "d.xlsx"
    write_district_workbook(path, definition, **_kwargs(definition, findings=odd))
    link = openpyxl.load_workbook(path)["Lỗi và cảnh báo"]["K2"].hyperlink
    assert link.target.replace("\\", "/") == LINKS["07093"] and not link.location


def test_submissions_sheet(book):
    _, _, wb, _ = book
    ws = wb["Tình hình nộp báo cáo"]
    assert ws["A1"].value == "Đã nộp 2/3 đơn vị; 1 đơn vị có lỗi"
    assert ws.freeze_panes == "A4" and ws.auto_filter.ref == "A3:M6"
    rows = [[c.value for c in row] for row in ws.iter_rows(min_row=4, max_row=6)]
    assert [(r[0], r[2], r[9]) for r in rows] == [("07093", "Đã nộp", "Đạt"), ("07096", "Đã nộp", "Có lỗi"),
                                                  ("07099", "Chưa nộp", "Chưa nộp")]
    assert rows[0][5].isoformat() == "2020-07-10T08:30:00" and rows[1][10] == "cmd-cu.xlsx"
    rules = {r.formula[0] for cf in ws.conditional_formatting for r in cf.rules}
    assert {'"Đạt"', '"Có lỗi"', '"Chưa nộp"'} <= rules


def test_data_sheet_is_the_tidy_table(book):
    _, _, wb, _ = book
    ws = wb["Dữ liệu"]
    assert [c.value for c in ws[1]] == ["Kỳ báo cáo", "Mã đơn vị", "Tên đơn vị", "Trang", "Mã mục", "Giá trị",
                                        "Giá trị gốc", "Được tổng hợp", "Lý do không tổng hợp", "Tệp", "Ô"]
    assert ws.max_row == 7 and ws.freeze_panes == "A2" and ws.auto_filter.ref == "A1:K7"
    assert (ws["F2"].value, ws["F2"].data_type, ws["G2"].value, ws["H2"].value) == (2379, "n", "2379", "Có")
    assert (ws["F4"].value, ws["F4"].data_type) == ("Tốt", "s")
    assert (ws["H5"].value, ws["I5"].value) == ("Không", "ô này có lỗi")


def test_wide_sheet_is_a_pivot_table_of_the_counted_figures(book, definition):
    _, _, wb, _ = book
    ws = wb["Bảng số liệu"]
    heads = [c.value for c in ws[1]]
    assert heads[:5] == ["Mã đơn vị", "Tên đơn vị", "Huyện", "Tỉnh", "Trạng thái"]
    assert "Số hộ (hộ)" in heads and "Tỷ lệ người biết chữ (%)" in heads
    col = heads.index("Số hộ (hộ)") + 1
    assert [ws.cell(r, col).value for r in (2, 3, 4)] == [2379, 1500, None]
    learners = heads.index(f"{definition.fields['learners'].label} (lượt người)") + 1
    assert (ws.cell(2, learners).value, ws.cell(3, learners).value) == (828, None)  # left out: blank


def test_ward_strings_stay_text(book):
    _, _, wb, _ = book
    evil = [(ws.title, c.coordinate, c.data_type) for ws in wb for row in ws.iter_rows() for c in row
            if isinstance(c.value, str) and c.value in (EVIL_VALUE, EVIL_NAME)]
    assert {t for t, *_ in evil} == set(SHEETS) - {"Tổng hợp"}
    assert all(kind == "s" for *_, kind in evil)
    formulas = [(ws.title, c.coordinate) for ws in wb for row in ws.iter_rows() for c in row
                if c.data_type == "f"]
    assert formulas and all(t == "Theo đơn vị" for t, _ in formulas)


def test_truncated_strings_are_counted(definition, tmp_path):
    values = _values()
    values.loc[0, "raw"] = "x" * 40_000
    cut = write_district_workbook(tmp_path / "d.xlsx", definition, **_kwargs(definition, values=values))
    assert cut == 1
    assert len(openpyxl.load_workbook(tmp_path / "d.xlsx")["Dữ liệu"]["G2"].value) == 32_767


def test_no_findings_is_one_line(definition, tmp_path):
    kwargs = _kwargs(definition, findings=_findings().iloc[:0])
    write_district_workbook(tmp_path / "d.xlsx", definition, **kwargs)
    ws = openpyxl.load_workbook(tmp_path / "d.xlsx")["Lỗi và cảnh báo"]
    assert [[c.value for c in row] for row in ws.iter_rows()] == [[NO_FINDINGS]]


def test_constant_memory_writes_the_same_workbook(definition, tmp_path, monkeypatch):
    """Large workbooks are written cell by cell in constant_memory mode (which drops any row written out
    of order); the others get "Dữ liệu" spliced in by xlsx_patch. Both must read the same, odd text too."""
    values = _values()
    values.loc[0, "raw"] = "  lề trái"
    values.loc[1, "raw"] = "_x0041_ và \x01 <b>&amp;</b>"
    values.loc[2, "value"] = 1234567.125
    spliced, big = tmp_path / "spliced.xlsx", tmp_path / "big.xlsx"
    write_district_workbook(spliced, definition, **_kwargs(definition, values=values))
    monkeypatch.setattr(district_mod, "CONSTANT_MEMORY_ROWS", 0)
    write_district_workbook(big, definition, **_kwargs(definition, values=values))
    small, big = openpyxl.load_workbook(spliced), openpyxl.load_workbook(big)
    rows = pc.CalamineWorkbook.from_path(str(spliced)).get_sheet_by_name("Dữ liệu").to_python()
    assert (rows[1][6], rows[2][6]) == ("  lề trái", "_x0041_ và \x01 <b>&amp;</b>")  # as the ward typed
    assert small["Dữ liệu"].dimensions == big["Dữ liệu"].dimensions == "A1:K7"
    readers = [pc.CalamineWorkbook.from_path(str(p)) for p in (spliced, tmp_path / "big.xlsx")]
    for name in SHEETS:
        a, b = small[name], big[name]
        # values as calamine reads them (openpyxl reads "_x0001_" back from a shared string, "\x01"
        # from an inline one), formats as openpyxl does
        values = [r.get_sheet_by_name(name).to_python() for r in readers]
        assert values[0] == values[1], name
        cells = [[[(c.number_format, c.alignment.indent, c.font.name, c.font.b, c.border.left.style,
                    c.fill.fgColor.rgb) for c in r] for r in ws.iter_rows()] for ws in (a, b)]
        assert cells[0] == cells[1], name
        heights = [{r: d.height for r, d in ws.row_dimensions.items() if d.height} for ws in (a, b)]
        assert heights[0] == heights[1], name
        assert {str(m) for m in a.merged_cells.ranges} == {str(m) for m in b.merged_cells.ranges}, name
        links = [[(c.hyperlink.target, c.hyperlink.location) for c in r if c.hyperlink] for ws in (a, b)
                 for r in [[c for row in ws.iter_rows() for c in row]]]
        assert links[0] == links[1], name


def test_pandas_string_columns_are_accepted(definition, tmp_path):
    values = _values().astype({c: "str" for c in ("unit_code", "unit_name", "raw", "file")})
    units = _units().astype({"unit_code": "str", "unit_name": "str"})
    kwargs = _kwargs(definition, values=values, units=units)
    write_district_workbook(tmp_path / "d.xlsx", definition, **kwargs)
    assert openpyxl.load_workbook(tmp_path / "d.xlsx")["Dữ liệu"]["B2"].value == "07093"


@pytest.mark.soffice
def test_libreoffice_prints_the_workbook(book, soffice_convert, tmp_path):
    pdf = soffice_convert(book[0], "pdf", tmp_path)
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and data.count(b"/Type /Page") + data.count(b"/Type/Page") >= 5



_TABLE_CASES = {  # column cells → what `_table` must write, the same spliced or cell by cell
    "text and numbers": [["a", "b", "  lề", "<r>x</r>"], [1.0, -0.0, 1234567.125, 1e-7]],
    "blanks": [[None, "", "x", None], [None, 2.5, None, None]],
    "odd text": [["_x0041_", "\x01 <b>&amp;</b>", "=SUM(A1)", "x" * 40_000], ["1", "2", "3", "4"]],
}


@pytest.mark.parametrize("case", list(_TABLE_CASES))
@pytest.mark.parametrize("own_format", [True, False], ids=["cell formats", "column formats"])
def test_table_paths_write_the_same_cells(tmp_path, case, own_format):
    """`_table` chooses between splicing rows into the closed workbook and writing them cell by cell
    (a workbook streaming its rows out): the cells, their formats and the count of cut texts agree."""
    import io

    import xlsxwriter

    from pipeline.writers import xlsx_patch
    from pipeline.writers.worksheet import Worksheet

    def write(splice: bool):
        path = tmp_path / f"{case}-{splice}.xlsx"
        buf = io.BytesIO()
        wb = xlsxwriter.Workbook(buf if splice else str(path), {"in_memory": True} if splice else
                                 {"constant_memory": True})
        book = district_mod._Book(wb, "", splice=splice)
        ws = wb.add_worksheet("T", worksheet_class=Worksheet)
        ws.set_column(0, 1, 12, book.f["indent"])
        ws.write_string(0, 0, "head")
        fmts = [book.f["text"], book.f["dec"]] if own_format else [None, None]
        district_mod._table(book, ws, 1, list(zip(_TABLE_CASES[case], fmts, strict=True)))
        wb.close()
        if splice:
            package = xlsx_patch.Package.read(buf.getvalue())
            strings = xlsx_patch.SharedStrings(package.text("xl/sharedStrings.xml"))
            out = {}
            for f in book.splices:
                out.update(f(package, strings))
            out["xl/sharedStrings.xml"] = strings.xml()
            package.write(path, out)
        # values as calamine reads them (openpyxl reads "\x01" back as "_x0001_" from a shared string),
        # formats as openpyxl does
        values = pc.CalamineWorkbook.from_path(str(path)).get_sheet_by_name("T").to_python()
        ws = openpyxl.load_workbook(path)["T"]
        cells = [[(c.number_format, c.alignment.indent, c.border.left.style) for c in r]
                 for r in ws.iter_rows()]
        return values, cells, book.cut

    spliced, streamed = write(True), write(False)
    assert spliced == streamed
    assert spliced[2] == (1 if case == "odd text" else 0)


def test_records_are_to_dict_records():
    from pipeline.writers.xlsx import records

    frame = pd.DataFrame({"a": [1, 2], "b": [1.5, np.nan], "c": ["x", None], "d": [True, False],
                          "e": pd.array(["s", None], dtype="string"), "f": [np.int64(3), "t"],
                          "g": pd.Series([pd.NA, "x"], dtype=object), "h": pd.array([1, None], dtype="Int64"),
                          "i": pd.to_datetime(["2020-01-01", None]),
                          "j": pd.Series(["a", None], dtype="str")})

    def shown(rows: list[dict]) -> list:
        return [[(k, type(v), repr(v)) for k, v in r.items()] for r in rows]

    assert shown(records(frame)) == shown(frame.to_dict("records"))
