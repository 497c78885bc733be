"""Tests for pipeline.numbers: reading cells the Vietnamese way."""

from __future__ import annotations

import datetime as dt
import math
import unicodedata
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from pipeline.numbers import Parsed, format_vn, parse_date, parse_number, parse_numbers

RULE_IDS = set(yaml.safe_load((Path(__file__).parents[1] / "schemas" / "rules.yaml").read_text("utf-8")))
SWAP = str.maketrans(",.", ".,")


def vn_int(n: int) -> str:
    return f"{n:,}".translate(SWAP)


@pytest.mark.parametrize(
    ("raw", "kind", "expected"),
    [
        # the seed's texts
        ("02", "integer", Parsed(2.0)),
        ("03", "integer", Parsed(3.0)),
        ("2.379", "integer", Parsed(2379.0)),
        ("2.215", "integer", Parsed(2215.0)),  # a dot then three digits is thousands, not an error
        ("1.234.567", "integer", Parsed(1234567.0)),
        ("785,87", "decimal", Parsed(785.87)),
        ("94,34", "decimal", Parsed(94.34)),
        ("1.234,5", "decimal", Parsed(1234.5)),
        ("92,0%", "percent", Parsed(92.0)),
        ("92%", "percent", Parsed(92.0)),
        ("92 %", "percent", Parsed(92.0)),
        ("0,5%", "percent", Parsed(0.5)),
        ("96,5", "percent", Parsed(96.5)),
        ("94,34", "percent", Parsed(94.34)),
        # spacing, signs, Unicode
        ("  2.379 ", "integer", Parsed(2379.0)),
        ("2 379", "integer", Parsed(2379.0)),
        ("2\u00a0379", "integer", Parsed(2379.0)),
        ("1\u202f234\u202f567", "integer", Parsed(1234567.0)),
        ("1 234,5", "decimal", Parsed(1234.5)),
        ("+5", "integer", Parsed(5.0)),
        ("-5", "integer", Parsed(-5.0)),
        ("\u22125", "integer", Parsed(-5.0)),
        ("-1.234,5", "decimal", Parsed(-1234.5)),
        ("5,0", "integer", Parsed(5.0)),
        # number cells
        (2379, "integer", Parsed(2379.0)),
        (828.0, "integer", Parsed(828.0)),
        (785.87, "decimal", Parsed(785.87)),
        (-3, "integer", Parsed(-3.0)),
        (-1.5, "decimal", Parsed(-1.5)),
        (92, "percent", Parsed(92.0)),
        (0, "percent", Parsed(0.0)),
        (1, "percent", Parsed(1.0)),
        (np.int64(7), "integer", Parsed(7.0)),
        (np.float64(7.5), "decimal", Parsed(7.5)),
        (Decimal("7.5"), "decimal", Parsed(7.5)),
        # hedges keep the number with a warning
        ("gần 8.000", "integer", Parsed(8000.0, "number-hedged", 8000.0)),
        ("trên 20", "integer", Parsed(20.0, "number-hedged", 20.0)),
        ("khoảng 500", "integer", Parsed(500.0, "number-hedged", 500.0)),
        ("hơn 20", "integer", Parsed(20.0, "number-hedged", 20.0)),
        ("dưới 10", "integer", Parsed(10.0, "number-hedged", 10.0)),
        ("xấp xỉ 3", "decimal", Parsed(3.0, "number-hedged", 3.0)),
        ("ước 10", "integer", Parsed(10.0, "number-hedged", 10.0)),
        ("ước đạt 10", "integer", Parsed(10.0, "number-hedged", 10.0)),
        ("tối thiểu 4", "integer", Parsed(4.0, "number-hedged", 4.0)),
        ("~20", "integer", Parsed(20.0, "number-hedged", 20.0)),
        (">20", "integer", Parsed(20.0, "number-hedged", 20.0)),
        ("<5", "integer", Parsed(5.0, "number-hedged", 5.0)),
        ("GẦN 8.000", "integer", Parsed(8000.0, "number-hedged", 8000.0)),
        ("gan 8.000", "integer", Parsed(8000.0, "number-hedged", 8000.0)),
        (unicodedata.normalize("NFD", "gần 8.000"), "integer", Parsed(8000.0, "number-hedged", 8000.0)),
        ("khoảng 92,5%", "percent", Parsed(92.5, "number-hedged", 92.5)),
        ("gần 8 000", "integer", Parsed(8000.0, "number-hedged", 8000.0)),
        # badly grouped: Babel's suggestions, and the reading that fits the field
        ("8.28", "integer", Parsed(None, "number-malformed-group", 828.0, ("828", "8,28"))),
        ("8.28", "decimal", Parsed(None, "number-malformed-group", 8.28, ("828", "8,28"))),
        ("1.2345", "integer", Parsed(None, "number-malformed-group", 12345.0, ("12.345", "1,2345"))),
        ("92.5%", "percent", Parsed(None, "number-malformed-group", 92.5, ("925%", "92,5%"))),
        ("5.", "integer", Parsed(None, "number-malformed-group", 5.0, ("5",))),
        # counts with decimals
        (2.215, "integer", Parsed(None, "count-three-decimals", 2215.0)),
        (-2.215, "integer", Parsed(None, "count-three-decimals", -2215.0)),
        ("2,215", "integer", Parsed(None, "count-three-decimals", 2215.0)),
        ("2,200", "integer", Parsed(None, "count-three-decimals", 2200.0)),
        (2.5, "integer", Parsed(None, "count-not-whole")),
        (2.2, "integer", Parsed(None, "count-not-whole")),
        (2.2155, "integer", Parsed(None, "count-not-whole")),
        ("2,5", "integer", Parsed(None, "count-not-whole")),
        (2.215, "decimal", Parsed(2.215)),
        ("2,215", "decimal", Parsed(2.215)),
        # percentages typed as fractions
        (0.92, "percent", Parsed(92.0, "percent-fraction", 92.0)),
        (0.07, "percent", Parsed(7.0, "percent-fraction", 7.0)),
        ("0,92", "percent", Parsed(92.0, "percent-fraction", 92.0)),
        # not numbers
        ("abc", "integer", Parsed(None, "number-invalid")),
        ("#DIV/0!", "decimal", Parsed(None, "number-invalid")),
        ("#N/A", "percent", Parsed(None, "number-invalid")),
        ("12a", "integer", Parsed(None, "number-invalid")),
        ("12 người", "integer", Parsed(None, "number-invalid")),
        ("12 34", "integer", Parsed(None, "number-invalid")),
        ("1,234,5", "decimal", Parsed(None, "number-invalid")),
        ("NaN", "decimal", Parsed(None, "number-invalid")),
        ("Infinity", "decimal", Parsed(None, "number-invalid")),
        ("1e999", "decimal", Parsed(None, "number-invalid")),
        ("tỷ lệ 5", "decimal", Parsed(None, "number-invalid")),
        ("%", "percent", Parsed(None, "number-invalid")),
        ("-", "integer", Parsed(None, "number-invalid")),
        (True, "integer", Parsed(None, "number-invalid")),
        (np.True_, "integer", Parsed(None, "number-invalid")),
        (dt.datetime(2020, 6, 15), "integer", Parsed(None, "number-invalid")),
        (dt.date(2020, 6, 15), "decimal", Parsed(None, "number-invalid")),
        (dt.time(12, 0), "decimal", Parsed(None, "number-invalid")),
        (float("inf"), "decimal", Parsed(None, "number-invalid")),
        (10**400, "integer", Parsed(None, "number-invalid")),
        ([1], "integer", Parsed(None, "number-invalid")),
        ("x" * 5000, "integer", Parsed(None, "number-invalid")),
        # blanks
        (None, "integer", Parsed(None)),
        ("", "integer", Parsed(None)),
        ("   ", "decimal", Parsed(None)),
        ("\u00a0", "percent", Parsed(None)),
        (float("nan"), "decimal", Parsed(None)),
        (pd.NA, "decimal", Parsed(None)),
    ],
)
def test_parse_number(raw, kind, expected):
    assert parse_number(raw, kind) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(0.92, 92.0), (0.07, 7.0), (0.123, 12.3), (1, 100.0), (0, 0.0), (0.5, 50.0), (1.5, 150.0)],
)
def test_percent_format_is_read_times_100(raw, expected):
    assert parse_number(raw, "percent", percent_format=True) == Parsed(expected)


def test_percent_format_too_big_to_scale():
    assert parse_number(1.7e306, "percent", percent_format=True) == Parsed(None, "number-invalid")


def test_percent_format_ignored_for_text():
    assert parse_number("92%", "percent", percent_format=True) == Parsed(92.0)


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown number kind"):
        parse_number(5.5, "money")


D = dt.date(2020, 6, 15)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (dt.datetime(2020, 6, 15, 8, 30), (D, None)),
        (D, (D, None)),
        (43997, (D, None)),
        (43997.75, (D, None)),
        (1, (dt.date(1900, 1, 1), None)),
        (59, (dt.date(1900, 2, 28), None)),
        (61, (dt.date(1900, 3, 1), None)),
        (2958465, (dt.date(9999, 12, 31), None)),
        ("15/6/2020", (D, None)),
        ("15/06/2020", (D, None)),
        ("15-6-2020", (D, None)),
        ("15.6.2020", (D, None)),
        (" 15 / 06 / 2020 ", (D, None)),
        ("2020-06-15", (D, None)),
        ("2020-06-15 00:00:00", (D, None)),
        ("ngày 15 tháng 6 năm 2020", (D, None)),
        ("Ngày 15 tháng 06 năm 2020.", (D, None)),
        ("Đông Triều, ngày 15 tháng 06 năm 2020", (D, None)),
        ("Hà Nội ngày 15 tháng 6, năm 2020", (D, None)),
        (unicodedata.normalize("NFD", "Đông Triều, ngày 15 tháng 06 năm 2020"), (D, None)),
        ("ngày 15/6/2020", (D, None)),
        (None, (None, None)),
        ("", (None, None)),
        ("  ", (None, None)),
        (float("nan"), (None, None)),
        ("31/2/2020", (None, "date-invalid")),
        ("15/13/2020", (None, "date-invalid")),
        ("ngày 31 tháng 4 năm 2020", (None, "date-invalid")),
        ("abc", (None, "date-invalid")),
        ("6/2020", (None, "date-invalid")),
        (60, (None, "date-invalid")),
        (0, (None, "date-invalid")),
        (-5, (None, "date-invalid")),
        (3e6, (None, "date-invalid")),
        (10**400, (None, "date-invalid")),
        (True, (None, "date-invalid")),
        (dt.time(8, 0), (None, "date-invalid")),
    ],
)
def test_parse_date(raw, expected):
    assert parse_date(raw) == expected


@pytest.mark.parametrize(
    ("x", "text"),
    [
        (2379, "2.379"),
        (785.87, "785,87"),
        (828.0, "828"),
        (1234567, "1.234.567"),
        (-1234.5, "-1.234,5"),
        (0.0, "0"),
        (-0.0, "0"),
        (92.5, "92,5"),
        (2215.0, "2.215"),
        (0.001, "0,001"),
        (1e20, "100.000.000.000.000.000.000"),
        (Decimal("2.50"), "2,5"),
    ],
)
def test_format_vn(x, text):
    assert format_vn(x) == text


# --- properties ----------------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=10**18))
def test_grouped_integers_parse_back(n):
    assert parse_number(vn_int(n), "integer") == Parsed(float(n))


@given(st.integers(min_value=-(10**12), max_value=10**12), st.sampled_from([1, 2]), st.booleans())
def test_decimals_with_comma_parse_back(cents, places, grouped):
    x = Decimal(cents).scaleb(-places)
    text = f"{x:,.{places}f}".translate(SWAP) if grouped else f"{x:.{places}f}".replace(".", ",")
    assert parse_number(text, "decimal") == Parsed(float(x))


@given(st.integers(min_value=-(10**12), max_value=10**12).filter(lambda n: n % 10))
def test_three_decimals_in_a_count(n):
    x = n / 1000
    p = parse_number(x, "integer")
    assert p.rule == "count-three-decimals"
    assert p.value is None
    assert p.suggestion == round(x * 1000) == n


@given(st.floats(allow_nan=False, allow_infinity=False) | st.integers(min_value=-(10**20), max_value=10**20))
def test_format_vn_round_trips(x):
    assert parse_number(format_vn(x), "decimal") == Parsed(float(x) + 0.0)


KINDS = st.sampled_from(["integer", "decimal", "percent"])
ANYTHING = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(), st.binary(), st.dates(), st.datetimes(),
    st.times(), st.decimals(), st.lists(st.integers(), max_size=2), st.just(pd.NA), st.just(pd.NaT),
)


def check(p: Parsed) -> None:
    assert p.rule is None or p.rule in RULE_IDS
    assert p.value is None or math.isfinite(p.value)
    assert p.suggestion is None or math.isfinite(p.suggestion)
    assert (p.rule == "number-malformed-group") == bool(p.suggestions)


@given(st.text(), KINDS)
def test_never_raises_on_text(raw, kind):
    check(parse_number(raw, kind))
    parse_date(raw)


@given(st.text(alphabet="0123456789.,%-+ ~<>gầnkhoảg\u00a0", max_size=20), KINDS)
def test_never_raises_on_number_like_text(raw, kind):
    check(parse_number(raw, kind))


@given(ANYTHING, KINDS, st.booleans())
def test_never_raises_on_anything(raw, kind, percent_format):
    check(parse_number(raw, kind, percent_format=percent_format))
    date, rule = parse_date(raw)
    assert rule in (None, "date-invalid")
    assert date is None or isinstance(date, dt.date)


@given(st.dates(min_value=dt.date(1900, 3, 1)), st.booleans())
def test_dates_written_dmy_parse_back(d, padded):
    text = f"{d.day:02d}/{d.month:02d}/{d.year}" if padded else f"{d.day}/{d.month}/{d.year}"
    assert parse_date(text) == (d, None)
    assert parse_date(f"Đông Triều, ngày {d.day} tháng {d.month} năm {d.year}") == (d, None)


# --- the vectorised wrapper ----------------------------------------------------------------------

CELLS = st.one_of(
    st.none(), st.integers(-(10**6), 10**6), st.floats(-1e6, 1e6), st.floats(), st.booleans(),
    st.sampled_from(["2.379", "8.28", "gần 8.000", "2,215", "92,0%", "abc", "", "0,5"]),
)


@given(st.lists(st.tuples(CELLS, KINDS, st.booleans()), max_size=30))
def test_parse_numbers_matches_parse_number(rows):
    index = pd.Index([f"r{i}" for i in range(len(rows))])
    raw = pd.Series([r[0] for r in rows], index=index, dtype=object)
    kinds, percent_format = (pd.Series([r[i] for r in rows], index=index) for i in (1, 2))
    out = parse_numbers(raw, kinds, percent_format)
    assert list(out.columns) == ["value", "rule", "suggestion", "suggestions"]
    assert out.index.equals(index)
    columns = zip(*(out[c].tolist() for c in ("value", "rule", "suggestion", "suggestions")), strict=True)
    for (cell, kind, pf), (value, rule, suggestion, suggestions) in zip(rows, columns, strict=True):
        p = parse_number(cell, kind, percent_format=pf)
        assert (math.isnan(value) and p.value is None) or value == p.value
        assert (math.isnan(suggestion) and p.suggestion is None) or suggestion == p.suggestion
        assert rule == p.rule
        assert suggestions == (" hoặc ".join(p.suggestions) or None)


def test_parse_numbers_columns_and_dtypes():
    raw = pd.Series([2379, "8.28", 0.92, None, 2.215, "gần 8.000"], index=range(10, 16), dtype=object)
    kinds = pd.Series(["integer", "decimal", "percent", "integer", "integer", "integer"], index=raw.index)
    out = parse_numbers(raw, kinds)
    assert out.index.equals(raw.index)
    want = {"value": float, "rule": object, "suggestion": float, "suggestions": object}
    assert out.dtypes.to_dict() == want
    assert out.rule.tolist() == [
        None, "number-malformed-group", "percent-fraction", None, "count-three-decimals", "number-hedged",
    ]
    assert out.suggestions[11] == "828 hoặc 8,28"
    assert out.value[12] == 92.0 and out.suggestion[14] == 2215.0 and math.isnan(out.value[13])


@pytest.mark.parametrize("dtype", ["float64", "int64", "Float64", "Int64"])
def test_parse_numbers_numeric_dtypes(dtype):
    raw = pd.Series([1, 2, None] if dtype[0] == "F" or dtype == "Int64" else [1, 2, 3], dtype=dtype)
    out = parse_numbers(raw, pd.Series(["integer"] * 3), pd.Series([False] * 3))
    assert out.value[:2].tolist() == [1.0, 2.0]
    assert out.rule.isna().all()


def test_parse_numbers_on_a_large_mixed_column():
    n = 600_000
    rng = np.random.default_rng(0)
    cells = rng.integers(0, 5000, n).astype(object)
    cells[::3] = rng.integers(0, 10000, len(cells[::3])) / 100
    cells[::1000] = "2.379"
    cells[1::1000] = None
    raw = pd.Series(cells, dtype=object)
    kinds = pd.Series(np.where(np.arange(n) % 3 == 0, "decimal", "integer"))
    out = parse_numbers(raw, kinds)
    assert out.value[0] == 2379.0 and math.isnan(out.value[1])
    assert out.rule.isna().all()
