"""pipeline.writers.worksheet: text shaped like rich-text XML stays text; formulas are prepared once."""

from __future__ import annotations

import io

import openpyxl
import pytest
import xlsxwriter
from python_calamine import CalamineWorkbook
from xlsxwriter.worksheet import Worksheet as PlainWorksheet

from pipeline.writers.district import SHEETS, write_district_workbook
from pipeline.writers.template import render_workbook
from pipeline.writers.worksheet import MAX_TEXT, Worksheet

RICH_SHAPED = ["<r>abc</r>", "<r>x</r><r><t>evil</t></r>", "<r></r></si><si><t>giả</t></si><si><r></r>",
               "<r> lề &amp; _x0041_ \x01</r>", "<r></r>"]


def _read_back(data: bytes, sheet: str = "T") -> tuple[list, list]:
    """(openpyxl values, calamine values) of column A."""
    wb = openpyxl.load_workbook(io.BytesIO(data))
    by_openpyxl = [r[0] for r in wb[sheet].iter_rows(values_only=True)]
    by_calamine = [r[0] for r in CalamineWorkbook.from_filelike(io.BytesIO(data)).get_sheet_by_name(sheet)
                   .to_python()]
    return by_openpyxl, by_calamine


@pytest.mark.parametrize("constant_memory", [False, True])
def test_text_shaped_like_rich_xml_reads_back_as_written(constant_memory):
    """xlsxwriter alone writes these strings unescaped (an invalid or shifted shared-string table)."""
    buf = io.BytesIO()
    wb = xlsxwriter.Workbook(buf, {"in_memory": not constant_memory, "constant_memory": constant_memory})
    ws = wb.add_worksheet("T", worksheet_class=Worksheet)
    texts = [*RICH_SHAPED, "after", "<r>x</r>"]
    for r, text in enumerate(texts):
        assert ws.write_string(r, 0, text) == 0
    ws.merge_range(len(texts), 0, len(texts), 2, "<r>gộp</r>")
    wb.close()
    by_openpyxl, by_calamine = _read_back(buf.getvalue())
    expected = [*texts, "<r>gộp</r>"]
    assert by_calamine == expected
    # openpyxl leaves _xHHHH_ escapes in rich runs as they are (Excel and calamine undo them)
    assert [a for a, b in zip(by_openpyxl, expected, strict=True) if "_x" not in b] == [
        b for b in expected if "_x" not in b]


def test_a_rich_shaped_text_beyond_excels_limit_is_cut_and_counted():
    buf = io.BytesIO()
    wb = xlsxwriter.Workbook(buf, {"in_memory": True})
    ws = wb.add_worksheet("T", worksheet_class=Worksheet)
    long = "<r>" + "<&>" * 12_000 + "</r>"
    assert ws.write_string(0, 0, long) == -2
    assert ws.write_string(1, 0, "<r>" + "ạ" * 32_000 + "</r>") == 0  # fits: not cut
    wb.close()
    by_openpyxl, by_calamine = _read_back(buf.getvalue())
    assert by_calamine[0] == long[:len(by_calamine[0])] and len(by_calamine[0]) <= MAX_TEXT
    assert by_calamine[1] == by_openpyxl[1] == "<r>" + "ạ" * 32_000 + "</r>"


def test_ward_text_shaped_like_rich_xml_in_district_and_feedback_workbooks(definition, tmp_path):
    """A note and a value typed by a ward come out as typed in its feedback workbook and in the
    district workbook's list of findings."""
    import pandas as pd

    from tests.test_district import _kwargs

    path = tmp_path / "fb.xlsx"
    render_workbook(definition, path, period="2020-H1", values={"mobilization_note": RICH_SHAPED[2]})
    field = definition.fields["mobilization_note"]
    sheet = definition.sheet(field.sheet).name
    assert openpyxl.load_workbook(path)[sheet][field.cell].value == RICH_SHAPED[2]
    kwargs = _kwargs(definition)
    findings = kwargs["findings"].copy()
    findings.loc[0, "value"] = RICH_SHAPED[1]
    findings.loc[0, "file"] = RICH_SHAPED[0]
    write_district_workbook(tmp_path / "d.xlsx", definition, **(kwargs | {"findings": findings}))
    rows = CalamineWorkbook.from_path(str(tmp_path / "d.xlsx")).get_sheet_by_name(SHEETS[2]).to_python()
    shown = pd.DataFrame(rows[1:], columns=rows[0])
    assert RICH_SHAPED[1] in shown["Giá trị đã ghi"].tolist()
    assert RICH_SHAPED[0] in shown["Tệp"].tolist()


def test_formulas_are_prepared_once_and_as_xlsxwriter_prepares_them(definition, tmp_path, monkeypatch):
    """The same text as a plain worksheet gives, and a second district workbook of the run (the same
    WriterCache) prepares none of its formulas again (a failure here can mean xlsxwriter renamed the
    method the class overrides)."""
    from pipeline.writers.cache import WriterCache
    from tests.test_district import _kwargs

    for formula, future in (('"Đạt"', True), ("=SUM(D2:D15)", False), ("=XLOOKUP(A1,B:B,C:C)", False),
                            ("=STDEV.S(A1:A3)", True), ("{=SUM(A1:A2)}", False)):
        ours, theirs = Worksheet(), PlainWorksheet()
        ours.formulas = {}
        assert ours._prepare_formula(formula, future) == theirs._prepare_formula(formula, future)
        assert ours._prepare_formula(formula, future) == theirs._prepare_formula(formula, future)  # kept
    cache = WriterCache()
    calls = []
    plain = PlainWorksheet._prepare_formula
    monkeypatch.setattr(PlainWorksheet, "_prepare_formula",
                        lambda self, *a: calls.append(a) or plain(self, *a))
    write_district_workbook(tmp_path / "a.xlsx", definition, **_kwargs(definition), cache=cache)
    first = len(calls)
    assert first >= 6  # the two SUMs of "Theo đơn vị" and the status colours of two sheets
    assert len(cache.formulas) == first
    write_district_workbook(tmp_path / "b.xlsx", definition, **_kwargs(definition), cache=cache)
    assert len(calls) == first
    a, b = (openpyxl.load_workbook(tmp_path / n) for n in ("a.xlsx", "b.xlsx"))
    rules = [[(str(r.sqref), [x.formula for x in r.rules]) for r in wb[SHEETS[3]].conditional_formatting]
             for wb in (a, b)]
    assert rules[0] == rules[1] and any('"Đạt"' in str(f) for _, f in rules[0])
    assert a[SHEETS[1]]["D5"].value == b[SHEETS[1]]["D5"].value
