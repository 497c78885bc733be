"""Cheap pre-scan of an untrusted workbook, run before any reader touches it.

`inspect_file(path, limits)` sniffs the file by content (never by extension) and returns a `Verdict`:
the kind ("xlsx", "xlsm", "xls", "ods" or "" when not a workbook) and the problems found, each a rule
id of schemas/rules.yaml with a short Vietnamese detail. It never raises and never modifies the file;
what went wrong in detail (an exception, an XML error) goes to the "tonghop" log, never into a detail.

Why it exists (measured with python-calamine 0.9.1): calamine builds a dense grid from the first to
the last *valued* cell, so a 1.9 KB .xlsx holding A1 and XFD1048576 asks for 512 GiB and aborts the
process (SIGABRT, not an exception); so does a 5 KB .xls with one cell at column 0xFFFF; an 800-byte
.ods with one valued cell repeated 10000 x 9900 times takes 10 GB and 30 s; 1,000,000 cells that all
name one 32,000-character shared string (2 MB on disk) take 2 GB. What calamine ignores, the guard
ignores too, so honest files are not rejected: the <dimension> element (and the xls DIMENSIONS
record), cells without a value (a style only, an empty <v>, a formula without a cached value), row
elements, BLANK/MULBLANK records, and ODS cells without a value however often they are repeated
(LibreOffice writes number-columns-repeated="16384" and number-rows-repeated="1048571" for the empty
tail of every sheet it saves).

XML is read the way the reader reads it: by an XML tokenizer (expat, with no DTD processing) that
matches elements on their local name whatever their prefix, as calamine does. A regular-expression
fast path decides sheets written as every spreadsheet program writes them (<c r="B9" ...> in UTF-8,
no comment, no second r attribute) without Python work per cell; it reads exactly what the
tokenizer would, and anything else is tokenized. Every XML part is refused if it declares a DOCTYPE
(as PhpSpreadsheet's XmlScanner does), and the work is bounded: cells, elements tokenized and the text
the cells expand to are capped (see Limits), so that any file is judged in well under the reader's
time budget.

Zip bombs are stopped from the central directory (declared sizes, compression ratio) before anything
is inflated; inflating is then bounded by the declared sizes, and a member that inflates past its
declared size is refused (calamine's zip reader refuses it too).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import io
import itertools
import logging
import os
import posixpath
import re
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple
from xml.parsers import expat

import olefile

__all__ = ["OUTPUT_PROPERTY", "WARNING_RULES", "Limits", "Problem", "Verdict", "inspect_file"]

log = logging.getLogger("tonghop")

# The custom document property every workbook tonghop writes carries (its value: "feedback",
# "district"). A workbook that still has it, and whose core properties say it was never saved since
# it was written (modified == created), is tonghop's own output, never a submission.
OUTPUT_PROPERTY = "tonghop"


@dataclass(frozen=True, slots=True)
class Limits:
    max_bytes: int = 50_000_000  # file size on disk
    max_uncompressed: int = 200_000_000  # sum of declared uncompressed sizes in the zip
    max_member: int = 100_000_000
    max_ratio: float = 200.0  # uncompressed / compressed of any member larger than 1 MB uncompressed
    max_rows: int = 5_000  # last row holding a value, on any sheet (the template uses < 100)
    max_cols: int = 200  # last column holding a value
    max_repeat: int = 100_000  # ODS: rows x columns one valued cell is repeated over
    # Cells in the whole workbook (xlsx: <c> elements, valued or not; xls: cell records; ods: valued
    # cells, repeats expanded). Measured: calamine reads a sheet of 1,000,000 numbers in 1.2 s
    # (124 MB), the fast path counts them in about 0.1 s: one file stays within 5 s. A filled
    # template has 354.
    max_cells: int = 1_000_000
    # Characters of cell text the workbook expands to: a shared string counts once per cell naming
    # it, an ODS text once per repeat. calamine and Python hold 2 to 8 bytes a character (measured:
    # 10,000,000 characters of shared-string references read in 0.07 s, +40 MB; 320,000,000 take
    # 1.2 GB). Apache POI caps extracted text at 10 M characters too. A filled template names 5,005.
    max_text: int = 10_000_000
    # XML elements the tokenizer may walk in one file (sheets only odd writers make: no r, prefixes,
    # far cells...; the sheets programs write go by the fast path). expat calls back into Python at
    # each start and end: 1,000,000 elements took 2.9 s on the loaded 2-core machine (about 1.4 s
    # idle), so 500,000 keep the walk under 1.5 s.
    max_elements: int = 500_000


@dataclass(frozen=True, slots=True)
class Problem:
    rule: str  # id from schemas/rules.yaml
    detail: str = ""  # short Vietnamese detail for the message's {detail}
    sheet: str = ""  # for sheet-too-large


# problems that do not stop the reading (the file is read, and the problem reported beside it)
WARNING_RULES = frozenset({"file-macros"})


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: str  # "xlsx", "xlsm", "xls", "ods", or "" when not a workbook
    problems: tuple[Problem, ...] = ()
    # the fingerprint of the bytes judged ("" / None when the file was not read: too large, not a
    # regular file, not readable), so that a file is read once and hashed only when accepted
    sha256: str = field(default="", compare=False)
    mtime: float | None = field(default=None, compare=False)

    @property
    def readable(self) -> bool:
        """True when no problem other than a warning (file-macros) stops reading."""
        return all(p.rule in WARNING_RULES for p in self.problems)


def inspect_file(path: Path | str, limits: Limits = Limits()) -> Verdict:
    """Pre-scan the file at `path`; returns its Verdict. Never raises, never writes."""
    st = _State(limits)
    try:
        _inspect(os.fspath(path), st)  # (a str: Path() would parse it again, 10 µs)
    except _Stop as stop:
        st.problems.append(stop.problem)
    except OSError as exc:
        st.problems.append(_os_problem(os.fspath(path), exc))
    except Exception:  # the guard must never take the run down: an odd file becomes a finding
        log.warning("pre-scan of %s failed", path, exc_info=True)
        st.problems.append(Problem("file-unreadable", _DAMAGED))
    return Verdict(st.kind, tuple(st.problems), st.sha256, st.mtime)


_DAMAGED = "cấu trúc bên trong tệp không hợp lệ"
_BAD_XML = "nội dung XML bên trong tệp bị hỏng"


class _Stop(Exception):
    """A problem that ends the inspection (raised inside, always caught by inspect_file)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.rule)
        self.problem = problem


class _State:
    __slots__ = ("budget", "cells", "elements", "kind", "limits", "mtime", "problems", "seen", "sha256")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.kind = ""
        self.problems: list[Problem] = []
        self.budget = limits.max_uncompressed  # bytes the guard itself may still inflate
        self.cells = 0  # cells met so far (see Limits.max_cells)
        self.elements = 0  # XML elements tokenized so far
        self.seen: set[str] = set()  # XML parts whose prolog is known to hold no DOCTYPE
        self.sha256 = ""
        self.mtime: float | None = None

    def add_cells(self, n: int) -> None:
        self.cells += n
        if self.cells > self.limits.max_cells:
            raise _Stop(Problem("file-too-large", f"có hơn {_count(self.limits.max_cells)} ô"))


_CHUNK = 1 << 20
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def _inspect(path: str, st: _State) -> None:
    info = os.stat(path)  # follows links: a link's target is what a reader would open
    if not stat.S_ISREG(info.st_mode):
        raise _Stop(Problem("file-special", _special_kind(info.st_mode)))
    size = info.st_size
    if size == 0:
        raise _Stop(Problem("file-empty"))
    if size > st.limits.max_bytes:
        raise _Stop(Problem("file-too-large", f"tệp nặng {_size(size)}"))
    # never block: a FIFO swapped in after the stat above would otherwise wait for a writer forever
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with open(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise _Stop(Problem("file-special", _special_kind(info.st_mode)))
        # (read as much as the size says, and a byte more: asking for max_bytes would allocate it)
        data = fh.read(min(info.st_size, st.limits.max_bytes) + 1)
    st.sha256, st.mtime = hashlib.sha256(data).hexdigest(), info.st_mtime
    if len(data) > st.limits.max_bytes:  # it grew since the stat
        raise _Stop(Problem("file-too-large", f"tệp nặng hơn {_size(st.limits.max_bytes)}"))
    head = data[:4096]
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        _zip(data, st)
    elif head.startswith(_OLE_MAGIC):
        _ole(io.BytesIO(data), st)
    else:
        _other(head)


def _special_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "một thư mục"
    if stat.S_ISFIFO(mode):
        return "một đường ống (FIFO)"
    if stat.S_ISSOCK(mode):
        return "một socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "một thiết bị"
    return "một mục đặc biệt của hệ điều hành"


def _os_problem(path: str, exc: OSError) -> Problem:
    """The finding for a file the system would not let us read (the error itself goes to the log)."""
    log.warning("cannot read %s: %r", path, exc)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return Problem("file-no-access")
    if exc.errno == errno.ELOOP:
        return Problem("file-special", "một lối tắt (liên kết) vòng quanh, không dẫn tới tệp nào")
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        if os.path.islink(path):
            return Problem("file-special", "một lối tắt (liên kết) tới tệp không còn tồn tại")
        return Problem("file-unreadable", "tệp không còn trong thư mục")
    if exc.errno == errno.EISDIR:
        return Problem("file-special", "một thư mục")
    return Problem("file-unreadable", "máy tính báo lỗi khi đọc tệp")


# --- zip containers: xlsx, xlsm, ods -------------------------------------------------------------

class _Entry(NamedTuple):
    offset: int  # of the local header
    csize: int
    usize: int
    method: int
    flags: int


_EOCD = struct.Struct("<4s4H2LH")
# of a central directory header: flags, method, compressed and uncompressed size, name, extra and
# comment lengths, local header offset (the rest skipped)
_CDH = struct.Struct("<8xHH8xLLHHH8xL")
_ODS_MIME = b"application/vnd.oasis.opendocument.spreadsheet"
_BIG_MEMBER = 1 << 20  # the ratio limit applies to members inflating to more than this
_XML_PARTS = (".xml", ".rels", ".vml")
# parts of an xlsx no reader opens (layout, pictures, document properties): their DOCTYPE, if any,
# would reach no XML parser, and looking costs an inflate each (about 10 µs, a file has several)
_UNREAD_PARTS = ("xl/theme/", "docprops/", "xl/media/", "xl/drawings/", "xl/charts/",
                 "xl/printersettings/", "customxml/")


def _zip(buf: bytes, st: _State) -> None:
    entries = _directory(buf)
    if any("\\" in n for n in entries):
        raise _Stop(_zip_other(buf, entries, st))
    # calamine finds members whatever their case: so does the guard, and two names that differ only
    # by case are as ambiguous as two equal ones
    lower = {n.lower(): e for n, e in entries.items()}
    if len(lower) != len(entries):
        raise _Stop(Problem("file-truncated", "tệp nén có hai phần trùng tên"))
    if "mimetype" in entries:
        mime = _member(buf, entries["mimetype"], st, cap=200).strip()
        if not mime.startswith(_ODS_MIME):
            raise _Stop(Problem("file-not-workbook", _odf_kind(mime)))
        st.kind = "ods"
    elif "xl/workbook.xml" in lower:
        st.kind = "xlsx"
    else:
        raise _Stop(_zip_other(buf, entries, st))
    _zip_sizes(entries.values(), len(buf), st.limits)
    if any(e.flags & 0x1 for e in entries.values()):
        raise _Stop(Problem("file-encrypted"))
    if st.kind == "ods":
        _ods(buf, entries, st)
    else:
        if _package_root(buf, lower, st) != "xl/":
            # calamine reads the workbook wherever _rels/.rels puts it; the guard scans xl/ only
            raise _Stop(Problem("file-needs-resave", _ODD_PACKAGE))
        _xlsx(buf, lower, st)
    for name, e in lower.items():  # the parts no scan above has read, and a reader may
        if name.endswith(_XML_PARTS) and name not in st.seen and not name.startswith(_UNREAD_PARTS):
            _prolog(buf, e, st, name)


_ODD_PACKAGE = "bảng tính Excel ghi không theo cấu trúc chuẩn"


def _package_root(buf: bytes, lower: dict[str, _Entry], st: _State) -> str:
    """The folder of the workbook part as calamine finds it (the target of the officeDocument
    relationship of _rels/.rels, lower case), "xl/" when there is none (then calamine fails)."""
    e = lower.get("_rels/.rels")
    if e is None:
        return "xl/"
    data = _member(buf, e, st, 1 << 20)
    if _usual_root(data):
        if _PLAIN_PROLOG.match(data):
            st.seen.add("_rels/.rels")
        return "xl/"
    roots = []
    for attrs in _relationships(data, st, "_rels/.rels", ("Type", "Target")):
        if attrs.get("Type", "").endswith("/relationships/officeDocument"):
            target = attrs.get("Target", "")
            roots.append(target[:target.rfind("/") + 1].removeprefix("/").lower())
    return roots[-1] if roots and len(set(roots)) == 1 else "xl/" if not roots else ""


def _usual_root(data: bytes) -> bool:
    """Whether _rels/.rels is as every program writes it, for certain: one officeDocument
    relationship, whose tag holds Type and Target once each and Target="xl/workbook.xml", no '>'
    inside a value (3 µs; the tokenizer takes 25)."""
    at = data.find(b'/relationships/officeDocument"')
    if at < 0 or data.count(b"/relationships/officeDocument") != 1 or data.count(b"<") != data.count(b">"):
        return False
    tag = data[data.rfind(b"<", 0, at):data.find(b">", at)]
    return tag.count(b"Type") == 1 and tag.count(b"Target") == 1 and b' Target="xl/workbook.xml"' in tag


def _directory(buf: bytes) -> dict[str, _Entry]:
    """Name -> entry from the central directory; zipfile is the fallback for zip64 and odd archives."""
    end = buf.rfind(b"PK\x05\x06", max(0, len(buf) - 65_557))
    if end >= 0 and end + 22 <= len(buf):
        _, disk, cd_disk, n_here, n, cd_size, cd_off, _ = _EOCD.unpack_from(buf, end)
        if not disk and not cd_disk and n_here == n and cd_off + cd_size == end:
            entries: dict[str, _Entry] = {}
            pos = cd_off
            unpack = _CDH.unpack_from
            for _ in range(n):
                if pos + 46 > end or buf[pos:pos + 4] != b"PK\x01\x02":
                    break
                flags, method, csize, usize, nlen, xlen, clen, offset = unpack(buf, pos)
                if csize == 0xFFFFFFFF or usize == 0xFFFFFFFF or offset == 0xFFFFFFFF:
                    break  # zip64 sizes: leave them to zipfile
                name = buf[pos + 46:pos + 46 + nlen].decode("utf-8" if flags & 0x800 else "cp437", "replace")
                if name in entries:
                    break  # readers disagree on which duplicate wins: let zipfile's check decide below
                entries[name] = _Entry(offset, csize, usize, method, flags)
                pos += 46 + nlen + xlen + clen
            else:
                return entries
    try:
        zf = zipfile.ZipFile(io.BytesIO(buf))
    except (zipfile.BadZipFile, EOFError, struct.error, ValueError) as exc:
        log.info("zip directory unreadable: %r", exc)
        raise _Stop(Problem("file-truncated", "tệp nén bị hỏng")) from None
    infos = zf.infolist()
    if len({i.filename for i in infos}) != len(infos):
        # two members with one name: the guard could scan one while the reader opens the other
        raise _Stop(Problem("file-truncated", "tệp nén có hai phần trùng tên"))
    return {i.filename: _Entry(i.header_offset, i.compress_size, i.file_size, i.compress_type, i.flag_bits)
            for i in infos}


def _zip_other(buf: bytes, entries: dict[str, _Entry], st: _State) -> Problem:
    """What a zip that is neither an xlsx nor an ods as the reader expects them is: a spreadsheet
    that Excel or LibreOffice opens and can save again as .xlsx (file-needs-resave), or something
    else (file-not-workbook)."""
    lower = {n.replace("\\", "/").lower(): e for n, e in entries.items()}
    if any("\\" in n for n in entries) and ("xl/workbook.xml" in lower or "content.xml" in lower):
        return Problem("file-needs-resave", "bảng tính được nén bằng đường dẫn kiểu Windows (dấu \\)")
    if "xl/workbook.bin" in lower:
        return Problem("file-needs-resave", "bảng tính Excel nhị phân (.xlsb)")
    if "content.xml" in lower:
        manifest = lower.get("meta-inf/manifest.xml")
        kinds = _member(buf, manifest, st, 1 << 16) if manifest else b""
        if b"opendocument.text" in kinds:
            return Problem("file-not-workbook", "tệp văn bản .odt")
        if b"opendocument.presentation" in kinds:
            return Problem("file-not-workbook", "tệp trình chiếu .odp")
        content = _member(buf, lower["content.xml"], st, 1 << 16)
        if b"opendocument.spreadsheet" in kinds or b"spreadsheet" in content:
            return Problem("file-needs-resave", "bảng tính OpenDocument thiếu phần khai báo «mimetype»")
    types = lower.get("[content_types].xml")
    declared = _member(buf, types, st, 1 << 16).lower() if types else b""
    if b"spreadsheetml" in declared or b"ms-excel.sheet" in declared or any(
            n.endswith("/workbook.xml") or n == "workbook.xml" for n in lower):
        return Problem("file-needs-resave", _ODD_PACKAGE)
    return Problem("file-not-workbook", _zip_kind({n.replace("\\", "/") for n in entries}))


def _zip_kind(names: set[str]) -> str:
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

    What is yielded is charged to the file's inflate budget unless read `again`. Raises _Stop when
    the member is cut short, inflates past its declared size, or uses a compression method calamine
    cannot read either.
    """
    if buf[e.offset:e.offset + 4] != b"PK\x03\x04":
        raise _Stop(Problem("file-truncated", "tệp nén bị hỏng"))
    nlen, xlen = struct.unpack_from("<HH", buf, e.offset + 26)
    start = e.offset + 30 + nlen + xlen
    stop = start + e.csize
    if stop > len(buf):
        raise _Stop(Problem("file-truncated", "tệp nén bị cắt cụt"))
    want = e.usize if cap is None else min(cap, e.usize)

    def charge(n: int) -> None:
        if not again:
            st.budget -= n
            if st.budget < 0:
                raise _Stop(Problem("file-too-large", f"giải nén ra hơn {_size(st.limits.max_uncompressed)}"))

    if e.method == 0:
        if e.csize != e.usize:
            raise _Stop(Problem("file-truncated", "tệp nén bị hỏng"))
        for pos in range(start, start + want, _CHUNK):
            out = buf[pos:min(pos + _CHUNK, start + want)]
            charge(len(out))
            yield out
        return
    if e.method != 8:
        raise _Stop(Problem("file-unreadable", f"kiểu nén {e.method} không được hỗ trợ"))
    if cap is None and e.usize <= _CHUNK:  # the usual member: in one call
        d = zlib.decompressobj(-15)
        try:
            out = d.decompress(buf[start:stop], e.usize + 1)
            if len(out) != e.usize or (not d.eof and d.decompress(d.unconsumed_tail, 1)):
                raise _Stop(Problem("file-truncated", "kích thước khai báo trong tệp nén không đúng"))
        except zlib.error as exc:
            log.info("inflate failed: %r", exc)
            raise _Stop(Problem("file-truncated", "tệp nén bị hỏng")) from None
        charge(len(out))
        yield out
        return
    d = zlib.decompressobj(-15)
    pos, left = start, want
    step = _CHUNK if want > 4096 else 8192  # compressed bytes taken at a time: a few for a head
    try:
        while left > 0:
            if d.unconsumed_tail:
                data = d.unconsumed_tail
            else:
                data, pos = buf[pos:min(pos + step, stop)], min(pos + step, stop)
            out = d.decompress(data, min(_CHUNK, left))  # bounded: a bomb never lands in memory
            if not out:
                if data:
                    continue
                break
            left -= len(out)
            charge(len(out))
            yield out
        if cap is None and (left > 0 or (not d.eof and d.decompress(d.unconsumed_tail + buf[pos:stop], 1))):
            raise _Stop(Problem("file-truncated", "kích thước khai báo trong tệp nén không đúng"))
    except zlib.error as exc:
        log.info("inflate failed: %r", exc)
        raise _Stop(Problem("file-truncated", "tệp nén bị hỏng")) from None


def _member(buf: bytes, e: _Entry, st: _State, cap: int) -> bytes:
    """The first `cap` bytes of a small member (mimetype, rels, manifest...)."""
    return b"".join(_inflate(buf, e, st, cap))


def _buffers(chunks):
    """Re-cut a stream of chunks as (buf, end, eof) where every tag in buf[:end] is whole.

    `end` is just before the last '<' (an XML attribute value never holds one), so every tag and
    every text between two tags lies whole in one buf[:end].
    """
    buf, nxt = next(chunks, b""), next(chunks, b"")
    while True:
        end = buf.rfind(b"<") if nxt else -1
        end = end if end >= 0 else len(buf)
        yield buf, end, not nxt
        if not nxt:
            return
        carry = buf[end:]
        parts, got = [carry, nxt], len(nxt)
        while got < len(carry):  # a tag longer than a chunk: read as much again, so rescans stay linear
            more = next(chunks, b"")
            if not more:
                break
            parts.append(more)
            got += len(more)
        buf, nxt = b"".join(parts), next(chunks, b"")


# --- the XML tokenizer -----------------------------------------------------------------------------

class _Done(Exception):
    """Raised by a handler that has seen what it needed: the parse stops there."""


def _parser(st: _State, where: str) -> expat.XMLParserType:
    """An expat parser that processes no DTD: a DOCTYPE anywhere stops the scan (file-doctype).

    Names are qualified ("x:c"): elements are matched on their local part, whatever the prefix, as
    calamine matches them (it does not resolve namespaces either).
    """
    p = expat.ParserCreate()
    p.buffer_text = True
    p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)

    def doctype(*_args) -> None:
        raise _Stop(Problem("file-doctype", f"phần {where}"))

    p.StartDoctypeDeclHandler = doctype
    return p


def _feed(p: expat.XMLParserType, chunks, where: str, st: _State, strict: bool = True) -> None:
    """Parse the chunks of the part `where` to the end (or until a handler raises _Done, which it
    does from within the root element at the earliest). Malformed XML stops the scan
    (file-unreadable) when `strict`, else ends the parse quietly."""
    try:
        for chunk in chunks:
            p.Parse(chunk, False)
        p.Parse(b"", True)
        st.seen.add(where)
    except _Done:
        st.seen.add(where)
    except expat.ExpatError as exc:
        log.info("XML error in %s: %s", where, exc)
        if strict:
            raise _Stop(Problem("file-unreadable", _BAD_XML)) from None


def _local(name: str) -> str:
    return name[name.rfind(":") + 1:]


def _count_element(st: _State) -> None:
    st.elements += 1
    if st.elements > st.limits.max_elements:
        detail = f"nội dung có hơn {_count(st.limits.max_elements)} phần tử XML"
        raise _Stop(Problem("file-too-large", detail))


_DECL = re.compile(rb"<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)")
_PLAIN_PROLOG = re.compile(rb"(?:\xef\xbb\xbf)?(?:<\?xml[^<>]*\?>)?\s*<[A-Za-z_]")
# the usual prolog of a part in UTF-8 (or ASCII): the fast paths read no other
_PLAIN_UTF8 = re.compile(rb"(?:\xef\xbb\xbf)?(?:<\?xml(?:(?!encoding)[^<>])*"
                         rb"(?:encoding\s*=\s*[\"'](?i:utf-?8|us-ascii|ascii)[\"'][^<>]*)?\?>)?\s*<[A-Za-z_]")


def _prolog(buf: bytes, e: _Entry, st: _State, name: str) -> None:
    """Refuse the member if it declares a DOCTYPE (file-doctype). The usual prolog (an XML
    declaration, then the root element) is told from its first bytes; anything else is tokenized up
    to the root element."""
    if _PLAIN_PROLOG.match(_head(buf, e, 512)):
        return
    p = _parser(st, name)

    def start(*_args) -> None:
        raise _Done

    p.StartElementHandler = start
    _feed(p, _inflate(buf, e, st), name, st, strict=False)  # a part no reader opens may be anything


def _head(buf: bytes, e: _Entry, n: int) -> bytes:
    """At most the first n bytes of a member, cheaply; b"" where anything is odd (_inflate will say
    what when the member is read)."""
    if buf[e.offset:e.offset + 4] != b"PK\x03\x04":
        return b""
    nlen, xlen = struct.unpack_from("<HH", buf, e.offset + 26)
    start = e.offset + 30 + nlen + xlen
    if e.method == 0:
        return buf[start:start + min(n, e.csize)]
    if e.method != 8:
        return b""
    try:
        return zlib.decompressobj(-15).decompress(buf[start:start + min(e.csize, 4096)], n)
    except zlib.error:
        return b""


def _utf8(head: bytes) -> bool:
    """True when the document is (declared) UTF-8 or ASCII: the only encodings the fast paths read."""
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    elif not head.startswith(b"<"):
        return False
    m = _DECL.match(head)
    return m is None or m.group(1).lower() in (b"utf-8", b"utf8", b"us-ascii", b"ascii")


# --- xlsx / xlsm --------------------------------------------------------------------------------

def _xlsx(buf: bytes, entries: dict[str, _Entry], st: _State) -> None:
    """Scan an xlsx whose `entries` are keyed by lower-case name (as calamine looks them up)."""
    own = _own_output(buf, entries, st)
    if own:
        raise _Stop(Problem("file-own-output", own))
    macros = "xl/vbaproject.bin" in entries or any(n.startswith("xl/macrosheets/") for n in entries)
    if not macros and "[content_types].xml" in entries:
        types = _member(buf, entries["[content_types].xml"], st, 1 << 20)
        macros = b"macroenabled" in types.lower()
        if _PLAIN_PROLOG.match(types):
            st.seen.add("[content_types].xml")
    if macros:
        st.kind = "xlsm"
        st.problems.append(Problem("file-macros"))
    rels, everything = _workbook_rels(buf, entries, st)
    members = {t for t in rels.values() if t in entries}
    members.update(n for n in entries
                   if n.endswith(".xml") and (everything or n.startswith("xl/worksheets/")))
    strings = _Strings(buf, entries.get("xl/sharedstrings.xml"), st)
    sheet_bytes = sum(entries[m].usize for m in members)
    # count the string cells only where (cells any sheet can hold) x (the longest string) passes max_text
    named = sheet_bytes // _MIN_CELL * strings.longest > st.limits.max_text
    scans = []
    count = sheet_bytes // _MIN_CELL > st.limits.max_cells
    for member in sorted(members):
        scan = _xlsx_sheet(buf, entries[member], st, member, count, named)
        scans.append((member, scan))
        if scan.max_row > st.limits.max_rows or scan.max_col > st.limits.max_cols:
            detail = f"vùng A1:{_letters(scan.max_col)}{scan.max_row}"
            name = _sheet_name(buf, entries, rels, member, st)
            st.problems.append(Problem("sheet-too-large", detail, name))
    _xlsx_text(buf, entries, st, strings, scans)


class _SheetScan(NamedTuple):
    max_row: int  # extent of the valued cells (1-based; 0 when none), as calamine places them
    max_col: int
    string_cells: int  # cells with t="s" (on the fast path: an upper bound)
    fast: bool  # taken by the fast path


_MIN_CELL = 11  # bytes of the shortest cell, <c r="A1"/>: a sheet of n bytes holds at most n // 11


def _xlsx_sheet(buf: bytes, e: _Entry, st: _State, member: str, count: bool, named: bool) -> _SheetScan:
    """Scan one worksheet: the fast path when it applies, else the tokenizer (twice when a valued cell
    lies beyond the limits: the second time every cell's value is read, for the exact extent).
    Without `count` (the sheets are too small to pass max_cells), the fast path does not count cells,
    without `named` the string cells (usize // _MIN_CELL bounds both)."""
    fast = _fast_sheet(buf, e, st, member, count, named)
    if fast is not None:
        st.add_cells(fast[0])
        return _SheetScan(0, 0, fast[1] if named else e.usize // _MIN_CELL, True)
    walk = _SheetWalk(st)
    walk.run(_inflate(buf, e, st, again=True), member)
    if walk.max_row > st.limits.max_rows or walk.max_col > st.limits.max_cols:
        walk = _SheetWalk(st, every_value=True)
        walk.run(_inflate(buf, e, st, again=True), member)
    return _SheetScan(walk.max_row, walk.max_col, walk.string_cells, False)


def _fast_sheet(buf: bytes, e: _Entry, st: _State, member: str, count: bool = True,
                named: bool = True) -> tuple[int, int] | None:
    """The number of cells of a sheet written as spreadsheet programs write it, found with C-speed
    searches; None when the sheet is anything else: the tokenizer decides then.

    "As programs write it": UTF-8 and the usual prolog (no DOCTYPE); no prefixed cell; every cell
    start tag is <c r="REF" s="7" t="s"> (s and t optional) or .../> with REF within the limits
    (upper-case letters, no leading zero). Under these conditions the tokenizer would see every cell at
    its REF, so no valued cell lies beyond the limits, '<c ' counts every cell and ' t="s"' every
    cell that may name a shared string (a comment or CDATA could only add to them). Returns (cells,
    string cells); with `count` (`named`) False the cells (string cells) are not counted (0)."""
    suspect = _suspect_cell(st.limits.max_rows, st.limits.max_cols)
    if e.usize <= _CHUNK:  # the usual sheet: one piece, no re-cutting
        pieces = (((data := b"".join(_inflate(buf, e, st))), len(data), True),)
    else:
        pieces = _buffers(_inflate(buf, e, st))
    cells = strings = 0
    first = True
    for data, end, _eof in pieces:
        if first:
            first = False
            if not _PLAIN_UTF8.match(data):
                return None
            st.seen.add(member)
        if suspect.search(data, 0, end) or (
                data.find(b":c", 0, end) >= 0 and _PREFIXED_CELL.search(data, 0, end)):
            return None
        if count:
            cells += data.count(b"<c ", 0, end)
        if named:
            strings += data.count(b' t="s"', 0, end)
    return cells, strings


_PREFIXED_CELL = re.compile(rb":c[\s/>]")


@functools.lru_cache(maxsize=8)
def _suspect_cell(max_rows: int, max_cols: int) -> re.Pattern[bytes]:
    """A regex for a cell start tag the fast path does not take (see _fast_sheet)."""
    if max_rows < 1 or max_cols < 1:
        return re.compile(rb"<c[\s/>]")
    ref = _columns_upto(max_cols) + _numbers_upto(max_rows)
    # s and t, in that order, as Excel, LibreOffice and xlsxwriter write them (any other attribute
    # goes to the tokenizer): as fast as checking REF alone, twice as fast as any lower-case attribute
    return re.compile(rb'<c(?! r="' + ref + rb'"(?: s="[0-9]++")?+(?: t="[a-zA-Z]++")?+\s*+/?>)[\s/>]')


def _numbers_upto(n: int) -> bytes:
    """A regex matching the decimal numbers 1..n written without leading zeros."""
    s = str(n)
    parts = [rb"[1-9]\d{0,%d}" % (len(s) - 2)] if len(s) > 1 else []
    for i, ch in enumerate(s):
        low = 1 if i == 0 else 0
        if int(ch) > low:
            parts.append(s[:i].encode() + b"[%d-%d]" % (low, int(ch) - 1) + (rb"\d{%d}" % (len(s) - i - 1)))
    parts.append(s.encode())
    return b"(?:" + b"|".join(parts) + b")"


def _columns_upto(n: int) -> bytes:
    """A regex matching the upper-case column names A..(column n)."""
    s = _letters(n)
    parts = [rb"[A-Z]{1,%d}" % (len(s) - 1)] if len(s) > 1 else []
    for i, ch in enumerate(s):
        if ch > "A":
            below = b"[A-%s]" % chr(ord(ch) - 1).encode()
            parts.append(s[:i].encode() + below + (rb"[A-Z]{%d}" % (len(s) - i - 1)))
    parts.append(s.encode())
    return b"(?:" + b"|".join(parts) + b")"


class _SheetWalk:
    """Tokenize a worksheet and place its cells as calamine does: a cell at its r attribute, else
    after the previous cell of its row; a row at its r attribute, else after the previous row.

    Keeps the extent of the valued cells, counts cells (Limits.max_cells) and elements, and, when
    `strings` (shared string lengths) is given, adds up the length of the string each t="s" cell
    names (an index calamine cannot read is 0, as calamine takes it).
    """

    def __init__(self, st: _State, strings: list[int] | None = None, every_value: bool = False) -> None:
        self.st, self.strings, self.every_value = st, strings, every_value
        self.row = self.col = 0  # 0-based position of the next implicit row and cell
        self.max_row = self.max_col = 0
        self.string_cells = 0
        self.text = 0  # characters of the shared strings named (with `strings`)
        self.cell: tuple[int, int, str | None] | None = None  # (row, col, t) of the open cell
        self.valued = False
        self.value: list[str] | None = None  # the text of the <v> being read, when it matters
        self.parser: expat.XMLParserType | None = None

    def run(self, chunks, where: str) -> None:
        p = self.parser = _parser(self.st, where)
        p.StartElementHandler, p.EndElementHandler = self.start, self.end
        _feed(p, chunks, where, self.st)

    def start(self, name: str, attrs: dict[str, str]) -> None:
        st = self.st
        st.elements += 1
        if st.elements > st.limits.max_elements:
            _count_element(st)
        local = name[name.rfind(":") + 1:]
        if local == "c":
            st.cells += 1
            if st.cells > st.limits.max_cells:
                st.add_cells(0)
            ref, t = attrs.get("r"), attrs.get("t")
            if ref is not None:
                pos = _ref(ref)
                if pos is None:  # calamine fails the whole sheet on it: nothing to place
                    self.cell = None
                    return
                row, col = pos
                self.col = col - 1
            else:
                row, col = self.row + 1, self.col + 1
            self.col += 1
            self.cell, self.valued = (row, col, t), False
            if t == "s":
                self.string_cells += 1
        elif self.cell is not None:
            if local == "is":
                self.valued = True
            elif local == "v" and self.cell[2] not in ("inlineStr", "is") and self._matters():
                self.value = []
                self.parser.CharacterDataHandler = self.value.append
        elif local == "row":
            ref = attrs.get("r")
            if ref is not None:
                pos = _ref(ref, row_only=True)
                if pos is not None:
                    self.row = pos[0] - 1

    def _matters(self) -> bool:
        """Whether the open cell's value is needed: it lies beyond the limits, or names a string."""
        row, col, t = self.cell
        lim = self.st.limits
        return (self.every_value or row > lim.max_rows or col > lim.max_cols
                or (t == "s" and self.strings is not None))

    def end(self, name: str) -> None:
        local = name[name.rfind(":") + 1:]
        if local == "v" and self.value is not None:
            self.parser.CharacterDataHandler = None
            text = "".join(self.value)
            self.value = None
            if text:
                self.valued = True
                if self.strings is not None and self.cell and self.cell[2] == "s":
                    i = int(text) if text.isascii() and text.isdigit() and len(text) < 12 else 0
                    self.text += self.strings[i] if i < len(self.strings) else 0
        elif local == "c":
            if self.cell is not None and self.valued:
                self.max_row, self.max_col = max(self.max_row, self.cell[0]), max(self.max_col, self.cell[1])
            self.cell = None
        elif local == "row":
            self.row += 1
            self.col = 0


_HUGE = 10**12  # a row or column number no sheet has: stands for any absurdly long reference


_REF = re.compile(r"([A-Za-z]*)([0-9]+)\Z")


def _ref(ref: str, row_only: bool = False) -> tuple[int, int] | None:
    """(row, column), 1-based, of a cell reference read as calamine reads it (letters in either case,
    then digits); None where calamine reports an error (no row, row 0, another character)."""
    m = _REF.match(ref)
    if m is None:
        return None
    letters, digits = m.groups()
    if not letters and not row_only:
        return None
    digits = digits.lstrip("0")
    if not digits:
        return None  # row 0
    return (int(digits) if len(digits) <= 12 else _HUGE), _column_number(letters)


@functools.lru_cache(maxsize=4096)
def _column_number(letters: str) -> int:
    col = 0
    for ch in letters:
        col = min(col * 26 + (ord(ch) & 0x1F), _HUGE)
    return col


class _Strings:
    """The shared strings table: a bound on its longest string, and on demand the length in
    characters of each string (all its text, phonetic runs included)."""

    def __init__(self, buf: bytes, e: _Entry | None, st: _State) -> None:
        self.buf, self.e, self.st = buf, e, st
        self.size = e.usize if e is not None else 0

    @functools.cached_property
    def longest(self) -> int:
        """At least the length of the longest string: the bytes between two <si of a plain table (the
        usual UTF-8 prolog; no comment, CDATA, processing instruction or prefixed si, so that every
        "<si" starts a string), else the table's size. (The whole table inflated costs about as much as
        its head, which is read for a DOCTYPE anyway: it is read so instead.)"""
        if self.e is None or self.size > _CHUNK:
            return self.size
        data = b"".join(_inflate(self.buf, self.e, self.st, again=True))
        if not _PLAIN_UTF8.match(data) or b"<!" in data or data.count(b"<?") > 1 or b":si" in data:
            return self.size
        self.st.seen.add("xl/sharedstrings.xml")
        return max(map(len, data.split(b"<si")))

    @functools.cached_property
    def lengths(self) -> list[int]:
        if self.e is None:
            return []
        out: list[int] = []
        st = self.st
        p = _parser(st, "xl/sharedstrings.xml")

        def start(name: str, _attrs) -> None:
            _count_element(st)
            if _local(name) == "si":
                out.append(0)

        def text(data: str) -> None:
            if out:
                out[-1] += len(data)

        p.StartElementHandler, p.CharacterDataHandler = start, text
        _feed(p, _inflate(self.buf, self.e, st, again=True), "xl/sharedstrings.xml", st)
        return out


def _xlsx_text(buf: bytes, entries, st: _State, strings: _Strings, scans: list) -> None:
    """Refuse the file when the shared strings its cells name add up to more than max_text
    characters. Bounded first by (cells that may name a string) x (the longest possible string),
    cheapest first; the cells' own indexes are read only when the bounds do not settle it."""
    cap = st.limits.max_text
    named = sum(s.string_cells for _, s in scans)
    if not named or named * strings.longest <= cap:
        return
    lengths = strings.lengths
    if named * max(lengths, default=0) <= cap:
        return
    total = 0
    for member, scan in scans:
        text = _fast_text(buf, entries[member], st, lengths) if scan.fast else None
        if text is None:
            walk = _SheetWalk(st, lengths)
            walk.run(_inflate(buf, entries[member], st, again=True), member)
            text = walk.text
        total += text
    if total > cap:
        raise _Stop(Problem("file-too-large", f"chữ trong các ô dài tổng cộng {_count(total)} ký tự"))


_STRING_VALUE = re.compile(rb' t="s"[^>]*><v>([0-9]{1,12})</v>')


def _fast_text(buf: bytes, e: _Entry, st: _State, lengths: list[int]) -> int | None:
    """The characters a sheet the fast path took names through its t="s" cells, read with a regex
    (<c ... t="s" ...><v>7</v>: how programs write them); None when some t="s" cell is written
    otherwise (its index is then read by the tokenizer)."""
    n, total, carry = len(lengths), 0, b""
    chunks = _inflate(buf, e, st, again=True)
    for chunk in itertools.chain(chunks, [None]):
        data = carry + chunk if chunk is not None else carry
        end = data.rfind(b"<c ") if chunk is not None else len(data)  # the cells before it are whole
        if end <= 0:
            carry = data
            continue
        found = _STRING_VALUE.findall(data, 0, end)
        if len(found) != data.count(b' t="s"', 0, end):
            return None
        total += sum(lengths[i] if i < n else 0 for i in map(int, found))
        carry = data[end:]
    return total


def _own_output(buf: bytes, entries: dict[str, _Entry], st: _State) -> str:
    """'tệp phản hồi'... when the workbook is one tonghop wrote and nobody saved since, else ''."""
    custom, core = entries.get("docprops/custom.xml"), entries.get("docprops/core.xml")
    if custom is None or core is None:
        return ""
    data = _member(buf, custom, st, 1 << 16)
    if OUTPUT_PROPERTY.encode() not in data:
        return ""
    props = _texts(data, st, "docprops/custom.xml", "property", "name")
    kind = props.get(OUTPUT_PROPERTY)
    if kind is None:
        return ""
    times = _texts(_member(buf, core, st, 1 << 16), st, "docprops/core.xml", "")
    created, modified = times.get("created"), times.get("modified")
    if not created or created != modified:
        return ""  # saved again since: a ward's corrected workbook is a submission
    return _OWN_KINDS.get(kind, "một tệp kết quả")


_OWN_KINDS = {"feedback": "tệp phản hồi gửi đơn vị", "district": "bảng tổng hợp của Phòng"}


def _texts(data: bytes, st: _State, where: str, element: str, key: str = "") -> dict[str, str]:
    """The text of elements of a small XML part: `element` (local name) -> text; or, with `key`,
    the attribute `key` of each `element` -> the text inside it. `element` '' takes every element."""
    out: dict[str, str] = {}
    current: list = [None, []]
    p = _parser(st, where)

    def start(name: str, attrs: dict[str, str]) -> None:
        _count_element(st)
        local = _local(name)
        if key and local == element:
            current[0], current[1] = attrs.get(key), []
        elif not key and (not element or local == element):
            current[0], current[1] = local, []

    def end(name: str) -> None:
        local = _local(name)
        if current[0] is not None and ((key and local == element) or (not key and local == current[0])):
            out.setdefault(current[0], "".join(current[1]).strip())
            current[0] = None

    p.StartElementHandler, p.EndElementHandler = start, end
    p.CharacterDataHandler = lambda text: current[1].append(text)
    _feed(p, [data], where, st)
    return out


def _workbook_rels(buf: bytes, entries: dict[str, _Entry], st: _State) -> tuple[dict[str, str], bool]:
    """(relationship id -> the member it targets, for the sheets of xl/workbook.xml; whether every
    XML member must be scanned). calamine takes a target as written (an absolute one from the root,
    else under xl/, no ".." resolved, no entity decoded): each target is taken so and, when it has
    "..", resolved too. A part holding an entity ("&...;") may name a member the tokenizer's decoded
    names miss: every XML member is then scanned."""
    e = entries.get("xl/_rels/workbook.xml.rels")
    if e is None:
        return {}, False
    out: dict[str, str] = {}
    data = _member(buf, e, st, e.usize)
    for attrs in _relationships(data, st, "xl/_rels/workbook.xml.rels", ("Id", "Type", "Target")):
        kind = attrs.get("Type", "").rsplit("/", 1)[-1]
        if kind not in ("worksheet", "dialogsheet", "chartsheet"):
            continue  # (an external target is no member of the zip, and only members are scanned)
        target = attrs.get("Target", "")
        if target:
            path = (target[1:] if target.startswith("/") else "xl/" + target).lower()
            out[attrs.get("Id", "")] = path
            if ".." in path:
                out[attrs.get("Id", "") + "\0resolved"] = posixpath.normpath(path)
    return out, b"&" in data


def _relationships(data: bytes, st: _State, where: str, keys: tuple[str, ...]) -> list[dict[str, str]]:
    """The Relationship elements of a rels part (local name, whatever the prefix), with the attributes
    in `keys`. (Tokenized: expat takes 34 µs on the 1.5 KB rels part of the template, regular
    expressions reading it as calamine does took 61 µs.)"""
    out: list[dict[str, str]] = []
    p = _parser(st, where)

    def start(name: str, attrs: dict[str, str]) -> None:
        _count_element(st)
        if name == "Relationship" or name.endswith(":Relationship"):
            out.append({k: attrs[k] for k in keys if k in attrs})

    p.StartElementHandler = start
    _feed(p, [data], where, st)
    return out


def _sheet_name(buf: bytes, entries: dict[str, _Entry], rels: dict, member: str, st: _State) -> str:
    """The name a person sees for the sheet stored in `member` (the member's file name if unknown)."""
    ids = {rid.split("\0")[0] for rid, target in rels.items() if target == member}
    e = entries.get("xl/workbook.xml")
    if e is None or not ids:
        return member.rsplit("/", 1)[-1]
    found: list[str] = []
    p = _parser(st, "xl/workbook.xml")

    def start(name: str, attrs: dict[str, str]) -> None:
        if _local(name) == "sheet" and attrs.get("name"):
            rid = next((v for k, v in attrs.items() if _local(k) == "id"), None)
            if rid in ids:
                found.append(attrs["name"])
                raise _Done

    p.StartElementHandler = start
    with contextlib.suppress(_Stop):  # a name is a courtesy; the sheet's problem is already known
        _feed(p, _inflate(buf, e, st, again=True), "xl/workbook.xml", st)
    return found[0] if found else member.rsplit("/", 1)[-1]


def _letters(col: int) -> str:
    out = ""
    while col > 0:
        col, rem = divmod(col - 1, 26)
        out = chr(65 + rem) + out
    return out or "A"


# --- ods ----------------------------------------------------------------------------------------

def _ods(buf: bytes, entries: dict[str, _Entry], st: _State) -> None:
    manifest = entries.get("META-INF/manifest.xml")
    if manifest and b"encryption-data" in _member(buf, manifest, st, 1 << 22):
        raise _Stop(Problem("file-encrypted"))
    if any(n.startswith(("Basic/", "Scripts/")) for n in entries):
        st.problems.append(Problem("file-macros"))
    if "content.xml" in entries:
        walk = _OdsWalk(st)
        walk.run(_inflate(buf, entries["content.xml"], st))
        if walk.text > st.limits.max_text:
            detail = f"chữ trong các ô dài tổng cộng {_count(walk.text)} ký tự"
            raise _Stop(Problem("file-too-large", detail))


_ODS_VALUE_ATTRS = frozenset({"value-type", "value", "string-value", "date-value", "time-value",
                              "boolean-value", "formula"})
_ODS_TEXT_ATTRS = ("string-value", "date-value", "time-value", "formula")


class _OdsWalk:
    """Tokenize content.xml: rows and cells, positions advanced by their repeat counts (read as
    calamine reads them: a Rust usize, so "+5" is 5).

    A cell counts when calamine could give it a value (a value or value-type attribute, or a
    formula); its extent is its row/column position plus its repeats, and its repeats multiplied
    (columns x the rows of its row) must stay under max_repeat. Empty cells and rows may repeat any
    number of times. The text of a valued cell (its content, <text:s> spaces, value attributes)
    counts once per repeat towards max_text, its repeats towards max_cells.
    """

    def __init__(self, st: _State) -> None:
        self.st = st
        self.sheet, self.flagged = "", False
        self.row0 = self.row_rep = self.col0 = self.max_row = self.max_col = 0
        self.cell: list | None = None  # [repeats, characters] of the valued cell being read
        self.text = 0
        self.parser: expat.XMLParserType | None = None

    def run(self, chunks) -> None:
        p = self.parser = _parser(self.st, "content.xml")
        p.StartElementHandler, p.EndElementHandler = self.start, self.end
        _feed(p, chunks, "content.xml", self.st)
        self.close_sheet()

    def close_sheet(self) -> None:
        lim = self.st.limits
        if not self.flagged and (self.max_row > lim.max_rows or self.max_col > lim.max_cols):
            detail = f"vùng A1:{_letters(self.max_col)}{self.max_row}"
            self.st.problems.append(Problem("sheet-too-large", detail, self.sheet))

    def start(self, name: str, attrs: dict[str, str]) -> None:
        _count_element(self.st)
        local = _local(name)
        if local in ("table-cell", "covered-table-cell"):
            rep = _attr_count(attrs, "number-columns-repeated")
            if any(_local(k) in _ODS_VALUE_ATTRS for k in attrs):
                self.valued_cell(rep, attrs)
            self.col0 += rep
        elif self.cell is not None:
            if local == "s":
                self.cell[1] += _attr_count(attrs, "c")
            elif local == "p":
                self.cell[1] += 1  # a new line between paragraphs
        elif local == "table-row":
            self.row0 += self.row_rep
            self.row_rep = _attr_count(attrs, "number-rows-repeated")
            self.col0 = 0
        elif local == "table":
            self.close_sheet()
            self.sheet = next((v for k, v in attrs.items() if _local(k) == "name"), "")
            self.flagged = False
            self.row0 = self.row_rep = self.col0 = self.max_row = self.max_col = 0

    def valued_cell(self, rep: int, attrs: dict[str, str]) -> None:
        lim = self.st.limits
        times = rep * self.row_rep
        if not self.flagged:
            self.max_row = max(self.max_row, self.row0 + self.row_rep)
            self.max_col = max(self.max_col, self.col0 + rep)
            if times > lim.max_repeat:
                self.flagged = True
                detail = f"một ô lặp lại {_count(times)} lần"
                self.st.problems.append(Problem("sheet-too-large", detail, self.sheet))
        if times > lim.max_repeat:
            times = 0  # the sheet is refused already: its cells and text need no counting
        self.st.add_cells(times)
        chars = sum(len(v) for k, v in attrs.items() if _local(k) in _ODS_TEXT_ATTRS)
        self.cell = [times, chars]
        self.parser.CharacterDataHandler = self.chars

    def chars(self, text: str) -> None:
        self.cell[1] += len(text)

    def end(self, name: str) -> None:
        if self.cell is not None and _local(name) in ("table-cell", "covered-table-cell"):
            times, chars = self.cell
            self.cell = None
            self.parser.CharacterDataHandler = None
            self.text += times * chars
            if self.text > self.st.limits.max_text:
                detail = f"chữ trong các ô dài tổng cộng hơn {_count(self.st.limits.max_text)} ký tự"
                raise _Stop(Problem("file-too-large", detail))


def _attr_count(attrs: dict[str, str], local: str) -> int:
    """The count in the attributes of that local name (the largest, should several prefixes carry
    one), 1 when none."""
    return max((_usize(v) for k, v in attrs.items() if _local(k) == local), default=1)


def _usize(value: str) -> int:
    """A repeat count as calamine parses it (Rust's usize: an optional '+', then ASCII digits); a
    value it cannot parse fails its read, and counts 1 here."""
    digits = value[1:] if value.startswith("+") else value
    if not digits or not (digits.isascii() and digits.isdigit()):
        return 1
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 12 else _HUGE


def _count(n: int) -> str:
    return f"{n:,}".replace(",", ".")


# --- OLE: xls, encrypted OOXML, Word/PowerPoint 97 ----------------------------------------------

_FILEPASS, _BOUNDSHEET, _EOF, _SST, _CONTINUE, _LABELSST = 0x002F, 0x0085, 0x000A, 0x00FC, 0x003C, 0x00FD
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
        log.info("OLE container unreadable: %r", exc)
        raise _Stop(Problem("file-truncated", "tệp bị hỏng")) from None
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
            log.info("Workbook stream unreadable: %r", exc)
            raise _Stop(Problem("file-truncated", "tệp bị hỏng")) from None
    _biff(data, st)


def _biff(data: bytes, st: _State) -> None:
    """Walk the Workbook stream's records: FILEPASS, sheet kinds and names, cells beyond the limits,
    the number of cells and the text the LABELSST cells expand to."""
    unpack = struct.Struct("<HH").unpack_from
    max_rows, max_cols = st.limits.max_rows, st.limits.max_cols
    n, pos = len(data), 0
    starts: dict[int, str] = {}  # stream offset of a sheet's BOF -> its name
    beyond: dict[str, list[int]] = {}  # sheet -> [last row, last column] once a cell passes a limit
    in_globals, sheet, macros = True, "", False
    cells, sst, labels = 0, -1, []
    while pos + 4 <= n:
        rtype, rlen = unpack(data, pos)
        if rtype in _CELL_RECORDS or rtype == _MULRK:
            if rlen >= 6 or (rlen >= 4 and rtype != _MULRK):
                row, col = unpack(data, pos + 4)
                first = col
                if rtype == _MULRK:
                    col = _U16(data, pos + 2 + rlen)[0]  # its last column is stored after the values
                cells += max(1, col - first + 1)
                if cells > st.limits.max_cells:
                    st.add_cells(cells)
                if row >= max_rows or col >= max_cols:  # 0-based here
                    e = beyond.setdefault(sheet, [0, 0])
                    e[0], e[1] = max(e[0], row + 1), max(e[1], col + 1)
                if rtype == _LABELSST and rlen >= 10:
                    labels.append(pos)
        elif rtype in _BOFS:
            sheet = starts.get(pos, sheet)
        elif in_globals:
            if rtype == _FILEPASS:
                raise _Stop(Problem("file-encrypted"))
            if rtype == _BOUNDSHEET and rlen >= 8:
                starts[struct.unpack_from("<I", data, pos + 4)[0]] = _biff_name(data[pos + 10:pos + 4 + rlen])
                macros = macros or data[pos + 9] in (1, 6)  # an XLM macro sheet, a VB module
            elif rtype == _SST and sst < 0:
                sst = pos
            elif rtype == _EOF:
                in_globals = False
        pos += 4 + rlen
    if macros:
        st.problems.append(Problem("file-macros"))
    for name, (rows, cols) in beyond.items():
        # the area up to the farthest cells that pass a limit (those within were not tracked)
        st.problems.append(Problem("sheet-too-large", f"vùng A1:{_letters(cols)}{rows}", name))
    if labels and sst >= 0:
        _biff_text(data, sst, labels, st)


def _biff_text(data: bytes, sst: int, labels: list[int], st: _State) -> None:
    """Refuse the workbook when its LABELSST cells name more than max_text characters of strings:
    first bounded by the size of the SST (with its CONTINUE records), then counted string by string."""
    cap = st.limits.max_text
    records = []
    pos = sst
    while pos + 4 <= len(data):
        rtype, rlen = struct.unpack_from("<HH", data, pos)
        if pos != sst and rtype != _CONTINUE:
            break
        records.append(data[pos + 4:pos + 4 + rlen])
        pos += 4 + rlen
    if len(labels) * sum(map(len, records)) <= cap:
        return
    lengths = _sst_lengths(records)
    longest = max(lengths, default=0)
    total = 0
    for at in labels:
        i = struct.unpack_from("<I", data, at + 10)[0]
        total += lengths[i] if i < len(lengths) else longest
    if total > cap:
        raise _Stop(Problem("file-too-large", f"chữ trong các ô dài tổng cộng {_count(total)} ký tự"))


def _sst_lengths(records: list[bytes]) -> list[int]:
    """The character count of each string of a BIFF8 SST (its first record without the two counts,
    then its CONTINUE records); a string's characters may go on in the next record, which then
    starts with a flags byte. Stops quietly at the first thing out of place."""
    out: list[int] = []
    seg, pos = 0, 8

    def take(n: int, flag_at_break: bool = False) -> bool:
        """Skip n bytes (characters: n counts them, their width from the flags) across records."""
        nonlocal seg, pos
        while n > 0:
            if seg >= len(records):
                return False
            avail = len(records[seg]) - pos
            if avail >= n:
                pos += n
                return True
            n -= avail
            seg, pos = seg + 1, 0
        return True

    def byte() -> int | None:
        nonlocal seg, pos
        while seg < len(records) and pos >= len(records[seg]):
            seg, pos = seg + 1, 0
        if seg >= len(records):
            return None
        pos += 1
        return records[seg][pos - 1]

    while seg < len(records):
        lo, hi, flags = byte(), byte(), byte()
        if flags is None or lo is None or hi is None:
            break
        cch = lo | hi << 8
        runs = ext = 0
        if flags & 0x8:
            a, b = byte(), byte()
            runs = (a or 0) | (b or 0) << 8
        if flags & 0x4:
            raw = [byte() for _ in range(4)]
            ext = int.from_bytes(bytes(x or 0 for x in raw), "little")
        left, wide = cch, flags & 0x1
        while left > 0:
            if seg >= len(records):
                return out
            fit = (len(records[seg]) - pos) >> wide
            if fit >= left:
                pos += left << wide
                left = 0
            else:
                pos += fit << wide
                left -= fit
                seg, pos = seg + 1, 0
                flag = byte()  # a string going on in a CONTINUE record restates its width
                if flag is None:
                    return out
                wide = flag & 0x1
        out.append(cch)
        if not take(4 * runs + ext):
            break
    return out


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
        raise _Stop(Problem("file-needs-resave", "bảng tính Excel 2.x–4.x (định dạng rất cũ)"))
    text = _as_text(head)
    if text is None:
        raise _Stop(Problem("file-not-workbook", "không nhận ra định dạng tệp"))
    low = text.lstrip().lower()[:2048]
    if "urn:schemas-microsoft-com:office:spreadsheet" in low:
        raise _Stop(Problem("file-needs-resave", "bảng tính XML của Excel 2003"))
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
