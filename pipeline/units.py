"""The units list: which wards and communes report, in which district and province.

Read as offices keep it: a CSV saved by Excel in any locale (`,` `;` or tab between columns; UTF-8 with or
without BOM, UTF-16, Windows-1258) or a workbook (.xlsx, .xls, .ods, first sheet). Codes that Excel
turned into numbers ("07069" → 7069) get their leading zeros back. Columns beyond UNIT_COLUMNS (an
`email` column, say) are kept. Anything unusable raises UnitsError with a Vietnamese message naming
the file, the rows and the fix; no exception text of a library reaches the user.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from pathlib import Path

import pandas as pd

from pipeline.definition import DEFAULT_UNITS, DefinitionError
from pipeline.text import nfc, per_distinct, slug, unit_key

UNIT_COLUMNS = [
    "unit_code",
    "unit_name",
    "unit_type",
    "district_code",
    "district_name",
    "province_code",
    "province_name",
]
REQUIRED_VALUES = ["unit_code", "unit_name", "district_code", "district_name"]  # no row without them
# Administrative codes of the General Statistics Office: ward/commune 5 digits, district 3, province 2.
# A list whose codes all lost their zeros cannot show its own width; a list with longer codes widens it.
CODE_WIDTHS = {"unit_code": 5, "district_code": 3, "province_code": 2}
WORKBOOK_SUFFIXES = {".xlsx", ".xlsm", ".xls", ".ods"}
_MAGIC = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0")  # zip (xlsx, ods) and OLE2 (xls): a workbook whatever its name
_SHOWN_ROWS = 10  # rows named in one message at most
_SAVE_AS = ("Đề nghị mở tệp bằng Excel và lưu lại: Tệp → Lưu thành → «CSV UTF-8 (Comma delimited)», "
            "hoặc lưu dạng Sổ làm việc Excel (.xlsx).")


class UnitsError(DefinitionError):
    """The units list cannot be used; the message (Vietnamese) names the file, the rows and the fix."""


def load_units(path: Path | str = DEFAULT_UNITS) -> pd.DataFrame:
    """Read a units list (CSV or workbook) into one row per unit: UNIT_COLUMNS as text, any further
    columns of the list (names lower-cased), then `key` (folded name), `slug` and `full_name`.

    `.attrs["notes"]` lists what was repaired (codes given back their zeros), in Vietnamese;
    `.attrs["source"]` and `.attrs["sha256"]` say which file it was (for the run's records).
    Raises UnitsError when the file cannot be read or a column, value or code is missing or repeats.
    """
    path = Path(path)
    where = f"Danh sách đơn vị «{path}»"
    if not path.exists():
        raise UnitsError(f"Không tìm thấy danh sách đơn vị «{path}». Đề nghị kiểm tra tên và thư mục "
                         "của tệp.")
    if path.is_dir():
        raise UnitsError(f"«{path}» là một thư mục; danh sách đơn vị phải là một tệp .csv hoặc .xlsx.")
    try:
        data = path.read_bytes()
    except OSError:
        raise UnitsError(f"{where}: không mở được tệp (tệp đang bị khóa hoặc không có quyền đọc).") from None
    if data.startswith(_MAGIC) or path.suffix.lower() in WORKBOOK_SUFFIXES:
        rows = _workbook_rows(path, where)
    else:
        rows = _text_rows(data, where)
    units = build_units(rows, where)
    units.attrs["source"] = str(path.resolve())
    units.attrs["sha256"] = hashlib.sha256(data).hexdigest()
    return units


def _decode(data: bytes, where: str) -> str:
    """The text of a CSV file: UTF-8 (BOM or not), UTF-16 (BOM or not) or Windows-1258."""
    if data.startswith(b"\xef\xbb\xbf"):
        encoding = "utf-8-sig"
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"
    elif b"\x00" in data[:200]:  # UTF-16 without its mark: every other byte of ASCII text is zero
        encoding = "utf-16-le" if data[1:200:2].count(0) > data[0:200:2].count(0) else "utf-16-be"
    else:
        encoding = "utf-8"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        bad_line = data[: exc.start].count(b"\n") + 1
        if encoding != "utf-8":
            raise UnitsError(f"{where}: tệp hỏng ở dòng {bad_line} (không đọc được theo bảng mã "
                             f"{encoding.upper()}). {_SAVE_AS}") from None
    # Not UTF-8. A file that holds valid UTF-8 letters as well is a damaged UTF-8 file, not another code
    # page: reading it as Windows-1258 would turn every Vietnamese letter into two wrong ones.
    if re.search(rb"[\xc2-\xf4][\x80-\xbf]+", data) and _mostly_utf8(data):
        raise UnitsError(f"{where}: tệp UTF-8 bị hỏng ở dòng {bad_line}. {_SAVE_AS}")
    try:
        return data.decode("cp1258")  # "ANSI" of a Vietnamese Windows: what Excel's plain "CSV" writes
    except UnicodeDecodeError:
        raise UnitsError(f"{where}: không nhận ra bảng mã của tệp (cần UTF-8, UTF-16 hoặc Windows-1258). "
                         f"{_SAVE_AS}") from None


def _mostly_utf8(data: bytes) -> bool:
    """More than half of the non-ASCII bytes form valid UTF-8 sequences."""
    text = data.decode("utf-8", errors="replace")
    bad = text.count("\ufffd")
    good = sum(len(ch.encode("utf-8")) for ch in text if ord(ch) > 127 and ch != "\ufffd")
    return good > bad


def _text_rows(data: bytes, where: str) -> list[tuple[int, list[str]]]:
    """(line number, cells) of each line of a CSV, its separator (`,` `;` or tab) read off the header."""
    text = _decode(data, where)
    first = next((line for line in text.splitlines() if line.strip()), "")
    sep = max([",", ";", "\t"], key=first.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    rows = []
    try:
        for cells in reader:
            rows.append((reader.line_num, cells))
    except csv.Error:
        raise UnitsError(f"{where}: dòng {reader.line_num} có dấu ngoặc kép không khép lại. "
                         f"{_SAVE_AS}") from None
    return rows


def _cell_text(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))  # a code or count Excel stored as a number: 7069.0 → "7069"
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return str(v)


def _workbook_rows(path: Path, where: str) -> list[tuple[int, list[str]]]:
    """(row number, cells) of each row of a workbook's first sheet, every cell as text."""
    import python_calamine as pc

    try:
        wb = pc.CalamineWorkbook.from_path(str(path))
        grid = wb.get_sheet_by_index(0).to_python(skip_empty_area=False)
    except Exception:  # calamine raises several types (CalamineError, ValueError, ...); all mean the same
        raise UnitsError(f"{where}: không đọc được tệp bảng tính (tệp hỏng, có mật khẩu, hoặc không phải "
                         f"bảng tính). {_SAVE_AS}") from None
    return [(r, [_cell_text(v) for v in row]) for r, row in enumerate(grid, 1)]


def _rows_named(rows: list[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:_SHOWN_ROWS])
    return shown + (f" và {len(rows) - _SHOWN_ROWS} dòng khác" if len(rows) > _SHOWN_ROWS else "")


def _find_header(rows: list[tuple[int, list[str]]]) -> int:
    """Index of the header row: the first (of the first ten) naming unit_code, else the first non-blank."""
    for i, (_, cells) in enumerate(rows[:10]):
        if "unit_code" in (_column_name(c) for c in cells):
            return i
    return next(i for i, (_, cells) in enumerate(rows) if any(c.strip() for c in cells))


def _column_name(text: str) -> str:
    return text.replace("\ufeff", "").strip().lower()


def build_units(rows: list[tuple[int, list[str]]], where: str = "Danh sách đơn vị") -> pd.DataFrame:
    """The units frame (see load_units) from a list's rows: (row number shown to people, cells), the
    header among them. `where` starts every message. Raises UnitsError."""
    if not any(c.strip() for _, cells in rows for c in cells):
        raise UnitsError(f"{where} trống. Cần một dòng tiêu đề ({', '.join(UNIT_COLUMNS)}) và mỗi đơn vị "
                         "một dòng.")
    h = _find_header(rows)
    header_line, header = rows[h]
    names = [_column_name(c) for c in header]
    missing = [c for c in UNIT_COLUMNS if c not in names]
    if missing:
        present = ", ".join(n for n in names if n) or "không có"
        raise UnitsError(f"{where}: dòng tiêu đề (dòng {header_line}) thiếu cột {', '.join(missing)}. "
                         f"Cần đủ các cột: {', '.join(UNIT_COLUMNS)} (đang có: {present}).")
    repeated = sorted({n for n in names if n and names.count(n) > 1})
    if repeated:
        raise UnitsError(f"{where}: dòng tiêu đề (dòng {header_line}) có cột trùng tên: "
                         f"{', '.join(repeated)}.")
    body = [(line, cells) for line, cells in rows[h + 1:] if "".join(cells).strip()]
    if not body:
        raise UnitsError(f"{where} chỉ có dòng tiêu đề, chưa có đơn vị nào. Đề nghị thêm mỗi đơn vị "
                         "một dòng.")
    width = len(names)
    too_long = [line for line, cells in body if any(c.strip() for c in cells[width:])]
    if too_long:
        raise UnitsError(f"{where}: dòng {_rows_named(too_long)} có nhiều ô hơn dòng tiêu đề (có thể một tên "
                         "chứa dấu phân cách cột mà không có ngoặc kép).")
    lines = [line for line, _ in body]
    keep = [i for i, n in enumerate(names) if n]  # a column without a name holds nothing to refer to
    table = pd.DataFrame(
        [[cells[i] if i < len(cells) else "" for i in keep] for _, cells in body],
        columns=[names[i] for i in keep],
        dtype=str,  # per_distinct skips its type scan for text columns
    )
    df = pd.DataFrame({c: per_distinct(table[c], nfc) for c in table.columns}, index=lines)
    for c in REQUIRED_VALUES:
        blank = df.index[df[c] == ""].tolist()
        if blank:
            raise UnitsError(f"{where}: cột {c} bị bỏ trống ở dòng {_rows_named(blank)}.")
    notes = []
    for c, least in CODE_WIDTHS.items():
        df[c], restored = _restore_zeros(df[c], least)
        if restored and c == "unit_code":
            notes.append(f"{where}: đã thêm số 0 ở đầu cho {len(restored)} mã đơn vị mà Excel làm mất "
                         f"(dòng {_rows_named(restored)}).")
    dup = df[df["unit_code"].duplicated(keep=False)]
    if not dup.empty:
        detail = "; ".join(f"{code} ở dòng {_rows_named(g.index.tolist())}"
                           for code, g in dup.groupby("unit_code", sort=True))
        raise UnitsError(f"{where}: mã đơn vị bị trùng: {detail}.")
    df["key"] = per_distinct(df["unit_name"], unit_key)
    clash = df[df.duplicated(["district_code", "key"], keep=False)]
    if not clash.empty:
        detail = "; ".join(f"{', '.join(g['unit_name'])} ở dòng {_rows_named(g.index.tolist())}"
                           for _, g in clash.groupby(["district_code", "key"], sort=True))
        raise UnitsError(f"{where}: tên đơn vị trùng nhau khi bỏ dấu, trong cùng một huyện: {detail}.")
    df["slug"] = df["unit_code"] + "-" + pd.Series(per_distinct(df["unit_name"], slug), index=df.index)
    df["full_name"] = (df["unit_type"].str.capitalize() + " " + df["unit_name"]).str.strip()
    columns = UNIT_COLUMNS + [c for c in df.columns if c not in UNIT_COLUMNS]
    out = df[columns].reset_index(drop=True)
    out.attrs["notes"] = notes
    return out


def _restore_zeros(codes: pd.Series, least: int) -> tuple[pd.Series, list[int]]:
    """Codes padded with zeros to the column's width (its longest all-digit code, at least `least`), and
    the rows (index labels) padded. Codes with other characters than digits are left as they are."""
    numeric = [c for c in pd.unique(codes) if c.isascii() and c.isdigit()]
    if not numeric:
        return codes, []
    width = max(least, *map(len, numeric))
    padded = {c: c.zfill(width) for c in numeric if len(c) < width}
    if not padded:
        return codes, []
    short = codes.isin(list(padded))
    return codes.replace(padded), codes.index[short].tolist()
