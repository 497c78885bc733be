"""The `tonghop` command as a user runs it: exit codes, Vietnamese output, --json."""

import json
import subprocess
import sys

import openpyxl
import pytest

from pipeline.cli import build_parser, main
from pipeline.definition import load_definition
from pipeline.findings import FINDING_COLUMNS
from pipeline.samples import DUC_CHINH, plausible
from pipeline.template import render_workbook
from pipeline.units import load_units

DEF = load_definition()
UNITS = load_units().set_index("unit_code")


def unit(code):
    return UNITS.loc[code].to_dict() | {"unit_code": code}


@pytest.fixture
def duc_chinh(tmp_path):
    """The seed report filled in as phường Đức Chính typed it (total typed over the formula)."""
    path = tmp_path / "07093-duc-chinh.xlsx"
    render_workbook(
        DEF,
        path,
        period="2020-H1",
        unit=unit("07093"),
        values={k: v for k, v in DUC_CHINH.items() if k != "total.participants"},
    )
    wb = openpyxl.load_workbook(path)
    wb["Kết quả hoạt động"]["D16"] = "8.28"
    wb.save(path)
    return path


@pytest.fixture
def clean(tmp_path):
    path = tmp_path / "07096-trang-an.xlsx"
    render_workbook(DEF, path, period="2020-H1", unit=unit("07096"), values=plausible("07096"))
    return path


def test_every_command_has_help():
    parser = build_parser()
    for name in ("templates", "check", "consolidate"):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([name, "--help"])
        assert exc.value.code == 0


def test_check_clean_file_exits_0(clean, capsys):
    assert main(["check", str(clean), "--period", "2020-H1"]) == 0
    assert "0 lỗi" in capsys.readouterr().out


def test_check_duc_chinh_reports_828(duc_chinh, capsys):
    assert main(["check", str(duc_chinh)]) == 1
    out = capsys.readouterr().out
    assert "Kết quả hoạt động!D16" in out and "828" in out and "8.28" in out


def test_check_json(duc_chinh, capsys):
    assert main(["check", "--json", str(duc_chinh)]) == 1
    items = json.loads(capsys.readouterr().out)
    assert all(list(i) == FINDING_COLUMNS for i in items)
    total = [i for i in items if i["field"] == "total.participants"]
    assert total == [
        {
            **total[0],
            "cell": "D16",
            "rule": "total-mismatch",
            "severity": "error",
            "expected": 828.0,
            "value": "8.28",
            "unit_code": "07093",
            "unit_name": "Phường Đức Chính",
            "sheet": "Kết quả hoạt động",
        }
    ]
    assert not [i for i in items if i["field"] == "total.classes"]
    assert {i["cell"] for i in items if i["rule"] == "female-blank"} == {"E9", "E12", "E14", "E15"}
    assert all(i["severity"] == "warning" for i in items if i["rule"] == "female-blank")
    assert not [
        i
        for i in items
        if i["field"] in ("households", "learners", "conference_attendees") and i["severity"] == "error"
    ]


def test_check_wrong_period_and_unknown_unit(tmp_path, capsys):
    path = tmp_path / "x.xlsx"
    render_workbook(
        DEF, path, period="2020-H2", unit={**unit("07096"), "unit_code": "99999"}, values=plausible("07096")
    )
    assert main(["check", "--json", "--period", "2020-H1", str(path)]) == 1
    rules = {i["rule"] for i in json.loads(capsys.readouterr().out)}
    assert {"period-mismatch", "unit-unknown"} <= rules


def test_blank_template_matches_typed_unit_name(tmp_path, capsys):
    path = tmp_path / "blank.xlsx"
    render_workbook(DEF, path, period="2020-H1", values={**plausible("07087"), "unit_name": "P. Tân  Viet"})
    assert main(["check", "--json", str(path)]) == 0
    assert all(i["unit_code"] == "07087" for i in json.loads(capsys.readouterr().out))


def test_non_template_workbook_gets_one_finding(tmp_path, capsys):
    path = tmp_path / "khac.xlsx"
    wb = openpyxl.Workbook()
    wb.active["A1"] = "Bảng lương tháng 6"
    wb.save(path)
    assert main(["check", "--json", str(path)]) == 1
    items = json.loads(capsys.readouterr().out)
    assert [(i["rule"], i["file"]) for i in items] == [("not-template", str(path))]
    assert "không phải là mẫu báo cáo" in items[0]["message"]


def test_usage_errors_exit_2(tmp_path, capsys):
    assert main(["check", str(tmp_path / "khong-co.xlsx")]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["check"])
    assert exc.value.code == 2


def test_console_script_runs(clean):
    exe = [sys.executable, "-m", "pipeline.cli", "check", str(clean)]
    done = subprocess.run(exe, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
