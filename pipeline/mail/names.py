"""Names of email attachments: decoded as the sender meant them, made safe to save, and the saved name.

Vietnamese file names reach a mailbox in many forms. The standard ones are RFC 2231
(`filename*=UTF-8''B%C3%A1o...`, possibly split in `filename*0*=` continuations) and, though RFC 2047
forbids it inside parameters, encoded words in a quoted parameter (`filename="=?UTF-8?B?...?="`, what
Outlook and Gmail send). Broken forms seen from common clients and webmails: raw UTF-8 or Windows-1258
bytes in the header, a charset declared wrong (UTF-8 bytes labelled ISO-8859-1, which shows as
"BÃ¡o cÃ¡o"), a multi-byte character split across two encoded words, and decomposed Unicode (NFD) from
macOS. `decode_filename` undoes all of them; `safe_name` then keeps only a base name that is safe on
Windows and Linux (no folder, no control or bidirectional characters, no reserved device name).
"""

from __future__ import annotations

import codecs
import datetime as dt
import email
import email.header
import email.parser
import email.utils
import re
import unicodedata
from email.message import Message
from email.policy import Compat32

from pipeline.text import slug

_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
_UNSAFE_CHARS = re.compile(r'[<>:"|?*]')
_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)
_LATIN1_RANGE = re.compile(r"[\u0080-\u00ff]")
MAX_STEM = 100  # characters kept of an original name: a saved name stays well under Windows' 260 for a path
DEFAULT_NAME = "tep-dinh-kem"


def _codec(charset: str | None) -> str | None:
    """Python's codec name for a MIME charset, or None when unknown."""
    if not charset:
        return None
    try:
        return codecs.lookup(charset.strip().strip('"').lower()).name
    except LookupError:
        return None


class _AsReceived(Compat32):
    """compat32, but a header's value is given as received: compat32 replaces the bytes of a raw 8-bit
    header (UTF-8 or Windows-1258 typed straight into it) by U+FFFD before anyone can decode them."""

    def _sanitize_header(self, name, value):
        return value


AS_RECEIVED = _AsReceived()


def parse_message(raw: bytes) -> Message:
    """A message parsed with headers as received (decode them with `decode_words`/`decode_filename`)."""
    return email.message_from_bytes(raw, policy=AS_RECEIVED)


def parse_headers(raw: bytes) -> Message:
    """Only the top-level headers of a message (From, Subject, Date, Message-ID), its body left as one
    string: what can still be told of a message whose body the full parser fails on."""
    return email.parser.BytesParser(policy=AS_RECEIVED).parsebytes(raw, headersonly=True)


def decode_bytes(data: bytes, charset: str | None = None) -> str:
    """Text of `data`, whatever it claims: UTF-8 when the bytes are valid UTF-8 and not plain ASCII
    (random text in an 8-bit charset almost never is, and UTF-8 labelled as ISO-8859-1 is the usual
    mistake), else the declared charset, else Windows-1258 (Vietnamese Windows), else Latin-1."""
    if data.isascii():
        return data.decode("ascii")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    for name in (_codec(charset), "cp1258"):
        if name and name not in ("utf-8", "ascii"):
            try:
                return data.decode(name)
            except UnicodeDecodeError:
                continue
    return data.decode("latin-1")


def fix_mojibake(text: str) -> str:
    """Undo UTF-8 bytes shown as Latin-1/Windows-1252 ("BÃ¡o cÃ¡o" → "Báo cáo"); other text unchanged.

    Only when the round trip decodes strictly as UTF-8: Vietnamese text that really is in Latin-1
    characters almost never forms valid UTF-8 sequences."""
    if not _LATIN1_RANGE.search(text):
        return text
    for codec in ("cp1252", "latin-1"):
        try:
            fixed = text.encode(codec).decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            continue
        return fixed
    return text


def _raw_bytes(text: str) -> bytes:
    """The bytes a header value came as: the parser keeps non-ASCII bytes as surrogate escapes."""
    try:
        return text.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")


def decode_words(text: str) -> str:
    """Decode RFC 2047 encoded words wherever they stand (also inside quotes, also adjacent without a
    space); adjacent words of one charset are joined before decoding, so a character split across two
    words comes out whole."""
    if not _ENCODED_WORD.search(text):
        return decode_bytes(_raw_bytes(text))
    spaced = re.sub(r"\?==\?", "?= =?", text)
    try:
        chunks = email.header.decode_header(spaced)
    except (ValueError, LookupError, UnicodeError):
        return decode_bytes(_raw_bytes(text))
    out = []
    for data, charset in chunks:
        if isinstance(data, str):
            data = _raw_bytes(data)
        out.append(decode_bytes(data, charset))
    return "".join(out)


def _param(part: Message, name: str, header: str) -> str | None:
    """A parameter of a header as text, RFC 2231 applied (charset honoured, then checked)."""
    try:
        value = part.get_param(name, None, header)
    except (ValueError, LookupError, UnicodeError, IndexError):
        return None
    if value is None:
        return None
    if isinstance(value, tuple):  # RFC 2231: (charset, language, %-decoded text as Latin-1 characters)
        charset, _, raw = value
        data = raw.encode("latin-1", "surrogateescape") if isinstance(raw, str) else bytes(raw)
        return decode_bytes(data, charset)
    return decode_words(email.utils.unquote(value) if isinstance(value, str) else str(value))


def decode_filename(part: Message) -> str | None:
    """The attachment's file name as its sender typed it (NFC), or None when the part names none.

    `part` comes from `parse_message` (headers as received)."""
    name = _param(part, "filename", "content-disposition") or _param(part, "name", "content-type")
    if not name:
        return None
    return unicodedata.normalize("NFC", fix_mojibake(name))


def safe_name(name: str | None) -> tuple[str, str]:
    """(a base name safe to create on Windows and Linux, what was unsafe or '').

    Keeps the last component of any path (`../../x.xlsx`, `C:\\x.xlsx`), drops control, format and
    bidirectional characters (U+202E can make "báo cáo‮xslx.exe" look like a spreadsheet), replaces
    characters Windows forbids, strips leading dots and trailing dots and spaces, and prefixes
    reserved device names (CON, NUL, COM1...)."""
    original = name or ""
    problems = []
    text = unicodedata.normalize("NFC", original)
    base = re.split(r"[\\/]", text)[-1]
    if base != text:
        problems.append("có đường dẫn thư mục")
    kept = "".join(ch for ch in base if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn"))
    if kept != base:
        problems.append("có ký tự điều khiển")
    cleaned = _UNSAFE_CHARS.sub("_", kept)
    if cleaned != kept:
        problems.append("có ký tự không được phép trong tên tệp")
    cleaned = re.sub(r"\s+", " ", cleaned).strip().lstrip(".").rstrip(". ")
    if _RESERVED.match(cleaned):
        cleaned = "_" + cleaned
        problems.append("trùng tên thiết bị của Windows")
    if not cleaned:
        cleaned = DEFAULT_NAME
    return cleaned, "; ".join(problems)


def suffix_of(name: str) -> str:
    """The lower-case extension of a name, with its dot ('' when none)."""
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 else ""


def saved_name(received: dt.datetime, who: str, original: str) -> str:
    """The name an attachment is saved under: "2020-07-15_0930_07093-duc-chinh_Báo cáo.xlsx".

    `received` is the message's date (shown in this computer's time zone), `who` the sender's unit
    slug or address, `original` the safe original name; the stem is cut to MAX_STEM characters."""
    suffix = suffix_of(original)
    stem = original[: len(original) - len(suffix)] if suffix else original
    who_safe, _ = safe_name(who)
    who_safe = who_safe.replace(" ", "_") or slug(who)
    return f"{received.strftime('%Y-%m-%d_%H%M')}_{who_safe}_{stem[:MAX_STEM].rstrip('. ')}{suffix}"
