"""Cheap pre-scan of an untrusted workbook, run before any reader touches it.

`inspect_file(path, limits)` sniffs the file by content (never by extension) and returns a `Verdict`:
the kind ("xlsx", "xlsm", "xls", "ods" or "" when not a workbook) and the problems found, each a rule
id of schemas/rules.yaml with a short Vietnamese detail. It never raises and never modifies the file.

Why it exists (measured with python-calamine 0.9.1): calamine builds a dense grid from the first to
the last *valued* cell, so a 1.9 KB .xlsx holding A1 and XFD1048576 asks for 512 GiB and aborts the
process (SIGABRT, not an exception); so does a 5 KB .xls with one cell at column 0xFFFF; an 800-byte
.ods with one valued cell repeated 10000 x 9900 times takes 10 GB and 30 s. What calamine ignores, the
guard ignores too, so honest files are not rejected: the <dimension> element (and the xls DIMENSIONS
record), cells without a value (a style only, an empty <v>, a formula without a cached value), row
elements, BLANK/MULBLANK records, and ODS cells without office:value-type / table:formula however
often they are repeated (LibreOffice writes number-columns-repeated="16384" and
number-rows-repeated="1048571" for the empty tail of every sheet it saves).

Zip bombs are stopped from the central directory (declared sizes, compression ratio) before anything
is inflated; inflating is then bounded by the declared sizes, and a member that inflates past its
declared size is refused (calamine's zip reader refuses it too).
"""

from __future__ import annotations

import functools
import html
import io
import os
import posixpath
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import olefile

__all__ = ["WARNING_RULES", "Limits", "Problem", "Verdict", "inspect_file"]


@dataclass(frozen=True, slots=True)
class Limits:
    max_bytes: int = 50_000_000  # file size on disk
    max_uncompressed: int = 200_000_000  # sum of declared uncompressed sizes in the zip
    max_member: int = 100_000_000
    max_ratio: float = 200.0  # uncompressed / compressed of any member larger than 1 MB uncompressed
    max_rows: int = 5_000  # last row holding a value, on any sheet (the template uses < 100)
    max_cols: int = 200  # last column holding a value
    max_repeat: int = 100_000  # ODS: rows x columns one valued cell is repeated over


@dataclass(frozen=True, slots=True)
class Problem:
    rule: str  # id from schemas/rules.yaml
    detail: str = ""  # short Vietnamese detail for the message's {detail}
    sheet: str = ""  # for sheet-too-large


WARNING_RULES = frozenset({"file-macros"})


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: str  # "xlsx", "xlsm", "xls", "ods", or "" when not a workbook
    problems: tuple[Problem, ...] = ()

    @property
    def readable(self) -> bool:
        """True when no problem other than a warning (file-macros) stops reading."""
        return all(p.rule in WARNING_RULES for p in self.problems)


def inspect_file(path: Path | str, limits: Limits = Limits()) -> Verdict:
    """Pre-scan the file at `path`; returns its Verdict. Never raises, never writes."""
    st = _State(limits)
    try:
        _inspect(Path(path), st)
    except _Stop as stop:
        st.problems.append(stop.problem)
    except Exception as exc:  # the guard must never take the run down: an odd file becomes a finding
        st.problems.append(Problem("file-unreadable", _short(exc)))
    return Verdict(st.kind, tuple(st.problems))


class _Stop(Exception):
    """A problem that ends the inspection (raised inside, always caught by inspect_file)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.rule)
        self.problem = problem


class _State:
    __slots__ = ("budget", "kind", "limits", "problems")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.kind = ""
        self.problems: list[Problem] = []
        self.budget = limits.max_uncompressed  # bytes the guard itself may still inflate


_CHUNK = 1 << 20
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_NS = rb"(?:[\w.-]+:)?"  # any namespace prefix: calamine honours <x:c> as well as <c>


def _inspect(path: Path, st: _State) -> None:
    size = os.stat(path).st_size
    if size == 0:
        raise _Stop(Problem("file-empty"))
    if size > st.limits.max_bytes:
        raise _Stop(Problem("file-too-large", f"tệp nặng {_size(size)}"))
    with open(path, "rb") as fh:
        head = fh.read(4096)
        if head[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
            fh.seek(0)
            _zip(fh.read(), st)  # at most max_bytes; inflating from memory is much cheaper than zipfile
        elif head.startswith(_OLE_MAGIC):
            fh.seek(0)
            _ole(fh, st)
        else:
            _other(head)


# --- zip containers: xlsx, xlsm, ods -------------------------------------------------------------

class _Entry(NamedTuple):
    offset: int  # of the local header
    csize: int
    usize: int
    method: int
    flags: int


_EOCD = struct.Struct("<4s4H2LH")
_CDH = struct.Struct("<4s6H3L5H2L")
_ODS_MIME = b"application/vnd.oasis.opendocument.spreadsheet"
_BIG_MEMBER = 1 << 20  # the ratio limit applies to members inflating to more than this


def _zip(buf: bytes, st: _State) -> None:
    entries = _directory(buf)
    names = set(entries)
    if "xl/workbook.xml" in names:
        st.kind = "xlsx"
    elif "mimetype" in names:
        mime = _member(buf, entries["mimetype"], st, cap=200).strip()
        if not mime.startswith(_ODS_MIME):
            raise _Stop(Problem("file-not-workbook", _odf_kind(mime)))
        st.kind = "ods"
    else:
        raise _Stop(Problem("file-not-workbook", _zip_kind(names)))
    _zip_sizes(entries.values(), len(buf), st.limits)
    if any(e.flags & 0x1 for e in entries.values()):
        raise _Stop(Problem("file-encrypted"))
    (_ods if st.kind == "ods" else _xlsx)(buf, entries, st)


def _directory(buf: bytes) -> dict[str, _Entry]:
    """Name -> entry from the central directory; zipfile is the fallback for zip64 and odd archives."""
    end = buf.rfind(b"PK\x05\x06", max(0, len(buf) - 65_557))
    if end >= 0 and end + 22 <= len(buf):
        _, disk, cd_disk, n_here, n, cd_size, cd_off, _ = _EOCD.unpack_from(buf, end)
        if not disk and not cd_disk and n_here == n and cd_off + cd_size == end:
            entries: dict[str, _Entry] = {}
            pos = cd_off
            for _ in range(n):
                if buf[pos:pos + 4] != b"PK\x01\x02" or pos + 46 > end:
                    break
                f = _CDH.unpack_from(buf, pos)
                nlen = f[10]
                if 0xFFFFFFFF in (f[8], f[9], f[16]):  # zip64 sizes: leave them to zipfile
                    break
                name = buf[pos + 46:pos + 46 + nlen].decode("utf-8" if f[3] & 0x800 else "cp437", "replace")
                if name in entries:
                    break  # readers disagree on which duplicate wins: let zipfile's check decide below
                entries[name] = _Entry(f[16], f[8], f[9], f[4], f[3])
                pos += 46 + nlen + f[11] + f[12]
            else:
                return entries
    try:
        zf = zipfile.ZipFile(io.BytesIO(buf))
    except (zipfile.BadZipFile, EOFError, struct.error, ValueError) as exc:
        raise _Stop(Problem("file-truncated", _short(exc))) from None
    infos = zf.infolist()
    if len({i.filename for i in infos}) != len(infos):
        # two members with one name: the guard could scan one while the reader opens the other
        raise _Stop(Problem("file-truncated", "tệp nén có hai phần trùng tên"))
    return {i.filename: _Entry(i.header_offset, i.compress_size, i.file_size, i.compress_type, i.flag_bits)
            for i in infos}


def _zip_kind(names: set[str]) -> str:
    if any(n.startswith("xl/") and n.endswith(".bin") for n in names) and "xl/workbook.bin" in names:
        return "tệp Excel nhị phân .xlsb"
    tops = {n.split("/", 1)[0] for n in names}
    if "word" in tops:
        return "tệp Word .docx"
    if "ppt" in tops:
        return "tệp PowerPoint .pptx"
    return "tệp nén .zip"


def _odf_kind(mime: bytes) -> str:
    if b"opendocument.text" in mime:
        return "tệp văn bản .odt"
    if b"opendocument.presentation" in mime:
        return "tệp trình chiếu .odp"
    return "tệp nén .zip"


def _zip_sizes(entries, size: int, lim: Limits) -> None:
    """Zip-bomb and truncation checks from the central directory alone (nothing is inflated)."""
    total = 0
    for e in entries:
        total += e.usize
        if e.offset + 30 + e.csize > size:
            raise _Stop(Problem("file-truncated", "tệp nén bị cắt cụt"))
        if e.usize > lim.max_member:
            raise _Stop(Problem("file-too-large", f"một phần giải nén ra {_size(e.usize)}"))
        if e.usize > _BIG_MEMBER and e.usize > lim.max_ratio * max(e.csize, 1):
            detail = f"một phần giải nén ra {_size(e.usize)} từ {_size(e.csize)}"
            raise _Stop(Problem("file-too-large", detail))
    if total > lim.max_uncompressed:
        raise _Stop(Problem("file-too-large", f"giải nén ra {_size(total)}"))


def _inflate(buf: bytes, e: _Entry, st: _State, cap: int | None = None, again: bool = False):
    """Yield a member's bytes in chunks of at most 1 MB, never more than its declared size (or `cap`).

    Charged to the file's inflate budget unless read `again`. Raises _Stop when the member is cut
    short, inflates past its declared size, or uses a compression method calamine cannot read either.
    """
    if buf[e.offset:e.offset + 4] != b"PK\x03\x04":
        raise _Stop(Problem("file-truncated", "tệp nén bị hỏng"))
    nlen, xlen = struct.unpack_from("<HH", buf, e.offset + 26)
    start = e.offset + 30 + nlen + xlen
    stop = start + e.csize
    if stop > len(buf):
        raise _Stop(Problem("file-truncated", "tệp nén bị cắt cụt"))
    want = e.usize if cap is None else min(cap, e.usize)
    st.budget -= 0 if again else want
    if st.budget < 0:
        raise _Stop(Problem("file-too-large", f"giải nén ra hơn {_size(st.limits.max_uncompressed)}"))
    if e.method == 0:
        if e.csize != e.usize:
            raise _Stop(Problem("file-truncated", "tệp nén bị hỏng"))
        for pos in range(start, start + want, _CHUNK):
            yield buf[pos:min(pos + _CHUNK, start + want)]
        return
    if e.method != 8:
        raise _Stop(Problem("file-unreadable", f"kiểu nén {e.method} không được hỗ trợ"))
    d = zlib.decompressobj(-15)
    pos, left = start, want
    try:
        while left > 0:
            if d.unconsumed_tail:
                data = d.unconsumed_tail
            else:
                data, pos = buf[pos:min(pos + _CHUNK, stop)], min(pos + _CHUNK, stop)
            out = d.decompress(data, min(_CHUNK, left))  # bounded: a bomb never lands in memory
            if not out:
                if data:
                    continue
                break
            left -= len(out)
            yield out
        if cap is None and (left > 0 or (not d.eof and d.decompress(d.unconsumed_tail + buf[pos:stop], 1))):
            raise _Stop(Problem("file-truncated", "kích thước khai báo trong tệp nén không đúng"))
    except zlib.error as exc:
        raise _Stop(Problem("file-truncated", _short(exc))) from None


def _member(buf: bytes, e: _Entry, st: _State, cap: int) -> bytes:
    """The first `cap` bytes of a small member (mimetype, rels, manifest...)."""
    return b"".join(_inflate(buf, e, st, cap))


def _buffers(chunks):
    """Re-cut a stream of chunks as (buf, end, eof) where every tag in buf[:end] is whole.

    `end` is just before the last '<'. The consumer may send() back an offset below `end` whose tag
    it could not finish (it needs the bytes after it); the next buffer then starts there.
    """
    buf, nxt = next(chunks, b""), next(chunks, b"")
    while True:
        end = buf.rfind(b"<") if nxt else -1
        end = end if end >= 0 else len(buf)
        keep = yield buf, end, not nxt
        if not nxt:
            return
        carry = buf[end if keep is None else min(keep, end):]
        parts, got = [carry, nxt], len(nxt)
        while got < len(carry):  # a tag longer than a chunk: read as much again, so rescans stay linear
            more = next(chunks, b"")
            if not more:
                break
            parts.append(more)
            got += len(more)
        buf, nxt = b"".join(parts), next(chunks, b"")


# --- xlsx / xlsm --------------------------------------------------------------------------------

# Every writer seen (Excel, LibreOffice, xlsxwriter, openpyxl) starts a cell with <c r="A1": one
# literal-prefix regex search finds the first cell start that is not such a small reference (see
# _suspect_cell); only a sheet that has one is walked cell by cell.
_PREFIXED_CELL = re.compile(rb":c[\s/>]")
_TOKEN = re.compile(rb"<" + _NS + rb"(row|c)(?=[\s/>])([^<>]*)>")
_REF_ATTR = re.compile(rb"(?:^|\s)r\s*=\s*[\"']\s*([A-Za-z]*)(\d*)")
_F, _V = _NS + rb"f(?=[\s/>])", _NS + rb"v"
# the body of a cell calamine leaves out of its grid: nothing, a formula with no cached value, an empty <v>
_EMPTY_CELL_BODY = re.compile(
    rb"\s*(?:<" + _F + rb"[^<>]*/>\s*|<" + _F + rb"[^<>]*>[^<]*</" + _NS + rb"f\s*>\s*)?"
    rb"(?:<" + _V + rb"\s*/>\s*|<" + _V + rb"\s*></" + _V + rb"\s*>\s*)?</" + _NS + rb"c\s*>")
_LOOK = 1 << 16  # bytes after a <c> tag that tell an empty cell (a formula has at most 8 KB)
_REL = re.compile(rb"<Relationship\b([^<>]*)>")
_REL_PREFIXED = re.compile(rb"<" + _NS + rb"Relationship\b([^<>]*)>")
_SHEET = re.compile(rb"<" + _NS + rb"sheet\b([^<>]*)>")


def _xlsx(buf: bytes, entries: dict[str, _Entry], st: _State) -> None:
    lower = {n.lower() for n in entries}
    macros = "xl/vbaproject.bin" in lower or any(n.startswith("xl/macrosheets/") for n in lower)
    if not macros and "[Content_Types].xml" in entries:
        macros = b"macroenabled" in _member(buf, entries["[Content_Types].xml"], st, 1 << 20).lower()
    if macros:
        st.kind = "xlsm"
        st.problems.append(Problem("file-macros"))
    rels = _workbook_rels(buf, entries, st)
    members = {t for t in rels.values() if t in entries}
    members.update(n for n in entries if n.startswith("xl/worksheets/") and n.endswith(".xml"))
    for member in sorted(members):
        found = _xlsx_extent(buf, entries[member], st)
        if found:
            st.problems.append(Problem("sheet-too-large", found, _sheet_name(buf, entries, rels, member, st)))


def _workbook_rels(buf: bytes, entries: dict[str, _Entry], st: _State) -> dict[str, str]:
    """Relationship id -> the member it targets, for the worksheets of xl/workbook.xml."""
    e = entries.get("xl/_rels/workbook.xml.rels")
    data = _member(buf, e, st, 1 << 22) if e else b""
    out = {}
    for raw in (_REL_PREFIXED if b":Relationship" in data else _REL).findall(data):
        if b"/worksheet" not in raw or not _attr(raw, b"Type").endswith("/worksheet"):
            continue  # (an external target is no member of the zip, and only members are scanned)
        target = _attr(raw, b"Target")
        if target:
            out[_attr(raw, b"Id")] = target.lstrip("/") if target.startswith("/") else \
                posixpath.normpath("xl/" + target) if "." in target.rsplit("/", 1)[0] else "xl/" + target
    return out


def _attr(raw: bytes, name: bytes) -> str:
    """The unescaped value of attribute `name` (any prefix) in a tag's attribute bytes, or ''."""
    i = raw.find(b" " + name + b'="')
    if i >= 0:  # the usual spelling, found without a regex
        i += len(name) + 3
        value = raw[i:raw.find(b'"', i)].decode("utf-8", "replace")
    else:
        m = _attr_re(name).search(raw)
        if not m:
            return ""
        value = (m.group(1) if m.group(1) is not None else m.group(2)).decode("utf-8", "replace")
    return html.unescape(value) if "&" in value else value


@functools.lru_cache(maxsize=16)
def _attr_re(name: bytes) -> re.Pattern[bytes]:
    return re.compile(rb"(?:^|\s)" + _NS + re.escape(name) + rb"\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")


def _sheet_name(buf: bytes, entries: dict[str, _Entry], rels: dict, member: str, st: _State) -> str:
    """The name a person sees for the sheet stored in `member` (the member's file name if unknown)."""
    ids = {rid for rid, target in rels.items() if target == member}
    e = entries.get("xl/workbook.xml")
    for m in _SHEET.finditer(_member(buf, e, st, 1 << 22) if e and ids else b""):
        if _attr(m.group(1), b"id") in ids and _attr(m.group(1), b"name"):
            return _attr(m.group(1), b"name")
    return member.rsplit("/", 1)[-1]


def _xlsx_extent(buf: bytes, e: _Entry, st: _State) -> str:
    """'' when the sheet's valued cells fit the limits, else a detail such as 'vùng A1:XFD1048576'.

    Fast path: a regex search finds no cell start other than <c r="..."> with a reference too short
    to pass the limits, so no Python work per cell. Otherwise the sheet is walked cell by cell to
    find the cells that hold values and their positions as calamine reckons them.
    """
    suspect = _suspect_cell(st.limits.max_rows, st.limits.max_cols)
    for data, end, _eof in _buffers(_inflate(buf, e, st)):
        if suspect.search(data, 0, end) or (b":c" in data and _PREFIXED_CELL.search(data, 0, end)):
            return _xlsx_walk(buf, e, st)
    return ""


@functools.lru_cache(maxsize=8)
def _suspect_cell(max_rows: int, max_cols: int) -> re.Pattern[bytes]:
    """A regex for any cell start except <c r="X9" whose letters and digits cannot pass the limits."""
    letters, span = 0, 0
    while span + 26 ** (letters + 1) <= max_cols:
        letters += 1
        span += 26**letters
    digits = len(str(max_rows + 1)) - 1  # the most digits d with 10**d - 1 <= max_rows
    if not letters or not digits:
        return re.compile(rb"<c[\s/>]")
    return re.compile(rb'<c(?! r="[A-Z]{1,%d}[1-9]\d{0,%d}")[\s/>]' % (letters, digits - 1))


def _xlsx_walk(buf: bytes, e: _Entry, st: _State) -> str:
    """Exact extent of the valued cells, following calamine's implicit positions (cells without r)."""
    row = col = max_row = max_col = 0
    sweep = _buffers(_inflate(buf, e, st, again=True))
    item = next(sweep, None)
    while item is not None:
        data, end, eof = item
        keep = None
        for m in _TOKEN.finditer(data, 0, end):
            tag, attrs = m.group(1), m.group(2)
            if tag == b"c" and not eof and m.end() + _LOOK > len(data):
                keep = m.start()  # its body may lie in the next chunk: take this cell up again then
                break
            ref = _REF_ATTR.search(attrs)
            if tag == b"row":
                row = _row_no(ref.group(2)) if ref and ref.group(2) else row + 1
                col = 0
                continue
            if ref and ref.group(1):
                col = _col_no(ref.group(1))
                cell_row = _row_no(ref.group(2)) if ref.group(2) else row
            else:
                col += 1
                cell_row = row
            if attrs.endswith(b"/") or _EMPTY_CELL_BODY.match(data, m.end()):
                continue
            max_row, max_col = max(max_row, cell_row), max(max_col, col)
        try:
            item = sweep.send(keep)
        except StopIteration:
            break
    if max_row > st.limits.max_rows or max_col > st.limits.max_cols:
        return f"vùng A1:{_letters(max_col)}{max_row}"
    return ""


def _row_no(digits: bytes) -> int:
    digits = digits.lstrip(b"0")
    return int(digits) if len(digits) <= 12 else 10**12  # int() of a huge digit string is slow


def _col_no(letters: bytes) -> int:
    if len(letters) > 8:
        return 10**12
    n = 0
    for ch in letters.upper():
        n = n * 26 + ch - 64
    return n


def _letters(col: int) -> str:
    out = ""
    while col > 0:
        col, rem = divmod(col - 1, 26)
        out = chr(65 + rem) + out
    return out or "A"


# --- ods ----------------------------------------------------------------------------------------

_ODS_TOKEN = re.compile(rb"<" + _NS + rb"(table-row|table-cell|covered-table-cell|table)(?=[\s/>])([^<>]*)>")
_COL_REP = re.compile(rb"number-columns-repeated\s*=\s*[\"']\s*(\d+)")
_ROW_REP = re.compile(rb"number-rows-repeated\s*=\s*[\"']\s*(\d+)")
_VALUED = re.compile(rb"value-type\s*=|formula\s*=")
_TABLE_NAME = re.compile(rb"(?:^|\s)" + _NS + rb"name\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")


def _ods(buf: bytes, entries: dict[str, _Entry], st: _State) -> None:
    manifest = entries.get("META-INF/manifest.xml")
    if manifest and b"encryption-data" in _member(buf, manifest, st, 1 << 22):
        raise _Stop(Problem("file-encrypted"))
    if any(n.startswith(("Basic/", "Scripts/")) for n in entries):
        st.problems.append(Problem("file-macros"))
    if "content.xml" in entries:
        _ods_extent(_inflate(buf, entries["content.xml"], st), st)


def _ods_extent(chunks, st: _State) -> None:
    """Walk content.xml's rows and cells, positions advanced by their repeat counts.

    A cell counts when calamine would put it in its grid (it has office:value-type or table:formula);
    its extent is its row/column position plus its repeats, and its repeats multiplied (columns x the
    rows of its row) must stay under max_repeat. Empty cells and rows may repeat any number of times.
    """
    lim = st.limits
    problems = st.problems
    sheet, flagged = "", False
    row0 = row_rep = col0 = max_row = max_col = 0

    def close_sheet() -> None:
        if not flagged and (max_row > lim.max_rows or max_col > lim.max_cols):
            problems.append(Problem("sheet-too-large", f"vùng A1:{_letters(max_col)}{max_row}", sheet))

    for data, end, _eof in _buffers(chunks):
        for m in _ODS_TOKEN.finditer(data, 0, end):
            tag, attrs = m.group(1), m.group(2)
            if tag == b"table-cell" or tag == b"covered-table-cell":
                rep = 1
                if b"repeated" in attrs:
                    r = _COL_REP.search(attrs)
                    rep = _row_no(r.group(1)) if r else 1
                if not flagged and (b"value-type" in attrs or b"formula" in attrs) and _VALUED.search(attrs):
                    max_row, max_col = max(max_row, row0 + row_rep), max(max_col, col0 + rep)
                    if rep * row_rep > lim.max_repeat:
                        flagged = True
                        detail = f"một ô lặp lại {_count(rep * row_rep)} lần"
                        problems.append(Problem("sheet-too-large", detail, sheet))
                col0 += rep
            elif tag == b"table-row":
                row0 += row_rep
                r = _ROW_REP.search(attrs) if b"repeated" in attrs else None
                row_rep = _row_no(r.group(1)) if r else 1
                col0 = 0
            else:
                close_sheet()
                n = _TABLE_NAME.search(attrs)
                sheet = html.unescape((n.group(1) or n.group(2)).decode("utf-8", "replace")) if n else ""
                flagged, row0, row_rep, col0, max_row, max_col = False, 0, 0, 0, 0, 0
    close_sheet()


def _count(n: int) -> str:
    return f"{n:,}".replace(",", ".")


# --- OLE: xls, encrypted OOXML, Word/PowerPoint 97 ----------------------------------------------

_FILEPASS, _BOUNDSHEET, _EOF = 0x002F, 0x0085, 0x000A
_BOFS = frozenset({0x0809, 0x0409, 0x0209, 0x0009})
# records calamine turns into cells: FORMULA (BIFF2-8), LABELSST, NUMBER, RK, LABEL, BOOLERR, RSTRING;
# MULRK spans columns. BLANK/MULBLANK hold no value and calamine leaves them out.
_CELL_RECORDS = frozenset({0x0006, 0x0206, 0x0406, 0x00FD, 0x0203, 0x027E, 0x0204, 0x0205, 0x00D6})
_MULRK = 0x00BD
_U16 = struct.Struct("<H").unpack_from


def _ole(fh, st: _State) -> None:
    try:
        ole = olefile.OleFileIO(fh)
    except Exception as exc:  # olefile raises OSError and others for a cut or damaged file
        raise _Stop(Problem("file-truncated", _short(exc))) from None
    with ole:
        entries = {"/".join(e).lower() for e in ole.listdir(streams=True, storages=True)}
        if "encryptioninfo" in entries or "encryptedpackage" in entries:
            st.kind = "xlsx"  # an encrypted OOXML package: almost surely a workbook, unseen without the key
            raise _Stop(Problem("file-encrypted"))
        stream = next((s for s in ("workbook", "book") if s in entries), None)
        if stream is None:
            if "worddocument" in entries:
                raise _Stop(Problem("file-not-workbook", "tệp Word .doc"))
            if "powerpoint document" in entries:
                raise _Stop(Problem("file-not-workbook", "tệp PowerPoint .ppt"))
            raise _Stop(Problem("file-not-workbook", "tệp Office không phải bảng tính"))
        st.kind = "xls"
        if any(e == "_vba_project_cur" or e.startswith("_vba_project_cur/") for e in entries):
            st.problems.append(Problem("file-macros"))
        try:
            data = ole.openstream(stream).read()
        except Exception as exc:
            raise _Stop(Problem("file-truncated", _short(exc))) from None
    _biff(data, st)


def _biff(data: bytes, st: _State) -> None:
    """Walk the Workbook stream's records: FILEPASS, sheet kinds and names, cells beyond the limits."""
    unpack = struct.Struct("<HH").unpack_from
    max_rows, max_cols = st.limits.max_rows, st.limits.max_cols
    n, pos = len(data), 0
    starts: dict[int, str] = {}  # stream offset of a sheet's BOF -> its name
    beyond: dict[str, list[int]] = {}  # sheet -> [last row, last column] once a cell passes a limit
    in_globals, sheet, macros = True, "", False
    while pos + 4 <= n:
        rtype, rlen = unpack(data, pos)
        if rtype in _CELL_RECORDS or rtype == _MULRK:
            if rlen >= 6 or (rlen >= 4 and rtype != _MULRK):
                row, col = unpack(data, pos + 4)
                if rtype == _MULRK:
                    col = _U16(data, pos + 2 + rlen)[0]  # its last column is stored after the values
                if row >= max_rows or col >= max_cols:  # 0-based here
                    e = beyond.setdefault(sheet, [0, 0])
                    e[0], e[1] = max(e[0], row + 1), max(e[1], col + 1)
        elif rtype in _BOFS:
            sheet = starts.get(pos, sheet)
        elif in_globals:
            if rtype == _FILEPASS:
                raise _Stop(Problem("file-encrypted"))
            if rtype == _BOUNDSHEET and rlen >= 8:
                starts[struct.unpack_from("<I", data, pos + 4)[0]] = _biff_name(data[pos + 10:pos + 4 + rlen])
                macros = macros or data[pos + 9] in (1, 6)  # an XLM macro sheet, a VB module
            elif rtype == _EOF:
                in_globals = False
        pos += 4 + rlen
    if macros:
        st.problems.append(Problem("file-macros"))
    for name, (rows, cols) in beyond.items():
        # the area up to the farthest cells that pass a limit (those within were not tracked)
        st.problems.append(Problem("sheet-too-large", f"vùng A1:{_letters(cols)}{rows}", name))


def _biff_name(raw: bytes) -> str:
    """A BOUNDSHEET name: BIFF8 ShortXLUnicodeString (length, flags, chars) or BIFF5 8-bit string."""
    if not raw:
        return ""
    length = raw[0]
    if len(raw) >= 2 and raw[1] in (0, 1) and len(raw) in (2 + length, 2 + 2 * length):
        if raw[1]:
            return raw[2:2 + 2 * length].decode("utf-16-le", "replace")
        return raw[2:2 + length].decode("latin-1")
    return raw[1:1 + length].decode("cp1258", "replace")


# --- anything else ------------------------------------------------------------------------------

_MAGIC = (
    (b"%PDF", "tệp PDF"),
    (b"\x89PNG", "tệp ảnh"), (b"\xff\xd8\xff", "tệp ảnh"), (b"GIF8", "tệp ảnh"),
    (b"II*\x00", "tệp ảnh"), (b"MM\x00*", "tệp ảnh"),
    (b"Rar!", "tệp nén RAR"), (b"7z\xbc\xaf\x27\x1c", "tệp nén 7z"), (b"\x1f\x8b", "tệp nén gzip"),
    (b"{\\rtf", "tệp RTF"),
)


def _other(head: bytes) -> None:
    """Name what a file that is neither zip nor OLE is; always raises _Stop."""
    for magic, what in _MAGIC:
        if head.startswith(magic):
            raise _Stop(Problem("file-not-workbook", what))
    if (head[:4] == b"RIFF" and head[8:12] == b"WEBP") or head[4:12] in (b"ftypheic", b"ftypmif1") \
            or (head[:2] == b"BM" and head[6:10] == b"\0\0\0\0"):
        raise _Stop(Problem("file-not-workbook", "tệp ảnh"))
    if len(head) >= 4 and struct.unpack_from("<H", head)[0] in _BOFS:
        raise _Stop(Problem("file-unreadable", "định dạng Excel 2.x–4.x quá cũ"))
    text = _as_text(head)
    if text is None:
        raise _Stop(Problem("file-not-workbook", "không nhận ra định dạng tệp"))
    low = text.lstrip().lower()[:2048]
    if "urn:schemas-microsoft-com:office:spreadsheet" in low:
        raise _Stop(Problem("file-not-workbook", "tệp XML Excel 2003"))
    if low.startswith(("<!doctype html", "<html")) or "<table" in low or "<html" in low:
        raise _Stop(Problem("file-not-workbook", "tệp HTML (trang web)"))
    if low.startswith("<?xml"):
        raise _Stop(Problem("file-not-workbook", "tệp XML"))
    raise _Stop(Problem("file-not-workbook", "tệp văn bản/CSV"))


def _as_text(head: bytes) -> str | None:
    """The head decoded when the file looks like text (UTF-8/16 or a legacy 8-bit code page)."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return head.decode("utf-16", "ignore")
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    if b"\x00" in head:
        return None
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 3:  # a character cut by the 4 KB read
            return head[:exc.start].decode("utf-8")
    controls = sum(b < 9 or 13 < b < 32 for b in head)
    return head.decode("cp1258", "replace") if controls * 50 < len(head) else None


def _size(n: int) -> str:
    """A byte count as people read it: 1,0 GB, 300,0 MB, 12,5 KB."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}".replace(".", ",")
    return f"{n} byte"


def _short(exc: BaseException) -> str:
    """A short one-line account of an exception (no file paths)."""
    msg = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    text = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."
