"""values.csv and findings.csv: the csv module's bytes, with risky text defused, however they are built."""

from __future__ import annotations

import csv
import io
import math

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import outputs
from pipeline.outputs import write_csv

TEXT = st.one_of(st.none(), st.text(max_size=6),
                 st.sampled_from(["", "=1+1", "+3", "-5", "@x", "\tA", "a,b", 'say "hi"', "two\nlines",
                                  "cr\r", "Xã A", " lề ", "'"]))
CELL = st.one_of(TEXT, st.floats(allow_nan=True, allow_infinity=True),
                 st.sampled_from([0.0, -0.0, 828.0, 1e16]), st.integers(-3, 3), st.booleans(), st.dates())


def _reference(df: pd.DataFrame) -> bytes:
    """What csv.writer writes for the frame cell by cell (missing blank, risky text quoted)."""
    def cell(v):
        if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
            return ""
        return "'" + v if isinstance(v, str) and v.startswith(outputs._RISKY) else v

    buf = io.StringIO(newline="")
    out = csv.writer(buf, lineterminator="\r\n")
    out.writerow(list(df.columns))
    out.writerows([cell(v) for v in row] for row in df.itertuples(index=False))
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


@settings(max_examples=200)
@given(st.lists(st.tuples(TEXT, CELL, st.floats(allow_nan=True)), max_size=30))
def test_write_csv_writes_what_the_csv_module_writes_cell_by_cell(tmp_path_factory, rows):
    df = pd.DataFrame(rows, columns=["text", "mixed", "number"]).astype({"text": object, "mixed": object})
    df["typed"] = df["text"].astype("str")
    target = tmp_path_factory.mktemp("csv") / "x.csv"
    write_csv(df, target)
    assert target.read_bytes() == _reference(df)


def test_write_csv_joins_lines_in_blocks_without_losing_or_doubling_one(tmp_path, monkeypatch):
    monkeypatch.setattr(outputs, "_BLOCK", 7)
    df = pd.DataFrame({"n": [float(i) for i in range(50)], "t": [f"dòng {i}" for i in range(50)]})
    write_csv(df, tmp_path / "x.csv")
    assert (tmp_path / "x.csv").read_bytes() == _reference(df)
    with (tmp_path / "x.csv").open(encoding="utf-8-sig", newline="") as fh:
        assert [r[1] for r in csv.reader(fh)] == ["t", *(f"dòng {i}" for i in range(50))]


def test_write_csv_of_one_column_keeps_its_empty_rows(tmp_path):
    df = pd.DataFrame({"only": ["a", "", None, "=x"]}, dtype=object)
    write_csv(df, tmp_path / "x.csv")
    assert (tmp_path / "x.csv").read_bytes() == _reference(df)
