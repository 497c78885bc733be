"""Feedback workbooks made from the prototype read exactly like ones rendered whole; findings still get a
whole render."""

from __future__ import annotations

import io

import openpyxl
import pandas as pd
import pytest
from python_calamine import CalamineWorkbook
from sample_inbox import plausible

from pipeline.findings import FINDING_COLUMNS, public
from pipeline.writers import feedback
from pipeline.writers.cache import WriterCache

PERIOD = "2020-H1"
UNIT = {"unit_code": "07093", "unit_name": "Đức Chính", "full_name": "Phường Đức Chính"}
NO_FINDINGS = pd.DataFrame(columns=FINDING_COLUMNS)


def _whole(definition, unit, values) -> bytes:
    buf = io.BytesIO()
    feedback.render_whole(definition, buf, PERIOD, unit, values, NO_FINDINGS)
    return buf.getvalue()


def _fast(definition, unit, values) -> bytes:
    proto = feedback.prototype(definition, PERIOD, WriterCache())
    members = feedback.filled(proto, unit, values)
    assert members is not None
    buf = io.BytesIO()
    proto.package.write(buf, members)
    return buf.getvalue()


def _cells(xlsx: bytes) -> dict:
    """Everything a ward or a reader sees: values, types, formats, fills, locks, fonts, merges,
    validations, links, comments, protection, print areas, hidden sheets."""
    wb = openpyxl.load_workbook(io.BytesIO(xlsx))
    out: dict = {"sheets": wb.sheetnames}
    for ws in wb:
        for row in ws.iter_rows():
            for c in row:
                if c.value is not None or c.has_style:
                    # openpyxl decodes _xHHHH_ escapes in shared strings only: calamine checks those
                    shown = "(escaped)" if isinstance(c.value, str) and "_x" in c.value else c.value
                    out[(ws.title, c.coordinate)] = (
                        shown, c.data_type, c.number_format, c.fill.fgColor.rgb, c.protection.locked,
                        c.font.b, c.alignment.wrap_text, c.comment and c.comment.text,
                        c.hyperlink and c.hyperlink.location)
        out[ws.title] = (sorted(map(str, ws.merged_cells.ranges)), ws.sheet_state, ws.protection.sheet,
                         ws.print_area, ws.freeze_panes, sorted((str(v.sqref), v.type, v.formula1, v.prompt)
                                                                for v in ws.data_validations.dataValidation))
    calamine = CalamineWorkbook.from_filelike(io.BytesIO(xlsx))
    out["cached"] = {n: calamine.get_sheet_by_name(n).to_python() for n in calamine.sheet_names}
    return out


@pytest.mark.parametrize("code", ["07093", "07096", "07111", "07129"])
def test_prototype_gives_the_whole_render(definition, code):
    """Also the report date's serial number: a date object, written as write_datetime would."""
    # as the job passes them: figures as floats, the report date as a date
    values = {k: v.date() if hasattr(v, "date") else float(v) if isinstance(v, int) else v
              for k, v in plausible(code).items()}
    assert _cells(_fast(definition, UNIT | {"unit_code": code}, values)) == _cells(
        _whole(definition, UNIT | {"unit_code": code}, values))


def test_prototype_keeps_odd_values_and_names_as_text(definition):
    unit = {"unit_code": "07096", "unit_name": "x", "full_name": 'Phường <A> & "B" _x0041_ \x01'}
    values = {"households": 2379.0, "population": "gần 8.000", "reporter": '=HYPERLINK("http://x")',
              "phone": "0203 _x0041_ \x02 <b>", "report_date": "15/06/2020", "total.participants": 828.0,
              "total.classes": "", "health.participants": None, "area_ha": float("nan"),
              "mobilization_note": "  lề  "}
    fast, whole = _fast(definition, unit, values), _whole(definition, unit, values)
    assert _cells(fast) == _cells(whole)
    rows = _cells(fast)["cached"]
    assert any('=HYPERLINK("http://x")' in r for s in rows.values() for r in s)


def test_findings_dates_and_padded_names_get_a_whole_render(definition):
    proto = feedback.prototype(definition, PERIOD, WriterCache())
    import datetime as dt

    assert feedback.filled(proto, UNIT, {"households": dt.date(2020, 6, 15)}) is None  # not a date field
    assert feedback.filled(proto, UNIT, {"report_date": dt.date(1900, 1, 15)}) is None
    assert feedback.filled(proto, UNIT, {"report_date": dt.date(2020, 6, 15)}) is not None
    assert feedback.filled(proto, UNIT, {"report_date": dt.datetime(2020, 6, 15, 9, 30)}) is not None
    assert feedback.filled(proto, UNIT, {"report_date": dt.datetime(1899, 6, 15)}) is None
    assert feedback.filled(proto, UNIT, {"households": True}) is None
    assert feedback.filled(proto, UNIT | {"full_name": " Đức Chính"}, {}) is None
    assert feedback.filled(proto, UNIT, {"reporter": "x" * 40_000}) is None
    assert feedback.filled(proto, UNIT, {"households": 1.0}) is not None


def test_render_marks_findings_and_fills_the_rest(definition, tmp_path, monkeypatch):
    whole = []
    real = feedback.render_workbook
    monkeypatch.setattr(feedback, "render_workbook", lambda *a, **k: whole.append(k) or real(*a, **k))
    cache = WriterCache()
    finding = pd.DataFrame([dict.fromkeys(FINDING_COLUMNS, "") | {
        "field": "total.participants", "severity": "error", "message": "Tổng số sai: phải là 828.",
        "sheet": "Hoạt động", "cell": "D16"}])
    values = {"total.participants": 828.0, "health.participants": 350.0}
    for i in range(3):
        feedback.render(definition, tmp_path / f"ok{i}.xlsx", PERIOD, UNIT, values, NO_FINDINGS, cache=cache)
    feedback.render(definition, tmp_path / "marked.xlsx", PERIOD, UNIT, values, finding, cache=cache)
    assert len(whole) == 2  # the prototype once, the ward with a finding; the three others filled
    assert whole[1]["marks"]["total.participants"].severity == "error"
    assert _cells((tmp_path / "ok0.xlsx").read_bytes()) == _cells(_whole(definition, UNIT, values))
    assert any(c.comment for ws in openpyxl.load_workbook(tmp_path / "marked.xlsx")
               for r in ws.iter_rows() for c in r)


def test_a_filled_feedback_workbook_can_be_sent_back_as_is(definition, tmp_path, capsys):
    """The ward may correct its feedback workbook and send it back: saved, even without a change, it
    reads clean, with its own figures and unit. (Never saved since tonghop wrote it, it is tonghop's
    own output: not read, see pipeline.intake.guard.OUTPUT_PROPERTY.)"""
    import re
    import zipfile

    from pipeline.cli.commands import main
    from pipeline.units import load_units
    from pipeline.wiring import check_files

    code = "07096"
    values = {k: v.date() if hasattr(v, "date") else float(v) if isinstance(v, int) else v
              for k, v in plausible(code).items()}
    unit = load_units().set_index("unit_code").loc[code].to_dict() | {"unit_code": code}
    path = tmp_path / "feedback.xlsx"
    feedback.render(definition, path, PERIOD, unit, values, NO_FINDINGS)
    assert [f["rule"] for f in public(check_files([path], definition, load_units()).findings)] == [
        "file-own-output"]
    with zipfile.ZipFile(path) as z:  # the ward opens it and saves: the save time moves on
        members = [(i, z.read(i)) for i in z.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for info, data in members:
            if info.filename == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*", rb"\g<1>2030-01-01T00:00:00Z", data)
            z.writestr(info, data)
    assert main(["check", str(path), "--period", PERIOD]) == 0
    result = check_files([path], definition, load_units())
    assert result.submissions["unit_code"].tolist() == [code]
    got = result.values.set_index("field")["value"]
    assert got["households"] == values["households"] and got["total.participants"] > 0


def test_a_cross_check_marks_every_cell_it_involves(definition):
    """Poor + near-poor > households: the three cells are coloured, each with the message."""
    values = plausible("07093") | {"poor_households": 2000, "near_poor_households": 900}
    finding = {c: None for c in FINDING_COLUMNS} | {
        "field": "poor_households", "also": "near_poor_households households", "severity": "error",
        "rule": "poor-exceeds-households", "message": "Số hộ nghèo và cận nghèo cộng lại lớn hơn tổng số hộ."}
    buf = io.BytesIO()
    feedback.render(definition, buf, PERIOD, UNIT, values, pd.DataFrame([finding]))
    ws = openpyxl.load_workbook(io.BytesIO(buf.getvalue()))["Hiệu quả"]
    for fid in ("poor_households", "near_poor_households"):
        cell = ws[definition.fields[fid].cell]
        assert cell.comment is not None and "lớn hơn tổng số hộ" in cell.comment.text
    general = openpyxl.load_workbook(io.BytesIO(buf.getvalue()))["Thông tin chung"]
    hh = general[definition.fields["households"].cell]
    assert hh.comment is not None and "lớn hơn tổng số hộ" in hh.comment.text
