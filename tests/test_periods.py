"""A file belongs to the period written in it: files of other periods are never counted, chosen, replaced."""

from pathlib import Path

import openpyxl
import pytest
from sample_inbox import plausible

from pipeline.cli.commands import main
from pipeline.units import load_units
from pipeline.writers.outputs import VALUES_HEADERS, read_csv
from pipeline.writers.template import render_workbook

UNITS = load_units().set_index("unit_code")
PERIOD = "2020-H1"


def _unit(code: str) -> dict:
    return UNITS.loc[code].to_dict() | {"unit_code": code}


def _file(folder: Path, name: str, code: str, period: str, **values) -> Path:
    path = folder / name
    render_workbook(_definition(), path, period=period, unit=_unit(code), values=plausible(code) | values)
    return path


def _definition():
    from pipeline.definition import load_definition

    return load_definition()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """07093 sends this period's report and last period's template; 07096 sends only last period's;
    07099 sends a file with no period at all; 07069 sends this period's report."""
    base = tmp_path_factory.mktemp("periods")
    inbox = base / "inbox"
    inbox.mkdir()
    _file(inbox, "07093-duc-chinh.xlsx", "07093", PERIOD)
    # sent later than the right one and dated later: it must still not replace it
    _file(inbox, "07093-duc-chinh-moi.xlsx", "07093", "2019-H2", report_date="30/06/2020")
    _file(inbox, "07096-trang-an.xlsx", "07096", "2019-H2")
    _file(inbox, "07069-mao-khe.xlsx", "07069", PERIOD)
    nope = _file(inbox, "07099-nguyen-hue.xlsx", "07099", PERIOD)
    wb = openpyxl.load_workbook(nope)
    wb["_tonghop"]["B4"] = ""
    wb["Thông tin chung"][_definition().fields["period"].cell] = ""
    wb.save(nope)
    out = base / "out"
    code = main(["consolidate", "--inbox", str(inbox), "--out", str(out), "--period", PERIOD, "--quiet"])
    return code, out / PERIOD


def test_files_of_other_periods_get_a_finding_and_are_never_counted(run):
    code, out = run
    assert code == 0
    findings = read_csv(out / "findings.csv", {"file": "Tệp", "rule": "Mã quy tắc", "severity": "Mức độ"})
    got = {(f, r) for f, r in zip(findings["file"], findings["rule"], strict=True)}
    assert ("07093-duc-chinh-moi.xlsx", "period-mismatch") in got
    assert ("07096-trang-an.xlsx", "period-mismatch") in got
    assert ("07099-nguyen-hue.xlsx", "period-missing") in got
    # never chosen over, nor replaced by, a file of the run's period
    assert not any(r in ("file-superseded", "file-duplicate") for _, r in got)
    # a wrong-period file's figures are not this run's business: only its period is reported
    assert {r for f, r in got if f == "07096-trang-an.xlsx"} == {"period-mismatch"}


def test_values_csv_labels_each_value_with_its_own_files_period(run):
    _, out = run
    values = read_csv(out / "values.csv", VALUES_HEADERS)
    by_file = values.groupby("file")
    assert set(by_file.get_group("07096-trang-an.xlsx")["period"]) == {"2019-H2"}
    assert set(by_file.get_group("07096-trang-an.xlsx")["counted"]) == {"Không"}
    # the reason names the file's own period (said only for such files' values)
    assert set(by_file.get_group("07096-trang-an.xlsx")["reason"]) == {"tệp là báo cáo kỳ 2019-H2"}
    assert set(by_file.get_group("07099-nguyen-hue.xlsx")["reason"]) == {"tệp là báo cáo kỳ không ghi kỳ"}
    assert not by_file.get_group("07093-duc-chinh.xlsx")["reason"].fillna("").str.startswith("tệp là").any()
    assert set(by_file.get_group("07093-duc-chinh.xlsx")["period"]) == {PERIOD}
    assert "Có" in set(by_file.get_group("07093-duc-chinh.xlsx")["counted"])


def test_status_sheet_says_wrong_period(run):
    import python_calamine as pc

    _, out = run
    rows = pc.CalamineWorkbook.from_path(str(out / "thi-xa-dong-trieu.xlsx")).get_sheet_by_name(
        "Tình hình nộp báo cáo").to_python()
    status = {r[0]: r[9] for r in rows[3:] if r and r[0]}
    assert status["07096"] == "Sai kỳ báo cáo"
    assert status["07093"] == "Đạt" or status["07093"] == "Có lỗi"
    assert status["07099"] == "Sai kỳ báo cáo"


def test_the_wrong_period_chosen_is_said_plainly_and_not_zero_exit(tmp_path, capsys):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for code in ("07093", "07096"):
        _file(inbox, f"{code}.xlsx", code, PERIOD)
    rc = main(["consolidate", "--inbox", str(inbox), "--out", str(tmp_path / "o"), "--period", "2021-H1",
               "--quiet"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "0 tệp của kỳ 2021-H1; 2 tệp của kỳ 2020-H1: có phải chọn nhầm kỳ báo cáo" in out
    assert "đã nhận 0/21 đơn vị" in out
    values = read_csv(tmp_path / "o" / "2021-H1" / "values.csv", VALUES_HEADERS)
    assert "2021-H1" not in set(values["period"])
