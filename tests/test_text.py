"""Text helpers: per_distinct gives what a call per cell gives, whatever the mix of values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from pipeline.text import nfc, per_distinct
from pipeline.writers.outputs import show_plain

CELLS = st.one_of(
    st.none(),
    st.just(math.nan),
    st.text(max_size=4),
    st.sampled_from(["=1+1", "-5", "  Xã  A ", "Xã A", "X\u0303a", "1", "1.0"]),
    st.floats(allow_nan=False, allow_infinity=True),
    st.sampled_from([0.0, -0.0, -0.5, 1.0, 828.0, 2.5]),
)
ANY = st.one_of(CELLS, st.integers(-3, 3), st.booleans(), st.sampled_from([np.int64(1), np.float64(1.0)]),
                st.datetimes(), st.dates())


def _per_cell(values: list, func, missing="") -> list:
    return [missing if v is None or (isinstance(v, float) and v != v) else func(v) for v in values]


@given(st.lists(CELLS, max_size=40))
def test_per_distinct_is_a_call_per_cell_for_text_and_floats(values):
    column = pd.Series(values, dtype=object)
    assert per_distinct(column, repr) == _per_cell(values, repr)
    texts = [v for v in values if isinstance(v, str)]
    assert per_distinct(pd.Series(texts, dtype=object), nfc) == [nfc(v) for v in texts]


@given(st.lists(ANY, max_size=40))
def test_per_distinct_keeps_equal_values_of_other_types_apart(values):
    """1, 1.0 and True are equal and hash alike: each must still get its own func(value); so must dates
    among texts and figures."""
    column = pd.Series(values, dtype=object)
    assert per_distinct(column, lambda v: f"{type(v).__name__}:{v!r}") == _per_cell(
        values, lambda v: f"{type(v).__name__}:{v!r}")
    assert per_distinct(column, show_plain, missing="?") == _per_cell(values, show_plain, missing="?")



@given(st.lists(st.one_of(st.none(), st.text(max_size=4), st.sampled_from(["=1", "Xã A", "X\u0303a"])),
                max_size=40),
       st.lists(st.one_of(st.floats(allow_nan=True), st.sampled_from([0.0, -0.0, 828.0])), max_size=40))
def test_per_distinct_of_typed_columns_skips_the_type_scan_and_gives_the_same(texts, floats):
    """A string column (pandas' str dtype) and a float64 column take the path without a look at each
    cell's type; the result is still a call per cell (-0.0 apart from 0.0)."""
    column = pd.Series(texts, dtype="str")
    assert isinstance(column.dtype, pd.StringDtype)
    assert per_distinct(column, repr) == _per_cell(column.tolist(), repr)
    column = pd.Series(floats, dtype="float64")
    assert per_distinct(column, repr, missing="?") == _per_cell(floats, repr, missing="?")


def test_per_distinct_calls_once_per_distinct_value():
    calls = []
    column = pd.Series(["a", "b", "a", None, 2.0, 2.0, "b"] * 1000, dtype=object)
    out = per_distinct(column, lambda v: calls.append(v) or str(v).upper())
    assert sorted(map(str, calls)) == ["2.0", "a", "b"]
    assert out[:7] == ["A", "B", "A", "", "2.0", "2.0", "B"]
