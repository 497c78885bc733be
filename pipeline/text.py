"""Text normalisation shared by every layer: NFC, folded keys for matching, ASCII slugs."""

from __future__ import annotations

import re
import unicodedata

from slugify import slugify as _slugify

_SPACES = re.compile(r"\s+")
_UNIT_PREFIX = re.compile(r"^(?:p\.|phuong|xa|thi tran|tt\.)\s*", re.IGNORECASE)


def nfc(text: str) -> str:
    """Return `text` in NFC with runs of whitespace collapsed and ends stripped."""
    return _SPACES.sub(" ", unicodedata.normalize("NFC", text)).strip()


def strip_accents(text: str) -> str:
    """Remove Vietnamese diacritics (đ → d as well); keeps case."""
    decomposed = unicodedata.normalize("NFD", text.replace("Đ", "D").replace("đ", "d"))
    return "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")


def fold(text: object) -> str:
    """Matching key for labels and sheet names: NFC, Ð→Đ, accents stripped, case folded, spaces collapsed."""
    if text is None:
        return ""
    s = nfc(str(text)).replace("Ð", "Đ").replace("ð", "đ")
    s = strip_accents(s).casefold()
    s = re.sub(r"[^\w%]+", " ", s)
    return _SPACES.sub(" ", s).strip()


def unit_key(name: object) -> str:
    """Folded key for a unit name: like `fold`, with "P."/"Phường"/"Xã"/"Thị trấn" stripped."""
    s = nfc(str(name or "")).replace("Ð", "Đ")
    s = strip_accents(s).casefold()
    s = _UNIT_PREFIX.sub("", s.strip())
    return fold(s)


def slug(text: str) -> str:
    """ASCII slug of a Vietnamese name: "Đức Chính" → "duc-chinh"."""
    return _slugify(strip_accents(nfc(text))) or "x"
