"""Text normalisation shared by every layer: NFC, folded keys for matching, ASCII slugs."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

import numpy as np
import pandas as pd
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


_EXACT = {str, float, type(None), type(pd.NA)}  # types whose equal values are the same value (but ±0.0)


def per_distinct(column: pd.Series, func: Callable[[object], object], missing: object = "") -> list:
    """`func` of every cell of `column` as a list, `missing` where the cell is missing (None, NaN, NA).

    `func` runs once per distinct value: a column of 650,000 cells holds a few thousand. That is exact
    only where equal values are the same value, so a column holding anything but str and float (where
    1, 1.0 and True would count as one) is done cell by cell; so are the zeros (0.0 and -0.0)."""
    cells = column.to_numpy(dtype=object)
    codes, uniques = pd.factorize(cells, use_na_sentinel=True)
    uniques = uniques.tolist()
    if set(map(type, cells)) <= _EXACT:
        table = np.empty(len(uniques) + 1, dtype=object)
        table[:-1] = [func(u) for u in uniques]
        table[-1] = missing  # code -1
        out = table[codes].tolist()
        zero = next((i for i, u in enumerate(uniques) if u.__class__ is float and u == 0.0), None)
        if zero is not None:
            for i in np.flatnonzero(codes == zero).tolist():
                out[i] = func(cells[i])
        return out
    return [missing if c < 0 else func(v) for v, c in zip(column.tolist(), codes.tolist(), strict=True)]
