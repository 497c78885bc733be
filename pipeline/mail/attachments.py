"""The spreadsheets inside an email: every attachment that is one, and those inside a .zip, bounded.

`extract_spreadsheets(message, limits)` walks a parsed message (compat32 policy, headers as received)
and returns the files to save and the problems met, each problem a record for a mail-* rule of
schemas/rules.yaml. A message is untrusted input like a workbook: sizes and counts are bounded before
anything large is decoded or inflated, and nothing here writes a file.
"""

from __future__ import annotations

import io
import struct
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass, field
from email import errors
from email.message import Message

from pipeline.findings import Finding
from pipeline.intake.guard import Limits as GuardLimits
from pipeline.mail.names import DEFAULT_NAME, decode_bytes, decode_filename, suffix_of

SPREADSHEET_SUFFIXES = frozenset({".xlsx", ".xlsm", ".xls", ".ods", ".xlsb"})
ZIP_SUFFIXES = frozenset({".zip"})
# content types that name a spreadsheet when the attachment's name has no extension
SPREADSHEET_TYPES = {
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "application/vnd.ms-excel.sheet.macroenabled.12": ".xlsm",
    "application/vnd.ms-excel": ".xls",
    "application/vnd.oasis.opendocument.spreadsheet": ".ods",
    "application/vnd.ms-excel.sheet.binary.macroenabled.12": ".xlsb",
}
ZIP_TYPES = frozenset({"application/zip", "application/x-zip-compressed", "application/x-zip"})
_GUARD = GuardLimits()
# what a truncated or mangled attachment leaves on the part when decoded (never an honest one)
_BROKEN = (
    errors.InvalidBase64CharactersDefect,
    errors.InvalidBase64PaddingDefect,
    errors.InvalidBase64LengthDefect,
)


@dataclass(frozen=True)
class MailLimits:
    # A message as the server reports its size. Base64 makes an attachment 4/3 larger, so 75 MB still
    # carries the largest workbook the pre-scan accepts (50 MB); the largest common providers deliver
    # at most 25-50 MB anyway. One message is held in memory at a time.
    max_message: int = 75_000_000
    # A saved file: what consolidate's pre-scan accepts (guard.Limits.max_bytes); a larger one would
    # only be refused there. A filled report template is about 40 KB.
    max_attachment: int = _GUARD.max_bytes
    # Spreadsheets saved from one message, attachments and zip entries together. A ward sends its own
    # report; a whole district's units (21 here, about 15 on average: some 10,600 communes in 705
    # districts) forwarded in one message still fit.
    max_files: int = 100
    # MIME parts looked at in one message: "hundreds of attachments" is an attack, not a report.
    max_parts: int = 500
    # Zip: entries listed in the central directory, declared total and per-entry ratio, as the
    # pre-scan bounds an .xlsx (itself a zip) - guard.Limits.max_uncompressed and max_ratio.
    max_zip_entries: int = 1_000
    max_zip_total: int = _GUARD.max_uncompressed
    max_zip_ratio: float = _GUARD.max_ratio


@dataclass
class Piece:
    """One spreadsheet to save: its original name (decoded, not yet made safe) and its bytes."""

    name: str
    data: bytes
    container: str = ""  # the .zip it came out of, or ''


@dataclass
class Extracted:
    pieces: list[Piece] = field(default_factory=list)
    problems: list[Finding] = field(default_factory=list)


def _mb(n: float) -> str:
    return f"{n / 1_000_000:.1f} MB".replace(".", ",")


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type().lower()
    except (ValueError, LookupError, IndexError, AttributeError):
        return "application/octet-stream"


def _is_inline(part: Message) -> bool:
    disposition = str(part.get("Content-Disposition", "")).split(";")[0].strip().lower()
    return disposition == "inline"


def _leaves(message: Message, limit: int, out: Extracted) -> list[Message]:
    """The non-multipart parts, at most `limit` of them (iterative: a deeply nested message cannot
    exhaust the recursion limit); a forwarded message (message/rfc822) is looked into as well."""
    found, stack, seen = [], [message], 0
    while stack:
        part = stack.pop()
        seen += 1
        if seen > limit:
            out.problems.append(Finding("mail-too-many-attachments", file="", detail=f"hơn {limit} phần",
                                        params={"limit": 0}))
            break
        # only a multipart's payload is asked for: a leaf's get_payload() decodes its text with the
        # declared charset, and a charset written the RFC 2231 way (charset*=utf-8''utf-8) makes that raise
        payload = part.get_payload() if part.is_multipart() else None
        if isinstance(payload, list):
            stack.extend(reversed(payload))
        else:
            found.append(part)
    return found


def _declared_size(part: Message) -> int:
    """The decoded size a part will have, estimated from its encoded text without decoding it."""
    payload = part.get_payload()
    if not isinstance(payload, (str, bytes)):
        return 0
    size = (
        len(payload)
        - payload.count("\n" if isinstance(payload, str) else b"\n")
        - payload.count("\r" if isinstance(payload, str) else b"\r")
    )
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    return size * 3 // 4 if encoding == "base64" else size


# What the standard library raises on a part it cannot take apart (a parameter written the RFC 2231 way
# where a plain one is expected, a header it cannot split, a payload it cannot decode).
_PART_FAULTS = (ValueError, LookupError, TypeError, AttributeError, IndexError, AssertionError)


def _name_or_none(part: Message) -> str | None:
    try:
        return decode_filename(part)
    except _PART_FAULTS:
        return None


def _take_part(part: Message, limits: MailLimits, out: Extracted) -> None:
    """Add one leaf of a message to `out`: its spreadsheet (or a .zip's), or the problem it has."""
    ctype = _content_type(part)
    name = decode_filename(part)
    suffix = suffix_of(name or "")
    if name is None:
        if ctype in SPREADSHEET_TYPES:
            name, suffix = DEFAULT_NAME + SPREADSHEET_TYPES[ctype], SPREADSHEET_TYPES[ctype]
        elif ctype in ZIP_TYPES:
            name, suffix = DEFAULT_NAME + ".zip", ".zip"
        else:
            return  # a body or an unnamed inline part
    if suffix not in SPREADSHEET_SUFFIXES and suffix not in ZIP_SUFFIXES:
        if ctype in SPREADSHEET_TYPES:  # "Báo cáo" with no extension, sent as an Excel file
            name, suffix = name + SPREADSHEET_TYPES[ctype], SPREADSHEET_TYPES[ctype]
        else:
            if not _is_inline(part) and not ctype.startswith("image/"):
                out.problems.append(Finding("mail-not-spreadsheet", file=name))
            return
    if _declared_size(part) > limits.max_attachment:
        out.problems.append(Finding("mail-attachment-too-large", file=name, detail=_mb(_declared_size(part)),
                                    params={"limit": _mb(limits.max_attachment)}))
        return
    try:
        data = part.get_payload(decode=True) or b""
    except (ValueError, TypeError, AssertionError):
        out.problems.append(Finding("mail-attachment-broken", file=name, detail="không giải mã được"))
        return
    if any(isinstance(d, _BROKEN) for d in getattr(part, "defects", ())):
        out.problems.append(Finding("mail-attachment-broken", file=name, detail="mã hóa base64 sai"))
        return
    if len(data) > limits.max_attachment:
        out.problems.append(Finding("mail-attachment-too-large", file=name, detail=_mb(len(data)),
                                    params={"limit": _mb(limits.max_attachment)}))
        return
    if suffix in ZIP_SUFFIXES:
        _unzip(name, data, limits, out)
    else:
        out.pieces.append(Piece(name, data))


def extract_spreadsheets(message: Message, limits: MailLimits = MailLimits()) -> Extracted:
    """The spreadsheets of `message` (attachments and .zip entries) and the problems met.

    Non-spreadsheet attachments are reported (mail-not-spreadsheet) unless shown inline or images
    (signatures, logos); a message body is not an attachment."""
    out = Extracted()
    for part in _leaves(message, limits.max_parts, out):
        try:
            _take_part(part, limits, out)
        except _PART_FAULTS:  # one part the parser cannot take apart; the message's other parts still count
            name = _name_or_none(part)
            if name:
                out.problems.append(Finding("mail-attachment-broken", file=name, detail="không đọc được"))
    if len(out.pieces) > limits.max_files:
        out.problems.append(Finding("mail-too-many-attachments", file="", detail=f"{len(out.pieces)} tệp",
                                    params={"limit": limits.max_files}))
        del out.pieces[limits.max_files :]
    return out


_UNICODE_PATH = 0x7075  # Info-ZIP Unicode Path extra field: the UTF-8 name beside a legacy one


def _zip_entry_name(info: zipfile.ZipInfo) -> str:
    """An entry's name as its creator meant it, in NFC (see _zip_raw_name)."""
    return unicodedata.normalize("NFC", _zip_raw_name(info))


def _zip_raw_name(info: zipfile.ZipInfo) -> str:
    """An entry's name as its creator meant it: UTF-8 when flagged or given in the Unicode Path extra
    field, else the raw bytes decoded as UTF-8 or Windows-1258 (zipfile assumes CP437, which turns
    Vietnamese names written by Windows' "Send to compressed folder" or old WinRAR into mojibake)."""
    if info.flag_bits & 0x800:
        return info.filename
    extra = info.extra
    while len(extra) >= 4:
        kind, size = struct.unpack("<HH", extra[:4])
        body, extra = extra[4 : 4 + size], extra[4 + size :]
        if kind == _UNICODE_PATH and len(body) > 5 and body[0] == 1:
            try:
                return body[5:].decode("utf-8")
            except UnicodeDecodeError:
                break
    try:
        raw = info.filename.encode("cp437")
    except UnicodeEncodeError:
        return info.filename
    return decode_bytes(raw)


def _unzip(container: str, data: bytes, limits: MailLimits, out: Extracted) -> None:
    """Add the spreadsheets of a .zip to `out`, within the limits; never writes anything."""

    def refuse(detail: str, file: str = container, rule: str = "mail-zip-refused", **extra) -> None:
        out.problems.append(Finding(rule, file=file, detail=detail, params=extra))

    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, struct.error, OSError):
        refuse("tệp nén bị hỏng")
        return
    files = [i for i in infos if not i.is_dir()]
    if len(infos) > limits.max_zip_entries:
        refuse(f"có {len(infos)} mục bên trong, quá nhiều so với một báo cáo")
        return
    total = sum(i.file_size for i in files)
    if total > limits.max_zip_total:
        refuse(f"giải nén ra {_mb(total)}, quá lớn so với một báo cáo")
        return
    for info in files:
        name = _zip_entry_name(info)
        shown = f"{container}/{name}"
        suffix = suffix_of(name)
        if suffix in ZIP_SUFFIXES:
            refuse("tệp nén nằm trong tệp nén khác", file=shown)
            continue
        if suffix not in SPREADSHEET_SUFFIXES:
            out.problems.append(Finding("mail-not-spreadsheet", file=shown))
            continue
        if info.file_size > 1_000_000 and info.file_size > limits.max_zip_ratio * max(1, info.compress_size):
            refuse(
                f"tỷ lệ nén {info.file_size / max(1, info.compress_size):.0f} lần, dấu hiệu của bom nén",
                file=shown,
            )
            continue
        if info.file_size > limits.max_attachment:
            refuse(
                _mb(info.file_size),
                file=shown,
                rule="mail-attachment-too-large",
                limit=_mb(limits.max_attachment),
            )
            continue
        if info.flag_bits & 0x1:
            refuse("tệp nén có mật khẩu", file=shown)
            continue
        try:
            # zipfile stops inflating at the declared size and checks the CRC: a member that would
            # inflate further is refused (BadZipFile), never inflated past the bound checked above
            with zf.open(info) as fh:
                body = fh.read(info.file_size + 1)
        except (
            zipfile.BadZipFile,
            RuntimeError,
            NotImplementedError,
            ValueError,
            EOFError,
            OSError,
            zlib.error,
        ):
            refuse("mục bị hỏng hoặc nén theo cách không hỗ trợ", file=shown)
            continue
        out.pieces.append(Piece(name, body, container))
