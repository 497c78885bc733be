"""Read one workbook into raw cells: a pure function of a path (plus the read spec).

`read_workbook(path, spec)` returns a `RawSubmission`: the hidden metadata, one `(field id, raw value,
cell A1, percent-formatted, formula)` tuple per field of the definition that was found, and the problems
met (missing sheet or field, not this template). Nothing here parses numbers or judges values.

`formula` is said of total cells only: "" when the cell holds a value (typed over the template's
formula, or no formula ever), the formula's text when it holds one ("SUM(D6:D15)"), FORMULA_UNREAD when it
holds one whose text is not read (a shared formula, an .xls formula record). Spreadsheets keep a
formula's last result as the cell's value, and that result is 0 when the parts were typed as text: the
formula says it is not a figure the ward declared. The formulas are looked up only where it matters:
where a total's parts are not all plain numbers summing to the value the cell holds.
It never raises for a bad file: the caller runs it behind `pipeline.intake.guard` (and, for untrusted input,
`pipeline.intake.isolation`), and any exception is turned into a finding there.

Fields are found at the template's own addresses first; when a ward inserted or deleted rows or
columns, moved a block or renamed a sheet slightly, they are found again by their hidden ids and
their labels (compared on folded text: NFC, accents and case ignored).
"""

from __future__ import annotations

import difflib
import html
import re
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import python_calamine as pc
from openpyxl.utils import get_column_letter

from pipeline.definition import META_SHEET, Definition
from pipeline.findings import Finding
from pipeline.text import fold

_fold = lru_cache(maxsize=8192)(fold)


@dataclass(frozen=True, slots=True)
class SheetSpec:
    """What the reader needs of one sheet of the definition (picklable, no definition objects)."""

    name: str
    kind: str  # form | table
    # form: (field id, label, row, col) ; table: (field id, row id, row label, col id, col label, row, col)
    fields: tuple[tuple, ...]
    label_col: int  # 1-based
    id_col: int
    value_header: str = ""
    total_rows: frozenset[str] = frozenset()  # table: the ids of rows that total the others


@dataclass(frozen=True, slots=True)
class ReadSpec:
    template_id: str
    sheets: tuple[SheetSpec, ...]
    percent_fields: frozenset[str] = frozenset()
    totals: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (total field id, its parts' ids)


FORMULA_UNREAD = "?"
# the long frame of every cell read, all submissions together (what pipeline.checks.validate takes): the
# submission's index, then a RawSubmission.cells tuple
CELL_COLUMNS = ["submission", "field", "raw", "cell", "pct", "formula"]


@dataclass(slots=True)
class RawSubmission:
    path: str
    meta: dict[str, str] = field(default_factory=dict)
    cells: list[tuple[str, object, str, bool, str]] = field(default_factory=list)
    problems: list[Finding] = field(default_factory=list)
    sheets_found: int = 0


def make_spec(definition: Definition) -> ReadSpec:
    """Derive the reader's spec from the definition."""
    lay = definition.layout
    from openpyxl.utils import column_index_from_string as ci

    sheets = []
    for s in definition.sheets:
        fs = [definition.fields[f] for f in s.fields]
        if s.kind == "form":
            entries = tuple((f.id, f.label, f.row, f.col) for f in fs)
            sheets.append(
                SheetSpec(
                    s.name,
                    "form",
                    entries,
                    ci(lay["form"]["label_col"]),
                    ci(lay["form"]["id_col"]),
                    value_header="Số liệu",
                )
            )
        else:
            rows, cols = dict(s.rows), {c[0]: c[1] for c in s.columns}
            entries = tuple(
                (f.id, f.table_row, rows[f.table_row], f.table_col, cols[f.table_col], f.row, f.col)
                for f in fs
            )
            totals = frozenset(f.table_row for f in fs if f.total_of)
            sheets.append(SheetSpec(s.name, "table", entries, ci(lay["table"]["label_col"]),
                                    ci(lay["table"]["id_col"]), total_rows=totals))
    percent = frozenset(f.id for f in definition.fields.values() if f.type == "percent")
    totals = tuple((f.id, f.total_of) for f in definition.fields.values() if f.total_of)
    return ReadSpec(definition.id, tuple(sheets), percent, totals)


def a1(row: int, col: int) -> str:
    """1-based row and column → "B9"."""
    return f"{get_column_letter(col)}{row}"


def _cell(grid: list[list], row: int, col: int) -> object:
    """Value at 1-based (row, col) of a calamine grid, '' outside it."""
    if 0 < row <= len(grid):
        r = grid[row - 1]
        if 0 < col <= len(r):
            return r[col - 1]
    return ""


def _match_sheet(wanted: str, names: list[str]) -> str | None:
    if wanted in names:
        return wanted
    folded = {_fold(n): n for n in names}
    key = _fold(wanted)
    if key in folded:
        return folded[key]
    close = difflib.get_close_matches(key, list(folded), n=1, cutoff=0.75)
    return folded[close[0]] if close else None


def _index_text(grid: list[list]) -> dict[str, list[tuple[int, int]]]:
    """Folded text of every string cell → its 1-based positions."""
    index: dict[str, list[tuple[int, int]]] = {}
    for r, row in enumerate(grid, 1):
        for c, v in enumerate(row, 1):
            if isinstance(v, str) and v:
                index.setdefault(_fold(v), []).append((r, c))
    return index


def _form_cells(spec: SheetSpec, grid: list[list], out: RawSubmission, sheet: str) -> None:
    index = None
    for fid, label, row, col in spec.fields:
        lab = _cell(grid, row, spec.label_col)
        if lab == label or _cell(grid, row, spec.id_col) == fid or (lab and _fold(lab) == _fold(label)):
            out.cells.append((fid, _cell(grid, row, col), a1(row, col), False, ""))
            continue
        if index is None:
            index = _index_text(grid)
            header = index.get(_fold(spec.value_header)) if spec.value_header else None
        by_label, by_id = index.get(_fold(label)), index.get(fid.casefold())
        if by_label:
            r, c = by_label[0]
            vc = header[0][1] if header else c + (col - spec.label_col)
        elif by_id:
            r, c = by_id[0]
            vc = header[0][1] if header else col + (c - spec.id_col)
        else:
            out.problems.append(Finding("field-missing", sheet=sheet, cell="", field=fid))
            continue
        out.cells.append((fid, _cell(grid, r, vc), a1(r, vc), False, ""))


def _table_cells(spec: SheetSpec, grid: list[list], out: RawSubmission, sheet: str) -> None:
    ok = all(
        _cell(grid, row, spec.label_col) == rlabel or _cell(grid, row, spec.id_col) == rid
        for _, rid, rlabel, _, _, row, _ in spec.fields
    )
    if ok:
        out.cells.extend(
            (fid, _cell(grid, row, col), a1(row, col), False, "") for fid, *_, row, col in spec.fields
        )
        return
    index = _index_text(grid)
    # rows: by hidden row id, else by folded label (the last hit, so a title line never wins)
    row_of: dict[str, int] = {}
    for _, rid, rlabel, *_ in spec.fields:
        if rid in row_of:
            continue
        hits = index.get(rid) or index.get(_fold(rlabel))
        if hits:
            row_of[rid] = hits[-1][0] if len(hits) > 1 and rid in spec.total_rows else hits[0][0]
    # columns: by header label, searching above the first data row
    first_row = min(row_of.values(), default=0)
    col_of: dict[str, int] = {}
    for _, _, _, cid, clabel, _, _ in spec.fields:
        if cid in col_of:
            continue
        hits = [h for h in index.get(_fold(clabel), []) if h[0] < first_row]
        col_of[cid] = hits[-1][1] if hits else None  # type: ignore[assignment]
    for fid, rid, _, cid, *_ in spec.fields:
        r, c = row_of.get(rid), col_of.get(cid)
        if r is None or c is None:
            out.problems.append(Finding("field-missing", sheet=sheet, cell="", field=fid))
            continue
        out.cells.append((fid, _cell(grid, r, c), a1(r, c), False, ""))


def _read_meta(wb: pc.CalamineWorkbook, names: list[str]) -> dict[str, str] | None:
    if META_SHEET not in names:
        return None
    grid = wb.get_sheet_by_name(META_SHEET).to_python(skip_empty_area=False)
    meta = {}
    for row in grid[:50]:
        if len(row) >= 2 and isinstance(row[0], str) and row[0]:
            v = row[1]
            meta[row[0]] = str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)
    return meta


_PCT_STYLE = re.compile(rb'<c r="([A-Z]+[0-9]+)"[^>]*?\bs="(\d+)"')


def _percent_styles(zf: zipfile.ZipFile) -> set[int]:
    """Indexes of cell formats (cellXfs) whose number format shows a percentage."""
    styles = zf.read("xl/styles.xml").decode("utf-8", "replace")
    custom = {
        int(i)
        for i, code in re.findall(r'<numFmt numFmtId="(\d+)" formatCode="([^"]*)"', styles)
        if "%" in code
    }
    xfs = re.search(r"<cellXfs[^>]*>(.*?)</cellXfs>", styles, re.S)
    out = set()
    for i, xf in enumerate(re.findall(r"<xf [^>]*?/?>", xfs.group(1) if xfs else "")):
        m = re.search(r'numFmtId="(\d+)"', xf)
        if m and (int(m.group(1)) in (9, 10) or int(m.group(1)) in custom):
            out.add(i)
    return out


def _xlsx_sheet_members(zf: zipfile.ZipFile) -> dict[str, str]:
    """Sheet name → its XML member, from xl/workbook.xml and its relationships."""
    wbxml = zf.read("xl/workbook.xml").decode("utf-8", "replace")
    rels = zf.read("xl/_rels/workbook.xml.rels").decode("utf-8", "replace")
    targets = {}
    for rel in re.findall(r"<Relationship\b[^>]*>", rels):
        rid, target = re.search(r'Id="([^"]+)"', rel), re.search(r'Target="([^"]+)"', rel)
        if rid and target:
            t = target.group(1)
            targets[rid.group(1)] = t.lstrip("/") if t.startswith("/") else f"xl/{t}"
    out = {}
    for tag in re.findall(r"<sheet\b[^>]*>", wbxml):
        name, rid = re.search(r'name="([^"]*)"', tag), re.search(r'r:id="([^"]+)"', tag)
        if name and rid and rid.group(1) in targets:
            out[html.unescape(name.group(1))] = targets[rid.group(1)]
    return out


def _mark_percent_formats(
    path: str, wb_sheets: list[str], out: RawSubmission, spec: ReadSpec, sheet_of: dict[str, str]
) -> None:
    """Flag percent fields holding a fraction whose cell shows a percent format (xlsx: styles; ods: type)."""
    todo = [
        i
        for i, (fid, raw, *_) in enumerate(out.cells)
        if fid in spec.percent_fields and isinstance(raw, (int, float)) and 0 < raw <= 1
    ]
    if not todo:
        return
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if "content.xml" in names:  # OpenDocument: the cell's value type says percentage
                content = zf.read("content.xml")
                if b'office:value-type="percentage"' not in content:
                    return
                pct_cells = _ods_percent_cells(content, wb_sheets)
            elif "xl/styles.xml" in names:
                pct = _percent_styles(zf)
                pct_cells = set()
                for sheet, member in _xlsx_sheet_members(zf).items():
                    if member in names and sheet in sheet_of.values():
                        for ref, s in _PCT_STYLE.findall(zf.read(member)):
                            if int(s) in pct:
                                pct_cells.add((sheet, ref.decode()))
            else:
                return
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, SyntaxError):
        return  # defusedxml refuses entities (a ValueError); a broken file just keeps no percent flag
    for i in todo:
        fid, raw, ref, _, formula = out.cells[i]
        if (sheet_of.get(fid), ref) in pct_cells:
            out.cells[i] = (fid, raw, ref, True, formula)


def _ods_percent_cells(content: bytes, sheets: list[str]) -> set[tuple[str, str]]:
    """(sheet, A1) of every OpenDocument cell typed as a percentage (repeats expanded, bounded)."""
    from defusedxml.ElementTree import fromstring

    ns = {
        "table": "urn:oasis:names:tc:opendocument:xmlns:table:1.0",
        "office": "urn:oasis:names:tc:opendocument:xmlns:office:1.0",
    }
    t, o = f"{{{ns['table']}}}", f"{{{ns['office']}}}"
    out = set()
    root = fromstring(content)
    for table in root.iter(f"{t}table"):
        name, r = table.get(f"{t}name"), 0
        for row in table.iter(f"{t}table-row"):
            rrep = min(int(row.get(f"{t}number-rows-repeated", "1")), 1000)
            c = 0
            for cell in row:
                crep = min(int(cell.get(f"{t}number-columns-repeated", "1")), 1000)
                if cell.get(f"{o}value-type") == "percentage":
                    for dc in range(crep):
                        out.add((name, a1(r + 1, c + dc + 1)))
                c += crep
            r += rrep
    return out


def _plain_number(v: object) -> bool:
    return v.__class__ is float or v.__class__ is int


def _formulas_needed(out: RawSubmission, spec: ReadSpec) -> list[int]:
    """Indexes in out.cells of the total cells whose formula matters: those whose parts are not all plain
    numbers (or blank) adding up to the number the cell holds."""
    at = {c[0]: i for i, c in enumerate(out.cells)}
    need = []
    for total, parts in spec.totals:
        i = at.get(total)
        if i is None:
            continue
        held = out.cells[i][1]
        values = [out.cells[at[p]][1] for p in parts if p in at]
        if all(v == "" or v is None or _plain_number(v) for v in values) and (
                held == "" or held is None
                or (_plain_number(held) and abs(sum(v for v in values if _plain_number(v)) - held) < 1e-9)):
            continue
        need.append(i)
    return need


def _mark_formulas(path: str, out: RawSubmission, spec: ReadSpec, sheet_of: dict[str, str]) -> None:
    """Fill the formula element of the total cells that need it (see `_formulas_needed`)."""
    todo = _formulas_needed(out, spec)
    if not todo:
        return
    wanted: dict[str, set[str]] = {}
    for i in todo:
        fid, _, ref, *_ = out.cells[i]
        if fid in sheet_of:
            wanted.setdefault(sheet_of[fid], set()).add(ref)
    try:
        found = _formula_cells(path, wanted)
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, SyntaxError, EOFError):
        return  # a file the formulas cannot be read from: its totals count as typed
    for i in todo:
        fid, raw, ref, pct, _ = out.cells[i]
        formula = found.get((sheet_of.get(fid), ref), "")
        out.cells[i] = (fid, raw, ref, pct, formula)


def _formula_cells(path: str, wanted: dict[str, set[str]]) -> dict[tuple[str, str], str]:
    """(sheet, A1) → formula text (or FORMULA_UNREAD) of the wanted cells that hold a formula."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(b"PK"):
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if "content.xml" in names:
                return _ods_formulas(zf.read("content.xml"), wanted)
            members = _xlsx_sheet_members(zf)
            out = {}
            for sheet, refs in wanted.items():
                member = members.get(sheet)
                if member in names:
                    out |= {(sheet, ref): f for ref, f in _xlsx_formulas(zf.read(member), refs).items()}
            return out
    return _xls_formulas(path, wanted)


_XLSX_CELL = re.compile(rb'<(?:[\w.-]+:)?c\b([^>]*?)(/>|>(.*?)</(?:[\w.-]+:)?c\s*>)', re.S)
_XLSX_REF = re.compile(rb'\sr\s*=\s*["\']([A-Za-z]+[0-9]+)["\']')
_XLSX_F = re.compile(rb'<(?:[\w.-]+:)?f\b[^>]*?(?:/>|>(.*?)</(?:[\w.-]+:)?f\s*>)', re.S)


def _xlsx_formulas(xml: bytes, refs: set[str]) -> dict[str, str]:
    """A1 → formula text of the cells `refs` of one worksheet's XML that hold a formula."""
    out = {}
    for m in _XLSX_CELL.finditer(xml):
        ref = _XLSX_REF.search(m.group(1))
        if not ref or ref.group(1).decode().upper() not in refs or m.group(3) is None:
            continue
        f = _XLSX_F.search(m.group(3))
        if f:
            text = html.unescape(f.group(1).decode("utf-8", "replace")).strip() if f.group(1) else ""
            out[ref.group(1).decode().upper()] = text or FORMULA_UNREAD
    return out


def _ods_formulas(content: bytes, wanted: dict[str, set[str]]) -> dict[tuple[str, str], str]:
    """(sheet, A1) → formula of the wanted OpenDocument cells that carry table:formula."""
    from defusedxml.ElementTree import fromstring

    t = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"
    out = {}
    for table in fromstring(content).iter(f"{t}table"):
        name = table.get(f"{t}name")
        refs = wanted.get(name)
        if not refs:
            continue
        last = max(int(re.sub(r"[A-Z]+", "", ref)) for ref in refs)
        r = 0
        for row in table.iter(f"{t}table-row"):
            if r >= last:
                break
            rrep = min(int(row.get(f"{t}number-rows-repeated", "1")), 1000)
            c = 0
            for cell in row:
                crep = min(int(cell.get(f"{t}number-columns-repeated", "1")), 1000)
                formula = cell.get(f"{t}formula")
                if formula and formula.startswith("of:"):
                    formula = formula[3:]
                if formula:
                    for dr in range(min(rrep, 1000)):
                        for dc in range(crep):
                            ref = a1(r + dr + 1, c + dc + 1)
                            if ref in refs:
                                out[(name, ref)] = formula
                c += crep
            r += rrep
    return out


def _xls_formulas(path: str, wanted: dict[str, set[str]]) -> dict[tuple[str, str], str]:
    """(sheet, A1) → FORMULA_UNREAD for the wanted .xls cells held by a FORMULA record (its tokens are
    not decoded: that the cell holds a formula is what matters)."""
    import struct

    import olefile

    with olefile.OleFileIO(path) as ole:
        stream = next((s for s in ("Workbook", "Book") if ole.exists(s)), None)
        if stream is None:
            return {}
        data = ole.openstream(stream).read()
    starts: dict[int, str] = {}
    out, pos, sheet, n = {}, 0, None, len(data)
    while pos + 4 <= n:
        rtype, rlen = struct.unpack_from("<HH", data, pos)
        if rtype == 0x0085 and rlen >= 8:  # BOUNDSHEET: a sheet's name and where its records start
            raw = data[pos + 10:pos + 4 + rlen]
            length = raw[0] if raw else 0
            name = (raw[2:2 + 2 * length].decode("utf-16-le", "replace") if len(raw) > 1 and raw[1] == 1
                    else raw[2:2 + length].decode("latin-1"))
            starts[struct.unpack_from("<I", data, pos + 4)[0]] = name
        elif rtype in (0x0809, 0x0409, 0x0209, 0x0009):  # BOF
            sheet = starts.get(pos, sheet)
        elif rtype == 0x0006 and rlen >= 4 and sheet in wanted:  # FORMULA
            row, col = struct.unpack_from("<HH", data, pos + 4)
            ref = a1(row + 1, col + 1)
            if ref in wanted[sheet]:
                out[(sheet, ref)] = FORMULA_UNREAD
        pos += 4 + rlen
    return out


def read_workbook(path: str | Path, spec: ReadSpec) -> RawSubmission:
    """Read the definition's fields from one workbook (xlsx, xlsm, xls, ods); values only.

    Returns a RawSubmission. Raises only for files the readers cannot open at all (the caller turns
    that into a finding); a workbook that is not this template is reported as the problem
    "not-template" with no cells.
    """
    path = str(path)
    out = RawSubmission(path)
    wb = pc.CalamineWorkbook.from_path(path)
    try:
        names = list(wb.sheet_names)
        meta = _read_meta(wb, names)
        out.meta = meta or {}
        if meta is not None and meta.get("template_id") not in (None, "", spec.template_id):
            out.problems.append(Finding("not-template", sheet="", cell="", field=""))
            return out
        found = {s.name: _match_sheet(s.name, [n for n in names if n != META_SHEET]) for s in spec.sheets}
        out.sheets_found = sum(v is not None for v in found.values())
        if meta is None and out.sheets_found * 2 < len(spec.sheets):
            out.problems.append(Finding("not-template", sheet="", cell="", field=""))
            return out
        sheet_of: dict[str, str] = {}
        for s in spec.sheets:
            actual = found[s.name]
            if actual is None:
                out.problems.append(Finding("sheet-missing", sheet=s.name, cell="", field=""))
                continue
            grid = wb.get_sheet_by_name(actual).to_python(skip_empty_area=False)
            before = len(out.cells)
            (_form_cells if s.kind == "form" else _table_cells)(s, grid, out, s.name)
            for fid, *_ in out.cells[before:]:
                sheet_of[fid] = actual
        if out.sheets_found and not out.cells:
            out.problems.append(Finding("not-template", sheet="", cell="", field=""))
            return out
        _mark_percent_formats(path, names, out, spec, sheet_of)
        _mark_formulas(path, out, spec, sheet_of)
    finally:
        wb.close()
    return out
