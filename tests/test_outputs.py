"""values.csv and findings.csv: the csv module's bytes (";" between fields, decimal commas), with risky text
defused, however they are built; read back as written."""

from __future__ import annotations

import csv
import io
import math

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.writers import outputs
from pipeline.writers.outputs import write_csv

TEXT = st.one_of(st.none(), st.text(max_size=6),
                 st.sampled_from(["", "=1+1", "+3", "-5", "@x", "\tA", "a,b", 'say "hi"', "two\nlines",
                                  "cr\r", "Xã A", " lề ", "'"]))
CELL = st.one_of(TEXT, st.floats(allow_nan=True, allow_infinity=True),
                 st.sampled_from([0.0, -0.0, 828.0, 1e16]), st.integers(-3, 3), st.booleans(), st.dates())


def _reference(df: pd.DataFrame) -> bytes:
    """What csv.writer writes for the frame cell by cell (missing blank, risky text quoted, numbers with a
    decimal comma, non-finite numbers blank)."""
    def cell(v):
        if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
            return ""
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return outputs.number_text(float(v)) if math.isfinite(v) else ""
        return "'" + v if isinstance(v, str) and v.startswith(outputs._RISKY) else v

    buf = io.StringIO(newline="")
    out = csv.writer(buf, delimiter=";", lineterminator="\r\n")
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
        assert [r[1] for r in csv.reader(fh, delimiter=";")] == ["t", *(f"dòng {i}" for i in range(50))]


def test_write_csv_of_one_column_keeps_its_empty_rows(tmp_path):
    df = pd.DataFrame({"only": ["a", "", None, "=x"]}, dtype=object)
    write_csv(df, tmp_path / "x.csv")
    assert (tmp_path / "x.csv").read_bytes() == _reference(df)


def test_csv_opens_right_in_a_vietnamese_locale_and_reads_back(tmp_path):
    """Codes keep their leading zero (="07069"), figures have a decimal comma, headers are Vietnamese."""
    df = pd.DataFrame({"unit_code": ["07069", "x1"], "value": [785.87, 2379.0], "raw": ["785,87", "=1+1"]})
    write_csv(df, tmp_path / "v.csv", {"unit_code": "Mã đơn vị", "value": "Giá trị"})
    text = (tmp_path / "v.csv").read_text(encoding="utf-8-sig")
    assert text.splitlines() == ["Mã đơn vị;Giá trị;raw", '="07069";785,87;785,87', "x1;2379;'=1+1"]
    back = outputs.read_csv(tmp_path / "v.csv", {"unit_code": "Mã đơn vị", "value": "Giá trị"})
    assert back["unit_code"].tolist() == ["07069", "x1"]
    assert [outputs.csv_number(v) for v in back["value"]] == [785.87, 2379.0]


def test_libreoffice_in_vietnamese_reads_codes_as_text_and_figures_as_numbers(tmp_path, soffice_convert):
    """LibreOffice told the locale (vi-VN, UTF-8, ";", formulas evaluated) as a Vietnamese office's is."""
    pytest.importorskip("openpyxl")
    df = pd.DataFrame({"unit_code": ["07069"], "value": [785.87], "name": ["Đức Chính"]})
    write_csv(df, tmp_path / "v.csv", {"unit_code": "Mã đơn vị", "value": "Giá trị", "name": "Tên"})
    got = soffice_convert(tmp_path / "v.csv", "xlsx", tmp_path / "out",
                          infilter="CSV:59,34,76,1,,1066,false,false,false,false,false,-1,true")
    import openpyxl

    ws = openpyxl.load_workbook(got).active
    assert [c.value for c in ws[1]] == ["Mã đơn vị", "Giá trị", "Tên"]
    assert ws["B2"].value == 785.87 and ws["C2"].value == "Đức Chính"
    assert ws["A2"].value in ("07069", '="07069"')  # the formula's result once LibreOffice recalculates
