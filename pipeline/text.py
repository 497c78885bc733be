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


_PLACE_KIND = re.compile(r"^(?:thị xã|huyện|quận|thành phố|thị trấn|tx\.|tp\.|h\.|q\.)\s+", re.IGNORECASE)


def place_name(name: str) -> str:
    """A district's or town's name without its kind, as a document's place line writes it:
    "Thị xã Đông Triều" → "Đông Triều", "Thành phố Hạ Long" → "Hạ Long"."""
    return _PLACE_KIND.sub("", nfc(str(name or ""))) or nfc(str(name or ""))


def slug(text: str) -> str:
    """ASCII slug of a Vietnamese name: "Đức Chính" → "duc-chinh"."""
    return _slugify(strip_accents(nfc(text))) or "x"


_EXACT = (str, float, type(None), type(pd.NA))  # types whose equal values are the same value (but ±0.0)


def per_distinct(column: pd.Series, func: Callable[[object], object], missing: object = "") -> list:
    """`func` of every cell of `column` as a list, `missing` where the cell is missing (None, NaN, NA).

    `func` runs once per distinct value: a column of 650,000 cells holds a few thousand. That is exact
    only where equal values are the same value, so cells of other types than str and float (where 1,
    1.0 and True would count as one; dates) are done one by one, and so are the zeros (0.0 and -0.0)."""
    cells = column.to_numpy(dtype=object)
    if isinstance(column.dtype, pd.StringDtype) or column.dtype.kind == "f":
        sub = cells  # str or missing; float: no need to look at each cell's type
    else:
        kind_codes, kinds = pd.factorize(np.fromiter(map(type, cells), dtype=object, count=len(cells)))
        exact = np.isin(kind_codes, [i for i, kind in enumerate(kinds) if kind in _EXACT])
        sub = cells if exact.all() else cells[exact]
    codes, uniques = pd.factorize(sub, use_na_sentinel=True)
    uniques = uniques.tolist()
    table = np.empty(len(uniques) + 1, dtype=object)
    for i, u in enumerate(uniques):
        table[i] = func(u)
    table[-1] = missing  # code -1
    done = table[codes]
    zero = next((i for i, u in enumerate(uniques) if u.__class__ is float and u == 0.0), None)
    if zero is not None:  # 0.0 and -0.0 share a code; most funcs (not repr) give them one result
        pos, neg = func(0.0), func(-0.0)
        if type(pos) is not type(neg) or pos != neg:
            at = np.flatnonzero(codes == zero)
            for i, negative in zip(at.tolist(), np.signbit(sub[at].astype(float)).tolist(), strict=True):
                done[i] = neg if negative else pos
    if sub is cells:
        return done.tolist()
    out = np.empty(len(cells), dtype=object)
    out[exact] = done
    for i in np.flatnonzero(~exact).tolist():
        v = cells[i]
        out[i] = missing if pd.api.types.is_scalar(v) and pd.isna(v) else func(v)
    return out.tolist()
