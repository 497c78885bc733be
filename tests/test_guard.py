"""pipeline.intake.guard: every file is crafted here in tmp_path, and none is handed to a reader in this
process."""

from __future__ import annotations

import hashlib
import io
import shutil
import struct
import subprocess
import time
import zipfile
from pathlib import Path

import olefile
import pytest
import xlsxwriter
import xlwt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.intake.guard import Limits, Problem, Verdict, inspect_file

MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" ContentType="{main}"/>'
    "</Types>"
)
XLSX_MAIN = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"
XLSM_MAIN = "application/vnd.ms-excel.sheet.macroEnabled.main+xml"
ODS_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?><office:document-content '
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2">'
    "<office:body><office:spreadsheet>"
)
ODS_TAIL = "</office:spreadsheet></office:body></office:document-content>"
VALUE = '<table:table-cell office:value-type="float" office:value="1"><text:p>1</text:p></table:table-cell>'


def write_xlsx(path: Path, sheet_data: str, *, extra: dict[str, bytes] | None = None, main: str = XLSX_MAIN,
               sheet_target: str = "worksheets/sheet1.xml", before: str = "") -> Path:
    """A minimal xlsx whose one sheet ("Biểu 1") holds `sheet_data` as raw XML inside <sheetData>."""
    sheet = (f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{MAIN_NS}">{before}'
             f"<sheetData>{sheet_data}</sheetData></worksheet>")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", CONTENT_TYPES.format(main=main))
        z.writestr("_rels/.rels", '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/'
                   'relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
                   'officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>'
                   "</Relationships>")
        z.writestr("xl/workbook.xml", f'<workbook xmlns="{MAIN_NS}" xmlns:r="http://schemas.openxmlformats.org/'
                   'officeDocument/2006/relationships"><sheets><sheet name="Biểu 1" sheetId="1" r:id="rId1"/>'
                   "</sheets></workbook>")
        z.writestr("xl/_rels/workbook.xml.rels", '<Relationships xmlns="http://schemas.openxmlformats.org/'
                   'package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
                   f'officeDocument/2006/relationships/worksheet" Target="{sheet_target}"/></Relationships>')
        z.writestr("xl/" + sheet_target, sheet)
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return path


def write_ods(path: Path, tables: str, *, manifest_extra: str = "",
              extra: dict[str, bytes] | None = None) -> Path:
    """A minimal ods: mimetype first and stored, manifest, content.xml with `tables` in the spreadsheet."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.spreadsheet",
                   compress_type=zipfile.ZIP_STORED)
        z.writestr("META-INF/manifest.xml", '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:'
                   'opendocument:xmlns:manifest:1.0"><manifest:file-entry manifest:full-path="/" '
                   'manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>'
                   f'<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml">'
                   f"{manifest_extra}</manifest:file-entry></manifest:manifest>")
        z.writestr("content.xml", ODS_HEAD + tables + ODS_TAIL)
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return path


def write_normal_xlsx(path: Path) -> Path:
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("Biểu 1")
    ws.write("A1", "Tên đơn vị")
    ws.write("B2", 2379)
    ws.write("C3", 785.87)
    ws.write_formula("D4", "=B2*2")
    wb.add_worksheet("Trống")
    wb.close()
    return path


def rules(verdict: Verdict) -> list[str]:
    return [p.rule for p in verdict.problems]


def only(verdict: Verdict, rule: str) -> Problem:
    assert rules(verdict) == [rule], verdict
    return verdict.problems[0]


# --- what the file is -----------------------------------------------------------------------------

def test_zero_bytes_is_empty(tmp_path):
    path = tmp_path / "bao-cao.xlsx"
    path.write_bytes(b"")
    verdict = inspect_file(path)
    assert only(verdict, "file-empty") and verdict.kind == "" and not verdict.readable


def test_normal_xlsxwriter_workbook_is_readable(tmp_path):
    path = write_normal_xlsx(tmp_path / "bao-cao.xlsx")
    digest = hashlib.sha256(path.read_bytes()).digest()
    mtime = path.stat().st_mtime_ns
    verdict = inspect_file(path)
    assert verdict == Verdict("xlsx", ()) and verdict.readable
    assert hashlib.sha256(path.read_bytes()).digest() == digest and path.stat().st_mtime_ns == mtime


def test_truncated_xlsx(tmp_path):
    whole = write_normal_xlsx(tmp_path / "whole.xlsx").read_bytes()
    path = tmp_path / "bao-cao.xlsx"
    path.write_bytes(whole[: len(whole) // 2])
    verdict = inspect_file(path)
    assert only(verdict, "file-truncated") and not verdict.readable


def test_docx_renamed_xlsx(tmp_path):
    path = tmp_path / "bao-cao.xlsx"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", "<w:document/>")
    verdict = inspect_file(path)
    assert only(verdict, "file-not-workbook").detail == "tệp Word .docx" and verdict.kind == ""


@pytest.mark.parametrize(("name", "content", "detail"), [
    ("bao-cao.xlsx", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n", "tệp PDF"),
    ("bao-cao.xls", "Mã đơn vị;Số lớp;Số học sinh\n07072;12;2.379\n".encode(), "tệp văn bản/CSV"),
    ("bao-cao.xls", b"T\xean \xf0\xf5n vi\xf2,S\xf4\xec l\xf5\xecp\n07072,12\n", "tệp văn bản/CSV"),  # cp1258
    ("bao-cao.xls", b"\xff\xfe" + "Mã\tSố\n".encode("utf-16-le"), "tệp văn bản/CSV"),
    ("bao-cao.xls", b"<html><body><table><tr><td>1</td></tr></table></body></html>", "tệp HTML (trang web)"),
    ("bao-cao.xlsx", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "tệp ảnh"),
    ("bao-cao.xlsx", b"Rar!\x1a\x07\x01\x00", "tệp nén RAR"),
])
def test_not_a_workbook(tmp_path, name, content, detail):
    path = tmp_path / name
    path.write_bytes(content)
    verdict = inspect_file(path)
    assert only(verdict, "file-not-workbook").detail == detail and verdict.kind == ""


def test_other_zip_is_not_a_workbook(tmp_path):
    plain = tmp_path / "a.xlsx"
    with zipfile.ZipFile(plain, "w") as z:
        z.writestr("bao-cao.xlsx", b"PK")
    assert only(inspect_file(plain), "file-not-workbook").detail == "tệp nén .zip"


def test_missing_file_and_directory_never_raise(tmp_path):
    missing = only(inspect_file(tmp_path / "khong-co.xlsx"), "file-unreadable")
    assert missing.detail == "tệp không còn trong thư mục"
    assert only(inspect_file(tmp_path), "file-special").detail == "một thư mục"


# --- passwords and macros -------------------------------------------------------------------------

def test_encrypted_xlsx(tmp_path):
    from msoffcrypto.format.ooxml import OOXMLFile

    plain = write_normal_xlsx(tmp_path / "plain.xlsx")
    out = io.BytesIO()
    with open(plain, "rb") as f:
        OOXMLFile(f).encrypt("1234", out)
    path = tmp_path / "bao-cao.xlsx"
    path.write_bytes(out.getvalue())
    assert path.read_bytes()[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
    verdict = inspect_file(path)
    assert only(verdict, "file-encrypted") and not verdict.readable


def _xls(path: Path, cells: dict[tuple[int, int], object]) -> Path:
    wb = xlwt.Workbook()
    ws = wb.add_sheet("Biểu 1")
    for (r, c), v in cells.items():
        ws.write(r, c, v)
    wb.save(str(path))
    return path


def test_xls_with_filepass_is_encrypted(tmp_path):
    path = _xls(tmp_path / "bao-cao.xls", {(0, 0): 1})
    assert inspect_file(path) == Verdict("xls", ())
    with olefile.OleFileIO(str(path)) as ole:
        stream = bytearray(ole.openstream("Workbook").read())
    pos = 0
    while True:  # turn the globals' WRITEACCESS record into a FILEPASS of the same length
        rtype, rlen = struct.unpack_from("<HH", stream, pos)
        if rtype == 0x005C:
            struct.pack_into("<H", stream, pos, 0x002F)
            break
        pos += 4 + rlen
    with olefile.OleFileIO(str(path), write_mode=True) as ole:
        ole.write_stream("Workbook", bytes(stream))
    verdict = inspect_file(path)
    assert only(verdict, "file-encrypted") and verdict.kind == "xls"


def test_encrypted_ods(tmp_path):
    path = write_ods(tmp_path / "bao-cao.ods", '<table:table table:name="A"/>',
                     manifest_extra='<manifest:encryption-data manifest:checksum-type="SHA1/1K"/>')
    assert only(inspect_file(path), "file-encrypted")


def test_vba_project_is_a_warning(tmp_path):
    path = write_xlsx(tmp_path / "bao-cao.xlsm", '<row r="1"><c r="A1"><v>1</v></c></row>', main=XLSM_MAIN,
                      extra={"xl/vbaProject.bin": b"\xd0\xcf\x11\xe0" + b"\0" * 60})
    verdict = inspect_file(path)
    assert verdict == Verdict("xlsm", (Problem("file-macros"),)) and verdict.readable


def test_xlm_macro_sheet_is_a_warning(tmp_path):
    path = write_xlsx(tmp_path / "bao-cao.xlsx", '<row r="1"><c r="A1"><v>1</v></c></row>', extra={
        "xl/macrosheets/sheet1.xml": b'<xm:macrosheet xmlns:xm="http://schemas.microsoft.com/office/excel/2006'
                                     b'/main"><sheetData/></xm:macrosheet>'})
    verdict = inspect_file(path)
    assert verdict.kind == "xlsm" and rules(verdict) == ["file-macros"] and verdict.readable


def test_ods_basic_macros_are_a_warning(tmp_path):
    path = write_ods(tmp_path / "bao-cao.ods", f'<table:table table:name="A"><table:table-row>{VALUE}'
                     "</table:table-row></table:table>", extra={"Basic/Standard/Module1.xml": b"<x/>"})
    verdict = inspect_file(path)
    assert verdict == Verdict("ods", (Problem("file-macros"),)) and verdict.readable


# --- zip bombs ------------------------------------------------------------------------------------

def test_zip_bomb_is_rejected_fast(tmp_path):
    path = tmp_path / "bao-cao.xlsx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr("[Content_Types].xml", CONTENT_TYPES.format(main=XLSX_MAIN))
        z.writestr("xl/workbook.xml", f'<workbook xmlns="{MAIN_NS}"/>')
        with z.open("xl/worksheets/sheet1.xml", "w") as f:  # 300 MB streamed, never held in memory
            f.write(f'<worksheet xmlns="{MAIN_NS}"><sheetData>'.encode())
            block = b"0" * (1 << 20)
            for _ in range(300):
                f.write(block)
            f.write(b"</sheetData></worksheet>")
    assert path.stat().st_size < 2_000_000
    start = time.perf_counter()
    verdict = inspect_file(path)
    assert time.perf_counter() - start < 2.0
    assert only(verdict, "file-too-large").detail == "một phần giải nén ra 300,0 MB" and not verdict.readable


def test_compression_ratio_and_total_limits(tmp_path):
    path = tmp_path / "bao-cao.xlsx"
    write_xlsx(path, '<row r="1"><c r="A1"><v>1</v></c></row>',
               extra={"xl/media/blank.xml": b" " * 3_000_000})
    assert only(inspect_file(path), "file-too-large").detail.startswith("một phần giải nén ra 2,9 MB từ")
    assert inspect_file(path, Limits(max_ratio=1e9)).readable
    assert only(inspect_file(path, Limits(max_ratio=1e9, max_uncompressed=2_000_000)),
                "file-too-large").detail == "giải nén ra 2,9 MB"


def test_member_inflating_past_its_declared_size_is_refused(tmp_path):
    path = write_xlsx(tmp_path / "bao-cao.xlsx", '<row r="1"><c r="A1"><v>1</v></c></row>' + " " * 50_000)
    data = bytearray(path.read_bytes())
    info = zipfile.ZipFile(path).getinfo("xl/worksheets/sheet1.xml")
    struct.pack_into("<I", data, info.header_offset + 22, 1000)  # local header: uncompressed size
    lied = 0
    pos = 0
    while (pos := data.find(b"PK\x01\x02", pos)) >= 0:  # central directory: the same lie
        name_len = struct.unpack_from("<H", data, pos + 28)[0]
        if data[pos + 46:pos + 46 + name_len] == b"xl/worksheets/sheet1.xml":
            struct.pack_into("<I", data, pos + 24, 1000)
            lied += 1
        pos += 4
    assert lied == 1
    path.write_bytes(bytes(data))
    assert zipfile.ZipFile(path).getinfo("xl/worksheets/sheet1.xml").file_size == 1000
    assert only(inspect_file(path), "file-truncated")


# --- sheets too large for the reader --------------------------------------------------------------

def test_a1_and_xfd1048576(tmp_path):
    path = write_xlsx(tmp_path / "bao-cao.xlsx", '<row r="1"><c r="A1"><v>1</v></c></row>'
                      '<row r="1048576"><c r="XFD1048576"><v>2</v></c></row>')
    assert path.stat().st_size < 2500
    verdict = inspect_file(path)
    assert verdict.problems == (Problem("sheet-too-large", "vùng A1:XFD1048576", "Biểu 1"),)
    assert verdict.kind == "xlsx" and not verdict.readable


@pytest.mark.parametrize("far_cell", [
    '<c r="XFD1048576" t="inlineStr"><is><t>x</t></is></c>',  # an inline string is a value
    "<c r='XFD1048576'><v>2</v></c>",  # single quotes
    '<c  r = "XFD1048576" ><v>2</v></c>',  # odd spacing
    '<c r="xfd1048576"><v>2</v></c>',  # lower case: calamine reads it
    '<c s="3" r="XFD1048576"><v>2</v></c>',  # r not first
    '<c r="A1048576"><f>1+1</f><v>2</v></c>',  # formula with its cached value
    '<c r="GS1"><v>2</v></c>',  # column 201
    '<c r="A5001"><v>2</v></c>',  # row 5001
])
def test_far_valued_cells_in_any_spelling(tmp_path, far_cell):
    path = write_xlsx(tmp_path / "bao-cao.xlsx", f'<row r="1"><c r="A1"><v>1</v></c></row><row>{far_cell}'
                      "</row>")
    assert only(inspect_file(path), "sheet-too-large").sheet == "Biểu 1"


def test_namespace_prefixed_cells(tmp_path):
    path = tmp_path / "bao-cao.xlsx"
    write_xlsx(path, "")
    sheet = (f'<x:worksheet xmlns:x="{MAIN_NS}"><x:sheetData><x:row r="1"><x:c r="A1"><x:v>1</x:v></x:c>'
             '</x:row><x:row r="1048576"><x:c r="XFD1048576"><x:v>2</x:v></x:c></x:row></x:sheetData>'
             "</x:worksheet>")
    _replace_member(path, "xl/worksheets/sheet1.xml", sheet.encode())
    assert only(inspect_file(path), "sheet-too-large").detail == "vùng A1:XFD1048576"


def test_cells_without_r_take_implicit_positions(tmp_path):
    wide = "<row>" + "<c><v>1</v></c>" * 201 + "</row>"
    verdict = inspect_file(write_xlsx(tmp_path / "a.xlsx", wide))
    assert only(verdict, "sheet-too-large").detail == "vùng A1:GS1"
    narrow = "<row>" + "<c><v>1</v></c>" * 200 + "</row>"
    assert inspect_file(write_xlsx(tmp_path / "b.xlsx", narrow)).readable
    after = '<row r="4999"><c r="A4999"><v>1</v></c></row>' + "<row><c><v>1</v></c></row>" * 2
    verdict = inspect_file(write_xlsx(tmp_path / "c.xlsx", after))
    assert only(verdict, "sheet-too-large").detail == "vùng A1:A5001"


@pytest.mark.parametrize("far_cell", [
    '<c r="XFD1048576" s="1"/>',  # a style only
    '<c r="XFD1048576" s="1"></c>',
    '<c r="XFD1048576"><v></v></c>',  # an empty value
    '<c r="XFD1048576"><f>1+1</f></c>',  # a formula never calculated
])
def test_far_cells_without_value_are_ignored_like_calamine_does(tmp_path, far_cell):
    path = write_xlsx(tmp_path / "bao-cao.xlsx", f'<row r="1"><c r="A1"><v>1</v></c></row>'
                      f'<row r="1048576" spans="1:16384">{far_cell}</row>')
    assert inspect_file(path) == Verdict("xlsx", ())


def test_a_lying_dimension_alone_is_fine(tmp_path):
    # measured: python-calamine 0.9.1 ignores <dimension>; the grid spans the valued cells only
    path = write_xlsx(tmp_path / "bao-cao.xlsx", '<row r="1"><c r="A1"><v>1</v></c></row>',
                      before='<dimension ref="A1:XFD1048576"/>')
    assert inspect_file(path) == Verdict("xlsx", ())


def test_sheet_outside_xl_worksheets_is_scanned(tmp_path):
    path = write_xlsx(tmp_path / "bao-cao.xlsx", '<row r="1048576"><c r="XFD1048576"><v>2</v></c></row>',
                      sheet_target="hidden/data.xml")
    assert only(inspect_file(path), "sheet-too-large").sheet == "Biểu 1"


def test_limits_are_configurable(tmp_path):
    path = write_xlsx(tmp_path / "bao-cao.xlsx", '<row r="120"><c r="Z120"><v>1</v></c></row>')
    assert inspect_file(path).readable
    assert only(inspect_file(path, Limits(max_rows=100)), "sheet-too-large").detail == "vùng A1:Z120"
    assert only(inspect_file(path, Limits(max_cols=25)), "sheet-too-large").detail == "vùng A1:Z120"


def test_xls_cells_beyond_the_limits(tmp_path):
    assert inspect_file(_xls(tmp_path / "a.xls", {(0, 0): 1, (99, 9): "x"})) == Verdict("xls", ())
    verdict = inspect_file(_xls(tmp_path / "b.xls", {(0, 0): 1, (65535, 255): 2.5}))
    assert verdict.problems == (Problem("sheet-too-large", "vùng A1:IV65536", "Biểu 1"),)
    blank = xlwt.Workbook()
    ws = blank.add_sheet("S")
    ws.write(0, 0, 1)
    ws.write(65535, 255, None, xlwt.easyxf("font: bold on"))  # BLANK: styled, no value
    blank.save(str(tmp_path / "c.xls"))
    assert inspect_file(tmp_path / "c.xls") == Verdict("xls", ())


def _replace_member(path: Path, name: str, data: bytes) -> None:
    with zipfile.ZipFile(path) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    members[name] = data
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in members.items():
            z.writestr(n, d)


# --- ods repeats ----------------------------------------------------------------------------------

def test_ods_valued_cell_repeated_99_million_times(tmp_path):
    path = write_ods(tmp_path / "bao-cao.ods", '<table:table table:name="Biểu 1">'
                     '<table:table-row table:number-rows-repeated="9900"><table:table-cell '
                     'office:value-type="float" office:value="1" table:number-columns-repeated="10000">'
                     "<text:p>1</text:p></table:table-cell></table:table-row></table:table>")
    assert path.stat().st_size < 1000
    verdict = inspect_file(path)
    assert verdict.problems == (Problem("sheet-too-large", "một ô lặp lại 99.000.000 lần", "Biểu 1"),)


def test_ods_valued_cell_far_away_after_empty_repeats(tmp_path):
    path = write_ods(tmp_path / "bao-cao.ods", f'<table:table table:name="A"><table:table-row>{VALUE}'
                     '</table:table-row><table:table-row table:number-rows-repeated="1048574">'
                     '<table:table-cell table:number-columns-repeated="16384"/></table:table-row>'
                     '<table:table-row><table:table-cell table:number-columns-repeated="16383"/>'
                     f"{VALUE}</table:table-row></table:table>")
    assert only(inspect_file(path), "sheet-too-large").detail == "vùng A1:XFD1048576"


def test_libreoffice_like_empty_repeats_are_readable(tmp_path):
    # what LibreOffice writes at the end of every sheet: empty cells and rows repeated to the sheet's edge
    path = write_ods(tmp_path / "bao-cao.ods",
                     '<table:table table:name="Biểu 1">'
                     '<table:table-column table:number-columns-repeated="16384"/>'
                     f'<table:table-row>{VALUE}<table:table-cell table:number-columns-repeated="16383"/>'
                     '</table:table-row><table:table-row table:number-rows-repeated="1048574">'
                     '<table:table-cell table:style-name="ce1" table:number-columns-repeated="16384"/>'
                     '</table:table-row><table:table-row>'
                     '<table:table-cell table:number-columns-repeated="16384"/></table:table-row>'
                     '</table:table><table:table table:name="Trống"><table:table-row '
                     'table:number-rows-repeated="1048576"><table:table-cell/></table:table-row></table:table>')
    assert inspect_file(path) == Verdict("ods", ())


def test_ods_small_valued_repeats_are_fine(tmp_path):
    five = ('<table:table-cell office:value-type="float" office:value="0" table:number-columns-repeated="5">'
            "<text:p>0</text:p></table:table-cell>")
    path = write_ods(tmp_path / "bao-cao.ods", f'<table:table table:name="A"><table:table-row '
                     f'table:number-rows-repeated="20">{five}</table:table-row></table:table>')
    assert inspect_file(path) == Verdict("ods", ())


@pytest.mark.soffice
@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice (soffice) is not on PATH")
def test_ods_saved_by_libreoffice_is_readable(tmp_path):
    source = write_normal_xlsx(tmp_path / "bao-cao.xlsx")
    profile = (tmp_path / "lo-profile").as_uri()  # a private profile: other soffice runs may be going on
    subprocess.run(["soffice", f"-env:UserInstallation={profile}", "--headless", "--convert-to", "ods",
                    "--outdir", str(tmp_path / "out"), str(source)],
                   check=True, capture_output=True, timeout=120)
    path = tmp_path / "out" / "bao-cao.ods"
    with zipfile.ZipFile(path) as z:
        assert b"number-columns-repeated" in z.read("content.xml")
    assert inspect_file(path) == Verdict("ods", ())


# --- robustness and speed -------------------------------------------------------------------------

@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=3000), cut=st.integers(min_value=0, max_value=3000),
       flip=st.integers(min_value=0, max_value=3000))
def test_never_raises_on_damaged_files(tmp_path, data, cut, flip):
    base = (tmp_path / "base.xlsx")
    if not base.exists():
        write_xlsx(base, '<row r="1"><c r="A1"><v>1</v></c></row>')
    good = bytearray(base.read_bytes())
    if flip < len(good):
        good[flip] ^= 0xFF
    for content in (bytes(good[:cut] + data), bytes(good), data):
        path = tmp_path / "x.xlsx"
        path.write_bytes(content)
        verdict = inspect_file(path)
        assert isinstance(verdict, Verdict) and all(isinstance(p, Problem) for p in verdict.problems)


# --- chunk boundaries: the streaming scan agrees with a whole-document reference -------------------

LIMITS = Limits(max_rows=40, max_cols=12, max_repeat=60)
CELL_BODIES = {"v": "<v>7</v>", "is": "<is><t>{pad}</t></is>", "fv": "<f>A1*2</f><v>14</v>",
               "f": "<f>A1*2</f>", "emptyv": "<v></v>", "style": None}


def _col_letters(n: int) -> str:
    out = ""
    while n:
        n, rem = divmod(n - 1, 26)
        out = chr(65 + rem) + out
    return out


def _reference_xlsx_extent(sheet_xml: str) -> tuple[int, int]:
    """(last row, last column) of the valued cells, positions as calamine takes them, from a full parse."""
    import re as re_
    import xml.etree.ElementTree as ET

    ns = "{" + MAIN_NS + "}"
    row = col = max_row = max_col = 0
    for r in ET.fromstring(sheet_xml).iter(ns + "row"):
        row = int(r.get("r")) if r.get("r") else row + 1
        col = 0
        for c in r.iter(ns + "c"):
            ref = re_.fullmatch(r"([A-Z]+)(\d+)", c.get("r") or "")
            if ref:
                col = sum((ord(ch) - 64) * 26**i for i, ch in enumerate(reversed(ref.group(1))))
                cell_row = int(ref.group(2))
            else:
                col, cell_row = col + 1, row
            v = c.find(ns + "v")
            if c.find(ns + "is") is not None or (v is not None and v.text):
                max_row, max_col = max(max_row, cell_row), max(max_col, col)
    return max_row, max_col


@st.composite
def sheets(draw):
    """Sheet XML as writers spell it (mostly <c r="A1">) and as crafted files may (no r, other spellings)."""
    canonical = draw(st.booleans())  # half the sheets only as Excel writes them: the fast path decides
    rows, row_no = [], 0
    for _ in range(draw(st.integers(1, 8))):
        row_no = draw(st.one_of(st.just(row_no + 1), st.integers(1, 60)))
        cells, col = [], 0
        for _ in range(draw(st.integers(0, 6))):
            col = draw(st.one_of(st.just(col + 1), st.integers(1, 20)))
            explicit = canonical or draw(st.booleans())
            spelling = '<c r="{ref}"{s}>' if canonical else draw(
                st.sampled_from(['<c r="{ref}"{s}>', '<c s="1" r="{ref}">', "<c r='{ref}'{s}>"]))
            ref = f"{_col_letters(col)}{row_no}"
            head = spelling.format(ref=ref, s=' s="2"') if explicit else '<c s="3">'
            body = CELL_BODIES[draw(st.sampled_from(sorted(CELL_BODIES)))]
            pad = "x" * draw(st.integers(0, 40))
            cells.append(head[:-1] + "/>" if body is None else head + body.format(pad=pad) + "</c>")
        explicit_row = canonical or draw(st.booleans())
        rows.append((f'<row r="{row_no}">' if explicit_row else "<row>") + "".join(cells) + "</row>")
    return "".join(rows)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sheet_data=sheets(), chunk=st.integers(7, 120))
def test_xlsx_scan_across_chunk_boundaries(tmp_path, monkeypatch, sheet_data, chunk):
    import pipeline.intake.guard as guard

    monkeypatch.setattr(guard, "_CHUNK", chunk)
    path = write_xlsx(tmp_path / "x.xlsx", sheet_data)
    with zipfile.ZipFile(path) as z:
        rows, cols = _reference_xlsx_extent(z.read("xl/worksheets/sheet1.xml").decode())
    verdict = inspect_file(path, LIMITS)
    if rows > LIMITS.max_rows or cols > LIMITS.max_cols:
        detail = f"vùng A1:{_col_letters(cols)}{rows}"
        assert verdict.problems == (Problem("sheet-too-large", detail, "Biểu 1"),)
    else:
        assert verdict == Verdict("xlsx", ())


def _reference_ods(content_xml: str, lim: Limits) -> list[Problem]:
    import xml.etree.ElementTree as ET

    t = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"
    o = "{urn:oasis:names:tc:opendocument:xmlns:office:1.0}"
    out = []
    for table in ET.fromstring(content_xml).iter(t + "table"):
        row0, max_row, max_col, repeat = 0, 0, 0, None
        for row in table.iter(t + "table-row"):
            row_rep = int(row.get(t + "number-rows-repeated", "1"))
            col0 = 0
            for cell in row:
                if cell.tag not in (t + "table-cell", t + "covered-table-cell"):
                    continue
                rep = int(cell.get(t + "number-columns-repeated", "1"))
                if repeat is None and (cell.get(o + "value-type") or cell.get(t + "formula")):
                    max_row, max_col = max(max_row, row0 + row_rep), max(max_col, col0 + rep)
                    if rep * row_rep > lim.max_repeat:
                        repeat = f"một ô lặp lại {rep * row_rep:,} lần".replace(",", ".")
                col0 += rep
            row0 += row_rep
        if not repeat and (max_row > lim.max_rows or max_col > lim.max_cols):
            repeat = f"vùng A1:{_col_letters(max_col)}{max_row}"
        if repeat:
            out.append(Problem("sheet-too-large", repeat, table.get(t + "name")))
    return out


@st.composite
def ods_tables(draw):
    tables = []
    for n in range(draw(st.integers(1, 3))):
        rows = []
        for _ in range(draw(st.integers(0, 6))):
            row_rep = draw(st.sampled_from([1, 1, 1, 2, 7, 30, 1048000]))
            cells = []
            for _ in range(draw(st.integers(0, 5))):
                rep = draw(st.sampled_from([1, 1, 1, 3, 11, 16000]))
                rep_attr = f' table:number-columns-repeated="{rep}"' if rep > 1 else ""
                tag = draw(st.sampled_from(["table:table-cell"] * 2 + ["table:covered-table-cell"]))
                kind = draw(st.sampled_from(["empty", "empty", "float", "string", "formula", "text-only"]))
                if kind == "empty":
                    cells.append(f"<{tag}{rep_attr}/>")
                elif kind == "text-only":  # no value-type: calamine leaves it out
                    text = "y" * draw(st.integers(0, 30))
                    cells.append(f"<{tag}{rep_attr}><text:p>{text}</text:p></{tag}>")
                elif kind == "formula":
                    cells.append(f'<{tag} table:formula="of:=1+1"{rep_attr}/>')
                else:
                    cells.append(f'<{tag} office:value-type="{kind}" office:value="1"{rep_attr}>'
                                 f"<text:p>{'z' * draw(st.integers(0, 30))}</text:p></{tag}>")
            row_attr = f' table:number-rows-repeated="{row_rep}"' if row_rep > 1 else ""
            rows.append(f"<table:table-row{row_attr}>{''.join(cells)}</table:table-row>")
        tables.append(f'<table:table table:name="T{n}">{"".join(rows)}</table:table>')
    return "".join(tables)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tables=ods_tables(), chunk=st.integers(7, 120))
def test_ods_scan_across_chunk_boundaries(tmp_path, monkeypatch, tables, chunk):
    import pipeline.intake.guard as guard

    monkeypatch.setattr(guard, "_CHUNK", chunk)
    path = write_ods(tmp_path / "x.ods", tables)
    expected = _reference_ods(ODS_HEAD + tables + ODS_TAIL, LIMITS)
    assert inspect_file(path, LIMITS) == Verdict("ods", tuple(expected))


# --- round two: what used to get past the pre-scan --------------------------------------------------

def _sst(*texts: str) -> bytes:
    items = "".join(f"<si><t>{t}</t></si>" for t in texts)
    return f'<sst xmlns="{MAIN_NS}" count="{len(texts)}" uniqueCount="{len(texts)}">{items}</sst>'.encode()


def _string_cells(n: int, index: int = 0, explicit: bool = True) -> str:
    """n cells naming shared string `index`, 100 to a row (with or without r attributes)."""
    rows = []
    for r in range(1, n // 100 + 2):
        k = min(100, n - (r - 1) * 100)
        if k <= 0:
            break
        cells = "".join((f'<c r="{_col_letters(c)}{r}" t="s">' if explicit else '<c t="s">')
                        + f"<v>{index}</v></c>" for c in range(1, k + 1))
        rows.append(f'<row r="{r}">{cells}</row>')
    return "".join(rows)


@pytest.mark.parametrize("explicit", [True, False], ids=["fast-path", "tokenized"])
@pytest.mark.parametrize(("cells", "refused"), [(300, False), (400, True)])
def test_text_the_cells_expand_to_is_capped(tmp_path, explicit, cells, refused):
    """Apache POI caps extracted text at 10 M characters; here a 32,000-character shared string named by
    300 cells (9.6 M) is read, by 400 (12.8 M) refused: calamine copies the string into every cell."""
    path = write_xlsx(tmp_path / "a.xlsx", _string_cells(cells, 0, explicit), extra={
        "xl/sharedStrings.xml": _sst("ư" * 32_000, "ngắn")})
    verdict = inspect_file(path)
    if refused:
        assert only(verdict, "file-too-large").detail == "chữ trong các ô dài tổng cộng 12.800.000 ký tự"
    else:
        assert verdict == Verdict("xlsx", ())


def test_text_cap_counts_the_string_each_cell_names(tmp_path):
    """Many cells, but naming a short string: the exact count (after the bounds failed) lets them pass."""
    path = write_xlsx(tmp_path / "a.xlsx", _string_cells(2000, 1), extra={
        "xl/sharedStrings.xml": _sst("ư" * 32_000, "ngắn")})
    assert inspect_file(path) == Verdict("xlsx", ())
    assert inspect_file(path, Limits(max_text=8_000)).readable  # 2000 x "ngắn"
    assert only(inspect_file(path, Limits(max_text=7_999)), "file-too-large")


def test_text_cap_for_ods_repeats_and_spaces(tmp_path):
    long = "x" * 1000
    repeated = write_ods(tmp_path / "a.ods", '<table:table table:name="A"><table:table-row '
                         'table:number-rows-repeated="200"><table:table-cell office:value-type="string" '
                         f'table:number-columns-repeated="100"><text:p>{long}</text:p></table:table-cell>'
                         "</table:table-row></table:table>")
    assert only(inspect_file(repeated), "file-too-large").detail.startswith("chữ trong các ô dài tổng cộng")
    spaces = write_ods(tmp_path / "b.ods", '<table:table table:name="A"><table:table-row><table:table-cell '
                       'office:value-type="string"><text:p>a<text:s text:c="+20000000"/>b</text:p>'
                       "</table:table-cell></table:table-row></table:table>")
    assert spaces.stat().st_size < 1000
    assert only(inspect_file(spaces), "file-too-large")
    fine = write_ods(tmp_path / "c.ods", '<table:table table:name="A"><table:table-row><table:table-cell '
                     'office:value-type="string"><text:p>a<text:s text:c="20"/>b</text:p>'
                     "</table:table-cell></table:table-row></table:table>")
    assert inspect_file(fine) == Verdict("ods", ())


def test_text_cap_for_xls_shared_strings(tmp_path):
    """xlwt writes a repeated string once in the SST (split over CONTINUE records) and a LABELSST per cell."""
    long = "ư" * 32_000
    cells = {(r, c): long for r in range(20) for c in range(20)}  # 400 x 32,000 = 12.8 M
    assert only(inspect_file(_xls(tmp_path / "a.xls", cells)), "file-too-large")
    few = {(r, c): long for r in range(10) for c in range(20)}  # 6.4 M
    assert inspect_file(_xls(tmp_path / "b.xls", few | {(50, 0): "ngắn"})) == Verdict("xls", ())


def test_sst_lengths_follow_continue_records():
    from pipeline.intake.guard import _sst_lengths

    def string(text: str, wide: bool) -> bytes:
        body = text.encode("utf-16-le" if wide else "latin-1")
        return struct.pack("<HB", len(text), 1 if wide else 0) + body

    first = struct.pack("<II", 3, 3) + string("ab", False) + struct.pack("<HB", 5, 1)
    first += "xy".encode("utf-16-le")
    second = b"\x00" + b"zzz" + string("q" * 7, True)  # the rest of the 5-character string, now 8-bit
    assert _sst_lengths([first, second]) == [2, 5, 7]


@pytest.mark.parametrize("far_cell", [
    '<c r="A2" r="XFD2500"><v>2</v></c>',  # a second r: calamine takes the later one
    '<c r="A2"r="XFD2500"><v>2</v></c>',  # ... even without a space before it
    '<c r="A2"\tr="XFD2500"><v>2</v></c>',
    '<c s=">" r="XFD2500"><v>2</v></c>',  # a ">" inside another attribute
    '<c r="A2" s="1>" r="XFD2500"><v>2</v></c>',
    '<ư:c xmlns:ư="' + MAIN_NS + '" r="XFD2500"><ư:v>2</ư:v></ư:c>',  # a non-ASCII prefix
    '<ư:c r="XFD2500"><ư:v>2</ư:v></ư:c>',  # ... not even declared (calamine does not care)
    '<c r="XFD2500"><!-- a comment --><v>2</v></c>',
])
def test_far_cells_the_patterns_missed(tmp_path, far_cell):
    """Each adds one far cell to a valid sheet; calamine builds the whole grid for it (1.6 GB)."""
    path = write_xlsx(tmp_path / "a.xlsx", f'<row r="1"><c r="A1"><v>1</v></c></row><row r="2">{far_cell}'
                      "</row>")
    verdict = inspect_file(path)
    assert not verdict.readable, verdict
    assert rules(verdict) in (["sheet-too-large"], ["file-unreadable"])  # found, or not XML at all


def test_cell_rows_numbered_0_or_odd_never_break_the_scan(tmp_path):
    for ref in ("A0", "0", "1A", "A-1", "A1.5", "ÀB7", "A" + "9" * 40):
        cell = f'<x:c xmlns:x="{MAIN_NS}" r="{ref}"><x:v>1</x:v></x:c>'  # (prefixed: tokenized)
        path = write_xlsx(tmp_path / "a.xlsx", f'<row r="1">{cell}</row>')
        verdict = inspect_file(path)
        assert all(p.rule in ("sheet-too-large",) for p in verdict.problems), (ref, verdict)


def test_member_names_in_any_case_are_scanned(tmp_path):
    path = write_xlsx(tmp_path / "a.xlsx", '<row r="1"><c r="A1"><v>1</v></c></row>')
    with zipfile.ZipFile(path) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    members["XL/WORKSHEETS/SHEET1.XML"] = members.pop("xl/worksheets/sheet1.xml").replace(
        b'<c r="A1"><v>1</v></c>', b'<c r="A1"><v>1</v></c><c r="XFD9"><v>1</v></c>')
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    assert only(inspect_file(path), "sheet-too-large").detail == "vùng A1:XFD9"


@pytest.mark.parametrize("attr", ["table:number-columns-repeated", "table:number-rows-repeated"])
def test_ods_repeat_counts_with_a_plus(tmp_path, attr):
    """calamine parses "+16384" as Rust's usize does: 16384."""
    cell = ('<table:table-cell office:value-type="float" office:value="1" {}><text:p>1</text:p>'
            "</table:table-cell>")
    if attr.endswith("columns-repeated"):
        body = f'<table:table-row>{cell.format(attr + "=" + chr(34) + "+16384" + chr(34))}</table:table-row>'
    else:
        body = f'<table:table-row {attr}="+1048576">{cell.format("")}</table:table-row>'
    path = write_ods(tmp_path / "a.ods", f'<table:table table:name="A">{body}</table:table>')
    assert only(inspect_file(path), "sheet-too-large").sheet == "A"


def test_ods_valued_cell_without_value_type(tmp_path):
    path = write_ods(tmp_path / "a.ods", '<table:table table:name="A"><table:table-row>'
                     '<table:table-cell table:number-columns-repeated="300"/>'
                     '<table:table-cell office:value="1"/>'
                     "</table:table-row></table:table>")
    assert only(inspect_file(path), "sheet-too-large").detail == "vùng A1:KO1"


@pytest.mark.parametrize("explicit", [True, False], ids=["fast-path", "tokenized"])
def test_cells_are_capped_per_workbook(tmp_path, explicit):
    """Twelve sheets of empty cells, each within the limits: the cap on cells bounds the scan and the read."""
    def cell(r: int, c: int) -> str:
        return f'<c r="{_col_letters(c)}{r}" s="1"/>' if explicit else '<c s="1"/>'

    rows = (f'<row r="{r}">' + "".join(cell(r, c) for c in range(1, 11)) + "</row>" for r in range(1, 31))
    sheet = "".join(rows)
    extra = {f"xl/worksheets/sheet{k}.xml": (f'<worksheet xmlns="{MAIN_NS}"><sheetData>{sheet}</sheetData>'
                                            "</worksheet>").encode() for k in range(2, 13)}
    path = write_xlsx(tmp_path / "a.xlsx", sheet, extra=extra)
    assert inspect_file(path) == Verdict("xlsx", ())  # 12 x 300 cells
    assert only(inspect_file(path, Limits(max_cells=3000)), "file-too-large").detail == "có hơn 3.000 ô"
    if not explicit:  # the tokenizer's work is bounded too (the fast path tokenizes nothing)
        detail = only(inspect_file(path, Limits(max_elements=2000)), "file-too-large").detail
        assert detail == "nội dung có hơn 2.000 phần tử XML"


def test_cells_are_capped_in_xls_and_ods(tmp_path):
    xls = _xls(tmp_path / "a.xls", {(r, c): 1 for r in range(50) for c in range(10)})
    assert inspect_file(xls) == Verdict("xls", ())
    assert only(inspect_file(xls, Limits(max_cells=400)), "file-too-large")
    ods = write_ods(tmp_path / "a.ods", '<table:table table:name="A"><table:table-row '
                    'table:number-rows-repeated="50"><table:table-cell office:value-type="float" '
                    'office:value="1" table:number-columns-repeated="10"/>'
                    "</table:table-row></table:table>")
    assert inspect_file(ods) == Verdict("ods", ())
    assert only(inspect_file(ods, Limits(max_cells=400)), "file-too-large")


# --- what other programs read: say what it is and that saving it as .xlsx helps ----------------------

def _copy_zip(src: Path, dst: Path, rename=lambda n: n, drop=(), add: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            if item.filename not in drop:
                zout.writestr(zipfile.ZipInfo(rename(item.filename)), zin.read(item))
        for name, data in (add or {}).items():
            zout.writestr(name, data)
    return dst


def test_workbooks_other_programs_read_are_named_with_what_to_do(tmp_path):
    xlsx = write_normal_xlsx(tmp_path / "normal.xlsx")
    ods = write_ods(tmp_path / "normal.ods", f'<table:table table:name="A"><table:table-row>{VALUE}'
                    "</table:table-row></table:table>")
    cases = {
        "bảng tính được nén bằng đường dẫn kiểu Windows (dấu \\)":
            _copy_zip(xlsx, tmp_path / "bs.xlsx", rename=lambda n: n.replace("/", "\\")),
        "bảng tính OpenDocument thiếu phần khai báo «mimetype»":
            _copy_zip(ods, tmp_path / "nomime.ods", drop=("mimetype",)),
        "bảng tính Excel ghi không theo cấu trúc chuẩn":
            _copy_zip(xlsx, tmp_path / "minimal.xlsx", rename=lambda n: n.replace("xl/", "")),
        "bảng tính Excel nhị phân (.xlsb)": _copy_zip(xlsx, tmp_path / "b.xlsb", drop=("xl/workbook.xml",),
                                                       add={"xl/workbook.bin": b"\x83\x01\x00"}),
    }
    for detail, path in cases.items():
        assert only(inspect_file(path), "file-needs-resave").detail == detail, path.name
    xml2003 = tmp_path / "x.xls"
    xml2003.write_bytes(b'<?xml version="1.0"?><Workbook '
                        b'xmlns="urn:schemas-microsoft-com:office:spreadsheet"/>')
    assert only(inspect_file(xml2003), "file-needs-resave").detail == "bảng tính XML của Excel 2003"


def test_a_decoy_workbook_where_rels_point_elsewhere_is_refused(tmp_path):
    """calamine reads the workbook _rels/.rels points to; a harmless xl/workbook.xml beside it is a decoy."""
    src = write_normal_xlsx(tmp_path / "normal.xlsx")
    path = _copy_zip(src, tmp_path / "decoy.xlsx",
                     rename=lambda n: "evil/" + n[3:] if n.startswith("xl/") else n)
    _replace_member(path, "_rels/.rels", zipfile.ZipFile(path).read("_rels/.rels").replace(
        b'Target="xl/workbook.xml"', b'Target="evil/workbook.xml"'))
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("xl/workbook.xml", f'<workbook xmlns="{MAIN_NS}"/>')
    assert only(inspect_file(path), "file-needs-resave")


# --- DOCTYPE: refused explicitly, in any part a reader parses ------------------------------------------

DOCTYPE = '<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">]>'


@pytest.mark.parametrize("member", ["xl/sharedStrings.xml", "xl/styles.xml", "xl/workbook.xml",
                                    "xl/worksheets/sheet1.xml", "[Content_Types].xml",
                                    "xl/_rels/workbook.xml.rels"])
def test_doctype_in_any_xml_part_is_refused(tmp_path, member):
    src = write_normal_xlsx(tmp_path / "normal.xlsx")
    data = zipfile.ZipFile(src).read(member).decode()
    head, sep, rest = data.partition("?>")
    path = tmp_path / "dtd.xlsx"
    shutil.copy(src, path)
    _replace_member(path, member, (head + sep + "\n<!-- chú thích -->" + DOCTYPE + rest).encode())
    verdict = inspect_file(path)
    assert only(verdict, "file-doctype").detail == f"phần {member.lower()}"


def test_doctype_in_ods_content_and_utf16_prolog(tmp_path):
    ods = write_ods(tmp_path / "a.ods", '<table:table table:name="A"/>')
    content = zipfile.ZipFile(ods).read("content.xml").decode()
    _replace_member(ods, "content.xml", content.replace("?>", "?>" + DOCTYPE, 1).encode())
    assert only(inspect_file(ods), "file-doctype")
    xlsx = write_normal_xlsx(tmp_path / "b.xlsx")
    styles = zipfile.ZipFile(xlsx).read("xl/styles.xml").decode()
    styles = styles.replace('encoding="UTF-8"', 'encoding="UTF-16"').replace("?>", "?>" + DOCTYPE, 1)
    _replace_member(xlsx, "xl/styles.xml", b"\xff\xfe" + styles.encode("utf-16-le"))
    assert only(inspect_file(xlsx), "file-doctype")


# --- tonghop's own outputs ---------------------------------------------------------------------------

def test_own_outputs_are_known_by_their_metadata_until_saved_again(tmp_path):
    import datetime as dt

    import openpyxl

    from pipeline.intake.guard import OUTPUT_PROPERTY

    path = tmp_path / "07093-duc-chinh.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    wb.set_custom_property(OUTPUT_PROPERTY, "feedback")
    wb.add_worksheet("Góp ý").write("A1", "x")
    wb.close()
    assert only(inspect_file(path), "file-own-output").detail == "tệp phản hồi gửi đơn vị"
    saved = openpyxl.load_workbook(path)  # a ward corrects it and saves: modified moves on
    saved.properties.created = dt.datetime(2020, 6, 1)  # (openpyxl sets modified to now: another second)
    saved.save(tmp_path / "sua.xlsx")
    assert inspect_file(tmp_path / "sua.xlsx").readable


# --- what is not a regular file, and fingerprints ------------------------------------------------------

def test_special_entries_are_refused_without_blocking(tmp_path):
    import socket

    os_fifo = tmp_path / "pipe.xlsx"
    __import__("os").mkfifo(os_fifo)  # opening it for reading would wait for a writer forever
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock.xlsx"))
    (tmp_path / "dangling.xlsx").symlink_to(tmp_path / "gone.xlsx")
    (tmp_path / "loop.xlsx").symlink_to(tmp_path / "loop.xlsx")
    try:
        assert only(inspect_file(os_fifo), "file-special").detail == "một đường ống (FIFO)"
        assert only(inspect_file(tmp_path / "sock.xlsx"), "file-special").detail == "một socket"
        assert "không còn tồn tại" in only(inspect_file(tmp_path / "dangling.xlsx"), "file-special").detail
        assert "vòng quanh" in only(inspect_file(tmp_path / "loop.xlsx"), "file-special").detail
        assert only(inspect_file("/dev/null"), "file-special").detail == "một thiết bị"
    finally:
        sock.close()


def test_fingerprint_of_the_bytes_judged(tmp_path):
    path = write_normal_xlsx(tmp_path / "a.xlsx")
    verdict = inspect_file(path)
    assert verdict.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert verdict.mtime == path.stat().st_mtime
    big = tmp_path / "big.xlsx"
    with big.open("wb") as f:
        f.truncate(60_000_000)  # sparse: never read, never hashed
    assert only(inspect_file(big), "file-too-large") and inspect_file(big).sha256 == ""
