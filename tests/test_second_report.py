"""A second report type needs a YAML file, not code: a commune library's yearly report for the culture office
(tests/fixtures/thu-vien-xa.yaml: two table sheets, a weighted mean, a choice field, another office) runs
end to end — templates, check, consolidate, district and feedback workbooks — and no word of the first
report reaches its outputs."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import openpyxl
import pytest

from pipeline.cli.commands import main
from pipeline.definition import load_definition
from pipeline.units import load_units

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "thu-vien-xa.yaml"
LIBRARY = load_definition(FIXTURE)
PERIOD = "2020"
# Words only the first report (the community learning centres' report to the education office) uses.
FIRST_REPORT = ["GD&ĐT", "Giáo dục", "giáo dục", "TTHTCĐ", "học tập cộng đồng", "HỌC TẬP CỘNG ĐỒNG",
                "lượt người tham gia", "Huy động", "Hiệu quả", "participants", "learners", "households",
                "Số dân", "Kết quả hoạt động", "Thông tin chung"]


def _figures(code: str, **over) -> dict:
    n = int(code[-2:])
    values = {"villages": 5 + n % 7, "homes": 1000 + 37 * n, "card_rate": 40 + n % 30, "rating": "Đạt",
              "librarian": "Nguyễn Văn Thư", "signed_on": "20/12/2020"}
    for i, row in enumerate(("novels", "farming", "kids")):
        values |= {f"{row}.titles": 100 + n + i, f"{row}.copies": 300 + 2 * n + i}
    for i, row in enumerate(("onsite", "lending", "mobile")):
        values |= {f"{row}.sessions": 10 + i, f"{row}.readers": 200 + n + 10 * i, f"{row}.young": 50 + i}
    return values | over


def _fill(template: Path, target: Path, values: dict) -> Path:
    """A ward's file: its template with the figures typed in (openpyxl, as a script would)."""
    wb = openpyxl.load_workbook(template)
    for fid, v in values.items():
        f = LIBRARY.fields[fid]
        wb[LIBRARY.sheet(f.sheet).name][f.cell] = v
    wb.save(target)
    return target


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("library")
    common = ["--definition", str(FIXTURE)]
    assert main(["templates", "--period", PERIOD, "--out", str(base / "templates"), *common]) == 0
    units = load_units().set_index("unit_code")
    inbox = base / "inbox"
    inbox.mkdir()
    codes = ["07069", "07072", "07075", "07093"]
    for code in codes:
        over = {"lending.young": 999} if code == "07075" else {}  # more children than readers: an error
        if code == "07093":
            over = {"books_all.copies": 12}  # a wrong total typed over the formula
        _fill(base / "templates" / PERIOD / f"{units.at[code, 'slug']}.xlsx", inbox / f"{code}.xlsx",
              _figures(code, **over))
    out = base / "out"
    code = main(["consolidate", "--period", PERIOD, "--inbox", str(inbox), "--out", str(out), "--quiet",
                 *common])
    return base, out / PERIOD, code


def _texts(path: Path) -> str:
    """Every text an xlsx holds (cells, shared strings, comments, charts, properties)."""
    with zipfile.ZipFile(path) as z:
        return " ".join(z.read(n).decode("utf-8", "replace") for n in z.namelist()
                        if n.endswith((".xml", ".vml")))


def test_templates_come_from_the_definition(run):
    base, _, _ = run
    blank = base / "templates" / PERIOD / f"mau-bao-cao-{PERIOD}.xlsx"
    wb = openpyxl.load_workbook(blank)
    assert [n for n in wb.sheetnames if n in ("Thông tin thư viện", "Vốn sách", "Phục vụ")] == [
        "Thông tin thư viện", "Vốn sách", "Phục vụ"]
    assert wb["Phục vụ"]["E9"].value == "=SUM(E6:E8)"  # the children column's total


def test_check_fires_the_reports_own_rules(run, capsys):
    base, _, _ = run
    capsys.readouterr()
    assert main(["check", "--definition", str(FIXTURE), str(base / "inbox" / "07075.xlsx")]) == 1
    assert "số lượt thiếu nhi (999) nhiều hơn tổng số lượt bạn đọc ở ô D7" in capsys.readouterr().out


def test_consolidate_writes_the_district_report_of_the_culture_office(run):
    _, out, code = run
    assert code == 0
    ws = openpyxl.load_workbook(out / "thi-xa-dong-trieu.xlsx")["Tổng hợp"]
    assert (ws["A2"].value, ws["A4"].value) == ("PHÒNG VĂN HÓA VÀ THÔNG TIN", "Số: …/BC-VHTT")
    cells = [c.value for row in ws.iter_rows() for c in row if isinstance(c.value, str)]
    assert "KT. TRƯỞNG PHÒNG" in cells and "PHÓ TRƯỞNG PHÒNG" in cells
    assert "Tình hình hoạt động thư viện, tủ sách cơ sở năm 2020" in cells
    assert "Dòng «Cộng vốn sách» được tính lại từ các dòng thành phần." in cells


def test_by_unit_shows_the_definitions_figures_and_charts(run):
    _, out, _ = run
    path = out / "thi-xa-dong-trieu.xlsx"
    ws = openpyxl.load_workbook(path)["Theo đơn vị"]
    assert [c.value for c in ws[1]][3:6] == ["Số gia đình", "Số bản sách", "Lượt bạn đọc"]
    row = next(r for r in ws.iter_rows(values_only=True) if r[0] == "07069")
    assert row[3] == _figures("07069")["homes"]
    with zipfile.ZipFile(path) as z:
        charts = [z.read(n).decode() for n in z.namelist() if n.startswith("xl/charts/chart")]
    assert len(charts) == 2 and any("Lượt bạn đọc theo hình thức" in c for c in charts)


def test_the_counting_rule_and_the_self_test_follow_the_definition(run):
    """The row with more children than readers is left out (both cells), the weighted mean is by homes."""
    _, out, _ = run
    findings = (out / "findings.csv").read_text(encoding="utf-8-sig")
    assert "young-exceeds-readers" in findings and "total-mismatch" in findings
    assert "district-check-failed" not in findings
    ws = openpyxl.load_workbook(out / "thi-xa-dong-trieu.xlsx")["Tổng hợp"]
    lending = next(r for r in ws.iter_rows(values_only=True) if r[1] == "Cho mượn về nhà")
    counted = [c for c in ("07069", "07072", "07093")]
    assert lending[3] == sum(_figures(c)["lending.readers"] for c in counted)


def test_feedback_speaks_for_the_culture_office(run):
    _, out, _ = run
    feedback = next((out / "feedback").glob("07075-*.xlsx"))
    wb = openpyxl.load_workbook(feedback)
    assert wb.sheetnames[0] == "Góp ý"
    assert wb["Góp ý"]["A2"].value.startswith("Phòng VH&TT đã xem báo cáo năm 2020 của")
    assert "nhiều hơn tổng số lượt bạn đọc" in wb["Phục vụ"]["E7"].comment.text


def test_no_word_of_the_first_report_in_any_output(run):
    base, out, _ = run
    files = [*out.rglob("*.xlsx"), *(base / "templates").rglob("*.xlsx")]
    assert len(files) > 8
    for path in files:
        text = _texts(path)
        leaked = [w for w in FIRST_REPORT if w in text]
        assert not leaked, (path.name, leaked)
    for path in out.glob("*.csv"):
        text = path.read_text(encoding="utf-8-sig")
        assert not [w for w in FIRST_REPORT if w in text], path.name
    assert not re.search(r"tthtcd", (out / "manifest.json").read_text(encoding="utf-8"))
