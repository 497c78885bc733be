"""Read one spreadsheet cell as a number or a date, the way Vietnamese offices write them.

A number cell (int/float from python-calamine) is taken as it is. A text cell is read with Babel's vi_VN
parser ("2.379" = 2379, "785,87" = 785.87) plus what Babel lacks: hedges ("gần 8.000"), a trailing "%",
spaces as group separators, the Unicode minus. A result carries a rule id from schemas/rules.yaml when
there is something to tell the office, and the figure we believe was meant. `parse_numbers` does a column.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import numbers
import re
from dataclasses import dataclass
from decimal import Decimal, localcontext

import numpy as np
import pandas as pd
from babel import Locale
from babel.numbers import NumberFormatError, parse_decimal

from pipeline.text import nfc, strip_accents

KINDS = ("integer", "decimal", "percent")
_VI = Locale.parse("vi_VN")
# Every finite double written out in full fits; the cap only bounds the work spent on junk text.
_MAX_TEXT = 1000
_INVISIBLE = str.maketrans({"\u2212": "-"} | dict.fromkeys("\u200b\u200c\u200d\u2060\ufeff"))
_SPLIT = re.compile(r"(\D*?)\s*([+\-]?[\d,.].*)")
_SPACE_GROUPS = re.compile(r"[+\-]?\d{1,3}(?: \d{3})+(?:,\d*)?")
_HEDGES = frozenset({"gan", "khoang", "tren", "hon", "duoi", "xap xi", "uoc", "uoc dat", "uoc tinh",
                     "toi thieu", "toi da", "it nhat", "~", "≈", ">", "<", ">=", "<=", "≥", "≤"})
_EXCEL_EPOCH = dt.date(1899, 12, 30)
_DMY = re.compile(r"(?:.*,\s*)?(?:ngay\s*)?(\d{1,2})\s*[/.\-]\s*(\d{1,2})\s*[/.\-]\s*(\d{4})")
_YMD = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})(?:[ t]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?")
_WORDS = re.compile(r"(?:.*[\s,])?ngay\s*(\d{1,2})\s*thang\s*(\d{1,2})\s*,?\s*nam\s*(\d{4})\s*\.?")


@dataclass(frozen=True, slots=True)
class Parsed:
    """One parsed cell: the value (None when blank or unusable), the rule id to report, the figure we
    believe was meant (a suggestion: only the ward knows) and alternative readings written the
    Vietnamese way."""

    value: float | None
    rule: str | None = None
    suggestion: float | None = None  # the likely reading, for the ward to confirm (never a known value)
    suggestions: tuple[str, ...] = ()


BLANK = Parsed(None)
INVALID = Parsed(None, "number-invalid")
# A frozen dataclass costs ~2 µs to build, more than the whole parse; cell values repeat, so share them.
_PLAIN: dict[float, Parsed] = {}


def _plain(v: float) -> Parsed:
    p = _PLAIN.get(v)
    if p is None:
        p = Parsed(v + 0.0)  # -0.0 -> 0.0, which also keeps the shared entry for zero honest
        if len(_PLAIN) < 100_000:
            _PLAIN[v] = p
    return p


def parse_number(raw: object, kind: str, *, percent_format: bool = False) -> Parsed:
    """Parse a cell value as returned by python-calamine; `kind` is "integer", "decimal" or "percent" and
    `percent_format` says the cell carries a percent number format (0.92 shown as 92%). Never raises on
    `raw`; raises ValueError for an unknown `kind` when the cell holds a number."""
    t = type(raw)
    if t is float or t is int:
        return _number(raw, kind, percent_format)
    if raw is None or raw is pd.NA or raw is pd.NaT:
        return BLANK
    if t is str:
        return _text(raw, kind)
    if isinstance(raw, bool | np.bool_) or not isinstance(raw, numbers.Real | Decimal):
        return INVALID
    return _number(raw, kind, percent_format)  # numpy scalars, Decimal


def _number(raw: float | Decimal, kind: str, percent_format: bool) -> Parsed:
    try:
        v = float(raw)
    except (OverflowError, ValueError):
        return INVALID
    if not math.isfinite(v):
        return BLANK if v != v else INVALID  # pandas stands NaN in for an empty cell
    if kind == "integer":
        if v.is_integer():
            return _plain(v)
        if round(v, 3) == v and round(v, 2) != v:  # 2.215 typed in en-US Excel, meant 2.215 = 2215
            return Parsed(None, "count-three-decimals", float(round(v * 1000)))
        return Parsed(None, "count-not-whole")
    if kind == "percent" and percent_format:
        return _plain(_pct(v)) if abs(v) < 1e306 else INVALID  # *100 would overflow
    return _real(v, kind, False)


def _real(v: float, kind: str, percent_sign: bool) -> Parsed:
    """Result for a decimal or percent field; a bare 0.92 in a percent field is taken as 92%."""
    if kind == "percent" and not percent_sign and 0 < v < 1:
        return Parsed(_pct(v), "percent-fraction", _pct(v))
    if kind == "decimal" or kind == "percent":
        return _plain(v)
    raise ValueError(f"unknown number kind {kind!r}; expected one of {KINDS}")


def _pct(v: float) -> float:
    return round(v * 100, 10)  # 0.07 * 100 is 7.000000000000001


def _text(raw: str, kind: str) -> Parsed:
    if len(raw) > _MAX_TEXT:
        return INVALID
    s = nfc(raw.translate(_INVISIBLE))
    if not s:
        return BLANK
    m = _SPLIT.fullmatch(s)
    if m is None:
        return INVALID
    hedge, num = m.groups()
    if hedge and " ".join(strip_accents(hedge).casefold().split()) not in _HEDGES:
        return INVALID
    percent = num.endswith("%")
    if percent:
        num = num[:-1].rstrip()
    if " " in num:
        if not _SPACE_GROUPS.fullmatch(num):
            return INVALID
        num = num.replace(" ", ".")
    d = _babel(num)
    if not isinstance(d, Decimal):
        return _malformed(d, kind, percent) if d else INVALID
    p = _decimal(d, kind, percent)
    if hedge and p.rule is None:
        return Parsed(p.value, "number-hedged", p.value)
    return p


@functools.lru_cache(maxsize=65536)
def _babel(text: str) -> Decimal | tuple[str, ...]:
    """Babel's reading of `text`, or its suggested rewrites (maybe none) when it refuses it. Cached: Babel
    takes ~40 µs a call and the same texts ("02", "2.379") come back in every file."""
    try:
        with localcontext(prec=_MAX_TEXT):  # Babel's strict check re-formats with 28 digits by default
            return parse_decimal(text, locale=_VI, strict=True)
    except NumberFormatError as err:
        return tuple(err.suggestions or ())
    except (ArithmeticError, ValueError):
        return ()


def _decimal(d: Decimal, kind: str, percent: bool) -> Parsed:
    v = float(d)
    if not math.isfinite(v):  # "NaN", "Infinity", "1e999" all get through Babel
        return INVALID
    if kind == "integer":
        # Exactly three written decimals: "2,215" typed as text means 2.215 in vi-VN but 2215 in en-US.
        if d.as_tuple().exponent == -3 and not d.is_zero():
            return Parsed(None, "count-three-decimals", float(d * 1000))
        if d != d.to_integral_value():
            return Parsed(None, "count-not-whole")
        return _plain(v)
    return _real(v, kind, percent)


def _malformed(suggestions: tuple[str, ...], kind: str, percent: bool) -> Parsed:
    """Babel's readings of a badly grouped number ("8.28": "828" or "8,28"): integers expect the whole
    one, decimals and percentages the one with a decimal comma (8,28 – the dot typed for a comma)."""
    readings = [d for d in map(_babel, suggestions) if isinstance(d, Decimal)]
    whole = [d for d in readings if d.is_finite() and d == d.to_integral_value()]
    pick = (whole if kind == "integer" else [d for d in readings if d not in whole]) + readings
    shown = tuple(f"{text}%" if percent else text for text in suggestions)
    return Parsed(None, "number-malformed-group", float(pick[0]) if pick else None, shown)


def parse_date(raw: object) -> tuple[dt.date | None, str | None]:
    """Parse a date cell: datetime/date, an Excel serial (1900 system), "15/6/2020", "2020-06-15" or
    "[place,] ngày 15 tháng 6 năm 2020". Returns (date, None), (None, None) when blank, else
    (None, "date-invalid")."""
    if raw is None or raw is pd.NA or raw is pd.NaT or (type(raw) is str and not raw.strip()):
        return None, None
    if isinstance(raw, dt.datetime):
        return raw.date(), None
    if isinstance(raw, dt.date):
        return raw, None
    if isinstance(raw, numbers.Real) and not isinstance(raw, bool | np.bool_):
        return _serial(raw)
    if type(raw) is str and len(raw) <= _MAX_TEXT:
        s = " ".join(strip_accents(nfc(raw)).casefold().split())
        m = _WORDS.fullmatch(s) or _DMY.fullmatch(s)
        if m:
            return _ymd(m.group(3), m.group(2), m.group(1))
        if m := _YMD.fullmatch(s):
            return _ymd(m.group(1), m.group(2), m.group(3))
    return None, "date-invalid"


def _serial(v: numbers.Real) -> tuple[dt.date | None, str | None]:
    if v != v:
        return None, None
    if not 1 <= v < 2958466 or int(v) == 60:  # serial 60 is Excel's 29/2/1900, a day that never was
        return None, "date-invalid"
    n = int(v)
    return _EXCEL_EPOCH + dt.timedelta(days=n if n > 60 else n + 1), None


def _ymd(year: str, month: str, day: str) -> tuple[dt.date | None, str | None]:
    try:
        return dt.date(int(year), int(month), int(day)), None
    except ValueError:
        return None, "date-invalid"


def parse_numbers(raw: pd.Series, kinds: pd.Series, percent_format: pd.Series | None = None) -> pd.DataFrame:
    """Parse a column of cells; `kinds` and `percent_format` are aligned on `raw`'s index. Returns a frame
    with raw's index and columns value (float64), rule (object, None), suggestion (float64) and
    suggestions (object: None or the suggestions joined with " hoặc ")."""
    n, index = len(raw), raw.index
    kind = (kinds if kinds.index.equals(index) else kinds.reindex(index)).to_numpy(dtype=object)
    pf = np.zeros(n, dtype=bool)
    if percent_format is not None:
        pf = percent_format if percent_format.index.equals(index) else percent_format.reindex(index)
        pf = pf.fillna(False).to_numpy(dtype=bool)
    vals = raw.to_numpy(dtype=object)
    if raw.dtype.kind in "fiu":
        v, is_num = raw.to_numpy(dtype=float, na_value=np.nan), np.ones(n, dtype=bool)
    else:
        types = np.fromiter(map(type, vals), dtype=object, count=n)
        is_num, v = np.equal(types, float) | np.equal(types, int), np.full(n, np.nan)
        try:
            v[is_num] = vals[is_num].astype(float)
        except OverflowError:  # an int beyond float range: let the scalar path say number-invalid
            is_num[:] = False
    finite = np.abs(v) < 1e306  # NaN and inf are out; huge values take the slow path (percent *100 overflows)
    is_int, is_pct = kind == "integer", kind == "percent"
    value, suggestion = np.where(finite, v, np.nan), np.full(n, np.nan)
    rule, sugg = np.full(n, None, dtype=object), np.full(n, None, dtype=object)
    whole = finite & (v == np.floor(v))
    scaled = np.flatnonzero(finite & is_pct & (pf | ((v > 0) & (v < 1))))
    # Python's round, not np.round, so the column agrees with parse_number to the last bit.
    value[scaled] = [round(x * 100, 10) for x in v[scaled].tolist()]
    frac = scaled[~pf[scaled]]
    rule[frac], suggestion[frac] = "percent-fraction", value[frac]
    done = (is_num & np.isnan(v)) | (finite & ((kind == "decimal") | is_pct | (is_int & whole)))
    texts: dict[tuple[str, str], Parsed] = {}  # a text's reading depends on the text and kind only
    for i in np.flatnonzero(~done).tolist():
        r = vals[i]
        if r.__class__ is str:
            p = texts.get((r, kind[i]))
            if p is None:
                p = texts[r, kind[i]] = parse_number(r, kind[i])
        else:
            p = parse_number(r, kind[i], percent_format=bool(pf[i]))
        value[i] = np.nan if p.value is None else p.value
        suggestion[i] = np.nan if p.suggestion is None else p.suggestion
        rule[i], sugg[i] = p.rule, " hoặc ".join(p.suggestions) or None
    cols = {"value": value, "rule": rule, "suggestion": suggestion, "suggestions": sugg}
    # dtype given explicitly: pandas 3 would otherwise turn the object columns into its str dtype.
    return pd.DataFrame({k: pd.Series(c, index=index, dtype=c.dtype) for k, c in cols.items()}, index=index)


def format_vn(x: float) -> str:
    """Write a number the Vietnamese way for messages: 2379 -> "2.379", 785.87 -> "785,87", 828.0 -> "828"."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    d = Decimal(x) if isinstance(x, Decimal) else Decimal(int(x)) if isinstance(x, numbers.Integral) else (
        Decimal(repr(float(x))))
    if d.is_zero():
        return "0"
    d = d.to_integral_value() if d == d.to_integral_value() else d.normalize()
    return f"{d:,f}".translate(str.maketrans(",.", ".,"))
