"""Rules fired by whole files: template version, identity, missing sheets, text too long for Excel.

The catalogue (every rule has a message and a case that fires it) is tests/test_catalogue.py."""

import zipfile
from pathlib import Path

import openpyxl
import pytest
from sample_inbox import plausible

from pipeline.definition import load_definition
from pipeline.findings import Finding
from pipeline.intake.reader import make_spec, read_workbook
from pipeline.intake.reading import ReadOptions
from pipeline.units import load_units
from pipeline.wiring import check_files
from pipeline.writers.template import render_workbook

DEF = load_definition()
UNITS = load_units()


def _check(path: Path, period: str | None = "2020-H1"):
    return check_files([path], DEF, UNITS, period=period, options=ReadOptions(isolate=False)).findings


def _unit(code):
    return UNITS.set_index("unit_code").loc[code].to_dict() | {"unit_code": code}


def test_template_version(tmp_path):
    path = tmp_path / "old.xlsx"
    render_workbook(DEF, path, period="2020-H1", unit=_unit("07096"), values=plausible("07096"))
    wb = openpyxl.load_workbook(path)
    wb["_tonghop"]["B2"] = "0"
    wb.save(path)
    f = _check(path)
    assert f[["rule", "value", "expected"]].values.tolist() == [
        ["template-version", "tthtcd-6thang v0", "tthtcd-6thang v1"]
    ]


def test_unit_missing_on_a_blank_template(tmp_path):
    path = tmp_path / "blank.xlsx"
    render_workbook(DEF, path, period="2020-H1", values=plausible("07096"))
    f = _check(path)
    assert f[["rule", "cell"]].values.tolist() == [["unit-missing", DEF.fields["unit_name"].cell]]


def test_sheet_missing(tmp_path):
    path = tmp_path / "s.xlsx"
    render_workbook(DEF, path, period="2020-H1", unit=_unit("07096"), values=plausible("07096"))
    wb = openpyxl.load_workbook(path)
    del wb["Huy động xã hội"]
    wb.save(path)
    raw = read_workbook(path, make_spec(DEF))
    assert Finding("sheet-missing", sheet="Huy động xã hội", cell="", field="") in raw.problems
    f = _check(path)
    assert "sheet-missing" in set(f["rule"]) and "Huy động xã hội" in set(f["sheet"])


@pytest.mark.parametrize("length", [32_767, 40_000])
def test_text_too_long(tmp_path, length):
    """Excel stops at 32,767 characters but a file from another program (or a script) may hold more."""
    src = tmp_path / "t.xlsx"
    render_workbook(
        DEF,
        src,
        period="2020-H1",
        unit=_unit("07096"),
        values=plausible("07096") | {"plan_tasks": "PLACEHOLDER"},
    )
    path = tmp_path / "long.xlsx"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            zout.writestr(item, data.replace(b"PLACEHOLDER", b"x" * length))
    rules = set(_check(path)["rule"])
    assert ("text-too-long" in rules) == (length > 32_767)
