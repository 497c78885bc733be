"""Small, checked edits of a workbook xlsxwriter has just written: the fast path for thousands of outputs.

xlsxwriter spends about 15 µs on every cell it writes and 6 ms on every workbook it packs, which is what
made 10,000 feedback workbooks and 700 district workbooks take minutes. Two uses of this module keep
xlsxwriter as the writer of every workbook and only patch its output where the work is repetitive:

- a sheet's plain table (the district workbook's "Dữ liệu" and "Tình hình nộp báo cáo") is written as one
  block of rows built from whole columns at once, in place of the placeholder rows xlsxwriter wrote
  (whose styles and heights the rows keep), its texts added to the workbook's shared strings;
- a workbook rendered once with placeholders (numbers from `SENTINEL`, and marker texts) is filled with
  one ward's values, so the static bulk of a feedback workbook is rendered once per run, not per ward.

Cells are written as xlsxwriter writes them (shared or inline strings, numbers as `{:.16G}`, the same
escapes), so Excel and LibreOffice read them as they read xlsxwriter's. Tests check that a patched
workbook reads back cell for cell like one xlsxwriter wrote whole.
"""

from __future__ import annotations

import io
import re
import struct
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.atomic import atomic_path

# Placeholder numbers: 16 digits, exact in a double (below 2**53), never a figure a ward reports.
SENTINEL = 8_123_456_789_000_000
MAX_TEXT = 32_767  # Excel's longest cell text
SENTINEL_RE = re.compile(r'<c r="([A-Z]{1,3}[0-9]{1,7})"((?: s="[0-9]+")?)(?: t="[a-z]+")?>'
                         r"(<f>[^<]*</f>)?<v>81234567890([0-9]{5})</v></c>")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\ufffe\uffff]")
_ESCAPED = re.compile(r"_x[0-9a-fA-F]{4}_")
_EDGE_SPACE = re.compile(r"^\s|\s$")


def xml_text(s: str) -> str:
    """Text as the content of an element, escaped as xlsxwriter escapes cell text."""
    s = _ESCAPED.sub(lambda m: "_x005F" + m.group(0), s)
    s = _CONTROL.sub(lambda m: f"_x{ord(m.group(0)):04X}_", s)
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _body(style: str, v: str | float) -> str:
    """A cell's XML after its reference: an inline string for a str, else a number (`style` is "" or
    ' s="N"')."""
    if v.__class__ is str:
        space = ' xml:space="preserve"' if _EDGE_SPACE.search(v) else ""
        return f'{style} t="inlineStr"><is><t{space}>{xml_text(v)}</t></is></c>'
    return f"{style}><v>{v:.16G}</v></c>"


def string_cell(ref: str, style: str, text: str) -> str:
    return f'<c r="{ref}"' + _body(style, str(text))


def number_cell(ref: str, style: str, x: float) -> str:
    return f'<c r="{ref}"' + _body(style, float(x))


def formula_cell(ref: str, style: str, formula: str, result: object | None) -> str:
    """A formula cell (`formula` is the `<f>` element) with its cached result written as xlsxwriter
    writes a number's (str), or empty, which makes readers that calculate recalculate it."""
    return f'<c r="{ref}"{style}>{formula}<v>{"" if result is None else result}</v></c>'


_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")  # a central directory entry, as zipfile packs it
_END = struct.Struct("<4s4H2LH")  # the end-of-archive record


def _deflated(data: bytes) -> tuple[bytes, int]:
    """`data` deflated as zipfile deflates a member at level 1, and its CRC-32."""
    z = zlib.compressobj(1, zlib.DEFLATED, -15)
    return z.compress(data) + z.flush(), zlib.crc32(data)


@dataclass(frozen=True)
class Package:
    """An xlsx's members (zip entry, uncompressed bytes) in order, read once to be written many times.
    Members written unchanged are deflated once and kept (`packed`): a feedback workbook made from the
    prototype deflates only its sheets and shared strings (0.6 instead of 2.3 ms a ward)."""

    members: tuple[tuple[zipfile.ZipInfo, bytes], ...]
    packed: dict[str, tuple[bytes, int]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def read(cls, source: bytes) -> Package:
        with zipfile.ZipFile(io.BytesIO(source)) as z:
            return cls(tuple((info, z.read(info)) for info in z.infolist()))

    def has(self, name: str) -> bool:
        return any(info.filename == name for info, _ in self.members)

    def text(self, name: str) -> str:
        for info, data in self.members:
            if info.filename == name:
                return data.decode("utf-8")
        raise KeyError(f"xlsx has no member {name!r}")

    def write(self, target: Path | io.BytesIO, replaced: Mapping[str, str]) -> None:
        """Write the package to `target` (atomically when a path) with the members named in `replaced`
        given new XML. Member order, names and dates are kept, so outputs stay reproducible: the bytes
        are those zipfile writes (level 1 deflate: these files are small, and this runs for every ward)."""
        missing = set(replaced) - {info.filename for info, _ in self.members}
        if missing:
            raise KeyError(f"xlsx has no member {sorted(missing)}")
        if isinstance(target, (str, Path)):
            with atomic_path(Path(target)) as tmp:
                tmp.write_bytes(self.pack(replaced))
        else:
            target.write(self.pack(replaced))

    def pack(self, replaced: Mapping[str, str]) -> bytes:
        """The zip archive's bytes (see `write`): each member's local header and deflated data, then the
        central directory, laid out field for field as zipfile.ZipFile.writestr and close lay them out."""
        parts: list[bytes] = []
        central: list[bytes] = []
        offset = 0
        for info, data in self.members:
            new = replaced.get(info.filename)
            if new is not None:
                raw = new.encode("utf-8")
                packed, crc = _deflated(raw)
            else:
                raw = data
                hit = self.packed.get(info.filename)
                if hit is None:
                    hit = self.packed[info.filename] = _deflated(data)
                packed, crc = hit
            entry = zipfile.ZipInfo(info.filename, info.date_time)
            entry.external_attr, entry.compress_type = info.external_attr, zipfile.ZIP_DEFLATED
            entry.CRC, entry.file_size, entry.compress_size = crc, len(raw), len(packed)
            if entry.file_size > _ZIP32 or entry.compress_size > _ZIP32 or offset > _ZIP32:
                raise ValueError("xlsx member too large for a plain zip")
            header = entry.FileHeader(False)
            name, flags = _name_flags(info.filename)
            d = entry.date_time
            central.append(_CENTRAL.pack(
                b"PK\x01\x02", entry.create_version, entry.create_system, entry.extract_version,
                entry.reserved, flags, entry.compress_type, d[3] << 11 | d[4] << 5 | (d[5] // 2),
                (d[0] - 1980) << 9 | d[1] << 5 | d[2], crc, len(packed), len(raw), len(name), 0, 0, 0,
                entry.internal_attr, entry.external_attr, offset) + name)
            parts += (header, packed)
            offset += len(header) + len(packed)
        directory = b"".join(central)
        return b"".join([*parts, directory, _END.pack(b"PK\x05\x06", 0, 0, len(central), len(central),
                                                      len(directory), offset, 0)])


_ZIP32 = 0x7FFFFFFF  # zipfile's ZIP64_LIMIT: beyond it zipfile would write zip64 fields


def _name_flags(name: str) -> tuple[bytes, int]:
    """A member name's bytes and flag bits, as zipfile encodes them (UTF-8 flagged when not ASCII)."""
    try:
        return name.encode("ascii"), 0
    except UnicodeEncodeError:
        return name.encode("utf-8"), 0x800


def replace_row(sheet_xml: str, row: int, new_rows: str) -> str:
    """Put `new_rows` (row elements) in place of row `row` (1-based) of a worksheet's XML. Raises
    ValueError when the row is not there."""
    start = sheet_xml.find(f'<row r="{row}"')
    end = sheet_xml.find("</row>", start) + len("</row>") if start >= 0 else -1
    if start < 0 or end < len("</row>"):
        raise ValueError(f"worksheet has no row {row} to replace")
    return sheet_xml[:start] + new_rows + sheet_xml[end:]


def row_styles(sheet_xml: str, row: int) -> dict[str, str]:
    """Column letter → ' s="N"' (or "") of each cell of row `row`: the formats xlsxwriter gave a
    placeholder row, which the rows that replace it reuse."""
    start = sheet_xml.find(f'<row r="{row}"')
    end = sheet_xml.find("</row>", start)
    if start < 0 or end < 0:
        raise ValueError(f"worksheet has no row {row}")
    return {m.group(1): m.group(2) for m in
            re.finditer(rf'<c r="([A-Z]+){row}"((?: s="[0-9]+")?)', sheet_xml[start:end])}


def table_rows(first_row: int, columns: Iterable[tuple[str, str, list]],
               strings: SharedStrings | None = None, *, row_tags: list[str] | None = None,
               styled_blanks: bool | Sequence[bool] = False) -> str:
    """Row elements from `first_row` for whole columns: (letter, ' s="N"' or "", values) where a value is
    a str (text), a float (number) or None/"" (no cell, or with `styled_blanks` a blank cell carrying
    the column's style, as xlsxwriter writes a formatted blank; a bool per column or one for all).
    Every column has the same length.
    Texts go to `strings` (the workbook's shared strings) when given, else inline. `row_tags` are the
    rows' opening tags as xlsxwriter wrote them (with their heights; see `row_tags`), else plain.

    Each distinct value's cell XML is made once per column, with a marker where the row number goes,
    and each row is joined and given its number in one pass: about 1 µs a row of 8 cells instead of
    1 µs a cell. The marker is a NUL, which `xml_text` always escapes, so it cannot come from a value.
    A negative zero is written 0."""
    parts: list[list[str]] = []
    n = None
    for k, (letter, style, values) in enumerate(columns):
        if n is None:
            n = len(values)
        if len(values) != n:
            raise ValueError("columns of different lengths")
        pre = f'<c r="{letter}\x00"'
        texts = {v for v in set(values) if v.__class__ is str and v}
        if strings is None:
            made = {v: pre + _body(style, v) for v in texts}
        else:
            made = {v: f'{pre}{style} t="s"><v>{strings.add(v)}</v></c>' for v in sorted(texts)}
            strings.refs += sum(map(texts.__contains__, values))
        made.update((v, pre + _body(style, v + 0.0)) for v in set(values) if v.__class__ is float and v == v)
        styled = styled_blanks if isinstance(styled_blanks, bool) else styled_blanks[k]
        blank = f"{pre}{style}/>" if styled and style else ""
        made[""] = made[None] = blank
        cells = list(map(made.get, values))
        if None in cells:  # a value that is not its own dict key (NaN, another type): cell by cell
            cells = [c if c is not None else blank if _blank(v) else pre + _body(style, float(v) + 0.0)
                     for c, v in zip(cells, values, strict=True)]
        parts.append(cells)
    if not parts:
        return ""
    if row_tags is not None:
        if len(row_tags) != n:
            raise ValueError("a row tag per row")
        return "".join(f'{tag}{"".join(cells)}</row>'.replace("\x00", str(r)) for r, tag, cells in
                       zip(range(first_row, first_row + n), row_tags, zip(*parts, strict=True), strict=True))
    return "".join(f'<row r="\x00">{"".join(cells)}</row>'.replace("\x00", str(r))
                   for r, cells in enumerate(zip(*parts, strict=True), first_row))


_ROW_TAG = re.compile(r'<row r="(\d+)"([^>]*?)(/?)>')


def row_span(sheet_xml: str, first: int, last: int) -> tuple[int, int, list[str]]:
    """Where rows `first`..`last` (1-based) are in a worksheet's XML, and an opening tag for each: the
    one xlsxwriter wrote (its height, its style) without spans, or a plain one for a row it did not
    write. Returns (start, end, tags) with the rows at sheet_xml[start:end] (xlsxwriter may have
    written only some of them, or only the last). Raises ValueError when row `last` is not there."""
    start = sheet_xml.find(f'<row r="{first}"')
    if start < 0:  # the first row xlsxwriter wrote from `first` on
        start = next((m.start() for m in _ROW_TAG.finditer(sheet_xml) if int(m.group(1)) >= first), -1)
    last_at = sheet_xml.find(f'<row r="{last}"', max(start, 0))
    if start < 0 or last_at < 0:
        raise ValueError(f"worksheet has no rows {first} to {last}")
    m = _ROW_TAG.match(sheet_xml, last_at)
    end = m.end() if m and m.group(3) else sheet_xml.find("</row>", last_at) + len("</row>")
    found = {int(m.group(1)): re.sub(r' spans="[^"]*"', "", m.group(2))
             for m in _ROW_TAG.finditer(sheet_xml, start, end)}
    return start, end, [f'<row r="{r}"{found.get(r, "")}>' for r in range(first, last + 1)]


_SST_HEAD = re.compile(r'<sst\b[^>]*>')
_SST_PLAIN = re.compile(r'<si><t(?: xml:space="preserve")?>([^<]*)</t></si>|<si>')


class SharedStrings:
    """The shared-string table xlsxwriter wrote (xl/sharedStrings.xml), for rows spliced in to add their
    texts to: a text cell is then an index (about half the XML of an inline string, so less to build
    and to deflate). Texts already in the table are found again by their escaped form."""

    def __init__(self, xml: str) -> None:
        head = _SST_HEAD.search(xml)
        count = re.search(r'\bcount="(\d+)"', head.group(0)) if head else None
        if head is None or count is None or "</sst>" not in xml:
            raise ValueError("not a shared-string table xlsxwriter wrote")
        self._xml, self._head = xml, head
        self.refs = int(count.group(1))  # cells that refer to the table
        self.index: dict[str, int] = {}  # escaped text -> position, for the plain entries
        self.unique = 0
        for m in _SST_PLAIN.finditer(xml):
            if m.group(1) is not None:
                self.index.setdefault(m.group(1), self.unique)
            self.unique += 1
        self._new: list[str] = []

    def add(self, text: str) -> int:
        """The position of `text` in the table, added at the end when new. The caller counts its cells
        in `refs`."""
        key = xml_text(text)
        at = self.index.get(key)
        if at is None:
            at = self.index[key] = self.unique
            self.unique += 1
            space = ' xml:space="preserve"' if _EDGE_SPACE.search(text) else ""
            self._new.append(f"<si><t{space}>{key}</t></si>")
        return at

    def xml(self) -> str:
        head = re.sub(r'\b(count|uniqueCount)="\d+"', lambda m: f'{m.group(1)}="'
                      f'{self.refs if m.group(1) == "count" else self.unique}"', self._head.group(0))
        end = self._xml.rindex("</sst>")
        return self._xml[:self._head.start()] + head + self._xml[self._head.end():end] + "".join(
            self._new) + self._xml[end:]


def _blank(v: object) -> bool:
    return v is None or v == "" or (v.__class__ is float and v != v)
