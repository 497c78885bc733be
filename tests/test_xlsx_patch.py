"""xlsx_patch.table_rows: whole columns in, the rows xlsxwriter's constant_memory mode would write out."""

from __future__ import annotations

import io
import math

import xlsxwriter
from hypothesis import given, settings
from hypothesis import strategies as st
from python_calamine import CalamineWorkbook

from pipeline.writers import xlsx_patch

TEXT = st.one_of(st.text(st.characters(blacklist_categories=("Cs",)), max_size=8),
                 st.sampled_from(["Xã A", "a&b<c>", " lề", "_x0041_", "\x00", "\x01x", "Tốt"]))
CELL = st.one_of(st.none(), st.just(""), TEXT, st.floats(allow_infinity=False),
                 st.sampled_from([0.0, -0.0, 828.0, 1e16, 94.34, 3.0000000000000004]))


def _reference(first_row: int, columns) -> str:
    """A cell at a time: no cell for None, "" and NaN; text inline; a number as {:.16G}, -0 as 0."""
    n = len(columns[0][2]) if columns else 0
    rows = []
    for i in range(n):
        r = first_row + i
        cells = []
        for letter, style, values in columns:
            v = values[i]
            if v is None or v == "" or (isinstance(v, float) and math.isnan(v)):
                continue
            if isinstance(v, str):
                cells.append(xlsx_patch.string_cell(f"{letter}{r}", style, v))
            else:
                cells.append(xlsx_patch.number_cell(f"{letter}{r}", style, v + 0.0))
        rows.append(f'<row r="{r}">' + "".join(cells) + "</row>")
    return "".join(rows)


@settings(max_examples=300)
@given(st.integers(1, 5).flatmap(lambda n: st.lists(
    st.tuples(st.sampled_from(["A", "B", "J", "AA"]), st.sampled_from(["", ' s="3"']),
              st.lists(CELL, min_size=n, max_size=n)), min_size=1, max_size=4)), st.integers(1, 1000))
def test_table_rows_is_the_rows_written_a_cell_at_a_time(columns, first_row):
    assert xlsx_patch.table_rows(first_row, columns) == _reference(first_row, columns)


def _spliced(columns: list[tuple[str, str, list]]) -> list[list]:
    """Sheet "T" as calamine reads it back: xlsxwriter writes a header and a placeholder last row,
    xlsx_patch the rows from whole columns."""
    n = len(columns[0][2])
    buf = io.BytesIO()
    wb = xlsxwriter.Workbook(buf, {"in_memory": True})
    ws = wb.add_worksheet("T")
    ws.write_string(0, 0, "head")
    ws.write_number(n, 0, 0)
    wb.close()
    out = io.BytesIO()
    package = xlsx_patch.Package.read(buf.getvalue())
    sheet = package.text("xl/worksheets/sheet1.xml")
    rows = xlsx_patch.table_rows(2, columns)
    package.write(out, {"xl/worksheets/sheet1.xml": xlsx_patch.replace_row(sheet, n + 1, rows)})
    return CalamineWorkbook.from_filelike(io.BytesIO(out.getvalue())).get_sheet_by_name("T").to_python()


def test_table_rows_reads_back_in_a_workbook():
    texts = ["Phường Đức Chính", "\x00 và \x01", "=1+1", "a&b"]
    got = _spliced([("A", "", texts), ("B", "", [828.0, -0.0, None, 1234567.125])])
    assert [r[0] for r in got[1:]] == texts
    assert [r[1] for r in got[1:]] == [828.0, 0.0, "", 1234567.125]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30),
                min_size=1, max_size=8))
def test_spliced_text_reads_back_as_written(texts):
    assert [r[0] for r in _spliced([("A", "", texts)])[1:]] == texts


def test_replace_row_refuses_a_missing_row():
    import pytest

    with pytest.raises(ValueError, match="no row 5"):
        xlsx_patch.replace_row('<sheetData><row r="2"></row></sheetData>', 5, "")


def test_spliced_texts_join_the_shared_strings_xlsxwriter_wrote():
    """Texts already in the table are referred to, new ones appended (escaped as xlsxwriter escapes
    them); count and uniqueCount stay true, and every reader sees the texts typed."""
    import xml.etree.ElementTree as ET

    head = ["Mã", " lề", "a&b"]
    buf = io.BytesIO()
    wb = xlsxwriter.Workbook(buf, {"in_memory": True})
    ws = wb.add_worksheet("T")
    for c, text in enumerate(head):
        ws.write_string(0, c, text)
    ws.write_number(4, 0, 0)
    wb.close()
    package = xlsx_patch.Package.read(buf.getvalue())
    strings = xlsx_patch.SharedStrings(package.text("xl/sharedStrings.xml"))
    assert (strings.refs, strings.unique) == (3, 3)
    texts = ["a&b", "Phường Đức Chính", None, " lề"]
    codes = ["07093", "", "_x0041_ \x01", "07093"]
    rows = xlsx_patch.table_rows(2, [("A", "", texts), ("B", "", codes), ("C", "", [1.5, None, -0.0, 2.0])],
                                 strings)
    assert 't="s"><v>2</v>' in rows and 't="s"><v>1</v>' in rows  # "a&b" and " lề" found again
    sst = strings.xml()
    root = ET.fromstring(sst)
    assert int(root.get("uniqueCount")) == len(root) == 3 + 3  # Phường Đức Chính, 07093, _x0041_ \x01
    assert int(root.get("count")) == 3 + 3 + 3
    sheet = package.text("xl/worksheets/sheet1.xml")
    out = io.BytesIO()
    package.write(out, {"xl/worksheets/sheet1.xml": xlsx_patch.replace_row(sheet, 5, rows),
                        "xl/sharedStrings.xml": sst})
    got = CalamineWorkbook.from_filelike(io.BytesIO(out.getvalue())).get_sheet_by_name("T").to_python()
    assert got[0] == head
    assert [r[0] for r in got[1:]] == ["a&b", "Phường Đức Chính", "", " lề"]
    assert [r[1] for r in got[1:]] == ["07093", "", "_x0041_ \x01", "07093"]
    assert [r[2] for r in got[1:]] == [1.5, "", 0.0, 2.0]
    import openpyxl

    column = [c.value for c in openpyxl.load_workbook(out)["T"]["A"]]
    assert column[1:] == ["a&b", "Phường Đức Chính", None, " lề"]


def test_shared_strings_refuses_what_xlsxwriter_did_not_write():
    import pytest

    with pytest.raises(ValueError):
        xlsx_patch.SharedStrings("<worksheet/>")


def test_row_span_keeps_the_row_tags_xlsxwriter_wrote():
    """Rows 4..6: xlsxwriter wrote two empty rows with heights and a last row with cells; the tags
    keep heights (not spans) and a row it did not write gets a plain tag."""
    xml = ('<sheetData><row r="3"><c r="A3"/></row><row r="4" ht="30" customHeight="1"/>'
           '<row r="6" spans="1:2" ht="15.75" customHeight="1"><c r="A6" s="2"/><c r="B6" s="3"/></row>'
           '<row r="7"><c r="A7"/></row></sheetData>')
    start, end, tags = xlsx_patch.row_span(xml, 4, 6)
    assert xml[start:end].startswith('<row r="4"') and xml[end:].startswith('<row r="7"')
    assert tags == ['<row r="4" ht="30" customHeight="1">', '<row r="5">',
                    '<row r="6" ht="15.75" customHeight="1">']
    rows = xlsx_patch.table_rows(4, [("A", ' s="2"', ["x", None, ""]), ("B", "", [None, 1.0, None])],
                                 row_tags=tags, styled_blanks=True)
    assert rows == ('<row r="4" ht="30" customHeight="1"><c r="A4" s="2" t="inlineStr"><is><t>x</t></is></c>'
                    '</row><row r="5"><c r="A5" s="2"/><c r="B5"><v>1</v></c></row>'
                    '<row r="6" ht="15.75" customHeight="1"><c r="A6" s="2"/></row>')
    import pytest

    with pytest.raises(ValueError, match="no rows 8 to 9"):
        xlsx_patch.row_span(xml, 8, 9)


def _zipfile_written(package: xlsx_patch.Package, replaced: dict[str, str]) -> bytes:
    """The package as zipfile.ZipFile.writestr writes it (level 1): what Package.write must equal."""
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as dst:
        for info, data in package.members:
            entry = zipfile.ZipInfo(info.filename, info.date_time)
            entry.external_attr, entry.compress_type = info.external_attr, zipfile.ZIP_DEFLATED
            new = replaced.get(info.filename)
            dst.writestr(entry, data if new is None else new.encode("utf-8"), compresslevel=1)
    return out.getvalue()


def test_package_write_is_what_zipfile_writes(tmp_path):
    """Package.write lays the archive out itself, keeping the unchanged members deflated once: the bytes
    are zipfile's, the first time and when the deflated members are reused, to a path or a buffer."""
    import zipfile

    buf = io.BytesIO()
    wb = xlsxwriter.Workbook(buf, {"in_memory": True})
    ws = wb.add_worksheet("Trang 1")
    ws.write_string(0, 0, "Đơn vị")
    ws.write_number(1, 0, 828)
    wb.close()
    package = xlsx_patch.Package.read(buf.getvalue())
    sheet = package.text("xl/worksheets/sheet1.xml")
    for replaced in ({}, {"xl/worksheets/sheet1.xml": sheet.replace("828", "829")}, {}):
        ours = io.BytesIO()
        package.write(ours, replaced)
        assert ours.getvalue() == _zipfile_written(package, replaced)
        package.write(tmp_path / "p.xlsx", replaced)
        assert (tmp_path / "p.xlsx").read_bytes() == ours.getvalue()
        with zipfile.ZipFile(tmp_path / "p.xlsx") as z:
            assert z.testzip() is None
    assert package.packed  # the unchanged members were deflated once and kept
