"""Reading workbooks: the template's own addresses, then ids and labels when the layout moved."""

import unicodedata
from pathlib import Path

import openpyxl
import pytest
import xlsxwriter
from sample_inbox import DUC_CHINH, plausible

from pipeline.definition import load_definition
from pipeline.findings import Finding
from pipeline.intake.reader import make_spec, read_workbook
from pipeline.units import load_units
from pipeline.writers.template import render_workbook

DEF = load_definition()
SPEC = make_spec(DEF)
UNIT = load_units().set_index("unit_code").loc["07093"].to_dict() | {"unit_code": "07093"}


def _render(tmp_path: Path, values: dict, name: str = "r.xlsx", unit=UNIT) -> Path:
    path = tmp_path / name
    render_workbook(DEF, path, period="2020-H1", unit=unit, values=values)
    return path


def cells(path: Path) -> dict[str, tuple[object, str]]:
    raw = read_workbook(path, SPEC)
    assert not raw.problems, raw.problems
    return {fid: (v, cell) for fid, v, cell, *_ in raw.cells}


def test_reads_every_field_at_its_template_address(tmp_path):
    got = cells(_render(tmp_path, DUC_CHINH))
    assert set(got) == set(DEF.fields)
    assert got["households"] == ("2.379", DEF.fields["households"].cell)
    assert got["health.participants"] == (350, "D9") or got["health.participants"] == (350.0, "D9")
    assert got["unit_code"][0] == "07093"


def test_meta_sheet_is_read(tmp_path):
    raw = read_workbook(_render(tmp_path, {}), SPEC)
    assert raw.meta == {
        "template_id": "tthtcd-6thang",
        "template_version": "1",
        "unit_code": "07093",
        "period": "2020-H1",
    }


def _edit(path: Path, fn) -> Path:
    wb = openpyxl.load_workbook(path)
    fn(wb)
    wb.save(path)
    return path


def test_inserted_rows_and_columns_are_followed(tmp_path):
    path = _render(tmp_path, plausible("07096"))

    def edit(wb):
        wb["Thông tin chung"].insert_rows(3, amount=2)
        wb["Kết quả hoạt động"].insert_rows(8)
        wb["Kết quả hoạt động"].insert_cols(1)
        wb["Hiệu quả"].delete_rows(2)

    got = cells(_edit(path, edit))
    want = plausible("07096")
    assert got["households"][1] == "B11" and got["households"][0] == want["households"]
    assert got["economy.participants"][0] == want.get("economy.participants", "")
    assert got["economy.participants"][1] == "E13"
    assert got["learners"][1] == "B5" and got["learners"][0] == want["learners"]


def test_labels_in_nfd_other_case_and_spaces_and_renamed_sheet(tmp_path):
    path = _render(tmp_path, plausible("07099"))

    def edit(wb):
        ws = wb["Thông tin chung"]
        for row in ws.iter_rows(min_col=6, max_col=6):
            row[0].value = None  # the hidden ids are gone too
        ws.insert_rows(5)
        for row in ws.iter_rows(min_col=1, max_col=1, min_row=6):
            if isinstance(row[0].value, str):
                row[0].value = "  " + unicodedata.normalize("NFD", row[0].value.upper()) + " "
        wb["Hiệu quả"].title = unicodedata.normalize("NFD", "hiệu quả ")

    got = cells(_edit(path, edit))
    assert got["households"] == (plausible("07099")["households"], "B10")
    assert got["literacy_rate"][0] == plausible("07099")["literacy_rate"]


def test_a_field_that_cannot_be_found_is_a_problem_not_a_crash(tmp_path):
    path = _render(tmp_path, plausible("07096"))

    def edit(wb):
        ws = wb["Thông tin chung"]
        ws.delete_rows(DEF.fields["households"].row)

    raw = read_workbook(_edit(path, edit), SPEC)
    assert Finding("field-missing", sheet="Thông tin chung", cell="", field="households") in raw.problems


def test_another_workbook_is_not_the_template(tmp_path):
    path = tmp_path / "other.xlsx"
    wb = xlsxwriter.Workbook(path)
    wb.add_worksheet("Sheet1").write("A1", "Báo cáo tài chính")
    wb.close()
    raw = read_workbook(path, SPEC)
    assert [p.rule for p in raw.problems] == ["not-template"] and raw.cells == []


def test_other_template_id_is_not_the_template(tmp_path):
    path = _render(tmp_path, {})
    _edit(path, lambda wb: wb["_tonghop"].cell(1, 2, "bao-cao-khac"))
    assert [p.rule for p in read_workbook(path, SPEC).problems] == ["not-template"]


def test_percent_formatted_fraction_is_flagged(tmp_path):
    path = _render(tmp_path, plausible("07096"))

    def edit(wb):
        c = wb["Hiệu quả"][DEF.fields["waste_collection_rate"].cell]
        c.value, c.number_format = 0.92, "0%"
        wb["Hiệu quả"][DEF.fields["cultural_family_rate"].cell].value = 0.5

    raw = read_workbook(_edit(path, edit), SPEC)
    flags = {fid: (v, pct) for fid, v, _, pct, _ in raw.cells}
    assert flags["waste_collection_rate"] == (0.92, True)
    assert flags["cultural_family_rate"] == (0.5, False)


@pytest.mark.soffice
@pytest.mark.parametrize("fmt", ["xls", "ods"])
def test_files_saved_by_libreoffice(tmp_path, fmt, soffice_convert):
    values = dict(DUC_CHINH)
    src = _render(tmp_path, {k: v for k, v in values.items() if k != "total.participants"})
    _edit(src, lambda wb: wb["Kết quả hoạt động"].__setitem__("D16", "8.28") or None)
    converted = soffice_convert(src, fmt, tmp_path / "out")
    got = cells(converted)
    assert got["households"][0] == "2.379"
    assert got["total.participants"][0] == "8.28"
    # LibreOffice stored the formula's result; its SUM skips the text "02", "03" (the validation catches that)
    assert float(got["total.classes"][0]) == 10
    assert read_workbook(converted, SPEC).meta["unit_code"] == "07093"


def _typed_as_text(tmp_path: Path) -> Path:
    """Đức Chính's figures as the seed types them ("02", "03" as text under the template's SUM formulas)
    and "8.28" typed over the participants total's formula; saved by openpyxl (no cached results)."""
    src = _render(tmp_path, {k: v for k, v in DUC_CHINH.items() if k != "total.participants"})
    return _edit(src, lambda wb: wb["Kết quả hoạt động"].__setitem__("D16", "8.28") or None)


@pytest.mark.parametrize("fmt", ["openpyxl", "xlsx", "xls", "ods"])
def test_total_formulas_are_told_from_totals_typed_over_them(tmp_path, fmt, request):
    """Whoever saved the file (openpyxl: no cached results; LibreOffice: results cached, 10 for the classes
    whose parts are partly text), a total cell still holding the template's formula is a formula and the
    one typed over is not; check then reports the typed total only, and one warning for the text."""
    from pipeline.intake.reading import ReadOptions
    from pipeline.wiring import check_files

    path = _typed_as_text(tmp_path)
    if fmt != "openpyxl":
        path = request.getfixturevalue("soffice_convert")(path, fmt, tmp_path / "out")
    formulas = {fid: formula for fid, _, _, _, formula in read_workbook(path, SPEC).cells if formula}
    assert set(formulas) >= {"total.classes"} and "total.participants" not in formulas
    findings = check_files([path], DEF, load_units(), period="2020-H1",
                           options=ReadOptions(isolate=False)).findings
    got = set(zip(findings["cell"], findings["rule"], strict=True))
    assert ("D16", "total-mismatch") in got and ("C16", "total-mismatch") not in got
    assert ("C9", "numbers-as-text") in got
