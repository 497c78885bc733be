"""Units lists as offices keep them: every encoding and separator Excel writes, workbooks, codes that
lost their zeros, extra columns; a Vietnamese message naming the rows for every list that cannot be used."""

import re
import unicodedata
import zipfile

import openpyxl
import pytest
import xlsxwriter

from pipeline.definition import DEFAULT_UNITS, DefinitionError
from pipeline.units import UNIT_COLUMNS, UnitsError, load_units

SHIPPED = load_units()
TEXT = DEFAULT_UNITS.read_text(encoding="utf-8")
LINES = TEXT.splitlines()
HEADER, ROWS = LINES[0], LINES[1:]
ENGLISH = re.compile(r"Errno|codec|decode|No columns|Traceback|Error|line \d|expected|field", re.I)


def same_units(df):
    assert df[UNIT_COLUMNS].to_dict("records") == SHIPPED[UNIT_COLUMNS].to_dict("records")
    assert df["slug"].tolist() == SHIPPED["slug"].tolist()


def csv_lines(sep=",", lines=None):
    return "\r\n".join(line.replace(",", sep) for line in (lines or LINES)) + "\r\n"


def cp1258(text: str) -> bytes:
    """Text as a Vietnamese Windows writes it in its "ANSI" code page: â ê ô ơ ư ă đ precomposed, the five
    tones as combining marks after them (the code page has no room for every precomposed letter)."""
    tones = "\u0300\u0301\u0303\u0309\u0323"
    out = []
    for ch in text:
        d = unicodedata.normalize("NFD", ch)
        out.append(unicodedata.normalize("NFC", "".join(c for c in d if c not in tones))
                   + "".join(c for c in d if c in tones))
    return "".join(out).encode("cp1258")


def zeros_lost(line: str) -> str:
    """A row as Excel saves it after reading the codes as numbers: 07069 → 7069."""
    code, rest = line.split(",", 1)
    return f"{int(code)},{rest}"


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("utf-8", csv_lines().encode("utf-8")),
        ("utf-8 with BOM (Excel: CSV UTF-8)", csv_lines().encode("utf-8-sig")),
        ("semicolons (Excel CSV in vi-VN, de-DE...)", csv_lines(";").encode("utf-8-sig")),
        ("Windows-1258 (Excel: CSV, Vietnamese Windows)", cp1258(csv_lines(";"))),
        ("UTF-16 with BOM, tabs (Excel: Unicode Text)", csv_lines("\t").encode("utf-16")),
        ("UTF-16 LE without BOM", csv_lines("\t").encode("utf-16-le")),
        ("UTF-16 BE without BOM", csv_lines(",").encode("utf-16-be")),
        ("LF line ends, blank lines and trailing separators", (csv_lines(";").replace("\r\n", ";;\n")
                                                               + ";;;;;;;;\n\n").encode("utf-8")),
        ("codes that lost their zeros", csv_lines(lines=[HEADER, *map(zeros_lost, ROWS)]).encode("utf-8")),
    ],
)
def test_csv_as_excel_saves_it(tmp_path, name, data):
    path = tmp_path / "don-vi.csv"
    path.write_bytes(data)
    same_units(load_units(path))


def test_restored_codes_are_noted_with_their_rows(tmp_path):
    path = tmp_path / "don-vi.csv"
    path.write_text(csv_lines(lines=[HEADER, zeros_lost(ROWS[0]), *ROWS[1:]]), encoding="utf-8")
    units = load_units(path)
    assert units["unit_code"].iloc[0] == "07069"
    assert units.attrs["notes"] == [f"Danh sách đơn vị «{path}»: đã thêm số 0 ở đầu cho 1 mã đơn vị mà "
                                    "Excel làm mất (dòng 2)."]


def test_codes_all_without_their_zeros_take_the_official_width(tmp_path):
    """Hà Nội's wards are 00001...: a list where all lost their zeros cannot show the width itself."""
    rows = [HEADER, "1,Phúc Xá,phường,1,Quận Ba Đình,1,Thành phố Hà Nội",
            "4,Trúc Bạch,phường,1,Quận Ba Đình,1,Thành phố Hà Nội"]
    path = tmp_path / "ba-dinh.csv"
    path.write_text(csv_lines(lines=rows), encoding="utf-8")
    units = load_units(path)
    assert units[["unit_code", "district_code", "province_code"]].values.tolist() == [
        ["00001", "001", "01"], ["00004", "001", "01"]]


def test_extra_columns_are_kept(tmp_path):
    rows = [HEADER + ",Email", *(r + ",phuong@example.vn; ubnd@example.vn" for r in ROWS)]
    path = tmp_path / "don-vi.csv"
    path.write_text(csv_lines(lines=rows).replace(",phuong@example.vn; ubnd@example.vn",
                                                  ',"phuong@example.vn; ubnd@example.vn"'), encoding="utf-8")
    units = load_units(path)
    same_units(units)
    assert units["email"].iloc[0] == "phuong@example.vn; ubnd@example.vn"
    assert list(units.columns[: len(UNIT_COLUMNS) + 1]) == [*UNIT_COLUMNS, "email"]


def _cells(row: str) -> list:
    cells = row.split(",")
    return [int(c) if c.isdigit() else c for c in cells]  # Excel turns codes into numbers


def test_xlsx_written_by_excel_like_programs(tmp_path):
    """openpyxl with a title row above the header and codes as numbers; xlsxwriter with codes as text."""
    a = tmp_path / "don-vi.xlsx"
    wb = openpyxl.Workbook()
    wb.active.append(["DANH SÁCH ĐƠN VỊ CẤP XÃ"])
    wb.active.append(HEADER.split(","))
    for row in ROWS:
        wb.active.append(_cells(row))
    wb.save(a)
    same_units(load_units(a))

    b = tmp_path / "don-vi-2.xlsx"
    book = xlsxwriter.Workbook(b)
    ws = book.add_worksheet("Đơn vị")
    for r, row in enumerate([HEADER, *ROWS]):
        for c, v in enumerate(row.split(",")):
            ws.write_string(r, c, v)
    book.close()
    same_units(load_units(b))


def test_xls_and_a_workbook_named_csv(tmp_path):
    import xlwt

    book = xlwt.Workbook(encoding="utf-8")
    ws = book.add_sheet("Sheet1")
    for r, row in enumerate([HEADER, *ROWS]):
        for c, v in enumerate(_cells(row) if r else row.split(",")):
            ws.write(r, c, v)
    book.save(str(tmp_path / "don-vi.xls"))
    same_units(load_units(tmp_path / "don-vi.xls"))
    (tmp_path / "don-vi.csv").write_bytes((tmp_path / "don-vi.xls").read_bytes())
    same_units(load_units(tmp_path / "don-vi.csv"))


@pytest.mark.soffice
def test_list_saved_by_libreoffice(tmp_path, soffice_convert):
    src = tmp_path / "don-vi.xlsx"
    wb = openpyxl.Workbook()
    wb.active.append(HEADER.split(","))
    for row in ROWS:
        wb.active.append(_cells(row))
    wb.save(src)
    for fmt in ("ods", "xls"):
        same_units(load_units(soffice_convert(src, fmt, tmp_path / fmt)))


def _row(code="07069", name="Mạo Khê", extra=""):
    return f"{code},{name},phường,205,Thị xã Đông Triều,22,Tỉnh Quảng Ninh{extra}"


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("empty", b"", "trống. Cần một dòng tiêu đề (unit_code, unit_name"),
        ("blank lines only", b"\r\n ;;\r\n", "trống"),
        ("header only", HEADER.encode(), "chỉ có dòng tiêu đề, chưa có đơn vị nào"),
        ("header only, Excel's semicolons", (HEADER.replace(",", ";") + "\r\n;;;;;;\r\n").encode("utf-8-sig"),
         "chỉ có dòng tiêu đề"),
        ("a column missing", "unit_code,unit_name,unit_type,district_code,district_name,province_code\n"
         "07069,Mạo Khê,phường,205,Thị xã Đông Triều,22\n".encode(),
         "dòng tiêu đề (dòng 1) thiếu cột province_name"),
        ("no header at all", "\n".join(ROWS).encode(), "thiếu cột unit_code"),
        ("a column named twice", (HEADER + ",unit_name\n" + _row(extra=",X") + "\n").encode(),
         "cột trùng tên: unit_name"),
        ("the same code twice",
         "\n".join([HEADER, _row(), _row("07072", "Đông Triều"), _row("07069", "An Sinh")]).encode(),
         "mã đơn vị bị trùng: 07069 ở dòng 2, 4"),
        ("a code that lost its zero and the same code with it", "\n".join(
            [HEADER, _row(), _row("7069", "An Sinh")]).encode(), "mã đơn vị bị trùng: 07069 ở dòng 2, 3"),
        ("a name missing", "\n".join([HEADER, _row(), _row("07072", "")]).encode(),
         "cột unit_name bị bỏ trống ở dòng 3"),
        ("two names that fold to one", "\n".join([HEADER, _row(), _row("07072", "Mao Khe")]).encode(),
         "tên đơn vị trùng nhau khi bỏ dấu, trong cùng một huyện: Mạo Khê, Mao Khe ở dòng 2, 3"),
        ("a name holding the separator", "\n".join([HEADER, _row(), _row("07072", "Đông Triều, Quảng Ninh")])
         .encode(), "dòng 3 có nhiều ô hơn dòng tiêu đề"),
        ("UTF-8 damaged by one Windows-1258 byte", "\n".join([HEADER, _row(), _row("07072", "Đông Triều")])
         .encode() + b"\n07075,An Sinh" + cp1258("ạ") + b",x,205,T,22,T\n", "tệp UTF-8 bị hỏng ở dòng 4"),
        ("UTF-16 cut in half", csv_lines("\t").encode("utf-16")[:-1], "bảng mã UTF-16"),
        ("a damaged workbook", b"PK\x03\x04" + b"\x00" * 200, "không đọc được tệp bảng tính"),
    ],
)
def test_unusable_lists_say_why_in_vietnamese(tmp_path, name, data, message):
    path = tmp_path / "don-vi.csv"
    path.write_bytes(data)
    with pytest.raises(UnitsError) as exc:
        load_units(path)
    text = str(exc.value)
    assert message in text, text
    assert text.startswith(f"Danh sách đơn vị «{path}»"), text
    assert not ENGLISH.search(text), text


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(UnitsError, match="Không tìm thấy danh sách đơn vị"):
        load_units(tmp_path / "khong-co.csv")
    with pytest.raises(UnitsError, match="là một thư mục"):
        load_units(tmp_path)
    assert issubclass(UnitsError, DefinitionError)  # the CLI prints it and exits 2


def test_encrypted_or_foreign_zip_named_xlsx(tmp_path):
    path = tmp_path / "don-vi.xlsx"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("hello.txt", "not a workbook")
    with pytest.raises(UnitsError, match="không đọc được tệp bảng tính") as exc:
        load_units(path)
    assert not ENGLISH.search(str(exc.value))


def test_many_rows_are_named_up_to_ten(tmp_path):
    rows = [HEADER] + [_row("07069", f"Đơn vị {i}") for i in range(15)]
    path = tmp_path / "don-vi.csv"
    path.write_text("\n".join(rows), encoding="utf-8")
    with pytest.raises(UnitsError) as exc:
        load_units(path)
    assert "07069 ở dòng 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 và 5 dòng khác." in str(exc.value)
